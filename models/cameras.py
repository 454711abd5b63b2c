"""The pinhole camera: one type that views carry, and the rigid / projective maths every module uses.

Conventions (docs/design.md): OpenCV axes (x right, y down, z forward); ``camera_to_world`` 4x4
rigid; ``viewmat`` = world -> camera (gsplat's name); intrinsics ``K`` 3x3 in pixels at the
rendered resolution, pixel centres at +0.5 (pixel (row i, column j) is centred at
u = j + 0.5, v = i + 0.5, as in gsplat).

The free functions take numpy arrays or torch tensors alike and return the same kind, so the
scene generator (numpy), the mesh tools (numpy) and training (torch) share one copy:

    rigid_inverse(pose)                    [..., 4, 4] -> its inverse (transposed rotation)
    transform_points(pose, points)         [N, 3] through a 4x4
    project_points(points_cam, K)          camera points -> (u, v) continuous pixel coordinates
    unproject_pixels(u, v, depth, K)       pixel coordinates and camera z -> camera points
    pixel_rays(K, width, height)           camera-frame rays through pixel centres, z = 1
    field_of_view(focal, size)             the angle (radians) that size pixels span at focal length focal
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch


def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def rigid_inverse(pose):
    """Inverse of a rigid 4x4 transform (or a stack [..., 4, 4]): transposed rotation, no general
    inverse. numpy input (or a nested sequence) gives float64 numpy; a tensor keeps dtype and device."""
    if not _is_torch(pose):
        pose = np.asarray(pose, dtype=np.float64)
    if pose.shape[-2:] != (4, 4):
        raise ValueError(f"rigid_inverse: expected a [..., 4, 4] pose, got shape {tuple(pose.shape)}")
    rt = pose[..., :3, :3].swapaxes(-1, -2)
    out = torch.zeros_like(pose) if _is_torch(pose) else np.zeros_like(pose)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -(matvec3(rt, pose[..., :3, 3]) if _is_torch(pose) else (rt @ pose[..., :3, 3:4])[..., 0])
    out[..., 3, 3] = 1.0
    return out


def matmul3(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``A @ B`` for [..., 3, 3] by [..., 3, K] (batch dimensions broadcast), as explicit products
    and sums in a fixed order. Small matrix products are where torch calls MKL, whose bits depend on
    the CPU, the thread count and buffer alignment; elementwise arithmetic is exact IEEE rounding
    everywhere, so renders and their gradients are the same bits on every machine."""
    return (A[..., :, 0:1] * B[..., 0:1, :] + A[..., :, 1:2] * B[..., 1:2, :]) + A[..., :, 2:3] * B[..., 2:3, :]


def matvec3(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(A @ v[..., None])[..., 0]`` for [..., 3, 3] and [..., 3], as :func:`matmul3`."""
    return (A[..., 0] * v[..., 0:1] + A[..., 1] * v[..., 1:2]) + A[..., 2] * v[..., 2:3]


def transform_points(pose, points):
    """Points [N, 3] through a 4x4 transform: points @ R^T + t."""
    if isinstance(points, torch.Tensor):
        return matvec3(pose[:3, :3], points) + pose[:3, 3]
    return points @ pose[:3, :3].swapaxes(-1, -2) + pose[:3, 3]


def project_points(points_cam, K, min_depth: Optional[float] = None):
    """Camera points [N, 3] -> (u, v), continuous pixel coordinates (pixel centres at +0.5, so
    u = fx·x/z + s·y/z + cx directly). With ``min_depth``, z is clamped to it first (only to keep
    the division finite: callers mask points behind the camera themselves); without it, points at
    z = 0 give inf / nan (numpy does not warn)."""
    x, y, z = points_cam[..., 0], points_cam[..., 1], points_cam[..., 2]
    if min_depth is not None:
        z = z.clamp_min(min_depth) if _is_torch(z) else np.maximum(z, min_depth)
    if _is_torch(z):
        xn, yn = x / z, y / z
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            xn, yn = x / z, y / z
    u = K[0, 0] * xn + K[0, 1] * yn + K[0, 2]
    v = K[1, 1] * yn + K[1, 2]
    return u, v


def unproject_pixels(u, v, depth, K):
    """Continuous pixel coordinates (u, v) and camera z -> camera points [..., 3] (inverse of
    project_points)."""
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    stack = torch.stack if _is_torch(x) else np.stack
    ones = torch.ones_like(x) if _is_torch(x) else np.ones_like(x)
    return stack([x * depth, y * depth, ones * depth], -1)


def pixel_rays(K, width: int, height: int, supersample: int = 1):
    """Camera-frame ray directions with z = 1 (so a ray's parameter is camera z-depth).

    Returns [height*s, width*s, 3] of K's kind; sample (i, j) of pixel (r, c) sits at
    (c + (j + 0.5)/s, r + (i + 0.5)/s) in pixel units, i.e. s = 1 gives the pixel centres.
    """
    s = int(supersample)
    if _is_torch(K):
        us = (torch.arange(width * s, dtype=K.dtype, device=K.device) + 0.5) / s
        vs = (torch.arange(height * s, dtype=K.dtype, device=K.device) + 0.5) / s
        vv, uu = torch.meshgrid(vs, us, indexing="ij")
    else:
        us = (np.arange(width * s) + 0.5) / s
        vs = (np.arange(height * s) + 0.5) / s
        uu, vv = np.meshgrid(us, vs)
    return unproject_pixels(uu, vv, 1.0, K)


def field_of_view(focal: float, size: float) -> float:
    """The angle in radians that ``size`` pixels span at focal length ``focal`` (pixels), through
    the image centre: horizontal with (K[0, 0], width), vertical with (K[1, 1], height)."""
    return 2 * math.atan(0.5 * size / focal)


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: pose, intrinsics and image size (torch tensors on one device).

    ``viewmat`` (world -> camera) is the rigid inverse of ``camera_to_world``, computed once.
    """

    camera_to_world: torch.Tensor  # [4, 4] OpenCV axes
    K: torch.Tensor                # [3, 3] pixels, centres at +0.5
    width: int
    height: int
    viewmat: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if tuple(self.camera_to_world.shape) != (4, 4):
            raise ValueError(f"camera_to_world must be 4x4, got shape {tuple(self.camera_to_world.shape)}")
        if tuple(self.K.shape) != (3, 3):
            raise ValueError(f"K must be 3x3, got shape {tuple(self.K.shape)}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "viewmat", rigid_inverse(self.camera_to_world))

    @classmethod
    def from_viewmat(cls, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int) -> "Camera":
        return cls(rigid_inverse(viewmat), K, width, height)

    @property
    def device(self) -> torch.device:
        return self.camera_to_world.device

    @property
    def center(self) -> torch.Tensor:
        """The camera centre in world coordinates [3]."""
        return self.camera_to_world[:3, 3]

    def to(self, device) -> "Camera":
        return Camera(self.camera_to_world.to(device), self.K.to(device), self.width, self.height)

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points [N, 3] -> camera coordinates [N, 3]."""
        return transform_points(self.viewmat, points)

    def camera_to_world_points(self, points: torch.Tensor) -> torch.Tensor:
        """Camera points [N, 3] -> world coordinates [N, 3]."""
        return transform_points(self.camera_to_world, points)

    def project(self, points_world: torch.Tensor, min_depth: Optional[float] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """World points [N, 3] -> (uv [N, 2] continuous pixel coordinates, camera z [N])."""
        cam = self.world_to_camera(points_world)
        u, v = project_points(cam, self.K, min_depth)
        return torch.stack([u, v], -1), cam[:, 2]

    def unproject(self, uv: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Pixel coordinates uv [N, 2] at camera z ``depth`` [N] -> world points [N, 3]."""
        return self.camera_to_world_points(unproject_pixels(uv[:, 0], uv[:, 1], depth, self.K))

    def inside(self, uv: torch.Tensor, z: torch.Tensor, min_depth: float = 0.0) -> torch.Tensor:
        """bool [N]: in front of the camera and inside the image."""
        return ((z > min_depth) & (uv[:, 0] >= 0) & (uv[:, 0] < self.width)
                & (uv[:, 1] >= 0) & (uv[:, 1] < self.height))

    def pixel_rays(self) -> torch.Tensor:
        """[H, W, 3] camera-frame rays through the pixel centres, z = 1."""
        return pixel_rays(self.K, self.width, self.height)
