"""MultiTrainer (background + rigid nodes) on the tiny street with its moving car."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.gaussians.rigid import INSTANCE_KEY, quat_multiply, rotmat_to_quat, sh_rotation
from models.exports import VIEWER_FROM_WORLD
from models.gaussians.vanilla import VanillaGaussians
from models.losses import quat_to_rotmat
from models.rendering import rasterization
from models.rendering.sh import eval_sh
from models.trainers.scene_graph import RIGID_KEY, MultiTrainer
from models.trainers.single import MODEL_KEY, SingleTrainer

from .tiny_run import REPO, TINY_SCENE, TINY_TRAINING, tiny_config

MULTI = ["trainer=MultiTrainer", "loss.mask_dynamic=false"]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_street_multi") / "scene"


@pytest.fixture
def make_cfg(scene_dir, tmp_path):
    def make(name="run", *overrides):
        return tiny_config(scene_dir, tmp_path / name, *MULTI, *overrides)
    return make


def all_params(trainer):
    return {(name, k): v.detach().clone() for name, m in trainer.models.items() for k, v in m.params.items()}


@pytest.fixture(scope="module")
def uninterrupted(scene_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("multi_full") / "run"
    trainer = MultiTrainer(tiny_config(scene_dir, out, *MULTI), output_dir=out)
    record = {"modes": [], "sugar_sizes": [], "stages": [], "masks": []}
    sugar = trainer.sugar.losses

    def on_step(tr, info):
        render = info.outputs.render
        record["modes"].append((info.stage, render.info["render_mode"], render.info["radii"].shape[1]))
        record["masks"].append(info.outputs.mask)

    def spy_sugar(gs, *args):
        record["sugar_sizes"].append((gs["means"].shape[0], trainer.model.num_gaussians))
        return sugar(gs, *args)

    def on_stage(event, tr, stage):
        if event == "stage_start":
            record["stages"].append((stage.name, tr.node_stages(), {n: m.num_gaussians for n, m in tr.models.items()},
                                     {n: float(torch.sigmoid(m.params["opacities"].detach()).min())
                                      for n, m in tr.models.items() if m.num_gaussians}))

    record["init"] = all_params(trainer)
    trainer.add_stage_callback(on_stage)
    trainer.add_step_callback(on_step)
    trainer.sugar.losses = spy_sugar
    trainer.train()
    return trainer, out, record


# ----- the scene graph ------------------------------------------------------------------------
def test_scene_graph_holds_background_and_the_moving_car(make_cfg):
    trainer = MultiTrainer(make_cfg(), output_dir=None)
    assert list(trainer.models) == [MODEL_KEY, RIGID_KEY]
    assert [t.id for t in trainer.rigid_tracks] == [t.id for t in trainer.dataset.moving_instances]
    nodes = trainer.models[RIGID_KEY]
    ids = nodes.params[INSTANCE_KEY]
    assert not ids.requires_grad and INSTANCE_KEY not in trainer.optimizers[RIGID_KEY]
    assert ids.shape == (nodes.num_gaussians,) and set(ids.tolist()) == {0.0}
    # object frame: the car's points lie in its box (centre origin), not at its world position (~27 m away)
    half = trainer.rigid_tracks[0].box_size[0] / 2 + 0.1
    assert (nodes.params["means"].detach().abs() <= half).all()
    # the background holds no point of the moving car
    single = SingleTrainer(tiny_config(trainer.dataset.root, make_cfg().output_dir + "_s"), output_dir=None)
    assert torch.equal(single.model.params["means"], trainer.model.params["means"])


def test_rigid_gaussians_follow_their_track(make_cfg):
    trainer = MultiTrainer(make_cfg(), output_dir=None)
    track = trainer.rigid_tracks[0]
    views = {v.frame_idx: v for v in trainer.dataset.views}
    (gs0, sl), (gs3, _) = trainer.compose_gaussians(views[0]), trainer.compose_gaussians(views[3])
    bg, rig = sl[MODEL_KEY], sl[RIGID_KEY]
    assert torch.equal(gs0["means"][bg], gs3["means"][bg])  # the background does not move
    P0, P3 = track.pose_at(0), track.pose_at(3)
    moved = (P3[:3, 3] - P0[:3, 3]).norm()
    assert moved > 1.0  # the car drives ~1.9 m between frames 0 and 3
    # every rigid Gaussian moves with the car: world means at frame 3 = P3 · P0⁻¹ · (means at frame 0)
    rel = P3 @ torch.linalg.inv(P0)
    expected = gs0["means"][rig] @ rel[:3, :3].T + rel[:3, 3]
    assert torch.allclose(gs3["means"][rig], expected, atol=1e-4)
    assert torch.allclose((gs3["means"][rig] - gs0["means"][rig]).norm(dim=1), moved.expand(rig.stop - rig.start),
                          atol=0.05)  # the track's heading barely turns here
    # orientation: R(world quat) = R(pose) · R(object quat)
    obj_R = quat_to_rotmat(trainer.models[RIGID_KEY].get_gaussians()["quats"])
    assert torch.allclose(quat_to_rotmat(gs3["quats"][rig]), P3[:3, :3] @ obj_R, atol=1e-5)
    # each Gaussian sits in the car's box at that frame, and the untrained nodes reproduce the LiDAR
    # returns that hit the car at that very frame (they were taken into the object frame from there)
    lidar = trainer.dataset.lidar
    for f, gs in ((0, gs0), (3, gs3)):
        world = gs["means"][rig].detach()
        assert track.contains(f, world, margin=0.15).all()
        at_f = lidar.points[(lidar.frame_idx == f) & (lidar.ground <= 0.5)]
        hits = at_f[track.contains(f, at_f, margin=0.1)]
        assert len(hits) >= 3
        assert torch.cdist(hits.double(), world.double()).min(dim=1).values.max() < 1e-4


def test_instances_absent_from_a_frame_are_not_drawn(make_cfg):
    trainer = MultiTrainer(make_cfg(), output_dir=None)
    view = trainer.dataset.views[0]
    absent = type(view)(**{**view.__dict__, "frame_idx": 99})  # a frame the track has no pose for
    gs, sl = trainer.compose_gaussians(absent)
    assert (gs["opacities"][sl[RIGID_KEY]] == 0).all()
    assert (gs["opacities"][sl[MODEL_KEY]] > 0).all()
    viewmat = torch.linalg.inv(view.camera_to_world)
    _, _, info = rasterization(gs["means"], gs["quats"], gs["scales"], gs["opacities"], gs["colors"], viewmat[None],
                               view.K[None], view.width, view.height, sh_degree=0)
    assert (info["radii"][0, sl[RIGID_KEY]] == 0).all()  # culled: neither drawn nor counted for densification
    gs_present, _ = trainer.compose_gaussians(view)
    assert (gs_present["opacities"][sl[RIGID_KEY]] > 0).all()


def test_pose_rotation_helpers():
    g = torch.Generator().manual_seed(3)
    q = torch.nn.functional.normalize(torch.randn(64, 4, generator=g), dim=-1)
    R = quat_to_rotmat(q)
    q2 = rotmat_to_quat(R)
    assert torch.allclose(quat_to_rotmat(q2), R, atol=1e-5)
    a, b = q[:32], q[32:]
    assert torch.allclose(quat_to_rotmat(quat_multiply(a, b)), R[:32] @ R[32:], atol=1e-5)
    # SH turn with the object: colour seen along world direction d = object colour along Rᵀ·d
    coeffs = torch.randn(32, 16, 3, generator=g)
    d = torch.nn.functional.normalize(torch.randn(32, 3, generator=g), dim=-1)
    M = sh_rotation(R[:32], 3)
    world = torch.einsum("nkj,njc->nkc", M, coeffs)
    assert torch.allclose(eval_sh(3, d, world), eval_sh(3, torch.einsum("nji,nj->ni", R[:32], d), coeffs), atol=1e-4)
    assert not torch.allclose(eval_sh(3, d, coeffs), eval_sh(3, d, world), atol=1e-2)


def test_multi_config_builds_a_multi_trainer(scene_dir, tmp_path):
    from hydra import compose, initialize_config_dir
    from models.trainers import build_trainer
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        full = compose("omnire_sugar_multi")
        tiny = compose("omnire_sugar_multi", overrides=[*TINY_SCENE, f"scene.path={scene_dir}",
                                                        f"output_dir={tmp_path / 'run'}", *TINY_TRAINING])
    assert full.trainer == "MultiTrainer" and full.loss.mask_dynamic is False
    assert [(s.name, s.steps) for s in full.optim.stage_schedule] == [("pretrain", 7000), ("entropy", 2000),
                                                                      ("sugar", 6000)]
    assert full.render.opacity_entropy.table.sugar == 0.1 and full.model.sh_degree == 3  # omnire_sugar's keys
    trainer = build_trainer(tiny)
    assert type(trainer) is MultiTrainer and set(trainer.models) == {MODEL_KEY, RIGID_KEY}
    trainer.train(num_steps=1)
    assert trainer.step == 1


# ----- training -------------------------------------------------------------------------------
def test_trains_all_three_stages(uninterrupted):
    trainer, out, record = uninterrupted
    assert trainer.step == 15 and trainer.finished
    assert [(s, m) for s, m, _ in record["modes"]] == ([("pretrain", "RGB")] * 7 + [("entropy", "RGB")] * 2
                                                        + [("sugar", "RGB+ED")] * 6)
    # every step renders background and rigid nodes together
    assert all(n == trainer.num_gaussians for _, _, n in record["modes"][-6:])
    assert trainer.models[RIGID_KEY].num_gaussians > 0
    # each node reports the trainer's stage (no child trainers to broadcast to)
    for name, nodes, _, _ in record["stages"]:
        assert set(nodes) == {MODEL_KEY, RIGID_KEY}
        assert {n["stage"] for n in nodes.values()} == {name} and {n["stage_step"] for n in nodes.values()} == {0}
    sugar = record["stages"][-1]
    assert sugar[0] == "sugar" and sugar[1][MODEL_KEY]["sugar_losses"] and not sugar[1][RIGID_KEY]["sugar_losses"]


def test_sugar_prune_applies_to_all_models_and_regularizers_to_the_background(uninterrupted):
    trainer, _, record = uninterrupted
    (_, _, sizes, min_opacity) = record["stages"][-1]
    assert set(min_opacity) == set(sizes) == {MODEL_KEY, RIGID_KEY}
    assert all(v >= 0.5 for v in min_opacity.values())  # sugar.prune_opacity, on the rigid nodes too
    assert record["sugar_sizes"] and all(n == bg for n, bg in record["sugar_sizes"])
    assert record["sugar_sizes"][0][0] == sizes[MODEL_KEY]
    assert sizes == {n: m.num_gaussians for n, m in trainer.models.items()}  # no densification in sugar


def test_dynamic_pixels_train_the_rigid_nodes(uninterrupted, make_cfg):
    trainer, _, record = uninterrupted
    assert len(record["masks"]) == 15 and all(m is None for m in record["masks"])  # the whole image counts
    init = record["init"]
    n0 = init[(RIGID_KEY, "sh0")].shape[0]
    assert not torch.equal(trainer.models[RIGID_KEY].params["sh0"].detach()[:n0], init[(RIGID_KEY, "sh0")]), \
        "the car's colours never changed: its pixels do not reach the rigid nodes"
    # contrast: the SingleTrainer config leaves dynamic pixels out, so this test can tell the two apart
    seen = []
    cfg = tiny_config(trainer.dataset.root, make_cfg().output_dir + "_single")
    single = SingleTrainer(cfg, output_dir=None)
    single.add_step_callback(lambda tr, info: seen.append(info.outputs.mask))
    single.train(num_steps=1)
    assert seen[0] is not None and not bool(seen[0].all())


def test_exports(uninterrupted):
    from plyfile import PlyData
    trainer, out, _ = uninterrupted
    bg = VanillaGaussians.load_ply(out / "exports" / "gaussians.ply")
    assert bg.num_gaussians == trainer.model.num_gaussians
    # written in the viewer axes (export.axes: viewer, a signed permutation of the world's): exact when mapped back
    assert torch.equal(bg.params["means"] @ VIEWER_FROM_WORLD, trainer.model.params["means"].detach().cpu())
    nodes = trainer.models[RIGID_KEY]
    ply = PlyData.read(str(out / "exports" / "rigid_nodes.ply"))
    assert len(ply["vertex"]) == nodes.num_gaussians
    assert np.array_equal(ply["vertex"]["instance_id"], nodes.instance_ids.numpy())
    assert np.allclose(ply["vertex"]["x"], nodes.params["means"][:, 0].detach().numpy())  # object frame
    assert f"instance 0 {trainer.rigid_tracks[0].id}" in ply.comments
    assert VanillaGaussians.load_ply(out / "exports" / "rigid_nodes.ply").num_gaussians == nodes.num_gaussians


@pytest.mark.parametrize("stop_at", [6, 10])
def test_resume_is_bitwise_identical(make_cfg, uninterrupted, stop_at):
    cfg = make_cfg()
    first = MultiTrainer(cfg, output_dir=cfg.output_dir)
    first.train(num_steps=stop_at)
    first.save_checkpoint()
    del first
    resumed = MultiTrainer(cfg, output_dir=cfg.output_dir, resume=True)
    assert resumed.step == stop_at
    resumed.train()
    full, mine = all_params(uninterrupted[0]), all_params(resumed)
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in full.items()}
    for k in full:
        assert torch.equal(mine[k], full[k]), f"{k} differs after resuming at step {stop_at}"
    assert not resumed.models[RIGID_KEY].params[INSTANCE_KEY].requires_grad


def test_densification_keeps_instance_ids_with_their_gaussians(make_cfg):
    """Two instance labels (both on the one moving car, so rendering is unchanged): after every
    densification each Gaussian still carries the label of the Gaussian it came from."""
    trainer = MultiTrainer(make_cfg(), output_dir=None)
    trainer.rigid_tracks = trainer.rigid_tracks * 2
    trainer._build_pose_table()
    nodes = trainer.models[RIGID_KEY]
    nodes.params[INSTANCE_KEY].data.copy_(torch.arange(nodes.num_gaussians).remainder(2).float())
    events = []
    densify = trainer.strategies[RIGID_KEY].step_post_backward

    def checked(*args, **kwargs):
        before = {k: v.detach().clone() for k, v in nodes.params.items()}
        densify(*args, **kwargs)
        after = {k: v.detach() for k, v in nodes.params.items()}
        n = after["means"].shape[0]
        assert all(v.shape[0] == n for v in after.values())
        # a Gaussian's colour and orientation are copied unchanged by duplicate / split / prune
        key_b = torch.cat([before["sh0"].reshape(len(before["sh0"]), -1), before["quats"]], 1)
        key_a = torch.cat([after["sh0"].reshape(n, -1), after["quats"]], 1)
        same = (key_a[:, None, :] == key_b[None, :, :]).all(-1)          # [n_after, n_before]
        assert same.any(1).all()
        label_match = same & (after[INSTANCE_KEY][:, None] == before[INSTANCE_KEY][None, :])
        assert label_match.any(1).all(), "a densified Gaussian changed its instance id"
        events.append((len(before["means"]), n))

    trainer.strategies[RIGID_KEY].step_post_backward = checked
    trainer.train(num_steps=9)  # pretrain + entropy: densification on
    assert any(b < a for b, a in events), "the rigid nodes never grew: the test checked nothing"
    assert set(nodes.params[INSTANCE_KEY].tolist()) == {0.0, 1.0}
    assert len(trainer.strategies[RIGID_KEY].state["grad2d"]) == nodes.num_gaussians
