"""DeformableNodes: the Gaussians of every non-rigid instance (pedestrians, cyclists), each in its
own box frame, bent per frame by one small deformation network shared over the instances
(OmniRe's DeformableNodes, keyed "DeformableNodes" as drivestudio keys models by class name).

The Gaussians. As RigidNodes (a subclass: the same ``params["instance_ids"]``, float,
requires_grad=False, no optimizer, so gsplat's strategy ops carry the ids through densification):
canonical Gaussians of all instances in one ParameterDict, each in its instance's box frame
(x forward, y left, z up, box centre).

The deformation. ``DeformationField``: an MLP (``depth`` hidden layers of ``width``, ReLU) over
  - the canonical mean, positional-encoded (x, sin / cos of 2^k·π·x for k < ``frequencies``),
  - the frame's time normalised to [0, 1] over the scene's frames, encoded the same way,
  - a learned embedding of the Gaussian's instance (``embed_dim`` numbers per instance),
(or, with model.deformable.field=planes, ``PlaneField``: per-instance feature planes, K-Planes' factorisation)
giving per Gaussian a mean offset (box frame, metres), a rotation (a quaternion 1 + δq, normalised,
composed before the canonical one: q' = δq ⊗ q) and a log-scale offset. Its last layer starts at zero,
so a new field leaves every Gaussian at its canonical shape and training starts from the LiDAR's
rigid initialisation. Its weights are drawn from its own seeded generator (no global RNG), they train
with their own Adam and lr decay (model.deformable.lr / lr_final; saved in a checkpoint's
"camera_optimizers" with the camera models' Adams, under "deformation"), and the field is saved
with the scene (GaussianScene.state_dict()["deformation"]) so an opened run renders without the dataset.

Posing. The deformed Gaussians are moved to the world by their instance's track pose at the frame
with RigidNodes' posing (models.gaussians.rigid.pose_gaussians: means, quaternions, SH); instances
absent from the frame are transparent (opacity 0, culled), as rigid ones.

What the stages do to them (MultiTrainer): densification grows and splits them on their own slice
of the screen-space gradient, as every model (a split child carries its parent's id and canonical
position; the field deforms it by where it is); the entropy stage's prune removes those the opacity
entropy drove below 1/255, as for every model; the sugar stage's low-opacity prune keeps its floor per
instance (sugar.prune_keep_fraction / prune_keep_min of each pedestrian's and cyclist's Gaussians, the
most opaque), so no person is emptied; the SuGaR regularizers and the mesh are the background's only.

SMPL nodes: drivestudio models pedestrians with SMPL body models ("SMPLNodes", models.gaussians.smpl_nodes).
``node_model`` is the one place that decides: a track of node type SMPLNodes gets an SMPL node only where
it has SMPL parameters (model.smpl.body_model set and the scene's humanpose/smpl.pkl holds the instance);
otherwise it falls back to DeformableNodes, as cyclists and every non-rigid track with body_model null.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional

import torch
from torch import Tensor, nn

from models.gaussians.rigid import INSTANCE_KEY, RIGID_KEY, RigidNodes, pose_gaussians, quat_multiply
from models.gaussians.vanilla import VanillaGaussians

DEFORMABLE_KEY = "DeformableNodes"   # the deformable nodes' key among a scene's models
SMPL_NODE_TYPE = "SMPLNodes"
# node type of a dataset track (scenes.dataset_format) -> the model that gets its instance here, and
# the fallback of an SMPLNodes track without SMPL parameters (no body model, or none in humanpose/smpl.pkl).
NODE_MODELS = {RIGID_KEY: RIGID_KEY, DEFORMABLE_KEY: DEFORMABLE_KEY, SMPL_NODE_TYPE: SMPL_NODE_TYPE}
SMPL_FALLBACK = DEFORMABLE_KEY


def node_model(node_type: Optional[str], has_smpl: bool = False) -> Optional[str]:
    """The model key that a track of ``node_type`` gets (None: no node); ``has_smpl``: a body model is
    given and the scene has this instance's SMPL parameters (else an SMPLNodes track is deformable)."""
    model = NODE_MODELS.get(node_type) if node_type is not None else None
    return SMPL_FALLBACK if model == SMPL_NODE_TYPE and not has_smpl else model


def positional_encoding(x: Tensor, frequencies: int) -> Tensor:
    """[..., D] -> [..., D·(1 + 2·frequencies)]: x, then sin and cos of 2^k·π·x for k < frequencies."""
    parts = [x]
    for k in range(int(frequencies)):
        w = (2.0 ** k) * math.pi
        parts += [torch.sin(w * x), torch.cos(w * x)]
    return torch.cat(parts, dim=-1)


class DeformationField(nn.Module):
    """(canonical mean, time, instance) -> (mean offset [N, 3], rotation quaternion [N, 4], log-scale
    offset [N, 3]); zero offsets and the identity rotation until trained (last layer zero)."""

    def __init__(self, num_instances: int, *, embed_dim: int = 8, width: int = 64, depth: int = 2,
                 frequencies: int = 4, time_frequencies: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.settings = {"num_instances": int(num_instances), "embed_dim": int(embed_dim), "width": int(width),
                         "depth": int(depth), "frequencies": int(frequencies),
                         "time_frequencies": int(time_frequencies)}
        gen = torch.Generator().manual_seed(int(seed))
        self.embedding = nn.Parameter(0.1 * torch.randn(max(1, int(num_instances)), int(embed_dim), generator=gen))
        in_dim = 3 * (1 + 2 * int(frequencies)) + (1 + 2 * int(time_frequencies)) + int(embed_dim)
        layers = []
        for _ in range(int(depth)):
            lin = nn.Linear(in_dim, int(width))
            bound = math.sqrt(6.0 / in_dim)   # He-uniform for ReLU, from the field's own generator
            with torch.no_grad():
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=gen) * 2 - 1) * bound)
                lin.bias.zero_()
            layers += [lin, nn.ReLU()]
            in_dim = int(width)
        last = nn.Linear(in_dim, 10)
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
        self.net = nn.Sequential(*layers, last)

    def forward(self, means: Tensor, time: float, ids: Tensor):
        s = self.settings
        t = torch.full((means.shape[0], 1), float(time), dtype=means.dtype, device=means.device)
        x = torch.cat([positional_encoding(means, s["frequencies"]), positional_encoding(t, s["time_frequencies"]),
                       self.embedding[ids]], dim=-1)
        out = self.net(x)
        dq = out[:, 3:7] + torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=out.dtype, device=out.device)
        return out[:, :3], dq / dq.norm(dim=-1, keepdim=True).clamp(min=1e-12), out[:, 7:10]

    def state(self) -> Dict[str, Any]:
        return {"settings": dict(self.settings), "weights": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}}

    def load(self, state: Mapping[str, Any]) -> None:
        if dict(state["settings"]) != self.settings:
            raise ValueError(f"deformation field {dict(state['settings'])}, expected {self.settings} "
                             "(model.deformable settings must be the run's)")
        device = next(self.parameters()).device
        self.load_state_dict({k: torch.as_tensor(v).to(device) for k, v in state["weights"].items()})

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "DeformationField":
        field = cls(**state["settings"])
        field.load(state)
        return field


class PlaneField(nn.Module):
    """The plane-factorised alternative (model.deformable.field=planes; K-Planes' factorisation): per
    instance six feature planes over (x, y), (x, z), (y, z), (x, t), (y, t), (z, t) of the canonical
    mean (divided by ``bound`` metres, clamped to [-1, 1]) and the time (2t - 1); a Gaussian's features
    are the product of its six bilinear samples, decoded by one hidden layer of ``width`` into the same
    outputs as DeformationField (last layer zero: the canonical shape at the start). Space planes start
    uniform in [0.1, 0.5] (seeded), time planes at 1, as K-Planes."""

    PAIRS = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))

    def __init__(self, num_instances: int, *, resolution: int = 16, channels: int = 8, width: int = 64,
                 bound: float = 1.5, seed: int = 0) -> None:
        super().__init__()
        self.settings = {"kind": "planes", "num_instances": int(num_instances), "resolution": int(resolution),
                         "channels": int(channels), "width": int(width), "bound": float(bound)}
        gen = torch.Generator().manual_seed(int(seed))
        n, R, C = max(1, int(num_instances)), int(resolution), int(channels)
        planes = 0.1 + 0.4 * torch.rand(n, 6, R, R, C, generator=gen)
        planes[:, 3:] = 1.0
        self.planes = nn.Parameter(planes)
        hidden = nn.Linear(C, int(width))
        bound_w = math.sqrt(6.0 / C)
        with torch.no_grad():
            hidden.weight.copy_((torch.rand(hidden.weight.shape, generator=gen) * 2 - 1) * bound_w)
            hidden.bias.zero_()
        last = nn.Linear(int(width), 10)
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
        self.net = nn.Sequential(hidden, nn.ReLU(), last)

    def _sample(self, p: int, ids: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Bilinear samples [N, C] of plane ``p`` of each Gaussian's instance at (u, v) in [-1, 1]."""
        R = self.settings["resolution"]
        x, y = (u + 1) * 0.5 * (R - 1), (v + 1) * 0.5 * (R - 1)
        x0 = x.detach().floor().clamp(0, R - 2).long()
        y0 = y.detach().floor().clamp(0, R - 2).long()
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        flat = self.planes[:, p].reshape(-1, self.planes.shape[-1])       # [I·R·R, C]
        i = (ids * R + y0) * R + x0
        return (flat[i] * (1 - fx) * (1 - fy) + flat[i + 1] * fx * (1 - fy)
                + flat[i + R] * (1 - fx) * fy + flat[i + R + 1] * fx * fy)

    def forward(self, means: Tensor, time: float, ids: Tensor):
        coords = torch.cat([(means / self.settings["bound"]).clamp(-1, 1),
                            torch.full((means.shape[0], 1), 2.0 * float(time) - 1.0, dtype=means.dtype,
                                       device=means.device)], dim=-1)
        feat = None
        for p, (a, b) in enumerate(self.PAIRS):
            f = self._sample(p, ids, coords[:, a], coords[:, b])
            feat = f if feat is None else feat * f
        out = self.net(feat)
        dq = out[:, 3:7] + torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=out.dtype, device=out.device)
        return out[:, :3], dq / dq.norm(dim=-1, keepdim=True).clamp(min=1e-12), out[:, 7:10]

    state = DeformationField.state
    load = DeformationField.load

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "PlaneField":
        settings = {k: v for k, v in state["settings"].items() if k != "kind"}
        field = cls(**settings)
        field.load(state)
        return field


def field_from_state(state: Mapping[str, Any]) -> nn.Module:
    """A saved deformation field of either kind (MLP: no "kind" in its settings)."""
    if state["settings"].get("kind") == "planes":
        return PlaneField.from_state(state)
    return DeformationField.from_state(state)


def make_field(cfg: Any, num_instances: int, seed: int) -> nn.Module:
    """The deformation field that model.deformable (``cfg``) asks for: field=mlp or planes."""
    if str(cfg.field) == "planes":
        return PlaneField(num_instances, resolution=int(cfg.plane_resolution), channels=int(cfg.plane_channels),
                          width=int(cfg.width), bound=float(cfg.plane_bound), seed=seed)
    return DeformationField(num_instances, embed_dim=int(cfg.embed_dim), width=int(cfg.width), depth=int(cfg.depth),
                            frequencies=int(cfg.frequencies), time_frequencies=int(cfg.time_frequencies), seed=seed)


class DeformableNodes(RigidNodes):
    """RigidNodes' canonical Gaussians and instance ids plus a ``DeformationField`` (``self.field``)."""

    def __init__(self, params: Mapping[str, Tensor], sh_degree: int = 3, instance_ids: Tensor | None = None,
                 field: Optional[DeformationField] = None):
        super().__init__(params, sh_degree, instance_ids)
        if field is None:
            field = DeformationField(int(self.instance_ids.max()) + 1 if self.num_gaussians else 1)
        self.field = field

    @classmethod
    def from_instance_points(cls, xyz: Tensor, rgb: Tensor, instance_ids: Tensor, sh_degree: int = 3,
                             init_opacity: float = 0.1, field: Optional[DeformationField] = None) -> "DeformableNodes":
        rigid = RigidNodes.from_instance_points(xyz, rgb, instance_ids, sh_degree, init_opacity)
        params = {k: v.detach() for k, v in rigid.params.items()}
        return cls(params, sh_degree, field=field)

    def deformed(self, time: float) -> Dict[str, Tensor]:
        """Raw box-frame parameters at ``time``: means, quats (unit), scales (log) deformed; the rest as they are."""
        p = self.params
        ids = self.instance_ids
        quats = p["quats"] / p["quats"].norm(dim=-1, keepdim=True).clamp(min=1e-12)
        dm, dq, ds = self.field(p["means"], time, ids)
        return {"means": p["means"] + dm, "quats": quat_multiply(dq, quats), "scales": p["scales"] + ds,
                "opacities": p["opacities"], "sh0": p["sh0"], "shN": p["shN"]}

    def world_gaussians(self, obj_to_world: Tensor, present: Tensor, time: float = 0.0) -> Dict[str, Tensor]:
        """Activated world-space Gaussians at a frame: deformed at its ``time``, then posed by
        ``obj_to_world [I, 4, 4]`` (absent instances, ``present [I]`` false, transparent)."""
        d = self.deformed(time)
        g = {"means": d["means"], "quats": d["quats"], "scales": torch.exp(d["scales"]),
             "opacities": torch.sigmoid(d["opacities"]), "colors": torch.cat([d["sh0"], d["shN"]], dim=1)}
        return pose_gaussians(g, self.instance_ids, obj_to_world, present, self.sh_degree)


def box_points(box_size: Tensor, n: int, seed: int = 0, fill: float = 0.8) -> Tensor:
    """``n`` seeded uniform points [n, 3] inside the central ``fill`` of a box of size (l, w, h), box frame:
    the initialisation of an instance with too few LiDAR points."""
    gen = torch.Generator().manual_seed(int(seed))
    return (torch.rand(int(n), 3, generator=gen, dtype=torch.float64) - 0.5).float() * fill * box_size.float().reshape(1, 3)


__all__ = ["DEFORMABLE_KEY", "DeformableNodes", "DeformationField", "INSTANCE_KEY", "PlaneField", "box_points",
           "field_from_state", "make_field", "node_model",
           "positional_encoding", "VanillaGaussians"]
