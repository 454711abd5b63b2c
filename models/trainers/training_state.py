"""What a SingleTrainer's checkpoint holds beyond the stage position (BasicTrainer.state_dict):
the scene (models, background, graph, the deformable nodes' deformation field), the optimizers and lr schedules, each model's strategy
state, the sampler, the RNG streams, the SuGaR neighbourhoods, the saved cameras and, where the run
has them, the camera models (sky, appearance, pose refinement) and their optimizers. The keys are
checkpoint format 3's; everything that decides the future of the run is here, so resume is exact."""
from __future__ import annotations

import copy
from typing import Any, Dict


def training_state(trainer: Any) -> Dict[str, Any]:
    """The trainer's part of its checkpoint (added to BasicTrainer.state_dict's)."""
    scene = trainer.gaussian_scene.state_dict()  # models, background, graph: all that open_run needs
    state = {
        "models": scene["models"],
        "background": scene["background"],
        "optimizers": {name: {k: opt.state_dict() for k, opt in opts.items()}
                       for name, opts in trainer.optimizers.items()},
        "bg_optimizer": trainer.bg_optimizer.state_dict(),
        "means_schedulers": {name: sch.state_dict() for name, sch in trainer.means_schedulers.items()},
        "strategy": {name: s.state_dict() for name, s in trainer.strategies.items()},
        "sampler": trainer.sampler.state_dict(),
        "rng": trainer.rng.state_dict(),
    }
    sugar = trainer.sugar.state_dict()
    state["sugar_generator"] = sugar["sugar_generator"]
    state["neighbours"], state["neighbours_step"] = sugar["neighbours"], sugar["neighbours_step"]
    state["graph"] = scene["graph"]
    if scene["deformation"]:   # the deformable nodes' field (its Adam is among camera_optimizers)
        state["deformation"] = scene["deformation"]
    if scene["smpl"] is not None:   # SMPL nodes: pose table, residual, betas, the body model's arrays
        state["smpl"] = scene["smpl"]
    state["cameras"] = trainer.cameras.state_dict()
    # the camera models (config section cameras), only where the run has them
    for name in ("sky", "appearance"):
        if scene[name] is not None:
            state[name] = scene[name]
    if trainer.pose_refinement is not None:
        state["pose_refinement"] = trainer.pose_refinement.state()
    if trainer.optim.cameras:
        state["camera_optimizers"] = trainer.optim.camera_state_dict()
    return state


def split_pose_optimizer(camera_optimizers: Dict[str, Any]) -> Dict[str, Any]:
    """A checkpoint's camera-model optimizers with pose refinement's one Adam over [slots, 6] corrections
    (checkpoints written before the rotations had their own rate) as the two the trainer now keeps:
    "pose_rotation" over the first three columns and "pose" over the last three, each with the saved
    moments, step, learning rate and decay, so the resumed run continues as it was training."""
    saved = camera_optimizers.get("pose")
    if saved is None or "pose_rotation" in camera_optimizers:
        return camera_optimizers
    if any(tuple(v["exp_avg"].shape[1:]) != (6,) for v in saved["adam"]["state"].values()):
        return camera_optimizers   # not the one-Adam form: the loader reports what does not fit

    def part(columns: slice) -> Dict[str, Any]:
        adam = copy.deepcopy(saved["adam"])
        for slot in adam["state"].values():
            for name in ("exp_avg", "exp_avg_sq"):
                slot[name] = slot[name][:, columns].clone()
        return {"adam": adam, "schedule": copy.deepcopy(saved["schedule"])}

    return {**camera_optimizers, "pose": part(slice(3, 6)), "pose_rotation": part(slice(0, 3))}


def load_training_state(trainer: Any, state: Dict[str, Any], source: str) -> None:
    """The inverse of `training_state` (the stage position is BasicTrainer's); an inference trainer
    takes the scene's parameters only. Bad state raises one ValueError naming `source`."""
    try:
        trainer.gaussian_scene.load_params(state)
        if trainer.inference:
            return
        trainer._build_optimizers()
        for name, opts in trainer.optimizers.items():
            for k, opt in opts.items():
                opt.load_state_dict(state["optimizers"][name][k])
        trainer.bg_optimizer.load_state_dict(state["bg_optimizer"])
        for name, sch in trainer.means_schedulers.items():
            sch.load_state_dict(state["means_schedulers"][name])
        for name, strategy in trainer.strategies.items():
            strategy.load_state_dict(state["strategy"][name], trainer.device)
        saved_pose = state.get("pose_refinement")
        if (saved_pose is None) != (trainer.pose_refinement is None):
            raise ValueError(f"the checkpoint {'has' if saved_pose is not None else 'has no'} pose refinement "
                             "(cameras.pose.enabled must be the same as the run's)")
        if saved_pose is not None:
            trainer.pose_refinement.load(saved_pose)
        trainer.optim.load_camera_state_dict(split_pose_optimizer(state.get("camera_optimizers", {})))
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{source}: its model / optimizer state does not fit this config "
                         f"({type(exc).__name__}: {exc}); was it written by a {type(trainer).__name__} with the "
                         "same model settings?") from exc
    trainer.sampler.load_state_dict(state["sampler"])
    try:
        trainer.rng.load_state_dict(state["rng"])
        trainer.sugar.load_generator(state)
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{source}: its RNG state is damaged ({type(exc).__name__}: {exc}); expected the "
                         "tensors and numbers this trainer writes") from exc
    trainer.sugar.load_neighbours(state)
