"""The training config's schema: every key, its type, its one default and the values it accepts.

The dataclasses below are Hydra structured configs. They are registered in Hydra's ConfigStore as
``omnire_training_schema`` (by ``hydra_plugins/omnire_sugar_config``, which Hydra imports whenever it
composes), and the primary YAML files (configs/omnire_sugar*.yaml) name it first in their defaults,
so Hydra composes the YAML over it: a key that is not in the schema, or a value of the wrong type,
is refused while the command line is read. The YAML files keep the seed's keys at the seed's paths
with the values this schema defaults to (tests/test_configs.py compares them).

``training_config(cfg)`` is the one validation, run before anything is built or written (by
``configure_process`` in an entry point and by every trainer's constructor): it takes a composed
config, a plain dict or a run's saved config, merges it over the schema and raises one ValueError
that lists every bad value (key, value, expectation), then checks what spans keys: the stage
schedule, the entropy table, the saved stage position, stage features and the scene's keys.

A field's accepted values are its metadata ``check``: ``(predicate, expectation)``.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

SCHEMA_NAME = "omnire_training_schema"

Check = Tuple[Callable[[Any], bool], str]


def _int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def int_at_least(lo: int) -> Check:
    return (lambda v: _int(v) and v >= lo), f"an integer >= {lo}"


def real_between(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Check:
    def ok(v: Any) -> bool:
        return _real(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    return ok, f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def one_of(*words: str) -> Check:
    return (lambda v: v in words), ", ".join(words[:-1]) + " or " + words[-1]


POSITIVE: Check = ((lambda v: _real(v) and v > 0), "a finite number > 0")
NON_NEGATIVE: Check = ((lambda v: _real(v) and v >= 0), "a finite number >= 0")
BOOL: Check = ((lambda v: isinstance(v, bool)), "true or false")
TEXT: Check = ((lambda v: isinstance(v, str)), "a string")


def _backends() -> Check:
    from models.rendering.rasterize import BACKENDS   # torch: imported when a config is checked, not composed
    return one_of(*BACKENDS)


def _sdf_estimates() -> Check:
    from models.sugar.regularizers import SDF_ESTIMATES
    return (lambda v: v in SDF_ESTIMATES), " or ".join(repr(e) for e in SDF_ESTIMATES)


def key(default: Any, check: Any = None, *, factory: Optional[Callable[[], Any]] = None):
    """A schema field: its default and its check (a Check, or a function returning one)."""
    meta = {"check": check} if check is not None else {}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class LrConfig:
    """Adam learning rates (eps 1e-15); means are scaled by the scene radius and decay exponentially."""
    means: float = key(1.6e-4, POSITIVE)
    means_final: float = key(1.6e-6, POSITIVE)
    sh0: float = key(2.5e-3, POSITIVE)
    shN: float = key(1.25e-4, POSITIVE)
    opacities: float = key(5.0e-2, POSITIVE)
    scales: float = key(5.0e-3, POSITIVE)
    quats: float = key(1.0e-3, POSITIVE)
    background: float = key(1.0e-2, NON_NEGATIVE)


def _seed_schedule() -> List[Any]:
    return [{"name": "pretrain", "steps": 7000}, {"name": "entropy", "steps": 2000},
            {"name": "sugar", "steps": 6000}]


@dataclass
class OptimConfig:
    # [{name, steps, features (or hooks): {feature: bool}}]: checked as a whole by StageSchedule
    stage_schedule: List[Any] = key(None, factory=_seed_schedule)
    lr: LrConfig = key(None, factory=LrConfig)


@dataclass
class RigidConfig:
    """MultiTrainer's rigid nodes (a SingleTrainer reads none of these)."""
    classes: Optional[List[str]] = None        # null: the scene's class map decides
    max_points_per_instance: int = key(5000, int_at_least(1))
    box_margin: float = key(0.1, NON_NEGATIVE)
    drop_ground: bool = key(True, BOOL)


@dataclass
class DeformableConfig:
    """MultiTrainer's deformable nodes (models.gaussians.deformable): pedestrians and cyclists (tracks
    whose node type is DeformableNodes or SMPLNodes); a SingleTrainer reads none of these."""
    enabled: bool = key(True, BOOL)                      # false: no node; their pixels are left out of the loss
    field: str = key("mlp", one_of("mlp", "planes"))     # the deformation network: an MLP, or feature planes
    width: int = key(64, int_at_least(1))                # the deformation MLP's hidden width ...
    depth: int = key(2, int_at_least(1))                 # ... and its number of hidden layers
    embed_dim: int = key(8, int_at_least(1))             # learned numbers per instance fed to the MLP
    frequencies: int = key(4, int_at_least(0))           # positional encoding of the canonical mean
    time_frequencies: int = key(4, int_at_least(0))      # ... and of the frame's normalised time
    plane_resolution: int = key(16, int_at_least(2))     # field=planes: texels per plane side ...
    plane_channels: int = key(8, int_at_least(1))        # ... features per texel ...
    plane_bound: float = key(1.5, POSITIVE)              # ... and the metres from the box centre the planes span
    lr: float = key(1.0e-3, POSITIVE)                    # the MLP's own Adam, decayed exponentially ...
    lr_final: float = key(1.0e-4, POSITIVE)              # ... to this at the last step
    max_points_per_instance: int = key(2000, int_at_least(1))   # LiDAR points over all frames (seeded subsample)
    min_points_per_instance: int = key(50, int_at_least(1))     # fewer: topped up with random points in the box
    box_margin: float = key(0.1, NON_NEGATIVE)
    drop_ground: bool = key(True, BOOL)


OPTIONAL_PATH: Check = ((lambda v: v is None or (isinstance(v, str) and v.strip() != "")),
                        "null or a path to a body-model file (.pkl / .npz in SMPL's layout)")


@dataclass
class SMPLConfig:
    """MultiTrainer's SMPL nodes (models.gaussians.smpl_nodes): pedestrians with per-frame SMPL
    parameters in the scene's humanpose/smpl.pkl, posed by a body model the user supplies (licensed,
    never shipped). null: every pedestrian is a deformable node. A body model given to a scene without
    humanpose/smpl.pkl: a warning, and its pedestrians are deformable nodes. The run's checkpoints hold
    the body model's arrays (open_run needs no file), so they are as licensed as the model."""
    body_model: Optional[str] = key(None, OPTIONAL_PATH)
    gaussians_per_instance: int = key(2000, int_at_least(1))   # on each body's rest surface, by area
    refine_pose: bool = key(True, BOOL)                 # a learned per-frame joint-rotation residual ...
    pose_lr: float = key(1.0e-3, POSITIVE)              # ... with its own Adam, decayed exponentially ...
    pose_lr_final: float = key(1.0e-4, POSITIVE)        # ... to this at the last step


@dataclass
class ModelConfig:
    sh_degree: int = key(3, ((lambda v: _int(v) and 0 <= v <= 3), "an integer in [0, 3]"))
    sh_degree_interval: int = key(1000, int_at_least(1))
    init_opacity: float = key(0.1, real_between(0.0, 1.0, lo_open=True, hi_open=True))
    learn_background: bool = key(True, BOOL)
    rigid: RigidConfig = key(None, factory=RigidConfig)
    deformable: DeformableConfig = key(None, factory=DeformableConfig)
    smpl: SMPLConfig = key(None, factory=SMPLConfig)


@dataclass
class DensifyConfig:
    """gsplat.strategy.DefaultStrategy's fields (models.gaussians.densify) and a budget. The values
    are gsplat 1.5.3's defaults except grow_grad2d (drivestudio's 5e-4; gsplat's 2e-4 grew the
    default street to 114k Gaussians); tests/test_configs.py compares them with the installed gsplat."""
    refine_start_iter: int = key(500, int_at_least(0))
    refine_stop_iter: int = key(15000, int_at_least(0))
    refine_every: int = key(100, int_at_least(1))
    reset_every: int = key(3000, int_at_least(1))
    grow_grad2d: float = key(5.0e-4, POSITIVE)
    grow_scale3d: float = key(0.01, POSITIVE)
    grow_scale2d: float = key(0.05, POSITIVE)
    prune_opa: float = key(0.005, real_between(0.0, 1.0, hi_open=True))
    prune_scale3d: float = key(0.1, POSITIVE)
    prune_scale2d: float = key(0.15, POSITIVE)
    refine_scale2d_stop_iter: int = key(0, int_at_least(0))
    pause_refine_after_reset: int = key(0, int_at_least(0))
    absgrad: bool = key(False, BOOL)
    revised_opacity: bool = key(False, BOOL)
    verbose: bool = key(False, BOOL)
    key_for_gradient: str = key("means2d", one_of("means2d", "gradient_2dgs"))
    max_gaussians: int = key(3_000_000, int_at_least(0))


@dataclass
class LossConfig:
    ssim_lambda: float = key(0.2, real_between(0.0, 1.0))
    sky_opacity: float = key(0.05, NON_NEGATIVE)
    lidar_depth: float = key(0.0, NON_NEGATIVE)
    mask_dynamic: bool = key(True, BOOL)


def _seed_entropy_table() -> Dict[str, float]:
    return {"pretrain": 0.0, "entropy": 0.3, "sugar": 0.1}


@dataclass
class OpacityEntropyConfig:
    # stage name -> weight: checked against the schedule by OpacityEntropyScheduler
    table: Dict[str, float] = key(None, factory=_seed_entropy_table)


@dataclass
class RenderConfig:
    near_plane: float = key(0.01, POSITIVE)
    far_plane: float = key(1.0e10, POSITIVE)
    backend: str = key("auto", _backends)
    opacity_entropy: OpacityEntropyConfig = key(None, factory=OpacityEntropyConfig)


@dataclass
class SugarConfig:
    prune_opacity: float = key(0.5, real_between(0.0, 1.0, hi_open=True))
    prune_keep_fraction: float = key(0.1, real_between(0.0, 1.0))
    prune_keep_min: int = key(32, int_at_least(0))
    mode: str = key("sdf", one_of("sdf", "density"))
    sdf_weight: float = key(0.1, NON_NEGATIVE)
    sdf_density_factor: Optional[float] = key(
        None, ((lambda v: v is None or (_real(v) and v > 0)), "null or a finite number > 0"))
    sdf_estimate: str = key("depth", _sdf_estimates)
    normal_weight: float = key(0.2, NON_NEGATIVE)
    # the surface_losses feature: rendered normals against the normals of the unbiased depth
    depth_normal_weight: float = key(0.0, NON_NEGATIVE)
    depth_normal_edge_aware: bool = key(False, BOOL)   # weigh it down on image edges (PGSR)
    flatten_weight: float = key(0.0, NON_NEGATIVE)      # PGSR's smallest-scale term, in surface_losses stages
    # the depth SuGaR's SDF term reads: auto (lidar when loss.lidar_depth > 0, else expected) |
    # expected (accumulated z / alpha) | unbiased (the plane depth) | lidar (the LiDAR return's camera z
    # where the pixel has one, the expected depth elsewhere) | lidar_only (SDF samples only on those pixels)
    sdf_depth: str = key("auto", one_of("auto", "expected", "unbiased", "lidar", "lidar_only"))
    knn: int = key(16, int_at_least(1))
    knn_every: int = key(500, int_at_least(1))
    num_samples: int = key(5000, int_at_least(1))
    num_samples_cuda: int = key(200000, int_at_least(1))


@dataclass
class PoseRefinementConfig:
    """SE(3) corrections of the training cameras (models.camera_models.PoseRefinement), learned in
    the stages whose refine_poses feature is on."""
    enabled: bool = key(False, BOOL)
    per: str = key("frame", one_of("frame", "image"))   # frame: the rig moves as one; image: each view alone
    lr: float = key(3.0e-3, POSITIVE)                   # Adam on the translations (metres), decayed
    lr_final: float = key(1.0e-4, POSITIVE)             # exponentially to this at the last step
    # ... and on the rotations (radians): a tenth, or the rotations jitter by a step's 0.17 degrees and
    # stay 0.26 degrees off at 1,500 steps (docs/results.md, "Real cameras", "The rotations' own rate")
    rotation_lr: float = key(3.0e-4, POSITIVE)
    rotation_lr_final: float = key(1.0e-5, POSITIVE)
    # evaluation: Adam steps on each test view's pose against its image (Gaussians frozen), from the
    # nearest training frame's correction; 0: the test views' poses as the dataset gives them
    test_alignment_steps: int = key(0, int_at_least(0))
    test_alignment_lr: float = key(2.0e-3, POSITIVE)


@dataclass
class AppearanceConfig:
    """A colour transform per camera (models.camera_models.AffineAppearance), the first camera the reference."""
    enabled: bool = key(False, BOOL)
    per: str = key("camera", one_of("camera", "camera+image"))   # camera+image: plus a gain / offset per image
    lr: float = key(1.0e-3, POSITIVE)


@dataclass
class SkyConfig:
    """What is behind the Gaussians: the learned flat colour, or a cube map over view direction."""
    model: str = key("background", one_of("background", "envmap"))
    resolution: int = key(64, int_at_least(1))          # cube-map texels per face side
    lr: float = key(1.0e-2, POSITIVE)


@dataclass
class CamerasConfig:
    pose: PoseRefinementConfig = key(None, factory=PoseRefinementConfig)
    appearance: AppearanceConfig = key(None, factory=AppearanceConfig)
    sky: SkyConfig = key(None, factory=SkyConfig)


@dataclass
class ExportConfig:
    axes: str = key("viewer", one_of("viewer", "world"))


@dataclass
class CheckpointConfig:
    every: int = key(1000, int_at_least(0))
    keep: int = key(3, int_at_least(0))


@dataclass
class LogConfig:
    tensorboard: bool = key(True, BOOL)
    progress: bool = key(True, BOOL)
    progress_every: int = key(100, int_at_least(0))
    progress_seconds: float = key(30.0, NON_NEGATIVE)
    snapshot_every: int = key(1000, int_at_least(0))
    scalars_every: int = key(10, int_at_least(1))


@dataclass
class StagePositionConfig:
    stage_index: int = 0
    offset: int = 0


@dataclass
class ResumeStateConfig:
    stage: StagePositionConfig = key(None, factory=StagePositionConfig)


@dataclass
class TrainingConfig:
    # the `scene` group (configs/scene/): typed and checked by scenes.config (SyntheticParams, LoadOptions)
    scene: Dict[str, Any] = key(None, factory=dict)
    trainer: str = key("SingleTrainer", TEXT)
    output_dir: str = key("outputs/omnire_sugar", TEXT)
    # false | true (latest checkpoint in output_dir) | auto (latest if any) | PATH; null: false for
    # one run, auto for each job of a --multirun
    resume: Any = key(None, ((lambda v: v is None or isinstance(v, (bool, str))),
                             "null, true, false, auto or a checkpoint path"))
    stop_after: Optional[int] = key(
        None, ((lambda v: v is None or (_int(v) and v >= 0)), "null or an integer >= 0 (a global step)"))
    seed: int = key(0, int_at_least(0))
    device: str = key("auto", ((lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None),
                               "auto, cpu, cuda or cuda:N"))
    num_threads: Optional[int] = key(
        2, ((lambda v: v is None or (_int(v) and v >= 1)), "an integer >= 1 (or null: torch's default)"))
    optim: OptimConfig = key(None, factory=OptimConfig)
    model: ModelConfig = key(None, factory=ModelConfig)
    densify: DensifyConfig = key(None, factory=DensifyConfig)
    loss: LossConfig = key(None, factory=LossConfig)
    render: RenderConfig = key(None, factory=RenderConfig)
    sugar: SugarConfig = key(None, factory=SugarConfig)
    cameras: CamerasConfig = key(None, factory=CamerasConfig)
    export: ExportConfig = key(None, factory=ExportConfig)
    viewer: bool = key(False, BOOL)
    viewer_port: int = key(8080, ((lambda v: _int(v) and 0 < v < 65536), "a port number in [1, 65535]"))
    checkpoint: CheckpointConfig = key(None, factory=CheckpointConfig)
    log: LogConfig = key(None, factory=LogConfig)
    # where a resumed run starts (BasicTrainer); the seed's key, overwritten by a checkpoint
    resume_state: ResumeStateConfig = key(None, factory=ResumeStateConfig)


def register_schema() -> None:
    """Store the schema in Hydra's ConfigStore (the primary configs name it in their defaults)."""
    from hydra.core.config_store import ConfigStore
    ConfigStore.instance().store(name=SCHEMA_NAME, node=TrainingConfig)


# ----- validation --------------------------------------------------------------------------------

def _expectation(node_type: Any, name: str) -> str:
    for f in fields(node_type):
        if f.name == name:
            check = f.metadata.get("check")
            if callable(check) and not isinstance(check, tuple):
                check = check()
            if check is not None:
                return check[1]
            return f"a value of type {getattr(f.type, '__name__', f.type)}"
    return "a known key"


def _merge_into(node: DictConfig, given: Any, path: str, problems: List[str]) -> None:
    """Assign `given`'s values into the schema node, key by key, collecting every problem."""
    node_type = OmegaConf.get_type(node)
    known = list(node.keys())
    for name, value in given.items():
        full = f"{path}{name}"
        if name not in known:
            problems.append(f"{full}: not a config key (expected one of {', '.join(map(str, known))})")
            continue
        child = node._get_node(name)
        if isinstance(child, DictConfig) and is_dataclass(OmegaConf.get_type(child)) and isinstance(value, (dict, DictConfig)):
            _merge_into(child, value, f"{full}.", problems)
            continue
        try:
            node[name] = value   # a mapping replaces a mapping-valued key (a stage table lists every stage)
        except OmegaConfBaseException:
            shown = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
            problems.append(f"{full}={shown!r} (expected {_expectation(node_type, name)})")


def _check_values(node: DictConfig, path: str, problems: List[str]) -> None:
    for f in fields(OmegaConf.get_type(node)):
        value = node[f.name]
        if isinstance(value, DictConfig) and is_dataclass(OmegaConf.get_type(value)):
            _check_values(value, f"{path}{f.name}.", problems)
            continue
        check = f.metadata.get("check")
        if check is None:
            continue
        ok, expected = check() if not isinstance(check, tuple) else check
        if not ok(value):
            problems.append(f"{path}{f.name}={value!r} (expected {expected})")


def training_config(cfg: Any) -> DictConfig:
    """`cfg` (a composed config, a dict, a saved run's config) merged over the schema and checked:
    a typed DictConfig in struct mode, or one ValueError listing every bad value."""
    given = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg if cfg is not None else {})
    if "hydra" in given:   # a YAML file read as it is: Hydra's own section, with Hydra's resolvers
        given = OmegaConf.masked_copy(given, [k for k in given.keys() if k != "hydra"])
    given = OmegaConf.to_container(given, resolve=True)
    schema = OmegaConf.structured(TrainingConfig)
    problems: List[str] = []
    _merge_into(schema, given, "", problems)
    if not problems:
        _check_values(schema, "", problems)
        near, far = schema.render.near_plane, schema.render.far_plane
        if _real(near) and _real(far) and far <= near:
            problems.append(f"render.far_plane={far!r} (expected more than render.near_plane={near!r})")
    if problems:
        raise ValueError("bad config value" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems))
    _check_scene(schema.scene)
    OmegaConf.set_struct(schema, True)
    return schema


def check_stage_features(schedule: Any) -> None:
    """Features that need another in the same stage (StageSchedule checks the names themselves)."""
    for spec in schedule.stages:
        features = spec.features
        if features["sugar_losses"] and not features["render_depth"]:
            raise ValueError(f"optim.stage_schedule: stage {spec.name!r} turns on sugar_losses, which need the "
                             "rendered depth: set its render_depth feature too")


def _check_scene(scene: Any) -> None:
    from scenes.config import check_scene_config
    check_scene_config(scene)


__all__ = ["TrainingConfig", "SCHEMA_NAME", "register_schema", "training_config", "check_stage_features"]
