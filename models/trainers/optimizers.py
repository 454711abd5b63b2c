"""The optimizers of a run: one Adam per parameter and model (as gsplat's strategy expects), Adam
for the background colour, the means' exponential learning-rate decay, and one Adam per camera model
(pose refinement, appearance, sky; models.camera_models) with its own decay; one call steps them all."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from models.gaussians.vanilla import create_optimizers


class TrainingOptimizers:
    """`models` keyed by name -> `per_model[name][param]` Adams, `background` Adam, `means_schedulers`."""

    def __init__(self, models: Mapping[str, Any], background: torch.nn.Parameter, lr: Any, scene_scale: float,
                 total_steps: int,
                 cameras: Optional[Mapping[str, Tuple[Sequence[torch.nn.Parameter], float, float]]] = None) -> None:
        lrs = {k: float(lr[k]) for k in ("means", "sh0", "shN", "opacities", "scales", "quats")}
        # only trainable parameters get one: a scene graph's per-Gaussian instance ids (requires_grad=False)
        # are moved along by gsplat's strategy ops without an optimizer
        self.per_model: Dict[str, Dict[str, torch.optim.Optimizer]] = {
            name: create_optimizers({k: p for k, p in m.params.items() if p.requires_grad}, lrs, scene_scale)
            for name, m in models.items()}
        self.background = torch.optim.Adam([background], lr=float(lr.background), eps=1e-15)
        gamma = (float(lr.means_final) / float(lr.means)) ** (1.0 / max(1, total_steps))
        self.means_schedulers = {name: torch.optim.lr_scheduler.ExponentialLR(opts["means"], gamma=gamma)
                                 for name, opts in self.per_model.items()}
        # camera models: name -> (parameters, lr, final lr)
        self.cameras: Dict[str, torch.optim.Optimizer] = {}
        self.camera_schedulers: Dict[str, Any] = {}
        for name, (params, lr0, lr1) in (cameras or {}).items():
            params: List[torch.nn.Parameter] = [p for p in params if p.numel() > 0]
            if not params:   # e.g. the appearance of a one-camera rig: the reference camera alone
                continue
            self.cameras[name] = torch.optim.Adam(params, lr=float(lr0), eps=1e-15)
            g = (float(lr1) / float(lr0)) ** (1.0 / max(1, total_steps))
            self.camera_schedulers[name] = torch.optim.lr_scheduler.ExponentialLR(self.cameras[name], gamma=g)

    def step(self) -> None:
        """Every optimizer's step and zero_grad, then the lr decay."""
        for opts in self.per_model.values():
            for opt in opts.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
        self.background.step()
        self.background.zero_grad(set_to_none=True)
        for opt in self.cameras.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        for scheduler in self.means_schedulers.values():
            scheduler.step()
        for scheduler in self.camera_schedulers.values():
            scheduler.step()

    def camera_state_dict(self) -> Dict[str, Any]:
        return {name: {"adam": opt.state_dict(), "schedule": self.camera_schedulers[name].state_dict()}
                for name, opt in self.cameras.items()}

    def load_camera_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != set(self.cameras):
            raise ValueError(f"camera-model optimizers {sorted(state)}, expected {sorted(self.cameras)} "
                             "(the run's cameras.* settings)")
        for name, opt in self.cameras.items():
            opt.load_state_dict(state[name]["adam"])
            self.camera_schedulers[name].load_state_dict(state[name]["schedule"])
