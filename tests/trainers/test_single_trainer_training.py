"""SingleTrainer on real Gaussians and real images: stages, outputs, exact resume, preemption, bad input."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

import models.trainers.stage_losses as stage_losses_mod
import models.trainers.sugar_term as sugar_term_mod
from models.gaussians.vanilla import VanillaGaussians
from models.trainers.base import NonFiniteLossError
from models.trainers.checkpoint import find_latest, list_checkpoints
from models.trainers.single import SingleTrainer
from models.trainers.trace import read_trace

from .tiny_run import tiny_config


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_street") / "scene"


@pytest.fixture
def make_cfg(scene_dir, tmp_path):
    def make(name="run", *overrides):
        return tiny_config(scene_dir, tmp_path / name, *overrides)
    return make


def params_of(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.params.items()}


@pytest.fixture(scope="module")
def uninterrupted(scene_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    trainer = SingleTrainer(tiny_config(scene_dir, out), output_dir=out)
    modes = []
    trainer.add_step_callback(lambda tr, info: modes.append((info.stage, info.outputs.render.info["render_mode"])))
    trainer.train()
    return trainer, out, modes


def test_stages_change_what_a_step_renders(uninterrupted):
    _, _, modes = uninterrupted
    assert modes == [("pretrain", "RGB")] * 7 + [("entropy", "RGB")] * 2 + [("sugar", "RGB+ED")] * 6


def test_run_writes_its_outputs(uninterrupted):
    trainer, out, _ = uninterrupted
    assert trainer.step == 15 and trainer.current_stage == "sugar"
    ply = VanillaGaussians.load_ply(out / "exports" / "gaussians.ply")
    assert ply.num_gaussians == trainer.model.num_gaussians
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["views"] >= 1 and 5 < metrics["test"]["psnr"] < 60
    assert metrics["render_backend"] == trainer.render_backend == "cpp"  # auto on the CPU: the compiled one
    assert (out / "config.yaml").is_file()
    assert any((out / "tensorboard").iterdir())
    snapshots = sorted(p.name for p in (out / "renders").glob("*.png"))
    assert "step_000005_pretrain.png" in snapshots and any(n.startswith("test_") for n in snapshots)
    records = read_trace(out / "trace")
    assert [(r["step"], r["to"], r["weights"]["to"]) for r in records if r["event"] == "transition"] == [
        (0, "pretrain", 0.0), (7, "entropy", 0.3), (9, "sugar", 0.1)]
    assert find_latest(out / "checkpoints").name == "step_000015.pt"


def test_sugar_start_prunes_low_opacity_and_stops_densification(make_cfg):
    cfg = make_cfg()
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    seen = {}

    def before_sugar(event, tr, stage):
        if event == "stage_end" and stage.name == "entropy":
            seen["kept"] = int((torch.sigmoid(tr.model.params["opacities"]) >= 0.5).sum())
        if event == "stage_start" and stage.name == "sugar":
            seen["after"] = tr.model.num_gaussians
            seen["min_opacity"] = float(torch.sigmoid(tr.model.params["opacities"].detach()).min())

    trainer.add_stage_callback(before_sugar)
    trainer.train()
    assert seen["after"] == seen["kept"] > 0
    assert seen["min_opacity"] >= 0.5
    assert trainer.model.num_gaussians == seen["after"]  # no densification in the sugar stage


@pytest.mark.parametrize("stop_at", [6, 7, 8, 9, 12])
def test_resume_is_bitwise_identical(make_cfg, uninterrupted, stop_at):
    cfg = make_cfg()
    first = SingleTrainer(cfg, output_dir=cfg.output_dir)
    first.train(num_steps=stop_at)
    first.save_checkpoint()
    del first
    resumed = SingleTrainer(cfg, output_dir=cfg.output_dir, resume=True)
    assert resumed.step == stop_at
    resumed.train()
    full = params_of(uninterrupted[0])
    mine = params_of(resumed)
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in full.items()}
    for k in full:
        assert torch.equal(mine[k], full[k]), f"parameter {k} differs after resuming at step {stop_at}"


def test_seed_acceptance_on_real_training(make_cfg):
    """The 8,000-step checkpoint, scaled: step 8 of 7/2/6 is entropy step 1."""
    cfg = make_cfg()
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    trainer.train(num_steps=8)
    trainer.save_checkpoint()
    resumed = SingleTrainer(cfg, output_dir=cfg.output_dir, resume=True)
    assert (resumed.current_stage, resumed.stage_step) == ("entropy", 1)
    weights = {}
    resumed.add_stage_callback(lambda e, tr, s: weights.setdefault((e, s.name), tr.render_cfg.opacity_entropy_weight))
    resumed.train()
    assert weights[("stage_start", "sugar")] == 0.1
    assert ("stage_start", "entropy") not in weights


def test_sigterm_finishes_the_step_checkpoints_and_resume_continues(make_cfg, uninterrupted):
    cfg = make_cfg()
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    def signal_after_step_4(tr, info):
        if info.step == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered to the handler train() installed

    trainer.add_step_callback(signal_after_step_4)
    trainer.train()
    assert trainer.step == 5
    assert [p.name for p in list_checkpoints(cfg.output_dir + "/checkpoints")] == ["step_000005.pt"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    resumed = SingleTrainer(cfg, output_dir=cfg.output_dir, resume=True)
    resumed.train()
    for k, v in params_of(uninterrupted[0]).items():
        assert torch.equal(resumed.model.params[k].detach(), v)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(make_cfg, monkeypatch):
    cfg = make_cfg("nan", "checkpoint.every=3")
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    real = stage_losses_mod.photometric_loss

    def poisoned(*args, **kwargs):
        loss, terms = real(*args, **kwargs)
        return (loss * float("nan") if trainer.step == 4 else loss), terms

    monkeypatch.setattr(stage_losses_mod, "photometric_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="step 4 .*loss is nan"):
        trainer.train()
    ckpts = list_checkpoints(cfg.output_dir + "/checkpoints")
    assert [p.name for p in ckpts] == ["step_000003.pt"]
    SingleTrainer(cfg, output_dir=cfg.output_dir, resume=True)  # still loads


@pytest.mark.parametrize("override, kwarg, expected", [
    (None, "density_factor", None), ("sugar.sdf_density_factor=1.0", "density_factor", 1.0),
    (None, "estimate", "depth"), ("sugar.sdf_estimate=normal", "estimate", "normal"),
])
def test_sdf_keys_reach_the_sdf_term(make_cfg, monkeypatch, override, kwarg, expected):
    """sugar.sdf_density_factor (null: the loss's own 1/(k+1), as SuGaR) and sugar.sdf_estimate
    (default depth, SuGaR's) are what the sugar stage's SDF term gets."""
    seen = []
    real = sugar_term_mod.sugar_sdf_loss

    def spy(*args, **kwargs):
        seen.append(kwargs.get(kwarg, "absent"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sugar_term_mod, "sugar_sdf_loss", spy)
    trainer = SingleTrainer(make_cfg("sdf_keys", *([] if override is None else [override])), output_dir=None)
    trainer.train()
    assert seen and all(v == expected for v in seen)


@pytest.mark.parametrize("overrides, reads", [
    (("sugar.sdf_depth=lidar",), "lidar"), (("sugar.sdf_depth=lidar_only",), "lidar_only"),
    (("loss.lidar_depth=0.01",), "lidar"),   # the default, auto, in a run supervised by LiDAR ...
    ((), "expected"),                        # ... and in one that is not
])
def test_sdf_depth_lidar_reads_the_lidar_return_where_a_pixel_has_one(make_cfg, monkeypatch, overrides, reads):
    """sugar.sdf_depth=lidar: the SDF term's depth map is the view's LiDAR camera z on pixels with a
    return and the rendered expected depth on the others; lidar_only also zeroes the alpha the term
    reads off the LiDAR's pixels (no SDF sample there); auto is lidar when loss.lidar_depth > 0."""
    seen = []
    real = sugar_term_mod.SugarRegularizer.losses

    def spy(self, gs, radii, depth, alpha, viewmat, view, step):
        seen.append((depth.detach().clone(), alpha.detach().clone(), view.lidar_depth.clone()))
        return real(self, gs, radii, depth, alpha, viewmat, view, step)

    monkeypatch.setattr(sugar_term_mod.SugarRegularizer, "losses", spy)
    rendered = []
    trainer = SingleTrainer(make_cfg("sdf_" + reads, *overrides), output_dir=None)
    trainer.add_step_callback(lambda tr, info: rendered.append(
        (info.outputs.render.depth.detach().clone(), info.outputs.render.alpha.detach().clone()))
        if info.stage == "sugar" else None)
    trainer.train()
    assert len(seen) == len(rendered) == 6  # every sugar step
    for (depth, alpha, lidar), (rendered_depth, rendered_alpha) in zip(seen, rendered):
        depth, alpha, rendered_depth, rendered_alpha = (x.reshape(lidar.shape)
                                                        for x in (depth, alpha, rendered_depth, rendered_alpha))
        hit = lidar > 0
        assert 0 < int(hit.sum()) < hit.numel()
        assert torch.equal(depth[~hit], rendered_depth[~hit])
        assert torch.equal(alpha[hit], rendered_alpha[hit])
        if reads == "expected":
            assert torch.equal(depth, rendered_depth) and not torch.equal(depth[hit], lidar[hit])
        else:
            assert torch.equal(depth[hit], lidar[hit])
        if reads == "lidar_only":
            assert not alpha[~hit].any()
        else:
            assert torch.equal(alpha[~hit], rendered_alpha[~hit]) and alpha[~hit].any()


def test_a_run_says_which_backend_renders_it(make_cfg, monkeypatch, caplog):
    """Where the compiled rasterizer cannot be built, render.backend=auto falls back to PyTorch,
    whose numbers differ in the last digits: the log says so before step 0."""
    import logging

    from models.rendering import cpp_backend
    monkeypatch.setattr(cpp_backend, "available", lambda: False)
    with caplog.at_level(logging.INFO, logger="models.trainers"):
        trainer = SingleTrainer(make_cfg("fallback"), output_dir=None)
    assert trainer.render_backend == "torch"
    assert any("with the torch backend (render.backend=auto: the compiled C++ rasterizer is unavailable" in r.message
               for r in caplog.records)


@pytest.mark.parametrize("override, message", [
    ("~render.opacity_entropy.table.sugar", "no weight for stage\\(s\\) 'sugar'"),
    ("render.opacity_entropy.table.sugar=-0.1", "weight for stage 'sugar' must be a finite number >= 0"),
    ("+optim.stage_schedule.2.hooks={render_dpth:true}", "unknown hook 'render_dpth'"),
    ("+optim.stage_schedule.2.hooks={render_depth:false}", "stage 'sugar' turns on sugar_losses, which need"),
    ("scene.type=processed", "scene"),
])
def test_bad_config_fails_before_step_0(make_cfg, override, message, scene_dir, tmp_path):
    if override == "scene.type=processed":
        cfg = make_cfg("bad", override, f"scene.path={tmp_path / 'no_such_scene'}")
    else:
        cfg = make_cfg("bad", override)
    with pytest.raises(ValueError, match=message):
        SingleTrainer(cfg, output_dir=cfg.output_dir)
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_surface_terms_train_in_the_sugar_stage_only_and_resume_bitwise(make_cfg):
    """sugar.depth_normal_weight > 0: the sugar stage renders the surface maps and adds the
    depth-normal term (and the SDF reads the unbiased depth); a resumed run gives the same bits."""
    overrides = ("sugar.depth_normal_weight=0.1", "sugar.sdf_depth=unbiased")
    cfg = make_cfg("surface", *overrides)
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    seen = []
    trainer.add_step_callback(lambda tr, info: seen.append(
        (info.stage, info.outputs.render.info.get("surface") is not None, "depth_normal" in info.values)))
    trainer.train()
    assert seen == [("pretrain", False, False)] * 7 + [("entropy", False, False)] * 2 + [("sugar", True, True)] * 6
    again = SingleTrainer(make_cfg("surface2", *overrides), output_dir=None)
    again.train(num_steps=11)
    state = again.state_dict()
    resumed = SingleTrainer(make_cfg("surface3", *overrides), output_dir=None)
    resumed.load_state_dict(state)
    resumed.train()
    for k, v in params_of(trainer).items():
        assert torch.equal(params_of(resumed)[k], v), k
