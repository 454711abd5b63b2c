"""Training losses: pure functions of tensors (no trainer state), device-agnostic.

Image-space terms live here; SuGaR's Gaussian-space regularizers live in ``models.sugar`` and
are re-exported below so the trainer can import everything from one place. Every function
returns the *unweighted* term unless it takes a ``weight`` argument (the SuGaR terms do, with
SuGaR's defaults); the trainer applies the stage's weights.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from models.depth_normals import normals_from_depth
from models.ssim import ssim

from models.sugar import (  # noqa: F401  (re-exported)
    GaussianGeometry,
    gaussian_density,
    gaussian_normals,
    knn,
    quat_to_rotmat,
    sample_points_around_gaussians,
    sugar_density_loss,
    sugar_normal_loss,
    sugar_sdf_loss,
    visible_surface_mask,
)


def psnr(pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [0, 1]; over the True pixels of ``mask`` [H, W]
    when it has any (a metric, not a loss: the training monitor, evaluation and benchmarks use it)."""
    err = (pred - gt).pow(2)
    mse = err[mask].mean() if mask is not None and bool(mask.any()) else err.mean()
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def photometric_loss(
    pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None,
    ssim_lambda: float = 0.2,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """(1 − λ)·L1 + λ·(1 − SSIM) between [H, W, 3] images in [0, 1].

    ``mask`` [H, W] bool, True = pixel counts. With a mask, L1 is averaged over the masked
    pixels only, and SSIM is computed on images where the unmasked pixels of ``pred`` are
    replaced by ``gt`` (so they are identical there and carry no gradient). An all-False mask
    gives L1 = 0 (still in the graph).
    Returns (loss, {"l1": L1, "ssim": SSIM}) with the parts detached.
    """
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"photometric_loss: pred and gt must both be [H, W, 3], got "
                         f"{tuple(pred.shape)} and {tuple(gt.shape)}")
    gt = gt.to(pred.dtype)
    if mask is None:
        l1 = (pred - gt).abs().mean()
        pred_for_ssim = pred
    else:
        m = mask.to(torch.bool)
        if m.shape != pred.shape[:2]:
            raise ValueError(f"photometric_loss: mask must be [H, W] = {tuple(pred.shape[:2])}, "
                             f"got {tuple(m.shape)}")
        mf = m.unsqueeze(-1).to(pred.dtype)
        l1 = ((pred - gt).abs() * mf).sum() / (mf.sum() * 3).clamp_min(1.0)
        pred_for_ssim = torch.where(m.unsqueeze(-1), pred, gt)
    s = ssim(pred_for_ssim.permute(2, 0, 1).unsqueeze(0), gt.permute(2, 0, 1).unsqueeze(0),
             data_range=1.0)
    loss = (1.0 - ssim_lambda) * l1 + ssim_lambda * (1.0 - s)
    return loss, {"l1": l1.detach(), "ssim": s.detach()}


def opacity_entropy_loss(opacities: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Mean over visible Gaussians of the binary entropy −α·log(α+1e-10) − (1−α)·log(1−α+1e-10).

    ``opacities`` [N] (or [N, 1]) activated, ``visible`` [N] bool (e.g. radii > 0). Unweighted.
    Minimal (0) at α ∈ {0, 1}, maximal (log 2) at 0.5: pushes each Gaussian to be opaque or
    gone. With no visible Gaussian the result is a zero that is still in the graph.
    """
    a = opacities.reshape(-1)
    vis = visible.reshape(-1).to(torch.bool)
    if vis.shape != a.shape:
        raise ValueError(f"opacity_entropy_loss: visible has shape {tuple(visible.shape)}, "
                         f"expected [{a.shape[0]}]")
    ent = -a * torch.log(a + 1e-10) - (1.0 - a) * torch.log(1.0 - a + 1e-10)
    vf = vis.to(a.dtype)
    return (ent * vf).sum() / vf.sum().clamp_min(1.0)


def sky_opacity_loss(alpha: torch.Tensor, sky_mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy pushing the rendered alpha to 0 on sky and 1 elsewhere.

    alpha [H, W] (or [H, W, 1]) in [0, 1]; sky_mask [H, W] bool or float in [0, 1]
    (1 = sky). drivestudio's sky-mask opacity loss; unweighted (its weight is 0.05).
    """
    a = alpha.reshape(alpha.shape[0], alpha.shape[1]).clamp(1e-6, 1.0 - 1e-6)
    target = 1.0 - sky_mask.reshape(a.shape).to(a.dtype)
    return F.binary_cross_entropy(a, target)


def lidar_depth_loss(
    depth: torch.Tensor, alpha: Optional[torch.Tensor], lidar_depth: torch.Tensor,
    depth_is_accumulated: bool = False,
) -> torch.Tensor:
    """Mean |depth − lidar_depth| over pixels with a LiDAR return (lidar_depth > 0).

    ``depth`` [H, W] (or [H, W, 1]) is the rendered expected depth ("ED"). If it is gsplat's
    accumulated depth ("D") instead, pass ``depth_is_accumulated=True`` and it is divided by
    ``alpha`` first; otherwise ``alpha`` is not used (may be None). Unweighted (drivestudio
    uses 0.01). No return at all gives a zero that is still in the graph.
    """
    d = depth.reshape(depth.shape[0], depth.shape[1])
    if depth_is_accumulated:
        if alpha is None:
            raise ValueError("lidar_depth_loss: depth_is_accumulated=True needs the alpha map")
        d = d / alpha.reshape(d.shape).clamp_min(1e-6)
    gt = lidar_depth.reshape(d.shape).to(d.dtype)
    valid = (gt > 0).to(d.dtype)
    return ((d - gt).abs() * valid).sum() / valid.sum().clamp_min(1.0)


def image_edge_weight(image: torch.Tensor) -> torch.Tensor:
    """[H, W] PGSR's edge-aware weight (1 - g)^2 of an image [H, W, 3], g its grey-level gradient
    magnitude (central differences) scaled to [0, 1] by its maximum: low on edges, where the depth may
    jump and its normals mean nothing."""
    grey = image.detach().mean(-1)
    g = torch.zeros_like(grey)
    g[1:-1, 1:-1] = 0.5 * ((grey[1:-1, 2:] - grey[1:-1, :-2]).abs() + (grey[2:, 1:-1] - grey[:-2, 1:-1]).abs())
    g = g / g.max().clamp_min(1e-8)
    return (1.0 - g) ** 2


def depth_normal_loss(normals: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, alpha: torch.Tensor,
                      K: torch.Tensor, mask: Optional[torch.Tensor] = None,
                      weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Depth–normal consistency (2DGS's normal consistency, PGSR's single-view geometric term):
    mean over pixels of α · (1 − n̂ · n_d), where ``normals`` [H, W, 3] are the rendered unit normals
    (camera frame, facing the camera), ``n_d`` the normals of the back-projected ``depth`` [H, W]
    (camera z, e.g. the unbiased depth of models.rendering.surface) and ``valid`` [H, W] where both
    exist. A pixel counts where it and its four neighbours are valid (the depth's central differences
    read them) and ``mask`` (None: every pixel) allows it; the weight α is detached, times ``weight``
    [H, W] where given (e.g. image_edge_weight). Gradients reach both the rendered normals and the
    depth. Unweighted."""
    ok = valid.clone()
    ok[1:, :] &= valid[:-1, :]
    ok[:-1, :] &= valid[1:, :]
    ok[:, 1:] &= valid[:, :-1]
    ok[:, :-1] &= valid[:, 1:]
    ok[0, :] = ok[-1, :] = False
    ok[:, 0] = ok[:, -1] = False
    if mask is not None:
        ok &= mask.reshape(ok.shape).bool()
    n_d = normals_from_depth(depth, K, valid)
    dot = (normals[..., 0] * n_d[..., 0] + normals[..., 1] * n_d[..., 1]) + normals[..., 2] * n_d[..., 2]
    w = alpha.detach().reshape(ok.shape) * ok.to(alpha.dtype)
    if weight is not None:
        w = w * weight.detach().reshape(ok.shape)
    return (w * (1.0 - dot)).sum() / w.sum().clamp_min(1.0)


def flatten_loss(scales: torch.Tensor, scene_scale: float) -> torch.Tensor:
    """PGSR's flattening term: the mean smallest scale of the Gaussians, over a tenth of the scene's
    radius (SuGaR's normalisation, so the weight does not depend on the scene's size). Unweighted."""
    if scales.shape[0] == 0:
        return scales.sum()
    return scales.min(dim=-1).values.mean() / (0.1 * float(scene_scale))
