"""SingleTrainer: one VanillaGaussians model trained through the stage schedule.

pretrain: 0.8·L1 + 0.2·(1 − SSIM), densification by gsplat's DefaultStrategy.
entropy:  + per-Gaussian opacity entropy, the stage's weight (StageContext.entropy_weight); what it
          drives below α 1/255 (no longer drawn) is removed every densify.refine_every steps.
sugar:    prune α < sugar.prune_opacity at the start, densification off, depth rendered every
          step, + SuGaR's SDF (or density) and normal regularizers.
What each stage turns on comes from its features (models.trainers.stage_context.KNOWN_FEATURES); the
loss terms from the table in models.trainers.stage_losses; the Gaussians' growth and prunes from one
strategy per model (models.trainers.strategy.ModelStrategy); the checkpoint's content from
models.trainers.training_state.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from omegaconf import OmegaConf

from models.camera_models import AffineAppearance, EnvironmentMap, PoseRefinement, held_out_pose
from models.cameras import Camera
from models.evaluation import evaluate_images
from models.exports import export_scene
from models.gaussians.vanilla import VanillaGaussians, sh_degree_at
from models.losses import psnr
from models.rendering.render import RenderOutput
from models.run import RunCameras
from models.scene import MODEL_KEY, GaussianScene
from models.trainers.base import BasicTrainer, StageSpec
from models.trainers.device import device_and_backend
from models.trainers.monitor import TrainingMonitor
from models.trainers.optimizers import TrainingOptimizers
from models.trainers.results import write_results
from models.trainers.rng import TrainerRNG
from models.trainers.sampler import ImageSampler, view_on
from models.trainers.stage_losses import StepTensors, needs_surface, stage_losses
from models.trainers.step_values import FiniteLossWatch, StepValues
from models.trainers.strategy import ModelStrategy, PruneFloor, model_info, warn_short_densification
from models.trainers.sugar_term import SugarRegularizer
from models.trainers.training_state import load_training_state, training_state
from scenes import load_scene

logger = logging.getLogger("models.trainers")


@dataclass
class StepOutputs:
    """A SingleTrainer step's own outputs, handed to step callbacks (StepInfo.outputs)."""

    view: Any                        # the training view of the step
    render: RenderOutput             # its render (rgb over the background, alpha, depth, info)
    mask: Optional[torch.Tensor]     # the photometric loss's pixel mask (None: every pixel counts)
    slices: Dict[str, slice]         # each model's slice of the rendered Gaussians


class SingleTrainer(BasicTrainer):
    """Trains one Gaussian model on a driving scene through pretrain → entropy → sugar.

    The trained scene is `self.gaussian_scene` (models.scene.GaussianScene: models, background,
    rigid tracks and poses); the trainer keeps the dataset (`self.dataset`), optimizers, one
    strategy per model (`self.strategies`), the SuGaR regularizer, sampler, RNG and the loop.
    `models`, `background`, `compose_gaussians`, `instance_poses` are the scene's."""

    SCENE_GRAPH = False  # whether the scene composes rigid nodes per frame (MultiTrainer)

    # ----- construction ------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        floor = PruneFloor(cfg.sugar.prune_keep_fraction, cfg.sugar.prune_keep_min)
        self.device, self.render_backend = device_and_backend(cfg)
        seed = cfg.seed
        # no thread count, no global seeding: that is the entry point's (models.trainers.rng.configure_process)
        self.dataset = load_scene(cfg.scene)
        if not self.dataset.train_views:
            raise ValueError(f"scene {self.dataset.root}: no training views after the train/test split")
        xyz, rgb = self.dataset.init_points()
        self._views = [view_on(v, self.device) for v in self.dataset.train_views]
        self.scene_scale = float(self.dataset.scene_radius)
        self.cameras = RunCameras.of(self.dataset)  # what a checkpoint keeps of the views (models.run)
        # sigmoid(background) is the colour behind the Gaussians (the sky); fixed grey unless learned
        background = torch.nn.Parameter(torch.zeros(3, device=self.device),
                                        requires_grad=cfg.model.learn_background)
        self.gaussian_scene = GaussianScene(
            {}, background, scene_graph=self.SCENE_GRAPH, frames=self.dataset.frames,
            near_plane=float(cfg.render.near_plane), far_plane=float(cfg.render.far_plane),
            backend=self.render_backend, device=self.device)
        self.models[MODEL_KEY] = self._gaussians_from_points(xyz, rgb)
        self.models.update(self.build_extra_models())
        self._build_camera_models()
        self.monitor = None
        if self.inference:  # rendering only: no optimizer, strategy, sampler, and nothing written
            return
        warn_short_densification(self.stage_schedule, int(cfg.densify.refine_start_iter))
        self._build_optimizers()
        densify = OmegaConf.to_container(cfg.densify, resolve=True)
        self.strategies: Dict[str, ModelStrategy] = {  # one per model: growth and prunes, nowhere else
            name: ModelStrategy(name, densify, self.scene_scale, floor, float(cfg.sugar.prune_opacity),
                                groups=lambda name=name, m=m: self.prune_groups(name, m),
                                group_name=lambda g, name=name: self.group_name(name, g))
            for name, m in self.models.items()}
        for name, strategy in self.strategies.items():
            strategy.check_sanity(self.models[name].params, self.optimizers[name])
        self.sampler = ImageSampler(len(self._views), seed=seed)
        self.sugar = SugarRegularizer(cfg, self.gaussian_scene, self.device, self.scene_scale, seed)
        self.rng = TrainerRNG(seed, self.device)  # the stream of global-RNG draws inside a step (gsplat's split)
        self.last_losses: Mapping[str, float] = {}
        # the NaN / inf loss check: every step on a CPU (nothing to wait for), every log.scalars_every
        # steps on a GPU, where each check makes the host wait for the device (models.trainers.step_values)
        self.finite_check = FiniteLossWatch(1 if self.device.type == "cpu" else int(cfg.log.scalars_every),
                                            f" on {self.device}")
        self.monitor = TrainingMonitor(self) if self.output_dir is not None else None
        if self.monitor is not None:
            self.add_step_callback(self.monitor.on_step)
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)

    def on_ready(self) -> None:
        # written once the checkpoint (if any) has been accepted: a refused resume leaves the old one
        if self.output_dir is not None:
            OmegaConf.save(self.cfg, self.output_dir / "config.yaml", resolve=True)

    def _build_camera_models(self) -> None:
        """The sky, appearance and pose-refinement models the config's `cameras` section asks for."""
        cams = self.cfg.cameras
        views = self.dataset.train_views
        if cams.sky.model == "envmap":
            sky_pixels = [v.image[v.sky_mask] for v in views if v.sky_mask is not None and bool(v.sky_mask.any())]
            init = torch.cat(sky_pixels).mean(0) if sky_pixels else None
            self.gaussian_scene.sky = EnvironmentMap(int(cams.sky.resolution), init).to(self.device)
        if cams.appearance.enabled:
            names = list(dict.fromkeys(str(v.cam_name) for v in views))   # in the dataset's order
            self.gaussian_scene.appearance = AffineAppearance(names, len(views), str(cams.appearance.per)).to(self.device)
        self.pose_refinement = (PoseRefinement.for_views(views, str(cams.pose.per)).to(self.device)
                                if cams.pose.enabled else None)

    def camera_model_params(self) -> Dict[str, Tuple[list, float, float]]:
        """name -> (parameters, lr, final lr) of each camera model, for TrainingOptimizers."""
        cams, scene, out = self.cfg.cameras, self.gaussian_scene, {}
        if scene.sky is not None:
            out["sky"] = ([scene.sky.texture], float(cams.sky.lr), float(cams.sky.lr))
        if scene.appearance is not None:
            out["appearance"] = ([scene.appearance.affine, scene.appearance.image], float(cams.appearance.lr),
                                 float(cams.appearance.lr))
        if self.pose_refinement is not None:
            out["pose"] = ([self.pose_refinement.translations], float(cams.pose.lr), float(cams.pose.lr_final))
            out["pose_rotation"] = ([self.pose_refinement.rotations], float(cams.pose.rotation_lr),
                                    float(cams.pose.rotation_lr_final))
        return out

    def training_camera(self, view, index: int, stage=None) -> Camera:
        """The camera a training view is rendered from: the dataset's pose, or its refined one (learned
        in stages with the refine_poses feature, held in the others)."""
        if self.pose_refinement is None:
            return view.camera
        learn = stage is not None and stage.features["refine_poses"]
        with torch.set_grad_enabled(learn and torch.is_grad_enabled()):
            c2w = self.pose_refinement.refine_view(index, view.camera_to_world)
        return Camera(c2w, view.K, view.width, view.height)

    def run_cameras(self) -> RunCameras:
        """The run's cameras as exports and meshes see them: the training views' refined poses."""
        if self.pose_refinement is None:
            return self.cameras
        return self.cameras.with_train_poses(self.pose_refinement.refined_poses(self.cameras.train_views))

    def _gaussians_from_points(self, xyz, rgb) -> VanillaGaussians:
        return VanillaGaussians.from_points(
            torch.as_tensor(xyz), torch.as_tensor(rgb), sh_degree=int(self.cfg.model.sh_degree),
            init_opacity=float(self.cfg.model.init_opacity)).to(self.device)

    def build_extra_models(self) -> Dict[str, VanillaGaussians]:
        """Models besides the background (a scene graph's nodes); none for a SingleTrainer."""
        return {}

    def prune_groups(self, name: str, model: VanillaGaussians) -> Optional[torch.Tensor]:
        """Per-Gaussian group ids within which a prune's floor applies (None: the whole model)."""
        return None

    def group_name(self, name: str, group: int) -> str:
        return name

    @property
    def models(self) -> Dict[str, VanillaGaussians]:
        """The scene's models, keyed by class name (the GaussianScene's dict itself)."""
        return self.gaussian_scene.models

    @property
    def background(self) -> torch.nn.Parameter:
        """The scene's learned background colour (raw; sigmoid is the colour)."""
        return self.gaussian_scene.background

    @property
    def model(self) -> VanillaGaussians:
        """The background model (the only one of a SingleTrainer)."""
        return self.gaussian_scene.model

    @property
    def num_gaussians(self) -> int:
        return self.gaussian_scene.num_gaussians

    def _build_optimizers(self) -> None:
        self.optim = TrainingOptimizers(self.models, self.background, self.cfg.optim.lr, self.scene_scale,
                                        self.total_steps, self.camera_model_params())
        self.optimizers, self.bg_optimizer = self.optim.per_model, self.optim.background
        self.means_schedulers = self.optim.means_schedulers

    # ----- stage events --------------------------------------------------------------------------
    def on_stage_start(self, stage: StageSpec) -> None:
        """The strategies' stage start (the sugar prune), then the SuGaR neighbourhoods of what is left."""
        with self.rng.scope():
            for name, strategy in self.strategies.items():
                strategy.on_stage_start(self.stage_context, self.models[name].params, self.optimizers[name])
            self.sugar.on_stage_start(self.stage_context)

    # ----- one step ------------------------------------------------------------------------------
    def train_step(self) -> Mapping[str, float]:
        """One step, drawing from the trainer's own random streams only: code that uses torch's global
        generator (gsplat's split) runs on the trainer's state (`TrainerRNG.scope`), which leaves the
        process's generator as it was."""
        with self.rng.scope():
            return self._train_step(self.stage_context)

    def _train_step(self, stage) -> Mapping[str, float]:
        cfg, step = self.cfg, self.step
        index = self.sampler.next()
        view = self._views[index]
        sh_degree = sh_degree_at(step, int(cfg.model.sh_degree_interval), self.model.sh_degree)
        need_depth = stage.features["render_depth"] or float(cfg.loss.lidar_depth) > 0
        surface = needs_surface(cfg, stage)
        camera = self.training_camera(view, index, stage)
        out, gs, slices = self.render(view, render_mode="RGB+ED" if need_depth else "RGB", sh_degree=sh_degree,
                                      surface=surface, camera=camera)
        rgb, alpha, depth, info = out
        rgb = self.gaussian_scene.camera_colours(rgb, view, index)   # the image's own appearance
        for name, strategy in self.strategies.items():  # the render's info: its means2d keeps its gradient
            strategy.step_pre_backward(self.models[name].params, self.optimizers[name], step, info, stage)
        mask = self.loss_mask(view, index)
        losses = stage_losses(StepTensors(rgb, alpha, depth, info, gs, slices, view, mask, out.surface, camera), cfg,
                              stage, self.sugar)
        total = sum(losses.values())
        self.finite_check.before_backward(step, stage, losses, total)
        total.backward()
        self.optim.step()
        for name, strategy in self.strategies.items():  # each model on its own slice of the info
            strategy.step_post_backward(self.models[name].params, self.optimizers[name], step,
                                        model_info(info, slices[name]), stage)
        rgb = rgb.detach()
        # floats only when read (a log line, a TensorBoard scalar): the host does not wait for the device here
        values = StepValues(losses, total, lambda: psnr(rgb, view.image, mask), self.num_gaussians)
        self.finite_check.after_step(step, stage, losses, total)
        self.last_losses = values
        self.last_outputs = StepOutputs(view=view, render=RenderOutput(rgb, alpha.detach(),
                                        None if depth is None else depth.detach(), info), mask=mask, slices=slices)
        return values

    def loss_mask(self, view, index: int) -> Optional[torch.Tensor]:
        """bool [H, W]: the pixels of training view `index` that the loss and PSNR use; None: all."""
        return ~view.dynamic_mask if bool(self.cfg.loss.mask_dynamic) else None

    def check_deferred(self) -> None:
        """The loss checks a GPU's steps deferred (FiniteLossWatch): raise NonFiniteLossError naming the first
        bad step, if any."""
        if not self.inference:
            self.finite_check.check()

    def render(self, view, *, render_mode: str = "RGB", sh_degree: Optional[int] = None, surface: bool = False,
               camera: Optional[Camera] = None) -> Tuple[RenderOutput, Dict[str, torch.Tensor], Dict[str, slice]]:
        """Render a view through the one entry point (`render_gaussians`): the scene's Gaussians at
        the view's frame, over the learned background (or sky). Returns (output, the rendered Gaussians,
        each model's slice of them). `sh_degree` None: the model's full degree; `camera`: instead of the
        view's own (a refined pose)."""
        gs, slices = self.compose_gaussians(view)
        out = self.gaussian_scene.render(view.camera if camera is None else camera, view.frame_idx,
                                         render_mode=render_mode, sh_degree=sh_degree, gaussians=gs, surface=surface)
        return out, gs, slices

    def compose_gaussians(self, view) -> Tuple[Dict[str, torch.Tensor], Dict[str, slice]]:
        """The world-space Gaussians rendered for a view (at its frame), and each model's slice of them."""
        return self.gaussian_scene.compose(view.frame_idx)

    def instance_poses(self, frame_idx: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(obj_to_world [I, 4, 4], present [I] bool) of the scene's rigid instances at a frame."""
        return self.gaussian_scene.instance_poses(frame_idx)

    # ----- end of training ---------------------------------------------------------------------
    def on_train_end(self) -> None:
        if self.output_dir is not None:
            write_results(self)
            if self.monitor is not None:
                self.monitor.close()

    def export_gaussians(self, folder: Path) -> None:
        """gaussians.ply (INRIA's 3DGS layout), cameras.json, export_info.json (axes, background colour)
        and, for a scene graph, rigid_nodes.ply/.json, in the axes of `export.axes` (models/exports.py)."""
        export_scene(self.gaussian_scene, self.run_cameras(), folder,
                     axes=self.cfg.export.axes, step=self.step)

    def render_view(self, view, render_mode: str = "RGB+ED"):
        """(rgb clamped to [0, 1], alpha, depth or None) of a view, without gradients."""
        return self.gaussian_scene.render_view(view, render_mode=render_mode)

    def evaluate(self, write_renders: bool = False) -> Dict[str, Any]:
        """PSNR / SSIM on the test views (models.evaluation); with write_renders, their snapshots."""
        def snapshot(i, view, gt, rgb, alpha, depth):
            self.monitor.write_snapshot(f"test_{i:03d}_{view.cam_name}_{view.frame_idx:03d}", gt, rgb, alpha, depth)
        pose = self.cfg.cameras.pose
        test = evaluate_images(self.gaussian_scene, self.dataset, mask_dynamic=bool(self.cfg.loss.mask_dynamic),
                               on_view=snapshot if write_renders and self.monitor is not None else None,
                               test_pose=None if self.pose_refinement is None else self.test_pose,
                               alignment_steps=int(pose.test_alignment_steps), alignment_lr=float(pose.test_alignment_lr))
        return {"step": self.step, "num_gaussians": self.num_gaussians, "test": test}

    def test_pose(self, view) -> torch.Tensor:
        """A test view's pose with the correction of the nearest training frame (the lower one on a tie)."""
        return held_out_pose(self.pose_refinement, self.cameras.train_views, view)

    # ----- state (models.trainers.training_state) ----------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state.update(training_state(self))
        return state

    def load_state_dict(self, state) -> None:
        source = "checkpoint"
        if not isinstance(state, dict):
            from models.trainers.checkpoint import load_checkpoint
            source = str(state)
            state = load_checkpoint(state, required=("step", "stage", "models", "optimizers", "strategy", "rng"))
        super().load_state_dict(state)
        load_training_state(self, state, source)
