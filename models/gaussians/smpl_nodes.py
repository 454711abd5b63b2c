"""SMPLNodes: the Gaussians of every pedestrian, bound to a body model's surface and posed by LBS.

One VanillaGaussians holds all instances. Each Gaussian carries its binding as parameters without
gradients (so gsplat's strategy ops duplicate / split / remove them with their Gaussians, as
RigidNodes' instance ids): ``instance_ids`` [N] (which person), ``smpl_face`` [N] (the body-model
triangle it was sampled on) and ``smpl_bary`` [N, 3] (its barycentric coordinates there). Its means,
quaternions and scales are learned in the instance's canonical space: the rest (T-pose) body of the
instance's shape (betas, kept per instance, not optimised). Its skinning weights are the triangle's
vertex weights blended by the barycentric coordinates; the pose-corrective offset of that surface
point is added to its canonical mean before skinning.

`world_gaussians` poses them at a frame: per instance the joints' rotations (joint 0 the orientation
in the instance frame), the body placed with its root joint at the instance frame's origin (or at
SMPL's ``transl``), then the instance -> world pose; the blended transform moves the mean, turns the
quaternion (`rigid.rotmat_to_quat` of its rotation part) and the SH (each joint's SH rotation,
`rigid.sh_rotation`, blended with the same weights; exact for rigid weights). Absent instances get
opacity 0.

`SMPLPoseRefinement` is the per-instance per-frame pose residual (axis-angle per joint, zero at the
start) that a trainer optimises with its own Adam; ``state()`` / ``load()`` go in its checkpoint.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from models.gaussians.rigid import INSTANCE_KEY, quat_multiply, rotmat_to_quat, sh_rotation
from models.gaussians.smpl_body import SMPLBody, forward_kinematics, pose_blend, rodrigues
from models.gaussians.vanilla import VanillaGaussians, rgb_to_sh0

SMPL_KEY = "SMPLNodes"          # the key among a scene's models (drivestudio keys them by class name)
FACE_KEY = "smpl_face"
BARY_KEY = "smpl_bary"
BINDING_KEYS = (INSTANCE_KEY, FACE_KEY, BARY_KEY)


def _fixed(t: Tensor) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(t).detach().float().clone(), requires_grad=False)


class SMPLNodes(VanillaGaussians):
    """Gaussians bound to the surfaces of ``betas.shape[0]`` bodies of one body model."""

    def __init__(self, params: Mapping[str, Tensor], body: SMPLBody, betas: Tensor, sh_degree: int = 3):
        super().__init__(params, sh_degree)
        n = self.num_gaussians
        missing = [k for k in BINDING_KEYS if k not in params]
        if missing:
            raise ValueError(f"SMPLNodes needs each Gaussian's binding: missing {missing}")
        shapes = {INSTANCE_KEY: (n,), FACE_KEY: (n,), BARY_KEY: (n, 3)}
        for k, shape in shapes.items():
            if tuple(params[k].shape) != shape:
                raise ValueError(f"{k}: expected shape {shape}, got {tuple(params[k].shape)}")
            self.params[k] = _fixed(params[k])
        self.body = body
        self._pose_blend = bool(body.posedirs.any())     # read once: no device sync per frame
        betas = torch.as_tensor(betas, dtype=torch.float32)
        if betas.dim() != 2 or betas.shape[1] > body.num_betas:
            raise ValueError(f"betas: expected [instances, <= {body.num_betas}], got {tuple(betas.shape)}")
        self.register_buffer("betas", betas.clone())
        ids = self.instance_ids
        if n and (ids.min() < 0 or ids.max() >= betas.shape[0]):
            raise ValueError(f"{INSTANCE_KEY}: ids outside [0, {betas.shape[0]})")
        faces = self.faces
        if n and (faces.min() < 0 or faces.max() >= body.faces.shape[0]):
            raise ValueError(f"{FACE_KEY}: triangles outside the body model's {body.faces.shape[0]}")

    # ---------------------------------------------------------------- construction
    @classmethod
    @torch.no_grad()
    def from_body(cls, body: SMPLBody, betas: Tensor, per_instance: int = 1000, rgb: Optional[Tensor] = None,
                  sh_degree: int = 3, init_opacity: float = 0.1, seed: int = 0,
                  flatness: float = 0.1) -> "SMPLNodes":
        """``per_instance`` Gaussians on each instance's rest surface, triangles drawn by area; each
        lies flat in its triangle (normal scale ``flatness`` times the in-plane one), its in-plane scale
        sqrt(triangle area / Gaussians drawn in it), so that the surface is covered whatever the
        triangles' sizes. ``rgb`` [I, 3] colours per instance (grey by default). The parameters are
        made on the CPU; ``.to(device)`` the model (its body model goes with it)."""
        betas = torch.as_tensor(betas, dtype=torch.float32).cpu()
        I = betas.shape[0]
        g = torch.Generator().manual_seed(int(seed))       # drawn on the CPU: the same Gaussians on any device
        verts = body.rest(betas.to(body.v_template))[0].detach().cpu()
        faces = body.faces.cpu()
        parts = []
        for i in range(I):
            tri = verts[i].float()[faces]                                   # [F, 3, 3]
            e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
            cross = torch.linalg.cross(e1, e2)
            area = 0.5 * cross.norm(dim=-1)
            face = torch.multinomial(area / area.sum(), per_instance, replacement=True, generator=g)
            u, v = torch.rand(per_instance, generator=g), torch.rand(per_instance, generator=g)
            su = u.sqrt()
            bary = torch.stack([1 - su, su * (1 - v), su * v], -1)          # uniform on the triangle
            means = torch.einsum("nk,nkc->nc", bary, tri[face])
            count = torch.bincount(face, minlength=faces.shape[0]).float()
            s = torch.sqrt(area[face] / count[face]).clamp(min=1e-5)
            normal = cross[face] / cross[face].norm(dim=-1, keepdim=True).clamp(min=1e-12)
            t1 = e1[face] / e1[face].norm(dim=-1, keepdim=True).clamp(min=1e-12)
            R = torch.stack([t1, torch.linalg.cross(normal, t1), normal], -1)  # columns: in-plane, in-plane, normal
            colour = (torch.full((3,), 0.5) if rgb is None else torch.as_tensor(rgb, dtype=torch.float32)[i])
            K = (sh_degree + 1) ** 2
            parts.append({
                "means": means, "quats": rotmat_to_quat(R),
                "scales": torch.log(torch.stack([s, s, s * flatness], -1)),
                "opacities": torch.full((per_instance,), math.log(init_opacity / (1 - init_opacity))),
                "sh0": rgb_to_sh0(colour).expand(per_instance, 1, 3).clone(),
                "shN": torch.zeros(per_instance, K - 1, 3),
                INSTANCE_KEY: torch.full((per_instance,), float(i)), FACE_KEY: face.float(), BARY_KEY: bary,
            })
        params = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return cls(params, body, betas, sh_degree).to(body.v_template.device)

    # ---------------------------------------------------------------- bindings
    @property
    def instance_ids(self) -> Tensor:
        return self.params[INSTANCE_KEY].detach().round().long()

    @property
    def faces(self) -> Tensor:
        return self.params[FACE_KEY].detach().round().long()

    @property
    def num_instances(self) -> int:
        return int(self.betas.shape[0])

    def skin_weights(self) -> Tensor:
        """[N, J]: each Gaussian's skinning weights (its triangle's vertex weights, barycentric blend)."""
        tri = self.body.faces[self.faces]                                  # [N, 3]
        w = self.body.weights.to(self.params[BARY_KEY].dtype)
        return torch.einsum("nk,nkj->nj", self.params[BARY_KEY].detach(), w[tri])

    def rest_joints(self) -> Tensor:
        """[I, J, 3]: each instance's rest joints (its canonical space's skeleton)."""
        return self.body.rest(self.betas.to(self.body.v_template.dtype))[1]

    # ---------------------------------------------------------------- posing
    def skinning_transforms(self, rotmats: Tensor, inst_to_world: Tensor, transl: Optional[Tensor] = None) -> Tensor:
        """[I, J, 4, 4]: canonical -> world per instance and joint. ``rotmats [I, J, 3, 3]``: joint 0
        the body's orientation in the instance frame, the others SMPL's local rotations; the root joint
        lands at the instance frame's origin, or SMPL's ``transl [I, 3]`` is added where given."""
        dtype = self.params["means"].dtype
        J = self.rest_joints().to(dtype)
        _, A = forward_kinematics(rotmats.to(dtype), J, self.body.parents)
        shift = -J[:, 0] if transl is None else transl.to(dtype)
        A_t = A[..., :3, 3] + shift[:, None, :]
        A = torch.cat([torch.cat([A[..., :3, :3], A_t[..., None]], -1), A[..., 3:, :]], -2)
        return inst_to_world.to(dtype)[:, None] @ A

    def world_gaussians(self, rotmats: Tensor, inst_to_world: Tensor, present: Tensor,
                        transl: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Activated world-space Gaussians for ``rasterization`` (the keys of RigidNodes'):
        ``rotmats [I, J, 3, 3]`` the instances' joint rotations at the frame (`rodrigues` of SMPL's
        axis-angles; `SMPLPoseRefinement` adds the learned residual), ``inst_to_world [I, 4, 4]``,
        ``present [I]`` (absent instances get opacity 0), ``transl`` see `skinning_transforms`."""
        g = self.get_gaussians()
        ids, w = self.instance_ids, self.skin_weights().to(g["means"].dtype)
        A = self.skinning_transforms(rotmats, inst_to_world, transl)            # [I, J, 4, 4]
        n, nj = g["means"].shape[0], A.shape[1]
        T = torch.zeros(n, 4, 4, dtype=A.dtype, device=A.device)
        for j in range(nj):                     # Σ_j w_j A_j without an [N, J, 4, 4] gather
            T = T + w[:, j, None, None] * A[ids, j]
        canon = g["means"]
        if self._pose_blend:
            offsets = pose_blend(self.body.posedirs.to(A.dtype), rotmats.to(A.dtype))       # [I, V, 3]
            tri = self.body.faces[self.faces]
            canon = canon + torch.einsum("nk,nkc->nc", self.params[BARY_KEY].detach(), offsets[ids[:, None], tri])
        Rg = T[:, :3, :3]
        # products of small per-Gaussian matrices as broadcast multiply-sums: a batched matmul's backward
        # on the CPU loops over the batch (20k Gaussians: 0.3 s of a 0.5 s step)
        means = (Rg * canon[:, None, :]).sum(-1) + T[:, :3, 3]
        quats = quat_multiply(rotmat_to_quat(Rg), g["quats"])
        colors = g["colors"]
        if colors.shape[1] > 1:
            M = sh_rotation(A[..., :3, :3], self.sh_degree)                      # [I, J, K, K]
            Mg = torch.zeros(n, *M.shape[-2:], dtype=M.dtype, device=M.device)
            for j in range(nj):
                Mg = Mg + w[:, j, None, None] * M[ids, j]
            colors = (Mg[..., None] * colors[:, None, :, :]).sum(2)
        opacities = g["opacities"] * present.to(g["opacities"].dtype)[ids]
        return {"means": means, "quats": quats, "scales": g["scales"], "opacities": opacities, "colors": colors}


def frame_pose(poses, frame: int, refinement: Optional["SMPLPoseRefinement"] = None,
               box_to_world: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """`world_gaussians`' (rotmats [I, J, 3, 3], inst_to_world [I, 4, 4], present [I]) at ``frame`` from
    a scene's stacked parameters (scenes.smpl_format.HumanPoses): rotations refined where
    ``refinement`` is given; the instance frame unturned (the orientation is the world's) at the root
    joint, or, where the file has no root positions, at the boxes' centres ``box_to_world [I, 4, 4]``
    (drivestudio's convention)."""
    rot = poses.rotmats[frame]
    if refinement is not None:
        rot = refinement(frame, rot.to(refinement.residual.device))
    if poses.root is not None:
        centre = poses.root[frame]
    elif box_to_world is not None:
        centre = box_to_world[:, :3, 3]
    else:
        raise ValueError("frame_pose: the SMPL parameters hold no root positions; pass box_to_world")
    inst = torch.eye(4, dtype=rot.dtype, device=rot.device).repeat(rot.shape[0], 1, 1)
    inst[:, :3, 3] = centre.to(inst)
    return rot, inst, poses.valid[frame].to(rot.device)


class SMPLPoseRefinement(nn.Module):
    """A learned axis-angle residual per instance, frame and joint (zero at the start): the refined
    rotation of a joint is rodrigues(residual) · R (the residual turns the joint in its parent frame)."""

    def __init__(self, num_instances: int, num_frames: int, num_joints: int):
        super().__init__()
        self.residual = nn.Parameter(torch.zeros(num_instances, num_frames, num_joints, 3))

    def forward(self, frame: int, rotmats: Tensor) -> Tensor:
        """``rotmats [I, J, 3, 3]`` at ``frame`` -> refined rotations."""
        delta = rodrigues(self.residual[:, frame].to(rotmats.dtype))
        return delta @ rotmats

    def state(self) -> Dict[str, Tensor]:
        return {"residual": self.residual.detach().clone()}

    def load(self, state: Mapping[str, Tensor]) -> None:
        if "residual" not in state:
            raise ValueError("SMPL pose refinement state: missing 'residual'")
        r = torch.as_tensor(state["residual"])
        if tuple(r.shape) != tuple(self.residual.shape):
            raise ValueError(f"SMPL pose refinement state: residual of shape {tuple(r.shape)}, expected "
                             f"{tuple(self.residual.shape)} (instances, frames, joints, 3)")
        with torch.no_grad():
            self.residual.copy_(r)
