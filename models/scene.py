"""GaussianScene: a trained scene apart from its trainer (the part nerfstudio's Pipeline plays).

It holds what rendering needs and nothing that training alone needs:

  models       {"Background": VanillaGaussians, "RigidNodes": RigidNodes (scene graph only)}, keyed by
               class name as in drivestudio; each model's parameters are the trained ones
  background   the learned background colour (raw; sigmoid(background) is the colour behind the Gaussians)
  sky          None, or the sky over view direction (models.camera_models.EnvironmentMap, config
               cameras.sky.model=envmap): then the sky, not the flat colour, is behind the Gaussians
  appearance   None, or each camera's colour transform (AffineAppearance): renders are of the canonical
               appearance; `camera_colours(rgb, view)` gives a view's camera's (what evaluation compares)
  tracks       the rigid instances of the scene graph (id, class, box size), one per instance index of
               the RigidNodes' Gaussians
  frames       the scene's frame numbers; poses [I, F, 4, 4] / present [I, F]: each instance's
               object -> world pose at each frame and whether it exists there
  deformable_tracks / deformable_poses / deformable_present   the same for the deformable instances
               (pedestrians, cyclists: the DeformableNodes' instance indices, models.gaussians.deformable);
               their deformation field is the model's (saved here as "deformation"); a frame's time
               is its position among `frames`, normalised to [0, 1] (`frame_time`)
  smpl         None, or the SMPL nodes' pose table (SMPLPoseTable: pedestrians with SMPL parameters,
               models.gaussians.smpl_nodes): per scene frame their joint rotations, validity and root
               positions (or box poses), the learned pose residual; saved with the body model's arrays
               ("smpl"), so an opened run poses them without the dataset or the body-model file

`compose(frame)` gives the world-space Gaussians of one frame as the trainers render them and
`render(camera, frame=...)` renders them through the one render entry point
(models.rendering.render.render_gaussians). No optimizer, no dataset, no densification strategy:
trainers hold a GaussianScene and train its parameters; `models.run.open_run` rebuilds one from a
checkpoint alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from models.camera_models import AffineAppearance, EnvironmentMap
from models.cameras import Camera
from models.gaussians.deformable import DEFORMABLE_KEY, DeformableNodes, field_from_state
from models.gaussians.rigid import INSTANCE_KEY, RIGID_KEY, RigidNodes
from models.gaussians.smpl_body import body_from_state, body_state
from models.gaussians.smpl_nodes import SMPL_KEY, SMPLNodes, SMPLPoseRefinement, frame_pose
from models.gaussians.vanilla import VanillaGaussians
from models.rendering.render import RenderOutput, render_gaussians

MODEL_KEY = "Background"  # drivestudio keys models by class name; a single model is the background


@dataclass
class RigidTrack:
    """What a scene keeps of a rigid instance's track: its name, class and box size (l, w, h)."""

    id: str
    class_name: str
    box_size: torch.Tensor          # float32 [3], the box of its first annotated frame
    node_type: Optional[str] = None

    @classmethod
    def of(cls, track) -> "RigidTrack":
        """The record of a dataset track (scenes.driving_dataset.InstanceTrack)."""
        return cls(str(track.id), str(track.class_name), track.box_size[0].detach().cpu().float().clone(),
                   getattr(track, "node_type", None))

    def state_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "class_name": self.class_name, "box_size": self.box_size.clone(),
                "node_type": self.node_type}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "RigidTrack":
        return cls(str(state["id"]), str(state["class_name"]), torch.as_tensor(state["box_size"]).float().reshape(3),
                   state.get("node_type"))


class SMPLPoseTable:
    """The SMPL nodes' inputs over a scene's frames (column c = the scene's c-th frame): ``rotmats
    [F, I, J, 3, 3]`` (joint 0 the world orientation), ``valid [F, I]``, ``root [F, I, 3]`` (the root joint
    in the world) or None, then ``box_to_world [F, I, 4, 4]`` places the body at the box centre
    (drivestudio's convention); ``refinement`` the learned residual (None: model.smpl.refine_pose off)."""

    def __init__(self, tracks: Sequence[RigidTrack], rotmats: torch.Tensor, valid: torch.Tensor,
                 root: Optional[torch.Tensor], box_to_world: torch.Tensor,
                 refinement: Optional[SMPLPoseRefinement] = None) -> None:
        F, I = valid.shape
        if rotmats.shape[:2] != (F, I) or box_to_world.shape != (F, I, 4, 4) or len(tracks) != I or \
                (root is not None and root.shape != (F, I, 3)):
            raise ValueError(f"SMPL pose table: rotmats {tuple(rotmats.shape)}, valid {tuple(valid.shape)}, box poses "
                             f"{tuple(box_to_world.shape)}, {len(tracks)} tracks do not agree")
        self.tracks = list(tracks)
        self.rotmats, self.valid, self.root, self.box_to_world = rotmats.float(), valid.bool(), root, box_to_world.float()
        self.refinement = refinement

    def to(self, device) -> "SMPLPoseTable":
        for k in ("rotmats", "valid", "box_to_world", "root"):
            if getattr(self, k) is not None:
                setattr(self, k, getattr(self, k).to(device))
        if self.refinement is not None:
            self.refinement.to(device)
        return self

    def at(self, col: Optional[int]):
        """(rotmats [I, J, 3, 3], inst_to_world [I, 4, 4], present [I]) at a column (None: absent)."""
        if col is None:
            I, J = self.rotmats.shape[1], self.rotmats.shape[2]
            dev = self.rotmats.device
            return (torch.eye(3, device=dev).repeat(I, J, 1, 1), torch.eye(4, device=dev).repeat(I, 1, 1),
                    torch.zeros(I, dtype=torch.bool, device=dev))
        return frame_pose(self, col, self.refinement, self.box_to_world[col])

    def state(self) -> Dict[str, Any]:
        return {"tracks": [t.state_dict() for t in self.tracks], "rotmats": self.rotmats.detach().cpu().clone(),
                "valid": self.valid.detach().cpu().clone(),
                "root": None if self.root is None else self.root.detach().cpu().clone(),
                "box_to_world": self.box_to_world.detach().cpu().clone(),
                "refinement": None if self.refinement is None else self.refinement.state()}

    def load(self, state: Mapping[str, Any]) -> None:
        """The learned residual (the rest is the scene's data, rebuilt identically from it)."""
        saved = state.get("refinement")
        if (saved is None) != (self.refinement is None):
            raise ValueError(f"the state {'has' if saved is not None else 'has no'} SMPL pose refinement "
                             "(model.smpl.refine_pose must be the same as the run's)")
        if saved is not None:
            self.refinement.load({"residual": torch.as_tensor(saved["residual"]).to(self.refinement.residual.device)})

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "SMPLPoseTable":
        rot = torch.as_tensor(state["rotmats"]).float()
        refinement = None
        if state.get("refinement") is not None:
            F, I, J = rot.shape[:3]
            refinement = SMPLPoseRefinement(I, F, J)
        table = cls([RigidTrack.from_state(t) for t in state["tracks"]], rot, torch.as_tensor(state["valid"]).bool(),
                    None if state.get("root") is None else torch.as_tensor(state["root"]).float(),
                    torch.as_tensor(state["box_to_world"]).float(), refinement)
        table.load(state)
        return table


def sh_degree_of(params: Mapping[str, torch.Tensor]) -> int:
    """The SH degree of a model's parameters (shN holds (degree + 1)^2 - 1 coefficients)."""
    degree = int(round(math.sqrt(int(params["shN"].shape[1]) + 1))) - 1
    if (degree + 1) ** 2 - 1 != int(params["shN"].shape[1]):
        raise ValueError(f"shN has {int(params['shN'].shape[1])} coefficients per channel, expected (d + 1)^2 - 1")
    return degree


class GaussianScene:
    """The trained Gaussians of a scene, their per-frame poses and background; renders any camera."""

    def __init__(self, models: Optional[Dict[str, VanillaGaussians]] = None, background: Optional[torch.Tensor] = None,
                 *, scene_graph: bool = False, frames: Iterable[int] = (), near_plane: float = 0.01,
                 far_plane: float = 1e10, backend: str = "auto", device: Any = "cpu") -> None:
        self.device = torch.device(device)
        self.models: Dict[str, VanillaGaussians] = dict(models or {})
        if background is None:
            background = torch.zeros(3, device=self.device)
        self.background = (background if isinstance(background, torch.nn.Parameter)
                           else torch.nn.Parameter(torch.as_tensor(background, dtype=torch.float32), requires_grad=False))
        # a scene graph composes its Gaussians with the SH concatenated (RigidNodes rotate them per frame);
        # a single model hands its SH in two parts that the compiled backend reads in place
        self.scene_graph = bool(scene_graph)
        self.near_plane, self.far_plane, self.backend = float(near_plane), float(far_plane), str(backend)
        self.sky: Optional[EnvironmentMap] = None
        self.appearance: Optional[AffineAppearance] = None
        self.smpl: Optional[SMPLPoseTable] = None
        self.set_tracks([], sorted(int(f) for f in frames))

    # ----- the scene graph -----------------------------------------------------------------------
    def set_tracks(self, tracks: Sequence[RigidTrack], frames: Sequence[int], poses: Optional[torch.Tensor] = None,
                   present: Optional[torch.Tensor] = None) -> None:
        """The rigid instances, the scene's frames and each instance's pose table [I, F, 4, 4] / [I, F]."""
        self.tracks: List[RigidTrack] = list(tracks)
        self.frames: List[int] = [int(f) for f in frames]
        self._frame_column = {f: i for i, f in enumerate(self.frames)}
        n, F = len(self.tracks), len(self.frames)
        if poses is None:
            poses = torch.eye(4).repeat(n, F, 1, 1)
        if present is None:
            present = torch.zeros(n, F, dtype=torch.bool)
        if tuple(poses.shape) != (n, F, 4, 4) or tuple(present.shape) != (n, F):
            raise ValueError(f"pose table of shape {tuple(poses.shape)} / {tuple(present.shape)}, expected "
                             f"[{n}, {F}, 4, 4] / [{n}, {F}] for {n} instances and {F} frames")
        self.poses = poses.to(self.device)
        self.present = present.to(self.device, torch.bool)
        self.set_deformable_tracks([])

    def set_deformable_tracks(self, tracks: Sequence[RigidTrack], poses: Optional[torch.Tensor] = None,
                              present: Optional[torch.Tensor] = None) -> None:
        """The deformable instances and their pose table [I, F, 4, 4] / [I, F] over the scene's frames."""
        self.deformable_tracks: List[RigidTrack] = list(tracks)
        n, F = len(self.deformable_tracks), len(self.frames)
        poses = torch.eye(4).repeat(n, F, 1, 1) if poses is None else poses
        present = torch.zeros(n, F, dtype=torch.bool) if present is None else present
        if tuple(poses.shape) != (n, F, 4, 4) or tuple(present.shape) != (n, F):
            raise ValueError(f"deformable pose table of shape {tuple(poses.shape)} / {tuple(present.shape)}, "
                             f"expected [{n}, {F}, 4, 4] / [{n}, {F}] for {n} instances and {F} frames")
        self.deformable_poses = poses.to(self.device)
        self.deformable_present = present.to(self.device, torch.bool)

    def frame_time(self, frame: int) -> float:
        """A frame's time for the deformation field: its position among the scene's frames in [0, 1]
        (0 for a frame the scene does not have: no instance is present there)."""
        col = self._frame_column.get(int(frame))
        return 0.0 if col is None or len(self.frames) < 2 else col / (len(self.frames) - 1)

    def deformable_instance_poses(self, frame: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(obj_to_world [I, 4, 4], present [I] bool) of the deformable instances at a frame."""
        col = self._frame_column.get(int(frame))
        if col is None:
            n = len(self.deformable_tracks)
            return torch.eye(4, device=self.device).repeat(n, 1, 1), torch.zeros(n, dtype=torch.bool, device=self.device)
        return self.deformable_poses[:, col], self.deformable_present[:, col]

    def smpl_pose(self, frame: int):
        """(rotmats [I, J, 3, 3], inst_to_world [I, 4, 4], present [I]) of the SMPL nodes at a frame."""
        return self.smpl.at(self._frame_column.get(int(frame)))

    @property
    def smpl_tracks(self) -> List[RigidTrack]:
        """The SMPL nodes' instances (none without them)."""
        return [] if self.smpl is None else list(self.smpl.tracks)

    def smpl_box_poses(self, frame: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(box_to_world [I, 4, 4], present [I]) of the SMPL nodes' instances at a frame (their boxes)."""
        col = self._frame_column.get(int(frame))
        n = len(self.smpl_tracks)
        if col is None or self.smpl is None:
            return torch.eye(4, device=self.device).repeat(n, 1, 1), torch.zeros(n, dtype=torch.bool, device=self.device)
        return self.smpl.box_to_world[col], self.smpl.valid[col]

    def instance_poses(self, frame: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(obj_to_world [I, 4, 4], present [I] bool) of the rigid instances at a frame."""
        col = self._frame_column.get(int(frame))
        if col is None:
            n = len(self.tracks)
            return torch.eye(4, device=self.device).repeat(n, 1, 1), torch.zeros(n, dtype=torch.bool, device=self.device)
        return self.poses[:, col], self.present[:, col]

    def pose_at(self, instance: int, frame: int) -> Optional[torch.Tensor]:
        """An instance's object -> world pose at a frame, or None where it does not exist."""
        col = self._frame_column.get(int(frame))
        if col is None or not bool(self.present[instance, col]):
            return None
        return self.poses[instance, col]

    # ----- Gaussians ---------------------------------------------------------------------------------
    @property
    def model(self) -> VanillaGaussians:
        """The background model (the one a mesh is extracted from)."""
        return self.models[MODEL_KEY]

    @property
    def num_gaussians(self) -> int:
        return sum(m.num_gaussians for m in self.models.values())

    @property
    def sh_degree(self) -> int:
        return int(self.model.sh_degree)

    def background_rgb(self) -> torch.Tensor:
        """The colour behind the Gaussians, [3] in [0, 1] (with a sky model: its mean colour)."""
        if self.sky is not None:
            return self.sky.mean_rgb()
        return torch.sigmoid(self.background)

    def background_for(self, camera: Camera) -> torch.Tensor:
        """What is behind the Gaussians in a camera: the flat colour [3], or the sky's [H, W, 3]."""
        if self.sky is not None:
            return self.sky.render(camera)
        return torch.sigmoid(self.background)

    def camera_colours(self, rgb: torch.Tensor, view, image_index: Optional[int] = None) -> torch.Tensor:
        """A canonical render as the view's camera records it (its appearance transform; a training
        image's own gain too with ``image_index``); the render itself without an appearance model."""
        if self.appearance is None:
            return rgb
        return self.appearance(rgb, view.cam_name, image_index)

    def compose(self, frame: int = 0) -> Tuple[Dict[str, torch.Tensor], Dict[str, slice]]:
        """The world-space Gaussians rendered at a frame and each model's slice of them: the background
        as it is, then (scene graph) the rigid nodes posed at the frame and the deformable nodes deformed
        at the frame's time and posed, absent instances transparent. Quaternions of any norm: a
        renderer's input (each backend's projection normalises them)."""
        bg = self.model
        nb = bg.num_gaussians
        # the background's quaternions as stored: what is composed here is rendered, and every renderer
        # normalises them (VanillaGaussians.get_gaussians)
        if not self.scene_graph:
            return bg.get_gaussians(split_sh=True, unit_quats=False), {MODEL_KEY: slice(0, nb)}
        parts, slices = [bg.get_gaussians(unit_quats=False)], {MODEL_KEY: slice(0, nb)}
        if RIGID_KEY in self.models:
            nodes: RigidNodes = self.models[RIGID_KEY]
            parts.append(nodes.world_gaussians(*self.instance_poses(frame)))
            slices[RIGID_KEY] = slice(nb, nb + nodes.num_gaussians)
            nb += nodes.num_gaussians
        if DEFORMABLE_KEY in self.models:
            deformable: DeformableNodes = self.models[DEFORMABLE_KEY]
            parts.append(deformable.world_gaussians(*self.deformable_instance_poses(frame), time=self.frame_time(frame)))
            slices[DEFORMABLE_KEY] = slice(nb, nb + deformable.num_gaussians)
            nb += deformable.num_gaussians
        if SMPL_KEY in self.models and self.smpl is not None:
            people: SMPLNodes = self.models[SMPL_KEY]
            parts.append(people.world_gaussians(*self.smpl_pose(frame)))
            slices[SMPL_KEY] = slice(nb, nb + people.num_gaussians)
        if len(parts) == 1:
            return parts[0], slices
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, slices

    def render(self, camera: Camera, frame: int = 0, *, render_mode: str = "RGB", sh_degree: Optional[int] = None,
               gaussians: Optional[Mapping[str, torch.Tensor]] = None, surface: bool = False) -> RenderOutput:
        """Render the scene at ``frame`` into ``camera`` over the learned background through
        ``render_gaussians``; ``gaussians``: already composed ones (``compose``) instead.
        ``sh_degree`` None: the model's full degree. ``surface``: normals and the unbiased depth too
        (``out.surface``, models.rendering.surface)."""
        gs = self.compose(frame)[0] if gaussians is None else gaussians
        camera = camera.to(self.device)
        return render_gaussians(
            gs, camera, background=self.background_for(camera),
            sh_degree=self.sh_degree if sh_degree is None else sh_degree, render_mode=render_mode,
            near_plane=self.near_plane, far_plane=self.far_plane, backend=self.backend, surface=surface)

    @torch.no_grad()
    def render_view(self, view, render_mode: str = "RGB+ED"):
        """(rgb clamped to [0, 1], alpha, depth or None) of a view (its camera at its frame), no gradients."""
        out = self.render(view.camera, view.frame_idx, render_mode=render_mode)
        return out.rgb.clamp(0, 1), out.alpha, out.depth

    # ----- state -----------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Plain tensors and values: every model's parameters, the background, and the scene graph."""
        return {
            "models": {name: {k: v.detach().clone() for k, v in m.params.items()} for name, m in self.models.items()},
            "background": self.background.detach().clone(),
            "graph": self.graph_state_dict(),
            "sky": None if self.sky is None else self.sky.state(),
            "appearance": None if self.appearance is None else self.appearance.state(),
            "deformation": {name: m.field.state() for name, m in self.models.items() if isinstance(m, DeformableNodes)},
            "smpl": self.smpl_state(),
        }

    def smpl_state(self) -> Optional[Dict[str, Any]]:
        """The SMPL nodes' pose table, shapes and body model's arrays (None without SMPL nodes)."""
        people = self.models.get(SMPL_KEY)
        if people is None or self.smpl is None:
            return None
        return {**self.smpl.state(), "betas": people.betas.detach().cpu().clone(), "body": body_state(people.body)}

    def graph_state_dict(self) -> Dict[str, Any]:
        graph = {"scene_graph": self.scene_graph, "frames": list(self.frames),
                 "tracks": [t.state_dict() for t in self.tracks],
                 "poses": self.poses.detach().cpu().clone(), "present": self.present.detach().cpu().clone()}
        if self.deformable_tracks:   # only where there are some: a graph without people is as before
            graph["deformable"] = {"tracks": [t.state_dict() for t in self.deformable_tracks],
                                   "poses": self.deformable_poses.detach().cpu().clone(),
                                   "present": self.deformable_present.detach().cpu().clone()}
        return graph

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """The parameters of every model (same models, same parameter names and per-Gaussian shapes;
        the number of Gaussians may differ), the background and, where the state has it, the graph."""
        self.load_params(state)
        if state.get("graph") is not None:
            self.load_graph(state["graph"])

    def load_params(self, state: Mapping[str, Any]) -> None:
        """The Gaussians of every model and the background colour."""
        if set(state["models"]) != set(self.models):
            raise KeyError(f"models {sorted(state['models'])}, expected {sorted(self.models)}")
        for name, m in self.models.items():
            params = state["models"][name]
            if set(params) != set(m.params.keys()):
                raise KeyError(f"{name} parameters {sorted(params)}, expected {sorted(m.params.keys())}")
            for k, v in params.items():
                if v.shape[1:] != m.params[k].shape[1:]:
                    raise ValueError(f"{name} parameter {k!r} has shape {tuple(v.shape)}, expected "
                                     f"[N, {', '.join(map(str, m.params[k].shape[1:]))}]")
                m.params[k] = torch.nn.Parameter(v.to(self.device).clone(), requires_grad=m.params[k].requires_grad)
        self.background.data.copy_(state["background"].to(self.device))
        for name, module, setting in (("sky", self.sky, "cameras.sky.model=envmap"),
                                      ("appearance", self.appearance, "cameras.appearance.enabled=true")):
            saved = state.get(name)
            if (saved is None) != (module is None):
                raise ValueError(f"the state {'has' if saved is not None else 'has no'} {name} model and this "
                                 f"scene {'has none' if module is None else 'has one'} ({setting} must be the "
                                 "same as the run's)")
            if module is not None:
                module.load(saved)
        fields = state.get("deformation") or {}
        for name, m in self.models.items():
            if isinstance(m, DeformableNodes):
                if name not in fields:
                    raise KeyError(f"the state has no deformation field of {name}")
                m.field.load(fields[name])
        if SMPL_KEY in self.models:
            if state.get("smpl") is None or self.smpl is None:
                raise KeyError("the state has no SMPL pose table" if self.smpl is not None else
                               "this scene has SMPL nodes but no SMPL pose table")
            self.smpl.load(state["smpl"])

    def load_graph(self, graph: Mapping[str, Any]) -> None:
        self.scene_graph = bool(graph["scene_graph"])
        self.set_tracks([RigidTrack.from_state(t) for t in graph["tracks"]], graph["frames"],
                        torch.as_tensor(graph["poses"]).float(), torch.as_tensor(graph["present"]).bool())
        deformable = graph.get("deformable")
        if deformable is not None:
            self.set_deformable_tracks([RigidTrack.from_state(t) for t in deformable["tracks"]],
                                       torch.as_tensor(deformable["poses"]).float(),
                                       torch.as_tensor(deformable["present"]).bool())

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], *, device: Any = "cpu", near_plane: float = 0.01,
                        far_plane: float = 1e10, backend: str = "auto") -> "GaussianScene":
        """A scene built from a state dict alone (models of the saved shapes; nothing initialised)."""
        models: Dict[str, VanillaGaussians] = {}
        for name, params in state["models"].items():
            degree = sh_degree_of(params)
            if name == SMPL_KEY:
                smpl = state["smpl"]
                models[name] = SMPLNodes(params, body_from_state(smpl["body"]), torch.as_tensor(smpl["betas"]),
                                         sh_degree=degree)
            elif name == DEFORMABLE_KEY:
                field = field_from_state(state["deformation"][name])
                models[name] = DeformableNodes(params, sh_degree=degree, field=field)
            elif INSTANCE_KEY in params:
                models[name] = RigidNodes(params, sh_degree=degree)
            else:
                models[name] = VanillaGaussians(params, sh_degree=degree)
        if MODEL_KEY not in models:
            raise KeyError(f"models {sorted(models)}: no {MODEL_KEY!r} model")
        scene = cls({name: m.to(device) for name, m in models.items()},
                    torch.nn.Parameter(torch.zeros(3, device=device), requires_grad=False),
                    near_plane=near_plane, far_plane=far_plane, backend=backend, device=device)
        if state.get("sky") is not None:
            scene.sky = EnvironmentMap.from_state(state["sky"]).to(device)
        if state.get("appearance") is not None:
            scene.appearance = AffineAppearance.from_state(state["appearance"]).to(device)
        if SMPL_KEY in models:
            scene.smpl = SMPLPoseTable.from_state(state["smpl"]).to(device)
        scene.load_state_dict(state)
        return scene
