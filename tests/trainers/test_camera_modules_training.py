"""The camera models in a real SingleTrainer (config section `cameras`): they train, resume bitwise,
are saved and reopened, the exports carry the refined poses, and a mismatched resume is refused."""
from __future__ import annotations

import json

import pytest
import torch

from models.run import open_run
from models.trainers.single import SingleTrainer
from models.trainers.training_state import split_pose_optimizer

from .tiny_run import tiny_config

ALL_ON = ("cameras.pose.enabled=true", "cameras.appearance.enabled=true", "cameras.appearance.per=camera+image",
          "cameras.sky.model=envmap", "cameras.sky.resolution=4", "cameras.pose.test_alignment_steps=3",
          "scene.pose_noise_m=0.05", "scene.pose_noise_deg=0.3", "scene.exposure_gain=0.2", "scene.cameras=[0,1]")


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("noisy_street") / "scene"


@pytest.fixture(scope="module")
def full_run(scene_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cams") / "run"
    trainer = SingleTrainer(tiny_config(scene_dir, out, *ALL_ON), output_dir=out)
    trainer.train()
    return trainer, out


def state_of(trainer):
    s = {f"model.{k}": v.detach().clone() for k, v in trainer.model.params.items()}
    s["pose"] = trainer.pose_refinement.deltas.detach().clone()
    s["affine"] = trainer.gaussian_scene.appearance.affine.detach().clone()
    s["image"] = trainer.gaussian_scene.appearance.image.detach().clone()
    s["sky"] = trainer.gaussian_scene.sky.texture.detach().clone()
    return s


def test_every_camera_model_learns(full_run):
    trainer, out = full_run
    s = state_of(trainer)
    for name in ("pose", "affine", "image", "sky"):
        assert s[name].abs().max() > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["appearance"].startswith("each view's camera")
    assert "aligned to the image (3 Adam steps)" in metrics["test"]["test_poses"]


def test_resume_with_camera_models_is_bitwise(full_run, scene_dir, tmp_path):
    trainer, _ = full_run
    first = SingleTrainer(tiny_config(scene_dir, tmp_path / "a", *ALL_ON), output_dir=None)
    first.train(num_steps=8)
    state = first.state_dict()
    resumed = SingleTrainer(tiny_config(scene_dir, tmp_path / "b", *ALL_ON), output_dir=None)
    resumed.load_state_dict(state)
    resumed.train()
    want, got = state_of(trainer), state_of(resumed)
    for k, v in want.items():
        assert torch.equal(got[k], v), k


def test_rotations_and_translations_learn_at_their_own_rates(scene_dir, tmp_path):
    trainer = SingleTrainer(tiny_config(scene_dir, tmp_path / "r", *ALL_ON, "cameras.pose.lr=0.02",
                                        "cameras.pose.rotation_lr=0.004"), output_dir=None)
    optim = trainer.optim
    assert optim.cameras["pose"].param_groups[0]["params"] == [trainer.pose_refinement.translations]
    assert optim.cameras["pose_rotation"].param_groups[0]["params"] == [trainer.pose_refinement.rotations]
    assert optim.cameras["pose"].param_groups[0]["lr"] == 0.02
    assert optim.cameras["pose_rotation"].param_groups[0]["lr"] == 0.004


def test_a_checkpoint_with_one_pose_optimizer_resumes_as_it_trained():
    """Checkpoints written when one Adam held each slot's 6 numbers: split into the rotation's and the
    translation's, the moments and rate carried, the next steps are those the one Adam would take."""
    g = torch.Generator().manual_seed(4)
    table = torch.nn.Parameter(torch.zeros(5, 6))
    legacy = torch.optim.Adam([table], lr=3e-3, eps=1e-15)
    legacy_decay = torch.optim.lr_scheduler.ExponentialLR(legacy, gamma=0.99)
    grads = [torch.randn(5, 6, generator=g) for _ in range(6)]
    for grad in grads[:3]:
        table.grad = grad.clone()
        legacy.step()
        legacy_decay.step()
    saved = {"pose": {"adam": legacy.state_dict(), "schedule": legacy_decay.state_dict()}, "sky": {"adam": {}}}
    split = split_pose_optimizer(saved)
    assert set(split) == {"pose", "pose_rotation", "sky"} and split["sky"] is saved["sky"]
    rot, trans = (torch.nn.Parameter(table.detach()[:, c].clone()) for c in (slice(0, 3), slice(3, 6)))
    optimizers = {}
    for name, p in (("pose_rotation", rot), ("pose", trans)):
        opt = torch.optim.Adam([p], lr=1.0, eps=1e-15)     # the current config's rate: the saved one wins
        decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
        opt.load_state_dict(split[name]["adam"])
        decay.load_state_dict(split[name]["schedule"])
        optimizers[name] = (opt, decay)
    for grad in grads[3:]:
        table.grad = grad.clone()
        legacy.step()
        legacy_decay.step()
        rot.grad, trans.grad = grad[:, :3].clone(), grad[:, 3:].clone()
        for opt, decay in optimizers.values():
            opt.step()
            decay.step()
    assert torch.equal(torch.cat([rot, trans], 1), table)
    assert split_pose_optimizer(split) is split   # already two: as it is


def test_exports_and_opened_runs_carry_the_refined_poses(full_run):
    trainer, out = full_run
    refined = trainer.pose_refinement.refined_poses(trainer.cameras.train_views)
    cams = json.loads((out / "exports" / "cameras.json").read_text())
    info = json.loads((out / "exports" / "export_info.json").read_text())
    T = torch.tensor(info["export_from_world"], dtype=torch.float64)
    for i, c2w in enumerate(refined):
        pos = torch.tensor(cams[i]["position"], dtype=torch.float64)
        assert torch.allclose(pos, T[:3, :3] @ c2w[:3, 3].double() + T[:3, 3], atol=1e-5)
    assert any(not torch.allclose(a, v.camera_to_world) for a, v in zip(refined, trainer.cameras.train_views))
    run = open_run(out)
    for a, v in zip(refined, run.cameras.train_views):
        assert torch.equal(a, v.camera_to_world)
    assert run.scene.sky is not None and run.scene.appearance is not None
    with torch.no_grad():
        assert torch.equal(run.scene.render(run.cameras.train_views[0].camera, run.cameras.train_views[0].frame_idx).rgb,
                           trainer.gaussian_scene.render(run.cameras.train_views[0].camera,
                                                         run.cameras.train_views[0].frame_idx).rgb)


def test_resume_without_the_runs_camera_models_is_refused(full_run, scene_dir, tmp_path):
    _, out = full_run
    others = [o for o in ALL_ON if not o.startswith("cameras.")]
    with pytest.raises(ValueError, match="sky"):
        SingleTrainer(tiny_config(scene_dir, tmp_path / "c", *others), output_dir=None,
                      resume=str(sorted((out / "checkpoints").glob("*.pt"))[-1]))


def test_sugar_terms_read_the_depth_through_the_camera_it_was_rendered_from(scene_dir, tmp_path, monkeypatch):
    """With pose refinement, the sugar stage's depth is rendered from the refined pose: the SuGaR terms
    must project their samples through that camera, not the dataset's (noisy) one."""
    from models.trainers.sugar_term import SugarRegularizer
    seen = []
    real = SugarRegularizer.losses

    def spy(self, gs, radii, depth, alpha, viewmat, view, step):
        seen.append((viewmat.detach().clone(), view.camera.viewmat.detach().clone(), viewmat.requires_grad))
        return real(self, gs, radii, depth, alpha, viewmat, view, step)

    monkeypatch.setattr(SugarRegularizer, "losses", spy)
    out = tmp_path / "run"
    trainer = SingleTrainer(tiny_config(scene_dir, out, *ALL_ON), output_dir=out)
    moved = trainer.pose_refinement.deltas
    moved[1:] = 0.01   # every frame but the gauge moved
    trainer.pose_refinement.set_deltas(moved)
    trainer.train()
    assert seen, "the sugar stage ran no SuGaR term"
    assert not any(grad for _, _, grad in seen)
    # the refined camera, not the view's (views of the first frame, the gauge, have none to apply)
    assert any(not torch.allclose(used, dataset_pose, atol=1e-4) for used, dataset_pose, _ in seen)
