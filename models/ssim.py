"""SSIM as pytorch-msssim's ``ssim(X, Y, data_range)`` computes it (an 11-tap Gaussian window with
σ 1.5, "valid" filtering, K1 0.01, K2 0.03), with the Gaussian filter written as shifted
multiply-adds in a fixed order instead of a convolution.

Why not the library's own call: torch runs its depthwise convolutions through oneDNN, which
JIT-compiles kernels for the CPU's widest instruction set, so the photometric loss (and everything
trained from it) came out with other bits on an AVX-512 machine than on an AVX2 one. Shifted
multiply-adds are elementwise IEEE arithmetic: the same bits on every CPU at any thread count. At
the training images' size (160×96) the filter is also faster (2.4 against 4.2 ms forward and
backward, 2 threads); tests/losses/test_ssim.py holds it to pytorch-msssim.
"""
from __future__ import annotations

from typing import List, Tuple

import torch

WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WIN_SIZE, sigma: float = WIN_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian window [size] (float32), as pytorch-msssim builds it."""
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


class _Filter1d(torch.autograd.Function):
    """Valid correlation of ``x`` with the 1-D window ``weights`` along dimension ``dim``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weights: Tuple[float, ...], dim: int) -> torch.Tensor:
        n = x.shape[dim] - len(weights) + 1
        out = x.narrow(dim, 0, n) * weights[0]
        for k in range(1, len(weights)):
            out.add_(x.narrow(dim, k, n), alpha=weights[k])
        ctx.weights, ctx.dim, ctx.shape = weights, dim, x.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        n = grad.shape[ctx.dim]
        grad_x = grad.new_zeros(ctx.shape)
        for k, w in enumerate(ctx.weights):
            grad_x.narrow(ctx.dim, k, n).add_(grad, alpha=w)
        return grad_x, None, None


def gaussian_filter(x: torch.Tensor, weights: List[float]) -> torch.Tensor:
    """Separable valid Gaussian filter of [B, C, H, W] images: along H, then along W."""
    w = tuple(float(v) for v in weights)
    return _Filter1d.apply(_Filter1d.apply(x, w, 2), w, 3)


def ssim(X: torch.Tensor, Y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of [B, C, H, W] images (H, W ≥ 11), a scalar in the graph of both inputs.

    One image on a CPU whose reference ``Y`` needs no gradient (the photometric loss: a render against
    its ground truth) goes through the compiled kernel (csrc/ssim.cpp: the same maths, the filter over
    row buffers, ~3x faster at 160x96); anything else through the shifted multiply-adds below."""
    if X.shape != Y.shape or X.dim() != 4:
        raise ValueError(f"ssim: X and Y must both be [B, C, H, W], got {tuple(X.shape)} and {tuple(Y.shape)}")
    if min(X.shape[-2:]) < WIN_SIZE:
        raise ValueError(f"ssim: images must be at least {WIN_SIZE}x{WIN_SIZE} pixels, got {tuple(X.shape[-2:])}")
    Y = Y.to(X.dtype)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    if (X.shape[0] == 1 and X.device.type == "cpu" and X.dtype in (torch.float32, torch.float64)
            and not Y.requires_grad):
        from models.rendering import cpp_backend
        if cpp_backend.load_extension() is not None:
            # [1, C, H, W] -> [H, W, C]: for the loss's images (HWC tensors permuted) a view, no copy
            return cpp_backend.ssim_hwc_cpp(X[0].permute(1, 2, 0), Y[0].permute(1, 2, 0), gaussian_window(), c1, c2)
    return filtered_ssim(X, Y, c1, c2)


def filtered_ssim(X: torch.Tensor, Y: torch.Tensor, c1: float, c2: float) -> torch.Tensor:
    """``ssim`` in PyTorch: the Gaussian filter as shifted multiply-adds (any device, both inputs in the graph)."""
    channels = X.shape[1]
    # one pass of the filter over the five maps SSIM needs
    filtered = gaussian_filter(torch.cat([X, Y, X * X, Y * Y, X * Y], 1), gaussian_window().tolist())
    mu1, mu2, xx, yy, xy = filtered.split(channels, 1)
    mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    sigma1_sq, sigma2_sq, sigma12 = xx - mu1_sq, yy - mu2_sq, xy - mu1_mu2
    cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
    ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return torch.flatten(ssim_map, 2).mean(-1).mean()


__all__ = ["ssim", "gaussian_filter", "gaussian_window"]
