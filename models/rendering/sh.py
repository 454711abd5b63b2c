"""Real spherical harmonics up to degree 3, in the sign convention of 3DGS and gsplat.

Colours are ``sum_k basis_k(dir) * coeff_k`` with ``dir`` the unit vector from the camera centre to
the Gaussian's mean; the caller adds 0.5 and clamps at 0 (gsplat's convention).
"""
from __future__ import annotations

import torch
from torch import Tensor

_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)

MAX_SH_DEGREE = 3


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Basis values ``[..., (degree+1)**2]`` at unit directions ``dirs [..., 3]``."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in [0, {MAX_SH_DEGREE}], got {degree}")
    out = [torch.full_like(dirs[..., 0], _C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2.0 * zz - xx - yy),
                _C2[3] * x * z, _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [_C3[0] * y * (3.0 * xx - yy), _C3[1] * x * y * z,
                _C3[2] * y * (4.0 * zz - xx - yy), _C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
                _C3[4] * x * (4.0 * zz - xx - yy), _C3[5] * z * (xx - yy),
                _C3[6] * x * (xx - 3.0 * yy)]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH ``coeffs [..., K, 3]`` (K >= (degree+1)^2) along ``dirs [..., 3]`` (any length).

    Returns raw colours ``[..., 3]`` (without gsplat's +0.5 offset).
    """
    nb = (degree + 1) ** 2
    if coeffs.shape[-2] < nb:
        raise ValueError(f"SH degree {degree} needs {nb} coefficients, got {coeffs.shape[-2]}")
    # normalize safely: a zero direction (camera exactly at the mean) gives the DC colour only
    n = dirs.norm(dim=-1, keepdim=True)
    d = dirs / torch.where(n > 0, n, torch.ones_like(n))
    basis = sh_basis(degree, d)  # [..., nb]
    return (basis[..., None] * coeffs[..., :nb, :]).sum(dim=-2)
