"""A training step's values read only when shown, its NaN check deferred on a GPU, and the host-device
synchronisations left in a step (models.trainers.step_values, models.trainers.host_syncs)."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

import models.trainers.stage_losses as stage_losses_mod
from models.trainers.base import NonFiniteLossError
from models.trainers.checkpoint import list_checkpoints
from models.trainers.host_syncs import HostSyncAudit
from models.trainers.single import SingleTrainer
from models.trainers.step_values import FiniteLossWatch, StepValues

from .tiny_run import tiny_config


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_street") / "scene"


def test_step_values_are_read_once_when_first_read():
    calls = []

    def psnr():
        calls.append(1)
        return torch.tensor(21.5)

    terms = {"photometric": torch.tensor(0.25, requires_grad=True) * 1.0, "sky_opacity": torch.tensor(0.125)}
    values = StepValues(terms, terms["photometric"] + terms["sky_opacity"], psnr, 42)
    assert list(values) == ["photometric", "sky_opacity", "loss", "psnr", "num_gaussians"]
    assert "loss" in values and "nope" not in values and len(values) == 5
    assert not values.ready and calls == []          # keys, membership and length read nothing
    assert values["loss"] == 0.375 and values.ready and calls == [1]
    assert dict(values) == {"photometric": 0.25, "sky_opacity": 0.125, "loss": 0.375, "psnr": 21.5,
                            "num_gaussians": 42}
    assert calls == [1] and all(type(v) is float for k, v in values.items() if k != "num_gaussians")
    with pytest.raises(KeyError):
        values["nope"]


def test_float64_terms_keep_their_values():
    values = StepValues({"a": torch.tensor(0.1, dtype=torch.float64)}, torch.tensor(0.1, dtype=torch.float64),
                        lambda: torch.tensor(3.0), 1)
    assert values["a"] == 0.1 and values["loss"] == 0.1 and values["psnr"] == 3.0


def _poison(monkeypatch, trainer, bad_step):
    real = stage_losses_mod.photometric_loss

    def poisoned(*args, **kwargs):
        loss, terms = real(*args, **kwargs)
        return (loss * float("nan") if trainer.step == bad_step else loss), terms

    monkeypatch.setattr(stage_losses_mod, "photometric_loss", poisoned)


def test_a_deferred_nan_check_names_the_bad_step_and_saves_nothing_after_it(scene_dir, tmp_path, monkeypatch):
    """Checked every 5 steps (a GPU's way): the NaN of step 7 is found before the checkpoint of step 9."""
    cfg = tiny_config(scene_dir, tmp_path / "run", "checkpoint.every=3", "checkpoint.keep=5")
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    trainer.finite_check = FiniteLossWatch(5, " on test")
    _poison(monkeypatch, trainer, 7)
    with pytest.raises(NonFiniteLossError, match=r"step 7 \(stage entropy, step 0\): the loss is nan .*found at "
                                                 r"step 8 \(the loss is checked every 5 steps on test"):
        trainer.train()
    assert [p.name for p in list_checkpoints(cfg.output_dir + "/checkpoints")] == ["step_000003.pt", "step_000006.pt"]


def test_a_deferred_nan_check_runs_every_n_steps(scene_dir, tmp_path, monkeypatch):
    cfg = tiny_config(scene_dir, tmp_path / "run")
    trainer = SingleTrainer(cfg, output_dir=None)
    trainer.finite_check = FiniteLossWatch(3)
    _poison(monkeypatch, trainer, 1)
    with pytest.raises(NonFiniteLossError, match=r"step 1 .*loss is nan .*found at step 2 "):
        trainer.train()
    assert trainer.step == 2   # the third step (step 2) checked the three and raised


def test_on_a_cpu_the_nan_check_is_at_once():
    watch = FiniteLossWatch(1)
    stage = type("Stage", (), {"name": "sugar", "stage_step": 3})()
    watch.before_backward(9, stage, {"a": torch.tensor(1.0)}, torch.tensor(1.0))
    with pytest.raises(NonFiniteLossError, match=r"^step 9 \(stage sugar, step 3\): the loss is inf \({'a': inf}\); "
                                                 "stopping without saving"):
        watch.before_backward(9, stage, {"a": torch.tensor(float("inf"))}, torch.tensor(float("inf")))


def test_what_makes_a_step_wait_for_the_device(scene_dir, tmp_path):
    """The synchronisations of the trainer's own code in steps that log nothing, with the NaN check deferred
    as on a GPU: none in pretrain (densifying) and entropy; in sugar the three its sampling and SuGaR's
    subsets need (the candidates' indices, the SDF's kept samples, the normal term's valid samples). The CPU
    rasterizer's (models/rendering) and the optimizers' CPU step counts are not a GPU step's."""
    cfg = tiny_config(scene_dir, tmp_path / "run", "log.scalars_every=1000", "log.snapshot_every=0",
                      "log.tensorboard=true", "densify.refine_every=100", "sugar.knn_every=100",
                      "optim.stage_schedule=[{name:pretrain,steps:8},{name:entropy,steps:6},{name:sugar,steps:9}]")
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    trainer.finite_check = FiniteLossWatch(1000)
    seen = {}
    for stage, warm in (("pretrain", 3), ("entropy", 5), ("sugar", 5)):
        trainer.train(num_steps=warm)
        with HostSyncAudit() as audit:
            trainer.train(num_steps=3)
        assert trainer.current_stage == stage
        seen[stage] = Counter()
        for (kind, site), n in audit.per_call_site().items():
            path = site.rsplit(":", 1)[0]
            if not path.startswith("models/rendering/") and path != "models/trainers/optimizers.py":
                seen[stage][(kind, path)] += n
    assert seen["pretrain"] == Counter() and seen["entropy"] == Counter()
    assert seen["sugar"] == Counter({("nonzero", "models/trainers/sugar_term.py"): 3,
                                     ("nonzero", "models/sugar/regularizers.py"): 3,
                                     ("item", "models/sugar/regularizers.py"): 3})


def test_the_audit_counts_each_kind_at_its_line():
    x = torch.arange(6.0)
    with HostSyncAudit() as audit:
        float(x.sum())
        x.nonzero()
        x[x > 2]
        torch.unique(x)
        x.to("meta")
        x + 1                                            # not a synchronisation
    kinds = Counter(kind for kind, _ in audit.per_call_site())
    assert kinds == Counter({"item": 1, "nonzero": 1, "mask": 1, "sized": 1, "to_device": 1})
    # a repository line (a test's own lines are this repository's too)
    assert all(site.startswith("tests/trainers/test_step_values.py:") for _, site in audit.per_call_site())
