"""Small synthetic Gaussian scenes for the loss tests."""
import math

import torch

from models.sugar import quat_to_rotmat


def random_rotmats(n, generator):
    return quat_to_rotmat(torch.randn(n, 4, generator=generator))


def wall(spacing=0.2, half=3.3, depth=5.0, thin=0.005, wide=0.15, opacity=0.99,
         height=64, width=64, focal=50.0):
    """A plane z = depth of thin, opaque, overlapping Gaussians facing a camera at the origin.

    It overfills the 64×64 view; no centre projects exactly onto the image border (u = 0, 64),
    so in-image tests do not hinge on rounding.

    Returns a dict of tensors: means, rotmats (identity: smallest axis = z = the wall normal),
    scales, opacities, viewmat (identity: world = camera), K, depth_map (the true plane depth),
    alpha_map (ones), and scene_extent.
    """
    ticks = torch.arange(-half, half + 1e-6, spacing)
    gx, gy = torch.meshgrid(ticks, ticks, indexing="xy")
    means = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.full((gx.numel(),), depth)], -1)
    n = means.shape[0]
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return {
        "means": means,
        "rotmats": torch.eye(3).expand(n, 3, 3).clone(),
        "scales": torch.tensor([wide, wide, thin]).expand(n, 3).clone(),
        "opacities": torch.full((n,), opacity),
        "viewmat": torch.eye(4),
        "K": K,
        "depth_map": torch.full((height, width), depth),
        "alpha_map": torch.ones(height, width),
        "scene_extent": depth,
    }


def logit(p):
    return math.log(p / (1 - p))
