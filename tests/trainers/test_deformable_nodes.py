"""MultiTrainer's deformable nodes (models/gaussians/deformable.py) on a tiny street with people:
canonical at the start, the MLP gets gradients and trains the people's pixels, resume is bitwise,
exports at a frame and opened runs pose them without the dataset; every dataset's pedestrian and
cyclist classes get them; evaluation reports the human pixels' PSNR."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from models.gaussians.deformable import (DEFORMABLE_KEY, DeformableNodes, DeformationField, PlaneField,
                                         field_from_state, node_model, positional_encoding)
from models.gaussians.rigid import INSTANCE_KEY, RIGID_KEY, pose_gaussians
from models.losses import psnr
from models.trainers.scene_graph import MultiTrainer
from scenes import SyntheticParams, generate
from scenes.dataset_format import DEFORMABLE, SMPL
from scenes.driving_dataset import _class_map
from scenes.sources import _FORMATS

from .tiny_run import REPO, TINY_TRAINING

# a small street with two pedestrians and a cyclist (tests/scenes/test_people.py's SMALL, bigger images)
PEOPLE = dict(seed=5, num_frames=4, cameras=[0], width=64, height=48, supersample=1, lidar_beams=16,
              lidar_azimuths=180, moving_cars=1, parked_cars=2, trees=2, poles=1, pedestrians=2, cyclists=1)
MULTI = ["trainer=MultiTrainer", "loss.mask_dynamic=false"]


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("deformable") / "scene"
    generate(SyntheticParams(**PEOPLE), root)
    return root


def config(root, out, *extra):
    from hydra import compose, initialize_config_dir
    scene = ["scene=processed", f"scene.path={root}", "scene.dataset=waymo", "scene.test_every=4",
             "scene.max_init_points=400", "scene.moving_threshold=0.1"]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("omnire_sugar_quick", overrides=[*scene, f"output_dir={out}", *TINY_TRAINING, *MULTI, *extra])


@pytest.fixture
def make(people_dir, tmp_path):
    def build(name="run", *extra):
        out = tmp_path / name
        return MultiTrainer(config(people_dir, out, *extra), output_dir=out)
    return build


def all_state(trainer):
    out = {(name, k): v.detach().clone() for name, m in trainer.models.items() for k, v in m.params.items()}
    out.update({("field", k): v.detach().clone() for k, v in trainer.models[DEFORMABLE_KEY].field.state_dict().items()})
    return out


def human_psnr(trainer):
    values = []
    with torch.no_grad():
        for view in trainer._views:
            if view.human_mask is not None:
                rgb = trainer.render(view)[0].rgb
                values.append(float(psnr(rgb, view.image, view.human_mask)))
    return float(np.mean(values))


# ----- the model ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp", "planes"])
def test_zero_initialised_field_gives_the_canonical_pose(kind):
    gen = torch.Generator().manual_seed(0)
    xyz, rgb = torch.randn(40, 3, generator=gen), torch.rand(40, 3, generator=gen)
    ids = torch.arange(40) % 2
    field = DeformationField(2, width=16, depth=2, seed=3) if kind == "mlp" else PlaneField(2, resolution=4, width=16)
    nodes = DeformableNodes.from_instance_points(xyz, rgb, ids, sh_degree=1, field=field)
    for time in (0.0, 0.4, 1.0):
        bent = nodes.deformed(time)
        assert torch.equal(bent["means"], nodes.params["means"])
        assert torch.equal(bent["scales"], nodes.params["scales"])
        unit = nodes.params["quats"] / nodes.params["quats"].norm(dim=-1, keepdim=True)
        assert torch.allclose(bent["quats"], unit, atol=0, rtol=0)
    poses = torch.eye(4).repeat(2, 1, 1)
    poses[1, :3, 3] = torch.tensor([2.0, -1.0, 0.5])
    c, s = math.cos(0.7), math.sin(0.7)
    poses[1, :3, :3] = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    present = torch.tensor([True, False])
    world = nodes.world_gaussians(poses, present, time=0.5)
    rigid = pose_gaussians(nodes.get_gaussians(), nodes.instance_ids, poses, present, nodes.sh_degree)
    for k in rigid:
        assert torch.allclose(world[k], rigid[k], atol=1e-6), k
    order = nodes.instance_ids   # grouped by instance
    assert (world["opacities"][order == 1] == 0).all() and (world["opacities"][order == 0] > 0).all()


def test_positional_encoding_and_field_state_round_trip():
    x = torch.tensor([[0.25, -0.5, 1.0]])
    enc = positional_encoding(x, 2)
    assert enc.shape == (1, 15) and torch.equal(enc[:, :3], x)
    assert torch.allclose(enc[:, 3:6], torch.sin(math.pi * x))
    field = DeformationField(3, width=8, depth=1, seed=1)
    with torch.no_grad():
        field.net[-1].weight.add_(0.1)
    copy = DeformationField.from_state(field.state())
    for k, v in field.state_dict().items():
        assert torch.equal(copy.state_dict()[k], v)
    with pytest.raises(ValueError, match="model.deformable settings"):
        DeformationField(3, width=16, depth=1).load(field.state())
    planes = PlaneField(3, resolution=5, channels=4, width=8, seed=2)
    copy = field_from_state(planes.state())
    assert isinstance(copy, PlaneField) and torch.equal(copy.planes, planes.planes)
    # bilinear sampling: at a texel centre the texel itself, between two texels their mean
    ids = torch.tensor([1, 1])
    u = torch.tensor([-1.0, -1.0 + 1.0 / 4])   # texel 0 and halfway to texel 1 (5 texels over [-1, 1])
    got = planes._sample(0, ids, u, torch.tensor([-1.0, -1.0]))
    assert torch.allclose(got[0], planes.planes[1, 0, 0, 0])
    assert torch.allclose(got[1], (planes.planes[1, 0, 0, 0] + planes.planes[1, 0, 0, 1]) / 2)


def test_every_dataset_gives_its_pedestrians_and_cyclists_deformable_nodes():
    """scenes/<dataset>.py class maps: SMPLNodes and DeformableNodes classes (pedestrians, cyclists,
    strollers...) get the deformable model, vehicles the rigid one; the readers' class map is the same."""
    with_people = []
    for fmt in _FORMATS:
        node_of = _class_map(fmt, None)
        people = [c for c, n in fmt.class_nodes.items() if n in (SMPL, DEFORMABLE)]
        for c, n in fmt.class_nodes.items():
            expected = DEFORMABLE_KEY if n in (SMPL, DEFORMABLE) else RIGID_KEY
            assert node_model(node_of(c)) == expected, (fmt.name, c)
        if people:
            with_people.append(fmt.name)
    assert {"waymo", "nuscenes", "kitti", "pandaset", "argoverse2", "nuplan"} <= set(with_people)
    assert node_model(None) is None and node_model("Unknown") is None


def test_the_reader_and_trainer_give_people_deformable_nodes(make):
    trainer = make()
    classes = sorted(t.class_name for t in trainer.deformable_tracks)
    assert classes == ["Cyclist", "Pedestrian", "Pedestrian"]
    assert [t.node_type for t in trainer.dataset.moving_instances if t.class_name == "Pedestrian"] == [SMPL, SMPL]
    nodes = trainer.models[DEFORMABLE_KEY]
    assert not nodes.params[INSTANCE_KEY].requires_grad and INSTANCE_KEY not in trainer.optimizers[DEFORMABLE_KEY]
    counts = torch.bincount(nodes.instance_ids, minlength=3)
    assert (counts >= 50).all()          # min_points_per_instance, topped up where the LiDAR has fewer
    assert "deformation" in trainer.optim.cameras
    # their pixels are in the loss now: the loss mask (loss.mask_dynamic off) keeps the human pixels
    human = kept = 0
    for i, view in enumerate(trainer._views):
        if view.human_mask is None:
            continue
        keep = trainer.loss_mask(view, i)
        keep = torch.ones_like(view.human_mask) if keep is None else keep
        human += int(view.human_mask.sum())
        kept += int((keep & view.human_mask).sum())
    assert human > 0 and kept == human


# ----- training -------------------------------------------------------------------------------
def test_gradient_reaches_the_mlp_and_training_fits_the_people(make):
    trainer = make("fit", "optim.stage_schedule=[{name:pretrain,steps:40}]", "model.deformable.lr=0.01")
    field = trainer.models[DEFORMABLE_KEY].field
    init = {k: v.detach().clone() for k, v in field.state_dict().items()}
    # one render's loss: the last (zero) layer gets a gradient at once, the earlier ones only through it
    view = next(v for v in trainer._views if v.human_mask is not None)
    out = trainer.render(view)[0]
    ((out.rgb - view.image).abs()[view.human_mask]).mean().backward()
    assert field.net[-1].weight.grad.abs().sum() > 0
    assert field.embedding.grad is None or field.embedding.grad.abs().sum() == 0
    for m in trainer.models.values():   # this probe's gradients, gone before training
        for p in m.parameters():
            p.grad = None
    trainer.background.grad = None
    before = human_psnr(trainer)
    trainer.train()
    after = human_psnr(trainer)
    assert after > before + 0.5, (before, after)
    changed = {k for k, v in field.state_dict().items() if not torch.equal(v, init[k])}
    assert changed == set(init), f"field parameters that did not train: {set(init) - changed}"


@pytest.mark.parametrize("stop_at", [6, 10])
def test_resume_is_bitwise_identical(make, stop_at):
    full = make("full")
    full.train()
    first = make("part")
    first.train(num_steps=stop_at)
    first.save_checkpoint()
    del first
    out = full.output_dir.parent / "part"
    resumed = MultiTrainer(config(full.cfg.scene.path, out), output_dir=out, resume=True)
    assert resumed.step == stop_at
    resumed.train()
    a, b = all_state(full), all_state(resumed)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming at step {stop_at}"
    sa, sb = full.optim.camera_state_dict()["deformation"], resumed.optim.camera_state_dict()["deformation"]
    assert sa["schedule"] == sb["schedule"]
    for i, st in sa["adam"]["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb["adam"]["state"][i][k])), (i, k)


def test_resume_with_other_deformable_settings_is_refused(make):
    first = make("settings")
    first.train(num_steps=3)
    first.save_checkpoint()
    out = first.output_dir
    with pytest.raises(ValueError, match=r"model\.deformable settings must be the run's"):
        MultiTrainer(config(first.cfg.scene.path, out, "model.deformable.width=32"), output_dir=out, resume=True)
    with pytest.raises(ValueError, match="does not fit this config"):
        MultiTrainer(config(first.cfg.scene.path, out, "model.deformable.enabled=false"), output_dir=out, resume=True)


# ----- a trained run, opened and exported ------------------------------------------------------
@pytest.fixture(scope="module")
def trained(people_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("deformable_run") / "run"
    trainer = MultiTrainer(config(people_dir, out, "model.deformable.lr=0.01"), output_dir=out)
    trainer.train()
    return trainer, out


def test_open_run_poses_the_people_without_the_dataset(trained, people_dir, tmp_path):
    from models.run import open_run
    trainer, out = trained
    assert trainer.models[DEFORMABLE_KEY].field.net[-1].weight.abs().sum() > 0   # a trained, non-zero field
    moved = tmp_path / "scene_gone"
    shutil.move(str(people_dir), moved)
    try:
        run = open_run(out)
        assert DEFORMABLE_KEY in run.scene.models
        for view in trainer._views[:3]:
            mine, theirs = trainer.gaussian_scene.compose(view.frame_idx), run.scene.compose(view.frame_idx)
            assert mine[1] == theirs[1]
            for k in mine[0]:
                assert torch.equal(mine[0][k].detach(), theirs[0][k].detach()), k
            a = trainer.gaussian_scene.render(view.camera, view.frame_idx).rgb
            b = run.scene.render(view.camera, view.frame_idx).rgb
            assert torch.equal(a, b)
    finally:
        shutil.move(str(moved), people_dir)


def test_export_at_a_frame_poses_the_deformed_people(trained, tmp_path):
    from plyfile import PlyData
    from models.exports import export_scene
    trainer, _ = trained
    scene = trainer.gaussian_scene
    frame = trainer.dataset.frames[2]
    written = export_scene(scene, trainer.run_cameras(), tmp_path, axes="world", frame=frame)
    ply = PlyData.read(str(written["scene_frame"]))["vertex"]
    gs, slices = scene.compose(frame)
    _, present = scene.deformable_instance_poses(frame)
    nodes = scene.models[DEFORMABLE_KEY]
    here = present[nodes.instance_ids]
    _, rigid_present = scene.instance_poses(frame)
    n_rigid = int(rigid_present[scene.models[RIGID_KEY].instance_ids].sum()) if RIGID_KEY in scene.models else 0
    assert len(ply) == scene.model.num_gaussians + n_rigid + int(here.sum())
    xyz = np.stack([ply["x"], ply["y"], ply["z"]], 1)[-int(here.sum()):]
    expected = gs["means"][slices[DEFORMABLE_KEY]][here].detach().numpy()
    np.testing.assert_allclose(xyz, expected, atol=1e-5)
    # the field moved them: not the canonical means posed rigidly
    rigid = pose_gaussians(nodes.get_gaussians(), nodes.instance_ids, *scene.deformable_instance_poses(frame),
                           nodes.sh_degree)["means"][here].detach().numpy()
    assert np.abs(rigid - expected).max() > 1e-6


def test_evaluation_reports_the_human_pixels(trained):
    trainer, out = trained
    import json
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    assert metrics["human_views"] >= 1 and math.isfinite(metrics["psnr_human"])
    assert metrics["psnr_whole_image"] == pytest.approx(metrics["psnr"])   # mask_dynamic off: the same pixels


def test_the_plane_field_trains_and_opens_without_the_trainer(make):
    from models.run import open_run
    trainer = make("planes", "model.deformable.field=planes", "model.deformable.plane_resolution=4")
    field = trainer.models[DEFORMABLE_KEY].field
    assert isinstance(field, PlaneField)
    before = field.net[-1].weight.detach().clone()
    trainer.train()
    assert not torch.equal(field.net[-1].weight, before)
    run = open_run(trainer.output_dir)
    view = trainer._views[1]
    assert torch.equal(trainer.gaussian_scene.render(view.camera, view.frame_idx).rgb,
                       run.scene.render(view.camera, view.frame_idx).rgb)


def test_deformable_off_masks_the_people_and_keeps_no_node(make):
    trainer = make("off", "model.deformable.enabled=false")
    assert DEFORMABLE_KEY not in trainer.models and trainer.deformable_tracks == []
    for i, view in enumerate(trainer._views):
        if view.human_mask is not None:
            keep = trainer.loss_mask(view, i)
            assert keep is not None and not (keep & view.human_mask).any()
