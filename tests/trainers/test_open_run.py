"""open_run reads no dataset file: a run whose scene folder was deleted opens from its checkpoint
alone, renders what its trainer rendered, exports the same bytes and extracts the same mesh.
Checkpoints written before they held the scene graph and the cameras still open (through their
trainer, which reads the dataset)."""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import scenes
import scenes.config
import models.trainers.single as single_module
from models.exports import export_run
from models.mesh.run_io import extract_run_mesh
from models.run import RunCameras, open_run
from models.scene import GaussianScene
from models.trainers.checkpoint import find_latest, load_checkpoint
from models.trainers.scene_graph import RIGID_KEY, MultiTrainer
from models.trainers.single import SingleTrainer
from scenes.driving_dataset import DrivingScene

from .tiny_run import tiny_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
MULTI = ["trainer=MultiTrainer", "loss.mask_dynamic=false"]


def refuse_datasets(monkeypatch) -> None:
    """Every way into a scene folder raises (a synthetic scene would otherwise be generated afresh)."""
    def refuse(*args, **kwargs):
        raise AssertionError("opening the run read the dataset")
    for owner in (scenes, scenes.config, single_module):
        monkeypatch.setattr(owner, "load_scene", refuse)
    monkeypatch.setattr(scenes.config, "prepare_scene", refuse)
    monkeypatch.setattr(DrivingScene, "load", refuse)


@pytest.fixture(scope="module", params=["SingleTrainer", "MultiTrainer"])
def trained(request, tmp_path_factory):
    """A tiny run trained to its end (it wrote its exports), whose scene folder is then deleted."""
    root = tmp_path_factory.mktemp("open_run")
    out = root / "run"
    cls, extra = (MultiTrainer, MULTI) if request.param == "MultiTrainer" else (SingleTrainer, [])
    trainer = cls(tiny_config(root / "scene", out, *extra, "log.snapshot_every=0"), output_dir=out)
    trainer.train()
    shutil.rmtree(root / "scene")
    return trainer, out


def test_a_run_opens_renders_exports_and_meshes_without_its_dataset(trained, monkeypatch, tmp_path):
    trainer, out = trained
    refuse_datasets(monkeypatch)
    scene, cameras, config = run = open_run(out)
    assert isinstance(scene, GaussianScene) and isinstance(cameras, RunCameras)
    assert run.trainer_name == type(trainer).__name__ and run.step == trainer.step and run.finished
    assert config.scene.path == trainer.cfg.scene.path
    assert list(scene.models) == list(trainer.models) and scene.frames == list(trainer.dataset.frames)
    if RIGID_KEY in trainer.models:
        assert [t.id for t in scene.tracks] == [t.id for t in trainer.rigid_tracks]
    # the saved cameras are the dataset's views
    assert len(cameras.train_views) == len(trainer.dataset.train_views) > 0
    assert len(cameras.test_views) == len(trainer.dataset.test_views) > 0
    for saved, view in zip(cameras.views, trainer.cameras.views):
        assert torch.equal(saved.K, view.K) and torch.equal(saved.camera_to_world, view.camera_to_world)
        assert (saved.width, saved.height, saved.frame_idx, saved.cam_name) == (view.width, view.height,
                                                                                view.frame_idx, view.cam_name)
        assert torch.equal(saved.dynamic_mask, view.dynamic_mask)
    # the same renders, bitwise, as the trainer's own of the dataset's views
    for saved, view in zip(cameras.views, trainer.cameras.views):
        for a, b in zip(scene.render_view(saved), trainer.render_view(view)):
            assert torch.equal(a, b)
    # the same exports as the run wrote at the end of training
    written = export_run(run, tmp_path / "exports")
    assert written
    for path in written.values():
        assert path.read_bytes() == (out / "exports" / path.name).read_bytes(), path.name
    # a mesh, the same as from the dataset's own views (their dynamic masks included)
    mesh = extract_run_mesh(run, method="tsdf", progress=False)
    assert len(mesh.faces) > 100
    from_dataset = extract_run_mesh(dataclasses.replace(run, cameras=trainer.cameras), method="tsdf", progress=False)
    assert np.array_equal(np.asarray(mesh.vertices), np.asarray(from_dataset.vertices))
    assert len(extract_run_mesh(run, method="levelset", poisson_depth=6, progress=False).faces) > 0


def test_opening_a_run_takes_little_beyond_reading_its_checkpoint(trained, monkeypatch):
    """No dataset is read (asserted); the time beyond the checkpoint read is printed, not asserted."""
    _, out = trained
    refuse_datasets(monkeypatch)
    ckpt = find_latest(out / "checkpoints")
    t0 = time.perf_counter()
    load_checkpoint(ckpt)
    t1 = time.perf_counter()
    open_run(out)
    t2 = time.perf_counter()
    print(f"open_run: {t2 - t1:.3f} s, of which reading the checkpoint {t1 - t0:.3f} s")


@pytest.mark.parametrize("fixture,trainer_name", [("format2_single_step_000008.pt", "SingleTrainer"),
                                                  ("format1_multi_step_000003.pt", "MultiTrainer")])
def test_older_checkpoints_open_through_their_trainer(tmp_path, fixture, trainer_name):
    """Checkpoints without 'graph' and 'cameras' rebuild them from the dataset (read for them alone)."""
    run = open_run(FIXTURES / fixture, overrides={"scene.path": str(tmp_path / "scene")})
    state = load_checkpoint(FIXTURES / fixture)
    assert run.trainer_name == trainer_name and run.step == state["step"]
    for name, params in state["models"].items():
        for k, v in params.items():
            assert torch.equal(run.scene.models[name].params[k].detach(), v), (name, k)
    rgb, alpha, _ = run.render_view(run.cameras.train_views[0])
    assert torch.isfinite(rgb).all() and float(alpha.max()) > 0
