"""Analytic ray casting against boxes, in numpy.

A scene is a list of rigid groups. Each group has a pose per frame (group -> street frame) and a set
of parts, each an axis-aligned box in the group's frame. Everything the generator draws is such a
box, so the ground-truth mesh (the boxes' faces) is exactly the rendered geometry.

Rays are tested only against the boxes that can reach them: for a pinhole camera, a box whose
corners are all in front of the camera covers at most the 2D bounding rectangle of its projected
corners (perspective maps segments to segments), so only that rectangle of the ray grid is tested.
For the LiDAR's azimuth/elevation grid the same is done with azimuth columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.cameras import project_points, rigid_inverse

EPS_T = 1e-4  # smallest accepted ray parameter: rays never start inside boxes


@dataclass
class Group:
    """A rigid set of axis-aligned boxes (parts) sharing one pose per frame."""

    name: str
    lo: np.ndarray                  # [P, 3] box minima in the group frame
    hi: np.ndarray                  # [P, 3] box maxima
    material: np.ndarray            # [P] int material ids (see textures.py)
    albedo: np.ndarray              # [P, 3] base colour of each part
    param: np.ndarray               # [P] float per-part texture parameter (seed / variant)
    poses: np.ndarray | None = None  # [T, 4, 4] group -> street; None = identity (static street geometry)
    instance: int = -1              # index into the moving-instance list, -1 for static geometry

    def pose(self, frame: int) -> np.ndarray:
        return np.eye(4) if self.poses is None else self.poses[frame]

    @property
    def num_parts(self) -> int:
        return len(self.lo)


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[P,3],[P,3] -> [P,8,3]."""
    sel = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=bool)
    return np.where(sel[None], hi[:, None, :], lo[:, None, :])


@dataclass
class Hits:
    """Per-ray result of a cast: t (inf = miss), global part id (-1 = miss), entry face code."""

    t: np.ndarray
    part: np.ndarray
    face: np.ndarray  # axis * 2 + (1 if the face normal points to +axis else 0)


class _Rays:
    """Ray directions split into float32 components with precomputed inverses (for slab tests)."""

    def __init__(self, d: np.ndarray):
        d = d.astype(np.float32, copy=False)
        self.d = [np.ascontiguousarray(d[..., k]) for k in range(3)]
        self.inv = []
        for k in range(3):
            c = self.d[k]
            safe = np.where(np.abs(c) < 1e-12, np.float32(1e-12), c)
            self.inv.append((1.0 / safe).astype(np.float32))

    def sub(self, sl):
        out = object.__new__(_Rays)
        out.d = [c[sl] for c in self.d]
        out.inv = [c[sl] for c in self.inv]
        return out


def _slab(o, rays: _Rays, lo, hi, current: np.ndarray):
    """Rays from o (local frame) against one box: (mask of rays whose entry beats `current`, t, face code)."""
    tn = tf = None
    for k in range(3):
        t1 = (float(lo[k]) - float(o[k])) * rays.inv[k]
        t2 = (float(hi[k]) - float(o[k])) * rays.inv[k]
        a = np.minimum(t1, t2); b = np.maximum(t1, t2)
        if tn is None:
            tn, tf, near = a, b, [a]
        else:
            tn = np.maximum(tn, a); tf = np.minimum(tf, b); near.append(a)
    better = (tn <= tf) & (tn > EPS_T) & (tn < current)
    if not better.any():
        return better, None, None
    t = tn[better]
    axis = np.where(near[0][better] == t, 0, np.where(near[1][better] == t, 1, 2))
    dsel = np.choose(axis, [rays.d[0][better], rays.d[1][better], rays.d[2][better]])
    face = axis * 2 + (dsel < 0)
    return better, t, face


class Caster:
    """Casts bundles of rays from one origin against all groups at one frame."""

    def __init__(self, groups: list[Group]):
        self.groups = groups
        self.offsets = np.cumsum([0] + [g.num_parts for g in groups])
        self.corners = [box_corners(g.lo, g.hi) for g in groups]

    def part_group(self, part: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, part, side="right") - 1

    def _update(self, hits: Hits, sl, better, t, face, gid, p):
        hits.t[sl][better] = t
        hits.part[sl][better] = self.offsets[gid] + p
        hits.face[sl][better] = face

    def cast_pinhole(self, frame: int, origin: np.ndarray, world_from_cam: np.ndarray, K: np.ndarray,
                     dirs_cam: np.ndarray, supersample: int) -> Hits:
        """dirs_cam: [H, W, 3] camera-frame directions with z = 1; t is then camera z-depth."""
        H, W = dirs_cam.shape[:2]
        dirs = dirs_cam @ world_from_cam[:3, :3].T
        world_rays = _Rays(dirs)
        hits = Hits(np.full((H, W), np.inf, np.float32), np.full((H, W), -1, np.int64), np.zeros((H, W), np.int64))
        cam_from_world = rigid_inverse(world_from_cam)
        for gid, g in enumerate(self.groups):
            pose = g.pose(frame)
            corners_w = self.corners[gid] @ pose[:3, :3].T + pose[:3, 3]        # [P, 8, 3]
            cc = corners_w @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
            z = cc[..., 2]
            u, v = project_points(cc, K)
            u, v = u * supersample, v * supersample
            rects = []
            for p in range(g.num_parts):
                if (z[p] <= 1e-3).all():
                    continue  # entirely behind the camera
                if (z[p] <= 1e-2).any():
                    rects.append((p, 0, H, 0, W))
                    continue
                c0, c1 = max(int(np.floor(u[p].min())) - 1, 0), min(int(np.ceil(u[p].max())) + 1, W)
                r0, r1 = max(int(np.floor(v[p].min())) - 1, 0), min(int(np.ceil(v[p].max())) + 1, H)
                if c0 < c1 and r0 < r1:
                    rects.append((p, r0, r1, c0, c1))
            if not rects:
                continue
            rot = pose[:3, :3]
            o_local = rot.T @ (origin - pose[:3, 3])
            gr0 = min(r[1] for r in rects); gr1 = max(r[2] for r in rects)
            gc0 = min(r[3] for r in rects); gc1 = max(r[4] for r in rects)
            if g.poses is None:
                rays, (gr0, gc0) = world_rays, (0, 0)
            else:
                rays = _Rays(dirs[gr0:gr1, gc0:gc1] @ rot)
            for p, r0, r1, c0, c1 in rects:
                sl = (slice(r0, r1), slice(c0, c1))
                sub = rays.sub((slice(r0 - gr0, r1 - gr0), slice(c0 - gc0, c1 - gc0)))
                better, t, face = _slab(o_local, sub, g.lo[p], g.hi[p], hits.t[sl])
                if t is not None:
                    self._update(hits, sl, better, t, face, gid, p)
        return hits

    def cast_spherical(self, frame: int, origin: np.ndarray, dirs: np.ndarray, azimuth: np.ndarray) -> Hits:
        """dirs: [B, A, 3] unit directions in the street frame, azimuth [A] (radians) of each column."""
        B, A = dirs.shape[:2]
        hits = Hits(np.full((B, A), np.inf, np.float32), np.full((B, A), -1, np.int64), np.zeros((B, A), np.int64))
        world_rays = _Rays(dirs)
        for gid, g in enumerate(self.groups):
            pose = g.pose(frame)
            rot = pose[:3, :3]
            o_local = rot.T @ (origin - pose[:3, 3])
            corners_w = self.corners[gid] @ rot.T + pose[:3, 3]
            rays = world_rays if g.poses is None else None
            for p in range(g.num_parts):
                rel = corners_w[p, :, :2] - origin[:2]
                inside_xy = bool(((g.lo[p] <= o_local) & (o_local <= g.hi[p]))[:2].all())
                if inside_xy:
                    c0, c1 = 0, A
                else:
                    # Azimuth is monotone along any segment seen from outside, so the corners bound it.
                    centre = np.arctan2(rel[:, 1].mean(), rel[:, 0].mean())
                    ang = np.angle(np.exp(1j * (np.arctan2(rel[:, 1], rel[:, 0]) - centre)))
                    da = np.angle(np.exp(1j * (azimuth - centre)))
                    cols = np.nonzero((da >= ang.min() - 1e-3) & (da <= ang.max() + 1e-3))[0]
                    if len(cols) == 0:
                        continue
                    c0, c1 = int(cols.min()), int(cols.max()) + 1   # wraps around -> the whole row span
                if rays is None:
                    rays = _Rays(dirs @ rot)
                sl = (slice(None), slice(c0, c1))
                better, t, face = _slab(o_local, rays.sub(sl), g.lo[p], g.hi[p], hits.t[sl])
                if t is not None:
                    self._update(hits, sl, better, t, face, gid, p)
        return hits
