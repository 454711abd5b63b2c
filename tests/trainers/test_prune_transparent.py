"""The entropy stage removes what its term drove transparent (the `prune_transparent` hook): every
densify.refine_every steps, the Gaussians below α 1/255 go, which the projection culls (no gradient,
never drawn again); a model or rigid instance that would fall below the sugar prune's floor keeps
all of its Gaussians; a resume across such a prune is exact."""
from __future__ import annotations

import pytest
import torch

from models.trainers.base import DEFAULT_STAGE_HOOKS
from models.trainers.scene_graph import RIGID_KEY, MultiTrainer
from models.trainers.single import MODEL_KEY, SingleTrainer

from .tiny_run import tiny_config

# steps 1-4 are the entropy stage; with refine_every 2 the hook prunes after steps 2 and 4
SCHEDULE = ["optim.stage_schedule=[{name:pretrain,steps:1},{name:entropy,steps:4},{name:sugar,steps:2}]",
            "densify.refine_every=2"]
DEAD = -12.0  # logit: sigmoid = 6e-6, far below 1/255; culled, so nothing brings it back
FAINT = -5.35  # logit: sigmoid = 0.0047, above 1/255 (still drawn) but below densify.prune_opa = 0.005


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_street_transparent") / "scene"


def kill(params, mask):
    with torch.no_grad():
        params["opacities"][mask] = DEAD


def adam_rows(trainer, name=MODEL_KEY):
    return {k: opt.state[opt.param_groups[0]["params"][0]]["exp_avg"].shape[0]
            for k, opt in trainer.optimizers[name].items() if opt.state}


def test_only_the_entropy_stage_has_the_hook():
    assert [s for s, h in DEFAULT_STAGE_HOOKS.items() if h["prune_transparent"]] == ["entropy"]


def test_entropy_stage_removes_what_is_transparent_every_refinement(scene_dir, tmp_path):
    trainer = SingleTrainer(tiny_config(scene_dir, tmp_path / "a", *SCHEDULE), output_dir=None)
    n = trainer.model.num_gaussians
    dead = torch.arange(n) % 3 == 0
    kill(trainer.model.params, dead)
    faint = torch.arange(n) % 3 == 1
    with torch.no_grad():
        trainer.model.params["opacities"][faint] = FAINT
    trainer.train(num_steps=2)  # step 0 (pretrain: densification, not yet refining) and step 1 (1 % 2 != 0)
    assert trainer.model.num_gaussians == n
    trainer.train(num_steps=1)  # step 2: entropy, 2 % 2 == 0
    assert trainer.model.num_gaussians == n - int(dead.sum())  # the faint ones, still drawn, stay
    opacity = torch.sigmoid(trainer.model.params["opacities"].detach())
    assert bool((opacity >= 1 / 255).all()) and bool((opacity < 0.005).any())
    # the optimizer state follows the parameters row by row, and training goes on
    assert set(adam_rows(trainer).values()) == {n - int(dead.sum())}
    trainer.train()
    assert trainer.finished


def test_a_model_that_would_fall_below_the_floor_keeps_everything(scene_dir, tmp_path):
    trainer = SingleTrainer(tiny_config(scene_dir, tmp_path / "b", *SCHEDULE), output_dir=None)
    n = trainer.model.num_gaussians
    kill(trainer.model.params, torch.ones(n, dtype=torch.bool))
    sizes = {}
    trainer.add_stage_callback(lambda e, tr, s: sizes.setdefault((e, s.name), tr.model.num_gaussians))
    trainer.train()
    # nothing went in the entropy stage; the sugar prune then kept its floor, the most opaque (with its warning)
    assert sizes[("stage_end", "entropy")] == n
    assert sizes[("stage_start", "sugar")] == max(32, -(-n // 10))


def test_off_when_the_stage_says_so(scene_dir, tmp_path):
    cfg = tiny_config(scene_dir, tmp_path / "c", *SCHEDULE,
                      "+optim.stage_schedule.1.hooks={prune_transparent:false}")
    trainer = SingleTrainer(cfg, output_dir=None)
    n = trainer.model.num_gaussians
    kill(trainer.model.params, torch.arange(n) % 3 == 0)
    trainer.train(num_steps=5)
    assert trainer.model.num_gaussians == n


def test_resume_across_the_prune_is_bitwise_identical(scene_dir, tmp_path):
    def start(out):
        trainer = SingleTrainer(tiny_config(scene_dir, out, *SCHEDULE), output_dir=out)
        kill(trainer.model.params, torch.arange(trainer.model.num_gaussians) % 3 == 0)
        return trainer

    full = start(tmp_path / "full")
    n = full.model.num_gaussians
    full.train()
    first = start(tmp_path / "half")
    first.train(num_steps=3)  # after the first prune
    first.save_checkpoint()
    resumed = SingleTrainer(tiny_config(scene_dir, tmp_path / "half", *SCHEDULE), output_dir=tmp_path / "half",
                            resume=True)
    assert resumed.model.num_gaussians == first.model.num_gaussians < n
    resumed.train()
    for k, p in full.model.params.items():
        assert torch.equal(p.detach(), resumed.model.params[k].detach()), k


def test_scene_graph_prunes_per_model_and_spares_an_instance_at_its_floor(scene_dir, tmp_path):
    cfg = tiny_config(scene_dir, tmp_path / "multi", "trainer=MultiTrainer", "loss.mask_dynamic=false", *SCHEDULE)
    trainer = MultiTrainer(cfg, output_dir=None)
    rigid = trainer.models[RIGID_KEY]
    ids = rigid.instance_ids
    first = int(ids.min())
    per_instance = torch.bincount(ids).tolist()
    kill(rigid.params, ids == first)  # one whole instance transparent: it keeps all of its Gaussians
    n_bg = trainer.models[MODEL_KEY].num_gaussians
    kill(trainer.models[MODEL_KEY].params, torch.arange(n_bg) % 3 == 0)
    trainer.train(num_steps=3)
    assert trainer.models[MODEL_KEY].num_gaussians == n_bg - int((torch.arange(n_bg) % 3 == 0).sum())
    assert torch.bincount(trainer.models[RIGID_KEY].instance_ids).tolist()[first] == per_instance[first]


def test_a_resume_under_other_hooks_says_which(scene_dir, tmp_path):
    """The warning for a checkpoint of another schedule names the hooks when only those differ."""
    out = tmp_path / "hooks"
    first = SingleTrainer(tiny_config(scene_dir, out, *SCHEDULE), output_dir=out)
    first.train(num_steps=2)
    first.save_checkpoint()
    with pytest.warns(UserWarning, match=r"entropy 4 \(hooks prune_transparent=false\)"):
        SingleTrainer(tiny_config(scene_dir, out, *SCHEDULE, "+optim.stage_schedule.1.hooks={prune_transparent:false}"),
                      output_dir=out, resume=True)
