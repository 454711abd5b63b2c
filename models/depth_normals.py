"""Surface normals from a depth map: the viewer's "normals" mode and the quality benchmark's figure."""
from __future__ import annotations

import numpy as np
import torch

from models.cameras import pixel_rays


def normals_from_depth(depth, K, valid, towards_camera: bool = True):
    """[H, W, 3] camera-frame unit normals (OpenCV axes) from the gradients of the back-projected
    depth map `depth` [H, W] (camera z), 0 where `valid` [H, W] is false. Of the depth's kind: torch
    tensors or NumPy arrays (each computed with its own library's operations). `towards_camera`:
    each normal turned to face the camera; otherwise the orientation of d/du x d/dv."""
    H, W = depth.shape
    if isinstance(depth, torch.Tensor):
        d = torch.where(valid, depth, torch.zeros_like(depth))
        P = pixel_rays(K.to(depth.dtype), W, H) * d[..., None]  # camera points: rays with z = 1, times camera z
        du = torch.gradient(P, dim=1)[0]
        dv = torch.gradient(P, dim=0)[0]
        n = torch.nn.functional.normalize(torch.cross(du, dv, dim=-1), dim=-1)
        if towards_camera:
            n = torch.where((n[..., 2:] > 0), -n, n)
        return n * valid[..., None]
    d = np.where(valid, depth, 0.0)
    P = pixel_rays(K, W, H) * d[..., None]
    n = np.cross(np.gradient(P, axis=1), np.gradient(P, axis=0))
    n /= np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-12)
    if towards_camera:
        n = np.where(n[..., 2:] > 0, -n, n)
    n[~valid] = 0
    return n
