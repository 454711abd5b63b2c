"""A procedural view to fit: a small textured street-like scene ray-cast analytically (checkered
ground, striped wall, a brick-textured box front) from an OpenCV camera at the origin looking down +z,
with its true depth and intrinsics."""
from __future__ import annotations

import torch

from models.cameras import pixel_rays


def _intrinsics(width: int, height: int) -> torch.Tensor:
    f = 0.9 * width
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def procedural_scene(width: int = 96, height: int = 64, supersample: int = 3):
    """Return (image [H,W,3] in [0,1], depth [H,W] camera z, K [3,3]) of the analytic scene."""
    K = _intrinsics(width, height)
    s = supersample
    d = pixel_rays(K, width, height, supersample=s)            # camera rays with z = 1
    inf = torch.full_like(d[..., 0], float("inf"))
    # ground y = 1.5 (y points down), wall z = 9, box front z = 4.5 for x in [-1.6, 0.1], y in [-0.3, 1.5]
    t_ground = torch.where(d[..., 1] > 1e-6, 1.5 / d[..., 1], inf)
    t_wall = 9.0 / d[..., 2]
    t_box = 4.5 / d[..., 2]
    bx, by = d[..., 0] * t_box, d[..., 1] * t_box
    t_box = torch.where((bx > -1.6) & (bx < 0.1) & (by > -0.3) & (by < 1.5), t_box, inf)
    t = torch.minimum(torch.minimum(t_ground, t_wall), t_box)
    p = d * t[..., None]
    img = torch.zeros(height * s, width * s, 3)
    # ground: checkerboard 0.6 m, warm grey / dark
    chk = ((torch.floor(p[..., 0] / 0.6) + torch.floor(p[..., 2] / 0.6)) % 2)[..., None]
    ground = chk * torch.tensor([0.75, 0.7, 0.6]) + (1 - chk) * torch.tensor([0.25, 0.27, 0.3])
    # wall: smooth colour gradient with soft vertical stripes
    u = 0.5 + 0.5 * torch.sin(p[..., 0] * 2.0)
    v = (p[..., 1] + 3.0) / 5.0
    wall = torch.stack([0.3 + 0.5 * u, 0.4 + 0.3 * v.clamp(0, 1), 0.8 - 0.4 * u], -1)
    # box: bricks 0.4 x 0.2 m with mortar lines
    row = torch.floor(p[..., 1] / 0.2)
    col = torch.floor((p[..., 0] + 0.2 * (row % 2)) / 0.4)
    mortar = ((p[..., 1] / 0.2 - row) < 0.12) | (((p[..., 0] + 0.2 * (row % 2)) / 0.4 - col) < 0.06)
    brick = torch.where(mortar[..., None], torch.tensor([0.85, 0.85, 0.8]),
                        torch.tensor([0.65, 0.2, 0.12]) + 0.1 * ((col + row) % 3)[..., None] / 2)
    img = torch.where((t == t_ground)[..., None], ground, img)
    img = torch.where((t == t_wall)[..., None], wall, img)
    img = torch.where((t == t_box)[..., None], brick, img)
    img = img.reshape(height, s, width, s, 3).mean(dim=(1, 3)).clamp(0, 1)
    depth = t.reshape(height, s, width, s).amin(dim=(1, 3)) * 1.0
    return img, depth, K
