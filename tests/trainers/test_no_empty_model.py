"""No schedule empties a model: the sugar stage's α < 0.5 prune keeps a floor of the most opaque
Gaussians (per model, and per rigid instance of a scene graph) and says what was too short."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from models.trainers.scene_graph import RIGID_KEY, MultiTrainer
from models.trainers.single import MODEL_KEY, SingleTrainer
from models.trainers.strategy import prune_mask_with_floor

from .tiny_run import tiny_config

# 3 / 2 / 3 steps from α = 0.1: no Gaussian gets near 0.5 before the prune (the tiny config's 0.6 is
# lowered back to the quick config's 0.1), so SuGaR's prune alone would remove every one of them
SHORT = ["optim.stage_schedule=[{name:pretrain,steps:3},{name:entropy,steps:2},{name:sugar,steps:3}]",
         "model.init_opacity=0.1"]
NO_FLOOR = ["sugar.prune_keep_fraction=0.0", "sugar.prune_keep_min=0"]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_street_prune") / "scene"


# ----- the rule ---------------------------------------------------------------------------------
def test_floor_keeps_the_most_opaque_when_everything_is_below_the_threshold():
    opacity = torch.tensor([0.1, 0.3, 0.2, 0.05, 0.45, 0.01, 0.02, 0.03, 0.04, 0.06])
    remove, spared = prune_mask_with_floor(opacity, 0.5, keep_fraction=0.2, keep_min=0)
    assert (~remove).nonzero().reshape(-1).tolist() == [1, 4]  # the two most opaque: 0.3 and 0.45
    assert spared == [(0, 10, 0, 2)]
    remove, spared = prune_mask_with_floor(opacity, 0.5, keep_fraction=0.0, keep_min=3)
    assert sorted((~remove).nonzero().reshape(-1).tolist()) == [1, 2, 4] and spared == [(0, 10, 0, 3)]


def test_floor_is_silent_when_the_threshold_keeps_enough():
    opacity = torch.tensor([0.9, 0.8, 0.1, 0.2, 0.7])
    remove, spared = prune_mask_with_floor(opacity, 0.5, keep_fraction=0.5, keep_min=2)
    assert remove.tolist() == [False, False, True, True, False] and spared == []
    # without a floor it is SuGaR's prune, even when that removes everything
    remove, spared = prune_mask_with_floor(torch.full((4,), 0.2), 0.5, keep_fraction=0.0, keep_min=0)
    assert remove.all() and spared == []


def test_floor_applies_per_group_and_is_capped_by_the_group_size():
    opacity = torch.tensor([0.9, 0.95, 0.1, 0.2, 0.3, 0.05])
    groups = torch.tensor([0, 0, 1, 1, 1, 2])
    remove, spared = prune_mask_with_floor(opacity, 0.5, keep_fraction=0.0, keep_min=2, groups=groups)
    # group 0 keeps its two opaque ones; group 1 its two most opaque; group 2 its only one
    assert (~remove).tolist() == [True, True, False, True, True, True]
    assert spared == [(1, 3, 0, 2), (2, 1, 0, 1)]


# ----- SingleTrainer ----------------------------------------------------------------------------
def test_short_schedule_without_the_floor_empties_the_model(scene_dir, tmp_path):
    """The failure the floor prevents (issue 10: "only 0 Gaussian(s) left" at 30 / 20 / 30)."""
    cfg = tiny_config(scene_dir, tmp_path / "nofloor", *SHORT, *NO_FLOOR)
    trainer = SingleTrainer(cfg, output_dir=None)
    with pytest.raises(ValueError, match="only 0 Gaussian"):
        trainer.train()


def test_short_schedule_finishes_with_a_usable_model_and_says_what_was_too_short(scene_dir, tmp_path, caplog):
    out = tmp_path / "short"
    trainer = SingleTrainer(tiny_config(scene_dir, out, *SHORT), output_dir=out)
    n0 = trainer.model.num_gaussians
    sizes = {}
    trainer.add_stage_callback(lambda e, tr, s: sizes.setdefault((e, s.name), tr.model.num_gaussians))
    with caplog.at_level(logging.WARNING, logger="models.trainers"):
        trainer.train()
    assert trainer.finished
    before, after = sizes[("stage_end", "entropy")], sizes[("stage_start", "sugar")]
    assert after == max(32, -(-before // 10)) < before  # the floor: max(10 %, 32), the most opaque
    assert trainer.model.num_gaussians == after  # and the sugar stage trained them (no densification)
    warning = " ".join(r.getMessage() for r in caplog.records if "prune" in r.getMessage())
    assert "too short" in warning and "pretrain 3, entropy 2" in warning and f"Background: 0 of {before}" in warning
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_gaussians"] == after and metrics["test"]["psnr"] > 8  # renders, not an empty model
    assert n0 > 0


def test_schedule_shorter_than_the_densification_start_warns(scene_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="models.trainers"):
        SingleTrainer(tiny_config(scene_dir, tmp_path / "d", *SHORT, "densify.refine_start_iter=100"), output_dir=None)
    assert "end at step 3, before densify.refine_start_iter=100" in caplog.text  # the entropy stage does not densify
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="models.trainers"):
        SingleTrainer(tiny_config(scene_dir, tmp_path / "d2", *SHORT), output_dir=None)  # refine_start_iter=2
    assert "densification" not in caplog.text


def test_bad_floor_settings_fail_before_step_0(scene_dir, tmp_path):
    for override, message in [("sugar.prune_keep_fraction=1.5", "prune_keep_fraction"),
                              ("sugar.prune_keep_min=-1", "prune_keep_min")]:
        with pytest.raises(ValueError, match=message):
            SingleTrainer(tiny_config(scene_dir, tmp_path / "bad", override), output_dir=None)


# ----- MultiTrainer: every node, every rigid instance -------------------------------------------
def test_scene_graph_short_schedule_keeps_every_node_and_instance(scene_dir, tmp_path, caplog):
    cfg = tiny_config(scene_dir, tmp_path / "multi", "trainer=MultiTrainer", "loss.mask_dynamic=false", *SHORT)
    trainer = MultiTrainer(cfg, output_dir=None)
    assert RIGID_KEY in trainer.models
    seen = {}

    def on_stage(event, tr, stage):
        if stage.name == "entropy" and event == "stage_end":
            seen["before"] = torch.bincount(tr.models[RIGID_KEY].instance_ids).tolist()
        if stage.name == "sugar" and event == "stage_start":
            seen["sizes"] = {n: m.num_gaussians for n, m in tr.models.items()}
            seen["instances"] = torch.bincount(tr.models[RIGID_KEY].instance_ids).tolist()

    trainer.add_stage_callback(on_stage)
    with caplog.at_level(logging.WARNING, logger="models.trainers"):
        trainer.train()
    assert trainer.finished
    assert seen["sizes"][MODEL_KEY] >= 32 and seen["sizes"][RIGID_KEY] > 0
    assert len(seen["instances"]) == len(seen["before"]) >= 1
    assert all(k == min(n, max(32, -(-n // 10))) for k, n in zip(seen["instances"], seen["before"]))
    assert f"{RIGID_KEY} instance {trainer.rigid_tracks[0].id}" in caplog.text
