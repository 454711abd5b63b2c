"""RigidNodes: the Gaussians of every rigid (vehicle) instance, each in its own object frame.

One VanillaGaussians holds all instances; ``params["instance_ids"]`` (float, requires_grad=False,
no optimizer) says which instance a Gaussian belongs to. gsplat's strategy ops (duplicate, split,
remove) rewrite every entry of the ParameterDict with the same index selection, so the ids follow
their Gaussians through densification; entries without an optimizer are skipped there as long as
they do not require gradients (``gsplat.strategy.ops._update_param_with_optimizer``).

To render a frame the Gaussians are moved with their instance's object -> world pose:
means R·μ + t, quaternions q(R)⊗q (wxyz), and the SH coefficients rotated band by band so that a
car's view-dependent colour turns with the car (a rigid motion leaves the scales unchanged).
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from models.cameras import rigid_inverse, transform_points
from models.gaussians.vanilla import VanillaGaussians
from models.rendering.sh import sh_basis
from scenes.driving_dataset import colour_points_from_views

INSTANCE_KEY = "instance_ids"
RIGID_KEY = "RigidNodes"  # the rigid nodes' key among a scene's models (drivestudio keys them by class name)


# ---------------------------------------------------------------------------------------------
# rotations
# ---------------------------------------------------------------------------------------------
def rotmat_to_quat(R: Tensor) -> Tensor:
    """Unit quaternions (wxyz, w >= 0) of rotation matrices ``R [..., 3, 3]`` (Shepperd's method)."""
    m = R
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], dim=-2)  # [..., 4 candidates, 4]: candidate i is 4·q·q_i, best conditioned where |q_i| is largest
    diag = torch.stack([1 + trace, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = diag.argmax(dim=-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a ⊗ b of wxyz quaternions (rotation b first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def _fibonacci_sphere(n: int) -> Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = torch.sqrt(1.0 - z * z)
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


_SH_SAMPLES = _fibonacci_sphere(64)


def sh_rotation(R: Tensor, sh_degree: int) -> Tensor:
    """``[..., K, K]`` matrices M with ``eval(M·c, d) == eval(c, Rᵀ·d)`` for every direction d.

    Real SH bands are closed under rotation, so M is block diagonal (one block per degree) and
    exact; it is found by least squares on 64 well-spread directions, in float64.
    """
    dirs = _SH_SAMPLES.to(R.device)
    B = sh_basis(sh_degree, dirs)                                   # [S, K]
    rotated = sh_basis(sh_degree, dirs @ R.double())                # [..., S, K]: basis at Rᵀ·d
    return (torch.linalg.pinv(B) @ rotated).to(R.dtype)


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
class RigidNodes(VanillaGaussians):
    """VanillaGaussians in object frames plus a per-Gaussian instance index (``params["instance_ids"]``)."""

    def __init__(self, params: Mapping[str, Tensor], sh_degree: int = 3, instance_ids: Tensor | None = None):
        super().__init__(params, sh_degree)
        ids = params.get(INSTANCE_KEY) if instance_ids is None else instance_ids
        if ids is None:
            raise ValueError(f"RigidNodes needs an instance index per Gaussian ({INSTANCE_KEY!r})")
        ids = torch.as_tensor(ids).detach().reshape(-1).float().clone()
        if ids.shape[0] != self.num_gaussians:
            raise ValueError(f"{INSTANCE_KEY}: {ids.shape[0]} ids for {self.num_gaussians} Gaussians")
        self.params[INSTANCE_KEY] = nn.Parameter(ids, requires_grad=False)

    @classmethod
    def from_instance_points(cls, xyz: Tensor, rgb: Tensor, instance_ids: Tensor, sh_degree: int = 3,
                             init_opacity: float = 0.1) -> "RigidNodes":
        """Gaussians at object-frame points; each instance's scales come from its own neighbours."""
        xyz, rgb = torch.as_tensor(xyz, dtype=torch.float32), torch.as_tensor(rgb, dtype=torch.float32)
        ids = torch.as_tensor(instance_ids).long()
        parts = []
        for i in torch.unique(ids).tolist():
            sel = ids == i
            # the object frames of different instances overlap at the origin: never mix neighbours
            parts.append(VanillaGaussians.from_points(xyz[sel], rgb[sel], sh_degree=sh_degree,
                                                      init_opacity=init_opacity).params)
        order = torch.cat([torch.nonzero(ids == i).squeeze(1) for i in torch.unique(ids).tolist()])
        params = {k: torch.cat([p[k].detach() for p in parts]) for k in parts[0].keys()}
        return cls(params, sh_degree, instance_ids=ids[order])

    @property
    def instance_ids(self) -> Tensor:
        """long [N]: each Gaussian's instance (index into the trainer's rigid instance list)."""
        return self.params[INSTANCE_KEY].detach().round().long()

    def world_gaussians(self, obj_to_world: Tensor, present: Tensor) -> Dict[str, Tensor]:
        """Activated world-space Gaussians for ``rasterization``.

        ``obj_to_world [I, 4, 4]`` is each instance's pose at the rendered frame and ``present [I]``
        whether the instance exists there; absent instances get opacity 0 (gsplat then culls them:
        radius 0, so they neither draw nor count as visible for densification).
        """
        return pose_gaussians(self.get_gaussians(), self.instance_ids, obj_to_world, present, self.sh_degree)


def pose_gaussians(g: Mapping[str, Tensor], ids: Tensor, obj_to_world: Tensor, present: Tensor,
                   sh_degree: int) -> Dict[str, Tensor]:
    """Activated object-frame Gaussians ``g`` (means, quats, scales, opacities, colors) of instances
    ``ids [N]`` moved to the world by ``obj_to_world [I, 4, 4]``: means R·μ + t, quaternions q(R)⊗q,
    SH rotated band by band; Gaussians of instances not ``present [I]`` get opacity 0. The one copy of
    this posing: RigidNodes and DeformableNodes (models.gaussians.deformable) both call it."""
    R, t = obj_to_world[:, :3, :3], obj_to_world[:, :3, 3]
    Rg = R[ids]
    means = torch.einsum("nij,nj->ni", Rg, g["means"]) + t[ids]
    quats = quat_multiply(rotmat_to_quat(R)[ids], g["quats"])
    colors = g["colors"]
    if colors.shape[1] > 1:
        colors = torch.einsum("nkj,njc->nkc", sh_rotation(R, sh_degree)[ids], colors)
    opacities = g["opacities"] * present.to(g["opacities"].dtype)[ids]
    return {"means": means, "quats": quats, "scales": g["scales"], "opacities": opacities, "colors": colors}


# ---------------------------------------------------------------------------------------------
# initialisation from LiDAR
# ---------------------------------------------------------------------------------------------
def colour_points(points: np.ndarray, frames: np.ndarray, views: Sequence, default: float = 0.5) -> np.ndarray:
    """RGB of world points seen at their own frame by a view of that frame (nearest LiDAR return in
    front, as the scene's init points are coloured); points no camera sees get the mean colour of
    those seen, or ``default`` grey if none is."""
    rgb = colour_points_from_views(points, frames, views)
    seen = rgb[:, 0] >= 0
    rgb[~seen] = rgb[seen].mean(axis=0) if seen.any() else default
    return rgb


def instance_points(scene, tracks: Sequence, views: Sequence, max_points: int, margin: float = 0.1,
                    seed: int = 0, drop_ground: bool = True) -> Tuple[List[Tuple[Tensor, Tensor]], List[int]]:
    """Per track: (object-frame xyz [n, 3], rgb [n, 3]) of the LiDAR points inside its box over all
    frames, at most ``max_points`` (a seeded subsample); and the per-track point counts before it.
    ``drop_ground`` leaves out returns labelled ground (the road under a car lies inside its box)."""
    pts_all = scene.lidar.points
    fidx_all = scene.lidar.frame_idx
    usable = scene.lidar.ground <= 0.5 if drop_ground else torch.ones(len(pts_all), dtype=torch.bool)
    rng = np.random.default_rng(seed)
    out, counts = [], []
    for track in tracks:
        local, world, frames = [], [], []
        for f in np.unique(track.frame_idx):
            sel = torch.nonzero((fidx_all == int(f)) & usable).squeeze(1)
            if len(sel) == 0:
                continue
            inside = sel[track.contains(int(f), pts_all[sel], margin)]
            if len(inside) == 0:
                continue
            pose = track.pose_at(int(f)).double()
            p = pts_all[inside].double()
            local.append(transform_points(rigid_inverse(pose), p))    # world -> object
            world.append(p)
            frames.append(np.full(len(inside), int(f)))
        if not local:
            out.append((torch.zeros(0, 3), torch.zeros(0, 3)))
            counts.append(0)
            continue
        local_t, world_np, frames_np = torch.cat(local), torch.cat(world).numpy(), np.concatenate(frames)
        rgb = colour_points(world_np, frames_np, views)
        counts.append(len(local_t))
        if len(local_t) > max_points:
            keep = np.sort(rng.choice(len(local_t), max_points, replace=False))
            local_t, rgb = local_t[keep], rgb[keep]
        out.append((local_t.float(), torch.from_numpy(rgb).float()))
    return out, counts
