"""Surface sampling and the scored region of the surface metrics between a predicted mesh and a
ground-truth mesh (computed by models.mesh.run_io.point_to_mesh_metrics).

Both meshes are sampled uniformly by area (seeded, ``sample_surface``); each sample's distance is its
exact distance to the other mesh.

Metrics (all distances in metres, the scene's unit):
- ``accuracy``      mean distance pred sample -> gt mesh
- ``completeness``  mean distance gt sample -> pred mesh
- ``chamfer``       (accuracy + completeness) / 2
- ``precision``     fraction of pred samples with distance < tau
- ``recall``        fraction of gt samples with distance < tau
- ``fscore``        2PR / (P + R) (0 when both are 0)
- ``normal_consistency`` mean |cos| between a sample's normal and the normal of the closest triangle
  of the other mesh, averaged over both directions (``normal_accuracy``: pred samples,
  ``normal_completeness``: gt samples)
- ``tau``, ``n_pred``, ``n_gt`` (the numbers of samples that were scored)

Restriction to the region the training cameras saw (``cameras`` given) — the exact rule:

A camera is ``(K [3,3], camera_to_world [4,4] OpenCV, width, height, depth [H,W] or None)``; a
point p has camera coordinates (x, y, z) and projection u = fx·x/z + cx, v = fy·y/z + cy; it
"projects inside" the camera when z > 0 and 0 <= u < width and 0 <= v < height (pixel centres at
+0.5, so the pixel holding it is (row floor(v), column floor(u))).

- A ground-truth sample counts when, for at least one camera, it projects inside the image and,
  if that camera has a depth map D, the pixel's depth is valid (finite, > 0) and
  z <= D + depth_tolerance + depth_rel_tolerance·D (not occluded). A GT sample that falls on a
  pixel without valid depth is not counted by that camera (the depth map is taken to be a dense
  GT render: no depth there means the camera saw no surface there).
- A predicted sample counts when, for at least one camera, it projects inside the image and
  z <= far, with far = (maximum valid depth of that camera's depth map) + far_margin
  (far_margin defaults to tau); without a depth map there is no far limit. Predicted samples are
  not occlusion tested: junk floating in front of the surfaces, or hidden behind them within the
  far limit, counts against accuracy and precision.

Only the *query* samples are filtered; distances are always measured to the other mesh as a whole,
so a predicted surface that is right but seen from no camera's GT pixel is not punished, and a
visible GT surface may be explained by any part of the predicted mesh.
If no predicted sample is in the region, accuracy / precision / normal_accuracy (and chamfer,
normal_consistency) are nan and fscore is 0. No ground-truth sample in the region is an error.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import trimesh

from models.cameras import project_points, rigid_inverse, transform_points

from ._common import check_intrinsics, to_numpy, valid_depth

__all__ = [
    "load_mesh",
    "sample_surface",
    "visible_region_filter",
]


def load_mesh(mesh) -> trimesh.Trimesh:
    """A trimesh.Trimesh with at least one face, from a Trimesh, a Scene or a path.

    Raises ValueError naming the file when a path is missing, unreadable, not a mesh, or has no
    faces.
    """
    if isinstance(mesh, (str, os.PathLike)):
        path = os.fspath(mesh)
        if not os.path.isfile(path):
            raise ValueError(f"mesh file {path!r} does not exist")
        try:
            loaded = trimesh.load(path, force="mesh", process=False)
        except Exception as exc:  # trimesh raises many different types for bad files
            raise ValueError(f"mesh file {path!r} could not be read as a mesh: {exc}") from exc
        if not isinstance(loaded, trimesh.Trimesh) or len(getattr(loaded, "faces", [])) == 0:
            raise ValueError(f"mesh file {path!r} has no faces (expected a triangle mesh)")
        return loaded
    if isinstance(mesh, trimesh.Scene):
        geoms = [g for g in mesh.geometry.values() if isinstance(g, trimesh.Trimesh)]
        mesh = trimesh.util.concatenate(geoms) if geoms else trimesh.Trimesh()
    if not isinstance(mesh, trimesh.Trimesh):
        raise ValueError(f"expected a trimesh.Trimesh or a path, got {type(mesh).__name__}")
    if len(mesh.faces) == 0:
        raise ValueError("mesh has no faces (expected a triangle mesh)")
    return mesh


def sample_surface(mesh: trimesh.Trimesh, n: int, rng: np.random.Generator):
    """n points uniformly distributed over the surface (faces chosen by area) and their face normals."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    tri = vertices[faces]  # [F, 3, 3]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(cross, axis=1)
    total = area2.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("mesh has zero surface area (all faces degenerate)")
    face_idx = rng.choice(len(faces), size=n, p=area2 / total)
    r1, r2 = rng.random(n), rng.random(n)
    flip = r1 + r2 > 1  # fold the unit square onto the triangle
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    t = tri[face_idx]
    points = t[:, 0] + r1[:, None] * (t[:, 1] - t[:, 0]) + r2[:, None] * (t[:, 2] - t[:, 0])
    safe = np.where(area2 > 0, area2, 1.0)
    normals = (cross / safe[:, None])[face_idx]
    return points, normals


def _unpack_camera(camera):
    if len(camera) != 5:
        raise ValueError(
            "a camera must be (K, camera_to_world, width, height, depth_or_None), "
            f"got {len(camera)} items"
        )
    K, c2w, width, height, depth = camera
    K = check_intrinsics(K)
    c2w = to_numpy(c2w)
    if c2w.shape != (4, 4):
        raise ValueError(f"camera_to_world must be 4x4, got shape {c2w.shape}")
    w2c = rigid_inverse(c2w)
    width, height = int(width), int(height)
    if depth is not None:
        depth = to_numpy(depth)
        if depth.shape != (height, width):
            raise ValueError(f"depth map shape {depth.shape} does not match (height, width) = {(height, width)}")
    return K, w2c, width, height, depth


def _project(points, K, w2c, width, height):
    """Camera z, pixel (row, col) and an inside-image mask for each point."""
    pc = transform_points(w2c, points)
    z = pc[:, 2]
    in_front = z > 1e-9
    u, v = project_points(np.concatenate([pc[:, :2], np.where(in_front, z, 1.0)[:, None]], 1), K)
    inside = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    col = np.clip(np.floor(np.where(inside, u, 0)).astype(np.int64), 0, width - 1)
    row = np.clip(np.floor(np.where(inside, v, 0)).astype(np.int64), 0, height - 1)
    return z, row, col, inside


def visible_region_filter(
    points,
    cameras: Sequence,
    *,
    mode: str = "gt",
    depth_tolerance: float = 0.05,
    depth_rel_tolerance: float = 0.02,
    far_margin: float = 0.05,
) -> np.ndarray:
    """Boolean mask [N] of the points inside the region the cameras saw (rule: module docstring).

    mode="gt": inside some image, in front of that camera and not occluded by its depth map.
    mode="pred": inside some camera's frustum, no farther than its max valid depth + far_margin.
    """
    if mode not in ("gt", "pred"):
        raise ValueError(f"mode must be 'gt' or 'pred', got {mode!r}")
    points = to_numpy(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got shape {points.shape}")
    keep = np.zeros(len(points), dtype=bool)
    for camera in cameras:
        K, w2c, width, height, depth = _unpack_camera(camera)
        z, row, col, inside = _project(points, K, w2c, width, height)
        if depth is not None:
            ok = valid_depth(depth)
            if mode == "gt":
                d = depth[row, col]
                good = ok[row, col]
                d = np.where(good, d, 0.0)
                inside &= good & (z <= d * (1 + depth_rel_tolerance) + depth_tolerance)
            else:
                far = depth[ok].max() + far_margin if ok.any() else -np.inf
                inside &= z <= far
        keep |= inside
    return keep
