"""Triangle meshes of axis-aligned boxes (the ground-truth surfaces) and PLY output."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# Face code = axis * 2 + (1 if the outward normal points to +axis else 0)
_FACE_QUADS = {}


def _face_quad(axis: int, positive: bool) -> np.ndarray:
    """Indices into the 8 corners (bit i of the index = use hi on axis i) of one face, CCW seen from outside."""
    key = (axis, positive)
    if key not in _FACE_QUADS:
        a1, a2 = [(axis + 1) % 3, (axis + 2) % 3]
        bit = 1 if positive else 0
        quad = []
        for b1, b2 in ((0, 0), (1, 0), (1, 1), (0, 1)):
            idx = (bit << axis) | (b1 << a1) | (b2 << a2)
            quad.append(idx)
        # (a1, a2, axis) is a right-handed cyclic order, so this loop is CCW around +axis.
        if not positive:
            quad = quad[::-1]
        _FACE_QUADS[key] = np.array(quad)
    return _FACE_QUADS[key]


def box_triangles(lo, hi, pose: np.ndarray | None = None, skip=()) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(lo, np.float64); hi = np.asarray(hi, np.float64)
    corners = np.array([[hi[0] if i & 1 else lo[0], hi[1] if i & 2 else lo[1], hi[2] if i & 4 else lo[2]]
                        for i in range(8)])
    if pose is not None:
        corners = corners @ pose[:3, :3].T + pose[:3, 3]
    faces = []
    for code in range(6):
        if code in skip:
            continue
        q = _face_quad(code // 2, bool(code % 2))
        faces.append([q[0], q[1], q[2]])
        faces.append([q[0], q[2], q[3]])
    return corners, np.array(faces, dtype=np.int64).reshape(-1, 3)


class MeshBuilder:
    def __init__(self):
        self.vertices: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []
        self.count = 0

    def add_box(self, lo, hi, pose=None, skip=()):
        v, f = box_triangles(lo, hi, pose, skip)
        if len(f) == 0:
            return
        self.vertices.append(v)
        self.faces.append(f + self.count)
        self.count += len(v)

    def arrays(self):
        if not self.vertices:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        return np.concatenate(self.vertices), np.concatenate(self.faces)

    def write_ply(self, path: Path):
        import trimesh
        v, f = self.arrays()
        mesh = trimesh.Trimesh(vertices=v.astype(np.float32), faces=f, process=False)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        mesh.export(str(path), file_type="ply")
