"""The primary configs load with hydra.compose and from the command line, seed keys at seed paths."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]


def load(name, overrides=()):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def test_seed_keys_at_seed_paths_with_seed_values():
    cfg = load("omnire_sugar")
    assert [dict(s) for s in cfg.optim.stage_schedule] == [
        {"name": "pretrain", "steps": 7000}, {"name": "entropy", "steps": 2000}, {"name": "sugar", "steps": 6000}]
    assert dict(cfg.render.opacity_entropy.table) == {"pretrain": 0.0, "entropy": 0.3, "sugar": 0.1}
    assert dict(cfg.resume_state.stage) == {"stage_index": 0, "offset": 0}
    assert cfg.scene.type == "synthetic"


def test_quick_config_is_the_same_pipeline_ten_times_shorter():
    full, quick = load("omnire_sugar"), load("omnire_sugar_quick")
    assert [s.steps * 10 for s in quick.optim.stage_schedule] == [s.steps for s in full.optim.stage_schedule]
    assert quick.render.opacity_entropy.table == full.render.opacity_entropy.table
    assert quick.trainer == full.trainer == "SingleTrainer"


def test_overrides_compose():
    cfg = load("omnire_sugar", ["optim.stage_schedule.0.steps=500", "render.opacity_entropy.table.entropy=0.2"])
    assert cfg.optim.stage_schedule[0].steps == 500
    assert cfg.render.opacity_entropy.table.entropy == 0.2


def test_command_line_overrides_reach_the_config():
    out = subprocess.run([sys.executable, "tools/train.py", "--config-name", "omnire_sugar",
                          "optim.stage_schedule.0.steps=500", "--cfg", "job"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["optim"]["stage_schedule"][0] == {"name": "pretrain", "steps": 500}


@pytest.mark.parametrize("name", ["omnire_sugar", "omnire_sugar_quick", "omnire_sugar_multi"])
def test_every_primary_config_builds_valid_schedulers(name):
    from models.trainers.base import OpacityEntropyScheduler, StageSchedule
    from omegaconf import OmegaConf
    cfg = load(name)
    sched = StageSchedule(OmegaConf.to_container(cfg.optim.stage_schedule))
    OpacityEntropyScheduler(OmegaConf.to_container(cfg.render.opacity_entropy.table)).check_covers(sched)


def _differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}{k}.")
        return out
    return [] if a == b else [f"{path[:-1]}: {a!r} != {b!r}"]


def test_the_primary_yaml_values_are_the_schema_defaults():
    """One default per key: configs/omnire_sugar.yaml writes out the schema's defaults (plus its scene)."""
    from omegaconf import OmegaConf
    from models.trainers.config_schema import TrainingConfig
    yaml_cfg = OmegaConf.to_container(load("omnire_sugar"))
    schema = OmegaConf.to_container(OmegaConf.structured(TrainingConfig))
    yaml_cfg.pop("scene"), schema.pop("scene")
    assert _differences(yaml_cfg, schema) == []


def test_densify_defaults_are_the_installed_gsplat_defaults_but_grow_grad2d():
    import dataclasses
    from gsplat.strategy import DefaultStrategy
    from models.trainers.config_schema import DensifyConfig
    ours = dataclasses.asdict(DensifyConfig())
    gsplat_defaults = {f.name: f.default for f in dataclasses.fields(DefaultStrategy)}
    assert set(ours) == set(gsplat_defaults) | {"max_gaussians"}
    assert {k: v for k, v in ours.items() if k in gsplat_defaults and v != gsplat_defaults[k]} == {"grow_grad2d": 5e-4}


def test_a_dict_config_is_completed_with_the_defaults_and_typed():
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError
    from models.trainers.config_schema import TrainingConfig, training_config
    cfg = training_config({"sugar": {"knn": "8"}, "optim": {"lr": {"opacities": 1}}})
    assert cfg.sugar.knn == 8 and cfg.optim.lr.opacities == 1.0 and isinstance(cfg.optim.lr.opacities, float)
    assert cfg.densify.refine_every == TrainingConfig().densify.refine_every
    with pytest.raises(ConfigAttributeError):
        cfg.sugar.knn_evry  # noqa: B018  (struct mode: a misspelt key is an error, not None)
    assert OmegaConf.to_container(training_config(cfg)) == OmegaConf.to_container(cfg)


def test_hydra_refuses_an_unknown_key_while_composing():
    from hydra.errors import ConfigCompositionException
    with pytest.raises(ConfigCompositionException, match="sugar.knn_evry"):
        load("omnire_sugar", ["sugar.knn_evry=3"])


def test_real_data_turns_the_camera_models_on_and_the_synthetic_street_leaves_them_off():
    """scene=processed sets the cameras section (configs/scene/processed.yaml, package _global_): pose
    refinement and appearance on (the sky model stays off); the synthetic street keeps the schema's
    (all off); either can be overridden from the command line."""
    for name in ("omnire_sugar", "omnire_sugar_quick", "omnire_sugar_multi"):
        synthetic = load(name).cameras
        assert (synthetic.pose.enabled, synthetic.appearance.enabled, synthetic.sky.model) == (False, False, "background")
        real = load(name, ["scene=processed", "scene.path=/data/x"])
        assert (real.cameras.pose.enabled, real.cameras.appearance.enabled, real.cameras.sky.model) == (True, True, "background")
        assert real.scene.path == "/data/x" and real.scene.type == "processed"
    off = load("omnire_sugar", ["scene=processed", "scene.path=/data/x", "cameras.pose.enabled=false"]).cameras
    assert not off.pose.enabled and off.appearance.enabled


def test_real_data_trains_with_lidar_depth_and_the_synthetic_street_without():
    """scene=processed sets drivestudio's LiDAR depth weight (0.01); the synthetic street keeps the
    schema's 0; either can be overridden from the command line."""
    for name in ("omnire_sugar", "omnire_sugar_quick", "omnire_sugar_multi"):
        assert load(name).loss.lidar_depth == 0.0
        assert load(name, ["scene=processed", "scene.path=/data/x"]).loss.lidar_depth == 0.01
        assert load(name, ["scene=processed", "scene.path=/data/x", "loss.lidar_depth=0"]).loss.lidar_depth == 0.0
        assert load(name, ["loss.lidar_depth=0.01"]).loss.lidar_depth == 0.01


def test_each_scene_option_keeps_its_own_loader_settings():
    """A scene option's own values reach the composed run: the primary configs set no scene keys
    over them (the default street's 15,000 initial Gaussians, real data's 50,000, the large preset's
    200,000 and its 960x640 x 200 frames)."""
    for name in ("omnire_sugar", "omnire_sugar_quick", "omnire_sugar_multi"):
        assert load(name).scene.max_init_points == 15000
        assert load(name, ["scene=processed", "scene.path=/data/x"]).scene.max_init_points == 50000
        large = load(name, ["scene=synthetic_large"]).scene
        assert (large.max_init_points, large.width, large.height, large.num_frames) == (200000, 960, 640, 200)
        assert large.type == "synthetic" and list(large.cameras) == [0, 1, 2]
