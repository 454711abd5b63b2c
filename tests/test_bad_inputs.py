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
    ("optim.lr.opacities=0", "optim.lr.opacities=0 (expected a finite number > 0)"),
    ("optim.lr.background=-1", "optim.lr.background=-1 (expected a finite number >= 0)"),
    ("model.sh_degree=4", "model.sh_degree=4 (expected an integer in [0, 3])"),
    ("model.sh_degree_interval=0", "model.sh_degree_interval=0 (expected an integer >= 1)"),
    ("model.init_opacity=1.0", "model.init_opacity=1.0 (expected a number in (0, 1))"),
    ("loss.ssim_lambda=1.5", "loss.ssim_lambda=1.5 (expected a number in [0, 1])"),
    ("loss.sky_opacity=-0.05", "loss.sky_opacity=-0.05 (expected a finite number >= 0)"),
    ("loss.mask_dynamic=maybe", "loss.mask_dynamic='maybe' (expected true or false)"),
    ("render.far_plane=0.001", "render.far_plane=0.001 (expected more than render.near_plane=0.01)"),
    ("sugar.mode=sdff", "sugar.mode='sdff' (expected sdf or density)"),
    ("sugar.prune_opacity=1.0", "sugar.prune_opacity=1.0 (expected a number in [0, 1))"),
    ("sugar.knn=0", "sugar.knn=0 (expected an integer >= 1)"),
    ("sugar.sdf_density_factor=0", "sugar.sdf_density_factor=0 (expected null or a finite number > 0)"),
    ("densify.refine_every=0", "densify.refine_every=0 (expected an integer >= 1)"),
    ("densify.prune_opa=1.0", "densify.prune_opa=1.0 (expected a number in [0, 1))"),
    ("densify.grow_grad2d=-0.0002", "densify.grow_grad2d=-0.0002 (expected a finite number > 0)"),
    ("render.backend=cuda", "render.backend='cuda' (expected auto, cpp, torch or gsplat)"),
    ("sugar.sdf_estimate=ray", "sugar.sdf_estimate='ray' (expected 'depth' or 'normal')"),
    ("sugar.num_samples=0", "sugar.num_samples=0 (expected an integer >= 1)"),
    ("checkpoint.every=-100", "checkpoint.every=-100 (expected an integer >= 0)"),
    ("checkpoint.keep=1.5", "checkpoint.keep=1.5 (expected an integer >= 0)"),
    ("log.progress_every=-1", "log.progress_every=-1 (expected an integer >= 0)"),
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
