"""Bad inputs of docs/bad_inputs.md that no other test covers: config values, resume targets and
checkpoints, each one clear error before step 0, with an earlier run's files left as they were.
(The catalogue lists, for every case, the test that checks it.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.trainers.checkpoint import list_checkpoints
from models.trainers.single import SingleTrainer
from tests.trainers.tiny_run import TINY_SCENE, TINY_TRAINING, tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """A run with a checkpoint and its config.yaml: what a bad command must not damage."""
    root = tmp_path_factory.mktemp("bad_inputs")
    out = root / "run"
    cfg = tiny_config(root / "scene", out)
    trainer = SingleTrainer(cfg, output_dir=out)
    trainer.train(num_steps=2)
    trainer.save_checkpoint()
    return root, out


def snapshot(folder: Path):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and "tensorboard" not in p.parts and "trace" not in p.parts}


CONFIG_CASES = [
    ("seed=-1", "seed=-1 (expected an integer >= 0)"),
    ("device=tpu", "device='tpu' (expected auto, cpu, cuda or cuda:N)"),
    ("num_threads=0", "num_threads=0 (expected an integer >= 1"),
    ("stop_after=-5", "stop_after=-5 (expected null or an integer >= 0"),
    ("optim.lr.means=-0.001", "optim.lr.means=-0.001 (expected a finite number > 0)"),
    ("optim.lr.opacities=0", "optim.lr.opacities=0.0 (expected a finite number > 0)"),   # typed: a float
    ("optim.lr.background=-1", "optim.lr.background=-1.0 (expected a finite number >= 0)"),
    ("model.sh_degree=4", "model.sh_degree=4 (expected an integer in [0, 3])"),
    ("model.sh_degree_interval=0", "model.sh_degree_interval=0 (expected an integer >= 1)"),
    ("model.init_opacity=1.0", "model.init_opacity=1.0 (expected a number in (0, 1))"),
    ("loss.ssim_lambda=1.5", "loss.ssim_lambda=1.5 (expected a number in [0, 1])"),
    ("loss.sky_opacity=-0.05", "loss.sky_opacity=-0.05 (expected a finite number >= 0)"),
    ("render.far_plane=0.001", "render.far_plane=0.001 (expected more than render.near_plane=0.01)"),
    ("sugar.mode=sdff", "sugar.mode='sdff' (expected sdf or density)"),
    ("sugar.prune_opacity=1.0", "sugar.prune_opacity=1.0 (expected a number in [0, 1))"),
    ("sugar.knn=0", "sugar.knn=0 (expected an integer >= 1)"),
    ("sugar.sdf_density_factor=0", "sugar.sdf_density_factor=0.0 (expected null or a finite number > 0)"),
    ("densify.refine_every=0", "densify.refine_every=0 (expected an integer >= 1)"),
    ("densify.prune_opa=1.0", "densify.prune_opa=1.0 (expected a number in [0, 1))"),
    ("densify.grow_grad2d=-0.0002", "densify.grow_grad2d=-0.0002 (expected a finite number > 0)"),
    ("render.backend=cuda", "render.backend='cuda' (expected auto, cpp, torch or gsplat)"),
    ("sugar.sdf_estimate=ray", "sugar.sdf_estimate='ray' (expected 'depth' or 'normal')"),
    ("sugar.num_samples=0", "sugar.num_samples=0 (expected an integer >= 1)"),
    ("checkpoint.every=-100", "checkpoint.every=-100 (expected an integer >= 0)"),
    ("log.progress_every=-1", "log.progress_every=-1 (expected an integer >= 0)"),
    ("model.deformable.width=0", "model.deformable.width=0 (expected an integer >= 1)"),
    ("model.deformable.lr=0", "model.deformable.lr=0.0 (expected a finite number > 0)"),
    ("model.deformable.field=kplanes", "model.deformable.field='kplanes' (expected mlp or planes)"),
    ("model.deformable.frequencies=-1", "model.deformable.frequencies=-1 (expected an integer >= 0)"),
    ("model.deformable.min_points_per_instance=0", "model.deformable.min_points_per_instance=0 (expected an integer >= 1)"),
    ("model.smpl.gaussians_per_instance=0", "model.smpl.gaussians_per_instance=0 (expected an integer >= 1)"),
    ("model.smpl.pose_lr=0", "model.smpl.pose_lr=0.0 (expected a finite number > 0)"),
    ("trainer=Trainer", "trainer='Trainer' is not a trainer; expected one of SingleTrainer, MultiTrainer"),
    ("resume_state.stage.offset=99999", "resume_state.stage: stage state: offset 99999 is out of range"),
]


@pytest.mark.parametrize("override, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value_is_one_error_before_step_0(earlier_run, override, message):
    from models.trainers import build_trainer
    root, out = earlier_run
    before = snapshot(out)
    cfg = tiny_config(root / "scene", out, override, "resume=true")
    with pytest.raises((ValueError, KeyError)) as err:
        build_trainer(cfg)
    assert message in str(err.value)
    assert snapshot(out) == before


# values of the wrong type: Hydra refuses them while it composes over the schema
# (models/trainers/config_schema.py); the same values in a config given as a dict get the schema's error
TYPE_CASES = [
    ("loss.mask_dynamic", "maybe", "loss.mask_dynamic='maybe' (expected true or false)"),
    ("checkpoint.keep", 1.5, "checkpoint.keep=1.5 (expected an integer >= 0)"),
    ("optim.lr.means", "fast", "optim.lr.means='fast' (expected a finite number > 0)"),
]


@pytest.mark.parametrize("key, value, message", TYPE_CASES, ids=[c[0] for c in TYPE_CASES])
def test_value_of_the_wrong_type_is_one_error_before_step_0(earlier_run, key, value, message):
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf
    from models.trainers import build_trainer
    root, out = earlier_run
    before = snapshot(out)
    with pytest.raises(ConfigCompositionException) as err:
        tiny_config(root / "scene", out, f"{key}={value}", "resume=true")
    chain = f"{err.value} {err.value.__cause__}"
    assert f"{key}={value}" in chain and f"full_key: {key}" in chain, chain
    cfg = OmegaConf.to_container(tiny_config(root / "scene", out, "resume=true"))
    section, name = key.rsplit(".", 1)
    node = cfg
    for part in section.split("."):
        node = node[part]
    node[name] = value
    with pytest.raises(ValueError) as err:
        build_trainer(cfg)
    assert message in str(err.value)
    assert snapshot(out) == before


def test_unknown_key_is_refused_with_the_keys_it_could_be(earlier_run):
    from omegaconf import OmegaConf
    root, out = earlier_run
    cfg = OmegaConf.to_container(tiny_config(root / "scene", out))
    cfg["sugar"]["knn_evry"] = 10
    cfg["loss"]["ssim"] = 0.1
    with pytest.raises(ValueError, match=r"bad config values: ") as err:
        SingleTrainer(cfg, output_dir=out)
    assert "sugar.knn_evry: not a config key (expected one of prune_opacity, " in str(err.value)
    assert "knn_every" in str(err.value) and "loss.ssim: not a config key (expected one of ssim_lambda" in str(err.value)


def test_several_bad_values_are_listed_in_one_error(earlier_run):
    root, out = earlier_run
    cfg = tiny_config(root / "scene", out, "sugar.knn=0", "checkpoint.keep=-1")
    with pytest.raises(ValueError, match=r"bad config values: sugar.knn=0 .*; checkpoint.keep=-1 "):
        SingleTrainer(cfg, output_dir=out)


def test_resume_into_a_folder_without_checkpoints(earlier_run, tmp_path):
    root, _ = earlier_run
    (tmp_path / "empty").mkdir()
    cfg = tiny_config(root / "scene", tmp_path / "new")
    with pytest.raises(ValueError, match="resume=.*empty: the folder holds no checkpoint"):
        SingleTrainer(cfg, output_dir=tmp_path / "new", resume=str(tmp_path / "empty"))


def test_resume_with_another_model_config_leaves_the_run_intact(earlier_run):
    root, out = earlier_run
    before = snapshot(out)
    cfg = tiny_config(root / "scene", out, "model.sh_degree=2")
    with pytest.raises(ValueError, match="does not fit this config"):
        SingleTrainer(cfg, output_dir=out, resume=True)
    assert snapshot(out) == before  # config.yaml is written only once the checkpoint is accepted


def test_checkpoint_of_another_scene(earlier_run, tmp_path):
    root, out = earlier_run
    cfg = tiny_config(tmp_path / "other_scene", tmp_path / "x", "scene.num_frames=6")
    with pytest.raises(ValueError, match="covers .* training images, the scene has"):
        SingleTrainer(cfg, output_dir=None, resume=str(list_checkpoints(out / "checkpoints")[-1]))


def test_checkpoint_that_is_not_a_dict(tmp_path, earlier_run):
    root, _ = earlier_run
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list, expected a trainer state dict"):
        SingleTrainer(tiny_config(root / "scene", tmp_path / "x"), output_dir=None, resume=str(tmp_path / "list.pt"))


def test_empty_checkpoint_file(tmp_path, earlier_run):
    root, _ = earlier_run
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt could not be read"):
        SingleTrainer(tiny_config(root / "scene", tmp_path / "x"), output_dir=None, resume=str(tmp_path / "empty.pt"))


def test_train_command_reports_one_error_line(earlier_run, tmp_path):
    root, _ = earlier_run
    cmd = [sys.executable, "tools/train.py", "--config-name", "omnire_sugar_quick", f"output_dir={tmp_path / 'r'}",
           f"scene.path={root / 'scene'}", *TINY_SCENE, *TINY_TRAINING, "sugar.mode=sdff"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert err == ["error: bad config value: sugar.mode='sdff' (expected sdf or density)"], res.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


@pytest.mark.parametrize("where", ["file", "inside_file"])
def test_train_command_refuses_an_output_dir_that_is_a_file(tmp_path, where):
    """omnire-train (here through tools/train.py) with output_dir=<an existing file>: one error line,
    exit 2, the file untouched; not Hydra's FileExistsError traceback."""
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    out = taken if where == "file" else taken / "run"
    cmd = [sys.executable, "tools/train.py", "--config-name", "omnire_sugar_quick", f"output_dir={out}"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: output_dir={out} " + ("is a file" if where == "file" else f"passes through the file {taken}")
        + ", expected a folder (new or a run's): choose another output_dir"], res.stderr
    assert taken.read_text() == "keep me" and "Traceback" not in res.stderr


def test_a_trainer_refuses_an_output_dir_that_is_a_file(earlier_run, tmp_path):
    """The same check for a trainer built in Python (no command line), before anything is written."""
    root, _ = earlier_run
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    for out in (taken, taken / "run"):
        with pytest.raises(ValueError, match="expected a folder \\(new or a run's\\): choose another output_dir"):
            SingleTrainer(tiny_config(root / "scene", out), output_dir=out)
    assert taken.read_text() == "keep me"
