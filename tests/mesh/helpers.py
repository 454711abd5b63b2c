"""Analytic scenes shared by the mesh tests: rectangles, pinhole cameras, exact plane depth maps."""

import numpy as np
import trimesh


def rectangle(x0, x1, y0, y1, z, subdivide=0):
    """Axis-aligned rectangle at height z (normal +z) as a trimesh."""
    v = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    mesh = trimesh.Trimesh(v, f, process=False)
    for _ in range(subdivide):
        mesh = mesh.subdivide()
    return mesh


def intrinsics(f, width, height):
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def pose(rotation=None, position=(0.0, 0.0, 0.0)):
    c2w = np.eye(4)
    if rotation is not None:
        c2w[:3, :3] = rotation
    c2w[:3, 3] = position
    return c2w


def rot_y(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rot_x(deg):
    a = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def plane_depth(K, c2w, width, height, z_plane):
    """Exact camera-z depth of the plane z = z_plane (pixel centres at +0.5); 0 where missed."""
    j, i = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    ray_cam = np.stack([(j - K[0, 2]) / K[0, 0], (i - K[1, 2]) / K[1, 1], np.ones_like(j)], -1)
    ray_world = ray_cam @ c2w[:3, :3].T  # camera z = 1 along these rays, so t is the camera depth
    with np.errstate(divide="ignore"):
        t = (z_plane - c2w[2, 3]) / ray_world[..., 2]
    return np.where(np.isfinite(t) & (t > 0), t, 0.0)
