"""SingleTrainer: one VanillaGaussians model trained through the stage schedule.

pretrain: 0.8·L1 + 0.2·(1 − SSIM), densification by gsplat's DefaultStrategy.
entropy:  + per-Gaussian opacity entropy, weight `render_cfg.opacity_entropy_weight`; what it drives below
          α 1/255 (no longer drawn) is removed every densify.refine_every steps.
sugar:    prune α < sugar.prune_opacity at the start, densification off, depth rendered every
          step, + SuGaR's SDF (or density) and normal regularizers.
What each stage turns on comes from its hooks (models.trainers.base.KNOWN_HOOKS).
"""
from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from gsplat.strategy.ops import remove
from omegaconf import OmegaConf

from models.evaluation import evaluate_images
from models.exports import export_scene
from models.gaussians.densify import build_strategy, load_strategy_state, strategy_state_dict
from models.gaussians.vanilla import VanillaGaussians, create_optimizers, sh_degree_at
from models.losses import (knn, lidar_depth_loss, opacity_entropy_loss, photometric_loss, psnr,
                           sample_points_around_gaussians, sky_opacity_loss, sugar_density_loss, sugar_normal_loss,
                           sugar_sdf_loss, visible_surface_mask)
from models.rendering.projection import ALPHA_THRESHOLD, quat_to_rotmat
from models.rendering.render import RenderOutput
from models.rendering.rasterize import resolve_backend
from models.reproducibility import describe as numerics_description
from models.run import RunCameras
from models.scene import MODEL_KEY, GaussianScene
from models.trainers.base import BasicTrainer, NonFiniteLossError, StageSpec
from models.trainers.config_checks import check_training_config
from models.trainers.device import resolve_device
from models.trainers.monitor import TrainingMonitor
from models.trainers.rng import TrainerRNG
from models.trainers.sampler import ImageSampler
from scenes import load_scene

logger = logging.getLogger("models.trainers")


@dataclass
class StepOutputs:
    """A SingleTrainer step's own outputs, handed to step callbacks (StepInfo.outputs)."""

    view: Any                        # the training view of the step
    render: RenderOutput             # its render (rgb over the background, alpha, depth, info)
    mask: Optional[torch.Tensor]     # the photometric loss's pixel mask (None: every pixel counts)
    slices: Dict[str, slice]         # each model's slice of the rendered Gaussians


def prune_mask_with_floor(opacity: torch.Tensor, threshold: float, keep_fraction: float, keep_min: int,
                          groups: Optional[torch.Tensor] = None, spare_whole_group: bool = False
                          ) -> Tuple[torch.Tensor, list]:
    """Which Gaussians a prune of opacity < threshold removes, keeping in each group (all Gaussians when
    groups is None) at least min(n, max(ceil(keep_fraction · n), keep_min)) of its n Gaussians: the most
    opaque ones, or with ``spare_whole_group`` all of them. Returns (remove mask, [(group, n, kept by the
    threshold, kept) for each group where the floor applied])."""
    low = opacity < threshold
    if groups is None:
        groups = torch.zeros(len(opacity), dtype=torch.long, device=opacity.device)
    spared = []
    for g in torch.unique(groups).tolist():
        idx = torch.nonzero(groups == g).reshape(-1)
        n = len(idx)
        floor = min(n, max(math.ceil(keep_fraction * n), keep_min))
        kept = n - int(low[idx].sum())
        if kept >= floor:
            continue
        if spare_whole_group:
            low[idx] = False
            floor = n
        else:
            order = torch.argsort(opacity[idx], descending=True, stable=True)
            low[idx[order[:floor]]] = False
        spared.append((int(g), n, kept, floor))
    return low, spared


class _GradSlice:
    """Stands in for `info["means2d"]` when gsplat's strategy reads one model's part of its gradient."""

    def __init__(self, grad: torch.Tensor) -> None:
        self.grad = grad


class SingleTrainer(BasicTrainer):
    """Trains one Gaussian model on a driving scene through pretrain → entropy → sugar.

    The trained scene is `self.gaussian_scene` (models.scene.GaussianScene: models, background,
    rigid tracks and poses); the trainer keeps the dataset (`self.scene`), optimizers, strategy,
    sampler, RNG and the loop. `models`, `background`, `compose_gaussians`, `instance_poses` are
    the scene's."""

    SCENE_GRAPH = False  # whether the scene composes rigid nodes per frame (MultiTrainer)

    # ----- construction ------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        check_training_config(cfg)
        for spec in self.stage_schedule.stages:
            hooks = spec.resolved_hooks()
            if hooks["sugar_losses"] and not hooks["render_depth"]:
                raise ValueError(f"optim.stage_schedule: stage {spec.name!r} turns on sugar_losses, which need the "
                                 "rendered depth: set its render_depth hook too")
        fraction, keep_min = cfg.sugar.get("prune_keep_fraction", 0.1), cfg.sugar.get("prune_keep_min", 32)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"sugar.prune_keep_fraction={fraction!r}: expected a fraction in [0, 1]")
        if isinstance(keep_min, bool) or not isinstance(keep_min, int) or keep_min < 0:
            raise ValueError(f"sugar.prune_keep_min={keep_min!r}: expected an integer >= 0")
        self.device = resolve_device(str(cfg.get("device", "auto")))
        self.render_backend = resolve_backend(str(cfg.render.backend), self.device)
        logger.info("rendering on %s with the %s backend%s", self.device, self.render_backend,
                    " (render.backend=auto: the compiled C++ rasterizer is unavailable, see the warning above; "
                    "the numbers differ from a run on the compiled backend in the last digits)"
                    if self.render_backend == "torch" and str(cfg.render.backend) == "auto" else "")
        if self.device.type == "cpu":
            logger.info(numerics_description())
        seed = int(cfg.get("seed", 0))
        # no thread count, no global seeding: that is the entry point's (models.trainers.rng.configure_process)
        self.scene = load_scene(cfg.scene)
        if not self.scene.train_views:
            raise ValueError(f"scene {cfg.scene.get('path')}: no training views after the train/test split")
        xyz, rgb = self.scene.init_points()
        self._views = [self._to_device(v) for v in self.scene.train_views]
        self.scene_scale = float(self.scene.scene_radius)
        self.cameras = RunCameras.of(self.scene)  # what a checkpoint keeps of the views (models.run)
        # sigmoid(background) is the colour behind the Gaussians (the sky); fixed grey unless learned
        background = torch.nn.Parameter(torch.zeros(3, device=self.device),
                                        requires_grad=bool(cfg.model.get("learn_background", True)))
        self.gaussian_scene = GaussianScene(
            {}, background, scene_graph=self.SCENE_GRAPH, frames=self.scene.frames,
            near_plane=float(cfg.render.near_plane), far_plane=float(cfg.render.far_plane),
            backend=self.render_backend, device=self.device)
        self.models[MODEL_KEY] = self._gaussians_from_points(xyz, rgb)
        self.models.update(self.build_extra_models())
        self.monitor = None
        if self.inference:  # rendering only: no optimizer, strategy, sampler, and nothing written
            return
        densify_end = max((self.stage_schedule.start_of(i) + s.steps for i, s in enumerate(self.stage_schedule.stages)
                           if s.resolved_hooks()["densify"]), default=0)
        if 0 < densify_end <= int(cfg.densify.refine_start_iter):
            logger.warning("the densifying stages end at step %d, before densify.refine_start_iter=%d: this schedule "
                           "is too short for any densification", densify_end, int(cfg.densify.refine_start_iter))
        self._build_optimizers()
        self.strategy = build_strategy(OmegaConf.to_container(cfg.densify, resolve=True))
        for name, m in self.models.items():
            self.strategy.check_sanity(m.params, self.optimizers[name])
        self.strategy_states = {name: self.strategy.initialize_state(scene_scale=self.scene_scale)
                                for name in self.models}
        self.sampler = ImageSampler(len(self._views), seed=seed)
        self.sugar_generator = torch.Generator().manual_seed(seed + 17)
        self.rng = TrainerRNG(seed, self.device)  # the stream of global-RNG draws inside a step (gsplat's split)
        self.neighbours: Optional[torch.Tensor] = None
        self.neighbours_step = -1
        self.last_losses: Dict[str, float] = {}
        self.monitor = TrainingMonitor(self) if self.output_dir is not None else None
        if self.monitor is not None:
            self.add_step_callback(self.monitor.on_step)
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)

    def on_ready(self) -> None:
        # written once the checkpoint (if any) has been accepted: a refused resume leaves the old one
        if self.output_dir is not None:
            OmegaConf.save(self.cfg, self.output_dir / "config.yaml", resolve=True)

    def _to_device(self, view):
        """A copy of a view with its tensors on the training device (the scene's own stay on the CPU)."""
        moved = copy.copy(view)
        for name in ("image", "K", "camera_to_world", "sky_mask", "dynamic_mask", "lidar_depth"):
            value = getattr(view, name, None)
            if isinstance(value, torch.Tensor):
                setattr(moved, name, value.to(self.device))
        return moved

    def _gaussians_from_points(self, xyz, rgb) -> VanillaGaussians:
        return VanillaGaussians.from_points(
            torch.as_tensor(xyz), torch.as_tensor(rgb), sh_degree=int(self.cfg.model.sh_degree),
            init_opacity=float(self.cfg.model.init_opacity)).to(self.device)

    def build_extra_models(self) -> Dict[str, VanillaGaussians]:
        """Models besides the background (a scene graph's nodes); none for a SingleTrainer."""
        return {}

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
        """One Adam per parameter and model (as gsplat's strategy expects), and the means' lr decay."""
        lr = self.cfg.optim.lr
        lrs = {k: float(lr[k]) for k in ("means", "sh0", "shN", "opacities", "scales", "quats")}
        self.optimizers = {name: create_optimizers(self.optimized_params(m), lrs, self.scene_scale)
                           for name, m in self.models.items()}
        self.bg_optimizer = torch.optim.Adam([self.background], lr=float(lr.background), eps=1e-15)
        gamma = (float(lr.means_final) / float(lr.means)) ** (1.0 / max(1, self.total_steps))
        self.means_schedulers = {name: torch.optim.lr_scheduler.ExponentialLR(opts["means"], gamma=gamma)
                                 for name, opts in self.optimizers.items()}

    @staticmethod
    def optimized_params(model: VanillaGaussians) -> Dict[str, torch.nn.Parameter]:
        """The parameters that get an optimizer: the trainable ones. (A VanillaGaussians' are all trainable;
        a scene graph's nodes also carry per-Gaussian entries with requires_grad=False, such as instance ids,
        which gsplat's strategy ops then move along without an optimizer.)"""
        return {k: p for k, p in model.params.items() if p.requires_grad}

    # ----- stage events --------------------------------------------------------------------------
    def on_stage_start(self, stage: StageSpec) -> None:
        with self.rng.scope():
            self._on_stage_start(stage)

    def _on_stage_start(self, stage: StageSpec) -> None:
        hooks = stage.resolved_hooks()
        if hooks["prune_low_opacity"]:
            self._prune_low_opacity(stage)
            self.neighbours = None
        if hooks["sugar_losses"]:
            self._refresh_neighbours()

    def _prune_floor(self) -> Tuple[float, int]:
        """(sugar.prune_keep_fraction, sugar.prune_keep_min): the share and count every prune keeps."""
        scfg = self.cfg.sugar
        return float(scfg.get("prune_keep_fraction", 0.1)), int(scfg.get("prune_keep_min", 32))

    def _prune_below(self, threshold: float, spare_whole_group: bool = False) -> list:
        """Remove the Gaussians with opacity < threshold from every model, with the floor of
        sugar.prune_keep_fraction / sugar.prune_keep_min per model or rigid instance (prune_mask_with_floor).
        Returns [(model name, its opacities before, the groups where the floor applied)]."""
        fraction, keep_min = self._prune_floor()
        out = []
        for name, m in self.models.items():
            opacity = torch.sigmoid(m.params["opacities"].detach()).reshape(-1)
            low, spared = prune_mask_with_floor(opacity, threshold, fraction, keep_min, self.prune_groups(name, m),
                                                spare_whole_group=spare_whole_group)
            if bool(low.any()):
                remove(m.params, self.optimizers[name], self.strategy_states[name], low)
            out.append((name, opacity, spared))
        return out

    def _prune_low_opacity(self, stage: StageSpec) -> None:
        """SuGaR's once-only prune of α < sugar.prune_opacity, with a floor: where it would leave fewer than
        max(sugar.prune_keep_fraction × n, sugar.prune_keep_min) of a model's (or a rigid instance's) n
        Gaussians, the most opaque ones up to that floor stay, with a warning that says why (the stages
        before were too short for the entropy term to make enough Gaussians opaque)."""
        threshold = float(self.cfg.sugar.prune_opacity)
        fraction, keep_min = self._prune_floor()
        before = self.num_gaussians
        for name, opacity, spared in self._prune_below(threshold):
            if not spared:
                continue
            undecided = float(((opacity > 0.1) & (opacity < 0.9)).float().mean())
            done = self.stage_schedule.stages[:self.stage_schedule.index_of(stage.name)]
            what = "; ".join(f"{self.group_name(name, g)}: {kept} of {n} -> kept the {floor} most opaque"
                             for g, n, kept, floor in spared)
            logger.warning(
                "stage %s: the opacity < %.2f prune would have left too few Gaussians (%s; floor: "
                "sugar.prune_keep_fraction=%g of each, at least sugar.prune_keep_min=%d). %.0f%% of %s's "
                "opacities are still undecided, in (0.1, 0.9): the stages before (%s) were too short for the "
                "opacity entropy to make them opaque (SuGaR prunes after 7,000 steps of 3DGS and 2,000 with "
                "the entropy term)", stage.name, threshold, what, fraction, keep_min, 100 * undecided, name,
                ", ".join(f"{s.name} {s.steps}" for s in done) or "none")
        logger.info("stage %s: pruned %d of %d Gaussians with opacity < %.2f", stage.name,
                    before - self.num_gaussians, before, threshold)

    def _prune_transparent(self) -> None:
        """The `prune_transparent` hook: remove the Gaussians the renderer can no longer draw, α < 1/255
        (in the entropy stage, those its term has driven to 0). Every backend's projection culls them
        (radius 0), so they receive no gradient, take no part in the entropy term's mean over the
        visible Gaussians, and Adam's momentum only carries them further down: they cannot come back,
        and removing them changes the rest only through the order of float sums. A model or rigid
        instance where the prune would leave fewer than the sugar prune's floor keeps all of its
        Gaussians: the floor and its warning belong to that prune, and a floor of a share of what is
        left must not compound from one prune to the next."""
        before = self.num_gaussians
        self._prune_below(ALPHA_THRESHOLD, spare_whole_group=True)
        if self.num_gaussians != before:
            logger.info("stage %s, step %d: removed %d of %d Gaussians with opacity < 1/255 (no longer drawn)",
                        self.current_stage, self.step, before - self.num_gaussians, before)

    def prune_groups(self, name: str, model: VanillaGaussians) -> Optional[torch.Tensor]:
        """Per-Gaussian group ids within which the prune's floor applies (None: the whole model)."""
        return None

    def group_name(self, name: str, group: int) -> str:
        return name

    def _refresh_neighbours(self) -> None:
        n = self.model.num_gaussians
        k = min(int(self.cfg.sugar.knn), n - 1)
        if k < 1:
            raise ValueError(f"step {self.step}: only {n} Gaussian(s) left, too few for the SuGaR regularizers; "
                             f"lower sugar.prune_opacity (now {self.cfg.sugar.prune_opacity}) or train longer "
                             "before the sugar stage")
        if k < int(self.cfg.sugar.knn):
            logger.warning("only %d Gaussians: SuGaR neighbourhoods use k=%d instead of %d", n, k, self.cfg.sugar.knn)
        self.neighbours = knn(self.model.params["means"].detach(), k=k)
        self.neighbours_step = self.step

    # ----- one step ------------------------------------------------------------------------------
    def train_step(self) -> Dict[str, float]:
        """One step, drawing from the trainer's own random streams only: code that uses torch's global
        generator (gsplat's split) runs on the trainer's state (`TrainerRNG.scope`), which leaves the
        process's generator as it was."""
        with self.rng.scope():
            return self._train_step()

    def _train_step(self) -> Dict[str, float]:
        hooks = self.stage_hooks
        view = self._views[self.sampler.next()]
        cfg = self.cfg
        sh_degree = sh_degree_at(self.step, int(cfg.model.sh_degree_interval), self.model.sh_degree)
        need_depth = hooks["render_depth"] or float(cfg.loss.lidar_depth) > 0
        out, gs, slices = self.render(view, render_mode="RGB+ED" if need_depth else "RGB", sh_degree=sh_degree)
        rgb, alpha, depth, info = out
        densify = hooks["densify"]
        if densify:  # the strategy's screen-space signal (all models' means2d; each reads its slice)
            self.strategy.step_pre_backward(self.model.params, self.optimizers[MODEL_KEY],
                                            self.strategy_states[MODEL_KEY], self.step, info)

        mask = ~view.dynamic_mask if bool(cfg.loss.mask_dynamic) else None
        loss, terms = photometric_loss(rgb, view.image, mask=mask, ssim_lambda=float(cfg.loss.ssim_lambda))
        losses: Dict[str, torch.Tensor] = {"photometric": loss}
        weight = float(self.render_cfg.opacity_entropy_weight)
        if weight > 0:
            visible = (info["radii"][0] > 0).all(dim=-1)
            losses["opacity_entropy"] = weight * opacity_entropy_loss(gs["opacities"], visible)
        if float(cfg.loss.sky_opacity) > 0:
            losses["sky_opacity"] = float(cfg.loss.sky_opacity) * sky_opacity_loss(alpha, view.sky_mask)
        if float(cfg.loss.lidar_depth) > 0:
            losses["lidar_depth"] = float(cfg.loss.lidar_depth) * lidar_depth_loss(depth, alpha, view.lidar_depth)
        if hooks["sugar_losses"]:
            bg = slices[MODEL_KEY]
            losses.update(self._sugar_losses({k: v[bg] for k, v in gs.items()}, info["radii"][0, bg], depth, alpha,
                                             view.camera.viewmat, view))
        total = sum(losses.values())
        if not torch.isfinite(total):
            values = {k: float(v.detach()) for k, v in losses.items()}
            raise NonFiniteLossError(
                f"step {self.step} (stage {self.current_stage}, step {self.stage_step}): the loss is {float(total.detach())} "
                f"({values}); stopping without saving. The last good checkpoint is untouched: "
                "lower the learning rates or the regularizer weights and resume from it")
        total.backward()
        for opts in self.optimizers.values():
            for opt in opts.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
        self.bg_optimizer.step()
        self.bg_optimizer.zero_grad(set_to_none=True)
        for scheduler in self.means_schedulers.values():
            scheduler.step()
        if densify:
            self._densify(info, slices)
        elif hooks["prune_transparent"] and self.step % int(cfg.densify.refine_every) == 0:
            self._prune_transparent()

        out = {k: float(v.detach()) for k, v in losses.items()}
        out["loss"] = float(total.detach())
        out["psnr"] = float(psnr(rgb.detach(), view.image, mask))
        out["num_gaussians"] = self.num_gaussians
        self.last_losses = out
        self.last_outputs = StepOutputs(view=view, render=RenderOutput(rgb.detach(), alpha.detach(),
                                        None if depth is None else depth.detach(), info), mask=mask, slices=slices)
        return out

    def render(self, view, *, render_mode: str = "RGB", sh_degree: Optional[int] = None
               ) -> Tuple[RenderOutput, Dict[str, torch.Tensor], Dict[str, slice]]:
        """Render a view through the one entry point (`render_gaussians`): the scene's Gaussians at
        the view's frame, over the learned background. Returns (output, the rendered Gaussians,
        each model's slice of them). `sh_degree` None: the model's full degree."""
        gs, slices = self.compose_gaussians(view)
        out = self.gaussian_scene.render(view.camera, view.frame_idx, render_mode=render_mode, sh_degree=sh_degree,
                                         gaussians=gs)
        return out, gs, slices

    def compose_gaussians(self, view) -> Tuple[Dict[str, torch.Tensor], Dict[str, slice]]:
        """The world-space Gaussians rendered for a view (at its frame), and each model's slice of them."""
        return self.gaussian_scene.compose(view.frame_idx)

    def instance_poses(self, frame_idx: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(obj_to_world [I, 4, 4], present [I] bool) of the scene's rigid instances at a frame."""
        return self.gaussian_scene.instance_poses(frame_idx)

    def _densify(self, info: Dict[str, Any], slices: Dict[str, slice]) -> None:
        """gsplat's DefaultStrategy on each model, with that model's slice of the screen-space signal."""
        means2d = info["means2d"]
        self.strategy.reset_opacity = bool(self.stage_hooks["reset_opacity"])  # StagedDefaultStrategy
        for name, m in self.models.items():
            sl = slices[name]
            model_info = dict(info, radii=info["radii"][:, sl], means2d=_GradSlice(means2d.grad[:, sl]))
            self.strategy.step_post_backward(m.params, self.optimizers[name], self.strategy_states[name],
                                             self.step, model_info, packed=False)

    def _sugar_losses(self, gs, radii, depth, alpha, viewmat, view) -> Dict[str, torch.Tensor]:
        scfg = self.cfg.sugar
        if (self.neighbours is None or self.step - self.neighbours_step >= int(scfg.knn_every)
                or self.neighbours.shape[0] != self.model.num_gaussians):  # densification on in this stage
            self._refresh_neighbours()
        rotmats = quat_to_rotmat(gs["quats"])
        gaussians = (gs["means"], rotmats, gs["scales"], gs["opacities"])
        candidates = (radii > 0).all(dim=-1)
        if str(scfg.mode) != "density":
            # as SuGaR: sample only around Gaussians on the visible surface of this view
            candidates &= visible_surface_mask(gs["means"].detach(), rotmats.detach(), gs["scales"].detach(),
                                               depth.detach(), viewmat, view.K, alpha.detach())
        out: Dict[str, torch.Tensor] = {}
        if not bool(candidates.any()):
            return out
        m = int(scfg.num_samples_cuda if self.device.type == "cuda" else scfg.num_samples)
        points, gidx = sample_points_around_gaussians(gs["means"], rotmats, gs["scales"], candidates, m,
                                                      generator=self.sugar_generator)
        if str(scfg.mode) == "density":
            out["sugar_density"], _ = sugar_density_loss(points, gidx, self.neighbours, gaussians,
                                                         weight=float(scfg.sdf_weight))
        else:
            factor = OmegaConf.select(scfg, "sdf_density_factor", default=None)
            out["sugar_sdf"], _ = sugar_sdf_loss(points, gidx, self.neighbours, gaussians, depth, alpha, viewmat,
                                                 view.K, self.scene_scale, weight=float(scfg.sdf_weight),
                                                 density_factor=None if factor is None else float(factor),
                                                 estimate=str(OmegaConf.select(scfg, "sdf_estimate", default="depth")))
        out["sugar_normal"], _ = sugar_normal_loss(points, gidx, self.neighbours, gaussians,
                                                   weight=float(scfg.normal_weight))
        return out

    # ----- end of training ---------------------------------------------------------------------
    def on_train_end(self) -> None:
        if self.output_dir is None:
            return
        exports = self.output_dir / "exports"
        exports.mkdir(parents=True, exist_ok=True)
        self.export_gaussians(exports)
        metrics = self.evaluate(write_renders=True)
        metrics["render_backend"] = self.render_backend
        with open(self.output_dir / "metrics.json", "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
        logger.info("test views: PSNR %.2f dB, SSIM %.4f over %d views; Gaussians: %d -> %s",
                    metrics["test"]["psnr"], metrics["test"]["ssim"], metrics["test"]["views"],
                    metrics["num_gaussians"], exports)
        if self.monitor is not None:
            self.monitor.close()

    def export_gaussians(self, folder: Path) -> None:
        """gaussians.ply (INRIA's 3DGS layout), cameras.json, export_info.json (axes, background colour)
        and, for a scene graph, rigid_nodes.ply/.json, in the axes of `export.axes` (models/exports.py)."""
        export_scene(self.gaussian_scene, self.cameras, folder,
                     axes=str(OmegaConf.select(self.cfg, "export.axes", default="viewer")), step=self.step)

    def render_view(self, view, render_mode: str = "RGB+ED"):
        """(rgb clamped to [0, 1], alpha, depth or None) of a view, without gradients."""
        return self.gaussian_scene.render_view(view, render_mode=render_mode)

    def evaluate(self, write_renders: bool = False) -> Dict[str, Any]:
        """PSNR / SSIM on the test views (models.evaluation); with write_renders, their snapshots."""
        def snapshot(i, view, gt, rgb, alpha, depth):
            self.monitor.write_snapshot(f"test_{i:03d}_{view.cam_name}_{view.frame_idx:03d}", gt, rgb, alpha, depth)
        test = evaluate_images(self.gaussian_scene, self.scene, mask_dynamic=bool(self.cfg.loss.mask_dynamic),
                               on_view=snapshot if write_renders and self.monitor is not None else None)
        return {"step": self.step, "num_gaussians": self.num_gaussians, "test": test}

    # ----- state -------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        scene = self.gaussian_scene.state_dict()  # models, background, graph: all that open_run needs
        state.update({
            "models": scene["models"],
            "background": scene["background"],
            "optimizers": {name: {k: opt.state_dict() for k, opt in opts.items()}
                           for name, opts in self.optimizers.items()},
            "bg_optimizer": self.bg_optimizer.state_dict(),
            "means_schedulers": {name: sch.state_dict() for name, sch in self.means_schedulers.items()},
            "strategy": {name: strategy_state_dict(st) for name, st in self.strategy_states.items()},
            "sampler": self.sampler.state_dict(),
            "rng": self.rng.state_dict(),
            "sugar_generator": self.sugar_generator.get_state(),
            "neighbours": None if self.neighbours is None else self.neighbours.cpu(),
            "neighbours_step": self.neighbours_step,
            "graph": scene["graph"],
            "cameras": self.cameras.state_dict(),
        })
        return state

    def load_state_dict(self, state) -> None:
        if not isinstance(state, dict):
            from models.trainers.checkpoint import load_checkpoint
            source = str(state)
            state = load_checkpoint(state, required=("step", "stage", "models", "optimizers", "strategy", "rng"))
        else:
            source = "checkpoint"
        super().load_state_dict(state)
        try:
            self._load_model_state(state)
            if self.inference:
                return
            self._build_optimizers()
            for name, opts in self.optimizers.items():
                for k, opt in opts.items():
                    opt.load_state_dict(state["optimizers"][name][k])
            self.bg_optimizer.load_state_dict(state["bg_optimizer"])
            for name, sch in self.means_schedulers.items():
                sch.load_state_dict(state["means_schedulers"][name])
            self.strategy_states = {name: load_strategy_state(state["strategy"][name], self.device)
                                    for name in self.models}
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ValueError(f"{source}: its model / optimizer state does not fit this config "
                             f"({type(exc).__name__}: {exc}); was it written by a {type(self).__name__} with the "
                             "same model settings?") from exc
        self.sampler.load_state_dict(state["sampler"])
        try:
            self.rng.load_state_dict(state["rng"])
            self.sugar_generator.set_state(state["sugar_generator"])
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise ValueError(f"{source}: its RNG state is damaged ({type(exc).__name__}: {exc}); expected the "
                             "tensors and numbers this trainer writes") from exc
        nbrs = state.get("neighbours")
        self.neighbours = None if nbrs is None else nbrs.to(self.device)
        self.neighbours_step = int(state.get("neighbours_step", -1))

    def _load_model_state(self, state: Dict[str, Any]) -> None:
        """The Gaussians of every model and the background colour (the scene graph's tracks and poses
        come from the dataset, as at the start of the run)."""
        self.gaussian_scene.load_params(state)
