"""Rigid transforms and pinhole projection shared by the generator and the loader.

Conventions (see DESIGN.md): cameras are OpenCV (x right, y down, z forward); dataset/ego axes are
Waymo's (x forward, y left, z up); poses are 4x4 matrices mapping local -> parent coordinates.
"""
from __future__ import annotations

import numpy as np

# Columns: where OpenCV's x (right), y (down), z (forward) point in dataset axes (x fwd, y left, z up).
# drivestudio calls this OPENCV2DATASET: cam_to_ego = extrinsic @ OPENCV_TO_DATASET.
OPENCV_TO_DATASET = np.array(
    [[0.0, 0.0, 1.0, 0.0],
     [-1.0, 0.0, 0.0, 0.0],
     [0.0, -1.0, 0.0, 0.0],
     [0.0, 0.0, 0.0, 1.0]]
)


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(pitch: float) -> np.ndarray:
    c, s = np.cos(pitch), np.sin(pitch)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def make_pose(rotation: np.ndarray, translation) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = np.asarray(translation, dtype=np.float64)
    return pose


def rigid_inverse(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (or a stack [..., 4, 4]) without a general inverse."""
    pose = np.asarray(pose, dtype=np.float64)
    out = np.zeros_like(pose)
    rt = np.swapaxes(pose[..., :3, :3], -1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rt, pose[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def transform_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    return points @ pose[:3, :3].T + pose[:3, 3]


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def project(points_world: np.ndarray, K: np.ndarray, camera_to_world: np.ndarray):
    """World points [N,3] -> (u, v, z): continuous pixel coordinates (pixel centres at +0.5) and camera z."""
    cam = transform_points(rigid_inverse(camera_to_world), points_world)
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * cam[:, 0] / z + K[0, 2]
        v = K[1, 1] * cam[:, 1] / z + K[1, 2]
    return u, v, z


def pixel_rays(K: np.ndarray, width: int, height: int, supersample: int = 1) -> np.ndarray:
    """Camera-frame ray directions with z = 1 (so the ray parameter is camera z-depth).

    Returns [height*s, width*s, 3]; sample (i, j) of pixel (r, c) sits at
    ((c + (j + 0.5)/s), (r + (i + 0.5)/s)) in pixel units, i.e. s = 1 gives pixel centres at +0.5.
    """
    s = int(supersample)
    us = (np.arange(width * s) + 0.5) / s
    vs = (np.arange(height * s) + 0.5) / s
    uu, vv = np.meshgrid(us, vs)
    x = (uu - K[0, 2]) / K[0, 0]
    y = (vv - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1)
