"""Open a trained run for inference: the GaussianScene, the saved cameras and the config of a run,
from its checkpoint alone.

    run = open_run("outputs/quick")          # a run folder (its newest checkpoint) or a .pt file
    scene, cameras, config = run             # GaussianScene, RunCameras, the run's resolved config
    out = scene.render(cameras.train_views[0].camera, frame=cameras.train_views[0].frame_idx)

Nothing is re-initialised and no dataset file is read: the checkpoint holds the models, the
background, the scene graph (rigid tracks, per-frame poses: its "graph" entry) and the cameras of
the training and test views ("cameras": pose, K, size, frame, name, dynamic-object mask). Opening
writes nothing and leaves the process's thread count and random state alone.

Checkpoints written before "graph" and "cameras" existed (format 1, 2 and early format 3) lack
them; for those alone open_run rebuilds the run's trainer for inference
(models.trainers.inference.open_trainer), which reads the dataset and recomputes the LiDAR
initialisation, and takes its scene and cameras. Evaluation against ground-truth images reads the
dataset on purpose (`OpenedRun.dataset()`); rendering, exports, meshes and the viewer do not.

Every problem a user can cause raises RunInputError (a ValueError) with one line that names the
file and what was expected: the one translation of the checkpoint and config errors.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from models.cameras import Camera
from models.scene import GaussianScene
from models.trainers.base import StageSchedule
from models.trainers.checkpoint import CheckpointError, find_latest, load_checkpoint, trainer_name_of

PathLike = Union[str, os.PathLike]


class RunInputError(ValueError):
    """Bad input from the user (file, folder, option); the commands print its message, no traceback.

    An error about one argument names it as the library does (`views='x': expected ...`) and
    carries it in `param`; `models.mesh.run_io.cli_message` turns that into the command line's flag."""

    def __init__(self, message: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.param = param


# ----- cameras ----------------------------------------------------------------------------------
@dataclass(eq=False)
class CameraView:
    """A saved view: what rendering, exports, meshes and the viewer need of a training or test view
    (the dataset's View without its image, sky mask and depths)."""

    K: torch.Tensor                # float32 [3, 3]
    camera_to_world: torch.Tensor  # float32 [4, 4], OpenCV axes
    width: int
    height: int
    frame_idx: int
    cam_name: str
    image_name: str                # the image file's stem (exports' img_name)
    dynamic_mask: Optional[torch.Tensor] = None  # bool [H, W]: moving objects, None when not saved
    image: Optional[torch.Tensor] = None         # never saved (the viewer's thumbnails need the dataset)

    @property
    def camera(self) -> Camera:
        return Camera(self.camera_to_world, self.K, self.width, self.height)


def view_image_name(view) -> str:
    """The name of a view's image: its file's stem, else frame_camera."""
    name = getattr(view, "image_name", None)
    if name:
        return str(name)
    path = getattr(view, "image_path", None)
    return Path(path).stem if path else f"{view.frame_idx:03d}_{view.cam_name}"


def _view_state(view) -> Dict[str, Any]:
    mask = getattr(view, "dynamic_mask", None)
    packed = None
    if mask is not None:
        m = mask.detach().cpu().numpy().astype(bool)
        packed = torch.from_numpy(np.packbits(m.reshape(-1)).copy()) if m.any() else torch.zeros(0, dtype=torch.uint8)
    return {"K": view.K.detach().cpu().float().clone(), "camera_to_world": view.camera_to_world.detach().cpu().float().clone(),
            "width": int(view.width), "height": int(view.height), "frame_idx": int(view.frame_idx),
            "cam_name": str(view.cam_name), "image_name": view_image_name(view), "dynamic_mask": packed}


def _view_from_state(s: Mapping[str, Any]) -> CameraView:
    H, W = int(s["height"]), int(s["width"])
    packed = s.get("dynamic_mask")
    mask = None
    if packed is not None:
        mask = (torch.zeros(H, W, dtype=torch.bool) if packed.numel() == 0 else
                torch.from_numpy(np.unpackbits(packed.numpy(), count=H * W).reshape(H, W).astype(bool)))
    return CameraView(torch.as_tensor(s["K"]).float(), torch.as_tensor(s["camera_to_world"]).float(), W, H,
                      int(s["frame_idx"]), str(s["cam_name"]), str(s["image_name"]), mask)


@dataclass
class RunCameras:
    """The training and test views of a run, the scene's frames and its radius (gsplat's scene scale).
    A trainer's hold the dataset's views themselves; an opened run's are CameraViews."""

    train_views: List[Any]
    test_views: List[Any]
    frames: List[int]
    scene_radius: float
    _state: Optional[Dict[str, Any]] = field(default=None, repr=False)
    pose_refinement: Any = field(default=None, repr=False)   # an opened pose-refined run's corrections

    @classmethod
    def of(cls, dataset) -> "RunCameras":
        """The cameras of a loaded dataset (scenes.driving_dataset.DrivingScene)."""
        return cls(list(dataset.train_views), list(dataset.test_views), sorted(int(f) for f in dataset.frames),
                   float(dataset.scene_radius))

    @property
    def views(self) -> List[Any]:
        return list(self.train_views) + list(self.test_views)

    def state_dict(self) -> Dict[str, Any]:
        """Plain data (weights_only-readable); dynamic masks bit-packed. Computed once: views do not change."""
        if self._state is None:
            self._state = {"train": [_view_state(v) for v in self.train_views],
                           "test": [_view_state(v) for v in self.test_views],
                           "frames": list(self.frames), "scene_radius": float(self.scene_radius)}
        return self._state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "RunCameras":
        return cls([_view_from_state(s) for s in state["train"]], [_view_from_state(s) for s in state["test"]],
                   [int(f) for f in state["frames"]], float(state["scene_radius"]))

    def with_train_poses(self, poses: Sequence[torch.Tensor]) -> "RunCameras":
        """These cameras with the training views at ``poses`` (a pose-refined run's estimates)."""
        if len(poses) != len(self.train_views):
            raise ValueError(f"{len(poses)} poses for {len(self.train_views)} training views")
        train = [_view_from_state(dict(_view_state(v), camera_to_world=p.detach().cpu().float().clone()))
                 for v, p in zip(self.train_views, poses)]
        return RunCameras(train, list(self.test_views), list(self.frames), self.scene_radius)


# ----- the opened run -----------------------------------------------------------------------------
@dataclass
class OpenedRun:
    """A run opened for inference: ``scene, cameras, config = open_run(path)``, plus where it came from
    and the training position its checkpoint was written at."""

    scene: GaussianScene
    cameras: RunCameras
    config: DictConfig
    run_dir: Path            # the run's output folder (exports/ and eval.json go here)
    checkpoint: Path
    step: int
    trainer_name: str
    schedule: StageSchedule  # at the checkpoint's stage position
    _dataset: Any = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.scene, self.cameras, self.config))

    # what the viewer's status line and the commands read (as they read a trainer's)
    @property
    def model(self):
        return self.scene.model

    @property
    def num_gaussians(self) -> int:
        return self.scene.num_gaussians

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    @property
    def current_stage(self) -> str:
        return self.schedule.names[self.schedule.stage_index]

    @property
    def stage_step(self) -> int:
        return self.schedule.offset

    @property
    def current_stage_spec(self):
        return self.schedule.stages[self.schedule.stage_index]

    def render_view(self, view, render_mode: str = "RGB+ED"):
        """(rgb clamped to [0, 1], alpha, depth or None) of a view, without gradients."""
        return self.scene.render_view(view, render_mode=render_mode)

    def dataset(self):
        """The run's dataset (scenes.load_scene of its config), read on the first call: evaluation's
        ground truth (test images, GT depth and mesh). Nothing else of inference reads it."""
        if self._dataset is None:
            from scenes import load_scene
            try:
                self._dataset = load_scene(self.config.scene)
            except (FileNotFoundError, ValueError, KeyError) as exc:
                raise RunInputError(f"checkpoint {self.checkpoint}: could not read the run's scene for evaluation "
                                    f"({exc})") from None
        return self._dataset


LoadedRun = OpenedRun  # the name models.mesh and the commands know


def resolve_checkpoint(path: PathLike) -> Tuple[Path, Path]:
    """(run_dir, checkpoint file) for a run folder (its newest checkpoint) or a checkpoint file."""
    p = Path(path)
    if not p.exists():
        raise RunInputError(f"{p} does not exist (expected a run folder with checkpoints/ or a checkpoint .pt file)")
    if p.is_dir():
        ckpt = find_latest(p / "checkpoints") or find_latest(p)
        if ckpt is None:
            raise RunInputError(f"run folder {p} has no checkpoints (expected {p / 'checkpoints'}/step_XXXXXX.pt; "
                                "has the run finished or saved one?)")
        return p, ckpt
    run_dir = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return run_dir, p


def _render_settings(cfg: DictConfig, device: str) -> Dict[str, Any]:
    from models.rendering.rasterize import resolve_backend
    return {"near_plane": float(cfg.render.near_plane), "far_plane": float(cfg.render.far_plane),
            "backend": resolve_backend(str(cfg.render.backend), torch.device(device))}


def open_state(state: Dict[str, Any], ckpt: Path, *, device: str = "cpu",
               overrides: Optional[Dict[str, Any]] = None) -> Tuple[GaussianScene, RunCameras, DictConfig]:
    """(scene, cameras, config) of a loaded checkpoint dict (see the module doc for older checkpoints)."""
    if not isinstance(state.get("config"), dict):
        raise ValueError(f"its 'config' is a {type(state.get('config')).__name__}, "
                         "expected the run's resolved config as a dict")
    cfg = OmegaConf.create(state["config"])
    cfg.device = device
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value, force_add=True)
    if state.get("graph") is not None and state.get("cameras") is not None:
        scene = GaussianScene.from_state_dict(state, device=device, **_render_settings(cfg, device))
        cameras = RunCameras.from_state(state["cameras"])
        if state.get("pose_refinement") is not None:   # the training views at their refined poses
            from models.camera_models import PoseRefinement
            refinement = PoseRefinement.from_state(state["pose_refinement"])
            cameras = cameras.with_train_poses(refinement.refined_poses(cameras.train_views))
            cameras.pose_refinement = refinement
        return scene, cameras, cfg
    # written before the checkpoint held the scene graph and the cameras: the trainer rebuilds them
    from models.trainers.inference import open_trainer
    trainer = open_trainer(state, device=device, source=f"checkpoint {ckpt}", overrides=overrides)
    return trainer.gaussian_scene, trainer.cameras, trainer.cfg


def open_run(path: PathLike, *, device: str = "cpu", overrides: Optional[Dict[str, Any]] = None) -> OpenedRun:
    """The GaussianScene, saved cameras and config of a run folder or checkpoint file; nothing is
    written. Raises RunInputError with one line naming the file and what was expected."""
    run_dir, ckpt = resolve_checkpoint(path)
    try:
        state = load_checkpoint(ckpt, required=("step", "stage", "config", "models"))
    except FileNotFoundError as exc:
        raise RunInputError(str(exc)) from None
    except CheckpointError as exc:
        raise RunInputError(str(exc)) from None
    try:
        scene, cameras, cfg = open_state(state, ckpt, device=device, overrides=overrides)
        schedule = StageSchedule.from_state(state["stage"])
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        raise RunInputError(f"checkpoint {ckpt}: could not rebuild the run ({exc})") from None
    return OpenedRun(scene=scene, cameras=cameras, config=cfg, run_dir=run_dir, checkpoint=ckpt,
                     step=int(state["step"]), trainer_name=str(trainer_name_of(state)), schedule=schedule)


__all__ = ["RunInputError", "CameraView", "RunCameras", "OpenedRun", "LoadedRun", "open_run", "open_state",
           "resolve_checkpoint", "view_image_name"]
