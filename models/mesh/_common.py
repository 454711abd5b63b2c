"""Small helpers shared by the mesh modules: array conversion and input checks (the camera maths
is models.cameras').

Conventions (docs/design.md): OpenCV cameras (x right, y down, z forward), ``camera_to_world`` 4x4,
intrinsics K in pixels with pixel centres at +0.5 (gsplat): pixel (row i, column j) is centred at
u = j + 0.5, v = i + 0.5.
"""

from __future__ import annotations

import numpy as np


def to_numpy(x, dtype=np.float64) -> np.ndarray:
    """A numpy copy/view of a numpy array, torch tensor (any device) or nested sequence."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def check_intrinsics(K) -> np.ndarray:
    K = to_numpy(K)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got shape {K.shape}")
    return K


def valid_depth(depth: np.ndarray) -> np.ndarray:
    """Mask of usable depth values: finite and > 0 (0, inf and nan mean 'no depth')."""
    return np.isfinite(depth) & (depth > 0)
