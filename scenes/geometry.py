"""Dataset axes, poses and intrinsics of the generator and the loader (the rigid / pinhole maths
itself is models.cameras', re-exported here).

Conventions (see docs/design.md): cameras are OpenCV (x right, y down, z forward); dataset/ego axes are
Waymo's (x forward, y left, z up); poses are 4x4 matrices mapping local -> parent coordinates.
"""
from __future__ import annotations

import numpy as np

# The rigid and pinhole maths is one copy for the whole project (numpy or torch alike).
from models.cameras import pixel_rays, project_points, rigid_inverse, transform_points  # noqa: F401

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


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
