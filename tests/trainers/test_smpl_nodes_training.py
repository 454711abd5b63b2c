"""MultiTrainer's SMPL nodes (model.smpl.body_model, models/trainers/smpl_graph.py) on the tiny street
with people of test_deformable_nodes.py, posed by the synthetic walker body model that the generator
writes beside the scene's humanpose/smpl.pkl: which pedestrians get them, training, bitwise resume of
the parameters, the pose residual and its Adam, an export at a frame, open_run without the dataset and
the body-model file, the bad body-model path's error before training."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from models.gaussians.deformable import DEFORMABLE_KEY, SMPL_FALLBACK, node_model
from models.gaussians.smpl_body import BodyModelError
from models.gaussians.smpl_nodes import SMPL_KEY
from models.trainers.scene_graph import MultiTrainer
from scenes import SyntheticParams, generate
from scenes.dataset_format import SMPL
from scenes.smpl_format import SMPL_FILE
from scenes.synthetic import WALKER_MODEL_FILE

from .test_deformable_nodes import PEOPLE, config, human_psnr


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("smpl") / "scene"
    generate(SyntheticParams(**PEOPLE), root)
    return root


@pytest.fixture(scope="module")
def walker(people_dir, tmp_path_factory):
    """The body model outside the scene folder (as a user's licensed file would be)."""
    path = tmp_path_factory.mktemp("body") / "walker.npz"
    shutil.copy(people_dir / WALKER_MODEL_FILE, path)
    return path


@pytest.fixture
def make(people_dir, walker, tmp_path):
    def build(name="run", *extra, root=None):
        out = tmp_path / name
        return MultiTrainer(config(root or people_dir, out, f"model.smpl.body_model={walker}",
                                   "model.smpl.gaussians_per_instance=300", *extra), output_dir=out)
    return build


def all_state(trainer):
    out = {(name, k): v.detach().clone() for name, m in trainer.models.items() for k, v in m.params.items()}
    out[("smpl", "residual")] = trainer.gaussian_scene.smpl.refinement.residual.detach().clone()
    return out


def test_generation_writes_the_smpl_files_only_with_pedestrians(people_dir, tmp_path):
    assert (people_dir / SMPL_FILE).is_file() and (people_dir / WALKER_MODEL_FILE).is_file()
    plain = tmp_path / "cyclists"
    generate(SyntheticParams(**{**PEOPLE, "pedestrians": 0}), plain)
    assert not (plain / SMPL_FILE).exists() and not (plain / WALKER_MODEL_FILE).exists()


def test_pedestrians_with_parameters_get_smpl_nodes_the_rest_deformable(make):
    trainer = make()
    assert sorted(t.class_name for t in trainer.smpl_tracks) == ["Pedestrian", "Pedestrian"]
    assert [t.class_name for t in trainer.deformable_tracks] == ["Cyclist"]
    nodes = trainer.models[SMPL_KEY]
    assert nodes.num_gaussians == 600 and nodes.num_instances == 2
    assert "smpl_pose" in trainer.optim.cameras and "deformation" in trainer.optim.cameras
    _, slices = trainer.gaussian_scene.compose(trainer.dataset.frames[0])
    assert slices[SMPL_KEY].stop - slices[SMPL_KEY].start == 600
    assert node_model(SMPL) == SMPL_FALLBACK == DEFORMABLE_KEY and node_model(SMPL, has_smpl=True) == SMPL_KEY


def test_the_bodies_sit_on_the_people(make):
    """At a frame each present body's Gaussians project onto that view's human pixels (mostly)."""
    trainer = make()
    view = next(v for v in trainer._views if v.human_mask is not None)
    gs, slices = trainer.gaussian_scene.compose(view.frame_idx)
    sl = slices[SMPL_KEY]
    seen = gs["opacities"][sl] > 0
    uv, depth = view.camera.project(gs["means"][sl][seen].detach())
    inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < view.width) & (uv[:, 1] >= 0) & (uv[:, 1] < view.height)
    px = uv[inside].long()
    hits = view.human_mask[px[:, 1], px[:, 0]]
    assert inside.sum() > 20 and hits.float().mean() > 0.5


def test_training_fits_the_people(make):
    trainer = make("fit", "optim.stage_schedule=[{name:pretrain,steps:40}]")
    before = human_psnr(trainer)
    trainer.train()
    after = human_psnr(trainer)
    assert after > before + 0.5, (before, after)
    assert trainer.gaussian_scene.smpl.refinement.residual.abs().sum() > 0


@pytest.mark.parametrize("stop_at", [6])
def test_resume_is_bitwise_identical(make, walker, stop_at):
    full = make("full")
    full.train()
    first = make("part")
    first.train(num_steps=stop_at)
    first.save_checkpoint()
    del first
    out = full.output_dir.parent / "part"
    resumed = MultiTrainer(config(full.cfg.scene.path, out, f"model.smpl.body_model={walker}",
                                  "model.smpl.gaussians_per_instance=300"), output_dir=out, resume=True)
    assert resumed.step == stop_at
    resumed.train()
    a, b = all_state(full), all_state(resumed)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming at step {stop_at}"
    sa, sb = full.optim.camera_state_dict()["smpl_pose"], resumed.optim.camera_state_dict()["smpl_pose"]
    assert sa["schedule"] == sb["schedule"]
    for i, st in sa["adam"]["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb["adam"]["state"][i][k])), (i, k)


def test_open_run_and_export_without_the_dataset_and_the_body_model(make, walker, people_dir, tmp_path):
    from plyfile import PlyData
    from models.exports import export_run
    from models.run import open_run
    trainer = make("open")
    trainer.train()
    out = trainer.output_dir
    moved_scene, moved_body = tmp_path / "scene_gone", tmp_path / "body_gone.npz"
    shutil.move(str(people_dir), moved_scene)
    shutil.move(str(walker), moved_body)
    try:
        run = open_run(out)
        assert SMPL_KEY in run.scene.models
        for view in trainer._views[:3]:
            mine, theirs = trainer.gaussian_scene.compose(view.frame_idx), run.scene.compose(view.frame_idx)
            assert mine[1] == theirs[1]
            for k in mine[0]:
                assert torch.equal(mine[0][k].detach(), theirs[0][k].detach()), k
        frame = trainer.dataset.frames[2]
        # the viewer's node boxes: rigid, deformable, then the SMPL nodes' boxes at the frame
        from types import SimpleNamespace
        from models.viewer.scene_layers import pose_node_boxes
        scene = run.scene
        boxes = [SimpleNamespace(visible=None) for _ in scene.tracks + scene.deformable_tracks + scene.smpl_tracks]
        pose_node_boxes(boxes, scene, frame)
        body_poses, body_present = scene.smpl_box_poses(frame)
        assert len(scene.smpl_tracks) == 2 and [b.visible for b in boxes[-2:]] == body_present.tolist()
        assert any(body_present) and np.allclose(boxes[-1].position if body_present[-1] else body_poses[-1, :3, 3],
                                                 body_poses[-1, :3, 3].numpy())
        written = export_run(run, tmp_path / "export", axes="world", frame=frame)
        ply = PlyData.read(str(written["scene_frame"]))["vertex"]
        gs, slices = run.scene.compose(frame)
        here = gs["opacities"][slices[SMPL_KEY]] > 0
        assert here.sum() > 0
        xyz = np.stack([ply["x"], ply["y"], ply["z"]], 1)[-int(here.sum()):]
        np.testing.assert_allclose(xyz, gs["means"][slices[SMPL_KEY]][here].detach().numpy(), atol=1e-5)
    finally:
        shutil.move(str(moved_scene), people_dir)
        shutil.move(str(moved_body), walker)


def test_a_bad_body_model_is_refused_before_training(people_dir, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(BodyModelError, match="body-model file not found"):
        MultiTrainer(config(people_dir, out, f"model.smpl.body_model={tmp_path / 'nope.pkl'}"), output_dir=out)
    broken = tmp_path / "broken.npz"
    np.savez(broken, v_template=np.zeros((4, 3)))
    with pytest.raises(BodyModelError, match="missing key"):
        MultiTrainer(config(people_dir, out, f"model.smpl.body_model={broken}"), output_dir=out)
    assert not (out / "checkpoints").exists()


def test_a_scene_without_humanpose_keeps_deformable_nodes(people_dir, walker, tmp_path, caplog):
    root = tmp_path / "scene"
    shutil.copytree(people_dir, root)
    (root / SMPL_FILE).unlink()
    out = tmp_path / "nohp"
    with caplog.at_level("WARNING"):
        trainer = MultiTrainer(config(root, out, f"model.smpl.body_model={walker}"), output_dir=out)
    assert SMPL_KEY not in trainer.models and len(trainer.deformable_tracks) == 3
    assert any("humanpose/smpl.pkl" in r.message for r in caplog.records)


def test_resume_with_other_smpl_settings_is_refused(make, walker):
    first = make("settings")
    first.train(num_steps=3)
    first.save_checkpoint()
    out = first.output_dir
    with pytest.raises(ValueError, match=r"model\.smpl\.refine_pose must be the same"):
        MultiTrainer(config(first.cfg.scene.path, out, f"model.smpl.body_model={walker}",
                            "model.smpl.gaussians_per_instance=300", "model.smpl.refine_pose=false"),
                     output_dir=out, resume=True)
