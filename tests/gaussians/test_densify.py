"""Densification with gsplat's DefaultStrategy on CPU through the PyTorch renderer."""
import math

import pytest
import torch

from models.gaussians.densify import (build_strategy, check_optimizers_match, init_strategy_state,
                                      load_strategy_state, strategy_state_dict)
from models.gaussians.vanilla import VanillaGaussians, create_optimizers
from models.rendering import rasterization

W, H = 32, 24
K = torch.tensor([[[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]]])


def _target():
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    img = torch.stack([(xs // 4 % 2).float(), (ys // 4 % 2).float(), 0.5 * torch.ones(H, W)], -1)
    return img[None]


def _model(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.stack([(torch.rand(n, generator=g) - 0.5) * 3, (torch.rand(n, generator=g) - 0.5) * 2.2,
                       torch.full((n,), 3.0)], -1)
    m = VanillaGaussians.from_points(xyz, torch.rand(n, 3, generator=g), sh_degree=1, init_opacity=0.3)
    with torch.no_grad():
        m.params["opacities"][:5] = -8.0  # almost transparent: must be pruned
    return m


def _train(m, strategy, state, opts, steps, start=0):
    target = _target()
    for step in range(start, start + steps):
        g = m.get_gaussians()
        img, _, info = rasterization(g["means"], g["quats"], g["scales"], g["opacities"], g["colors"],
                                     torch.eye(4)[None], K, W, H, sh_degree=1, backend="torch")
        strategy.step_pre_backward(m.params, opts, state, step, info)
        loss = (img - target).abs().mean()
        loss.backward()
        strategy.step_post_backward(m.params, opts, state, step, info, packed=False)
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)
    return loss.item()


def test_strategy_grows_and_prunes_with_consistent_optimizers():
    torch.manual_seed(0)
    m = _model()
    opts = create_optimizers(m.params, scene_scale=1.0)
    strategy = build_strategy({"refine_start_iter": 3, "refine_every": 5, "reset_every": 1000,
                               "refine_stop_iter": 100, "grow_grad2d": 1e-5, "prune_opa": 0.005})
    strategy.check_sanity(m.params, opts)
    state = init_strategy_state(strategy, scene_scale=1.0)
    n0 = m.num_gaussians
    _train(m, strategy, state, opts, 11)   # refines at step 5 and 10
    assert m.num_gaussians > n0            # grew
    assert (torch.sigmoid(m.params["opacities"]) >= 0.005).all()  # the transparent ones were pruned
    check_optimizers_match(m.params, opts)
    for name, p in m.params.items():
        st = opts[name].state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape
    assert state["grad2d"].shape == (m.num_gaussians,)


def _grown(max_gaussians):
    torch.manual_seed(0)
    m = _model()
    opts = create_optimizers(m.params, scene_scale=1.0)
    strategy = build_strategy({"refine_start_iter": 3, "refine_every": 5, "reset_every": 1000,
                               "refine_stop_iter": 100, "grow_grad2d": 1e-5, "prune_opa": 0.005,
                               "max_gaussians": max_gaussians})
    state = init_strategy_state(strategy, scene_scale=1.0)
    counts = []
    for start in (0, 6):                   # refinements at steps 5 and 10
        _train(m, strategy, state, opts, 6, start=start)
        counts.append(m.num_gaussians)
    check_optimizers_match(m.params, opts)
    return m, counts, strategy


def test_gaussian_budget_caps_growth_and_keeps_the_largest_gradients():
    _, free, _ = _grown(0)
    assert free[-1] > 70                   # uncapped, this setup grows well past the budget below
    m, capped, strategy = _grown(70)
    assert all(c <= 70 for c in capped) and capped[0] > 55   # grew up to the budget, not past it
    assert strategy.grow_grad2d == 1e-5    # the threshold is raised only inside the refinement
    m0, none, _ = _grown(-1)               # <= 0: no budget
    assert none == free


def test_gaussian_budget_below_the_count_grows_nothing_but_still_prunes():
    m, counts, _ = _grown(10)
    assert counts[0] <= 55                 # 5 transparent ones pruned, nothing added
    assert (torch.sigmoid(m.params["opacities"]) >= 0.005).all()


def test_strategy_state_round_trip_gives_identical_continuation():
    def run(split_at_resume: bool):
        torch.manual_seed(0)
        m = _model(seed=1)
        opts = create_optimizers(m.params)
        strategy = build_strategy({"refine_start_iter": 2, "refine_every": 4, "grow_grad2d": 1e-5,
                                   "reset_every": 1000})
        state = init_strategy_state(strategy)
        _train(m, strategy, state, opts, 6)
        if split_at_resume:
            saved = {"params": {k: v.detach().clone() for k, v in m.params.items()},
                     "opts": {k: o.state_dict() for k, o in opts.items()},
                     "strategy": strategy_state_dict(state)}
            m = VanillaGaussians(saved["params"], sh_degree=1)
            opts = create_optimizers(m.params)
            for k, o in opts.items():
                o.load_state_dict(saved["opts"][k])
            state = load_strategy_state(saved["strategy"])
        torch.manual_seed(123)  # the split draws random samples: same RNG in both runs
        _train(m, strategy, state, opts, 6, start=6)
        return m
    a, b = run(False), run(True)
    assert a.num_gaussians == b.num_gaussians
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k


def test_unknown_strategy_key_is_refused():
    with pytest.raises(ValueError, match="grow_grad"):
        build_strategy({"grow_grad": 1e-4})


def _opacities_after(strategy, steps=7):
    torch.manual_seed(0)
    m = _model(seed=2)
    opts = create_optimizers(m.params)
    state = init_strategy_state(strategy)
    _train(m, strategy, state, opts, steps)
    return torch.sigmoid(m.params["opacities"].detach())


RESET = {"refine_start_iter": 100, "refine_every": 100, "reset_every": 3, "refine_stop_iter": 50, "prune_opa": 0.05}
RESET_CAP = 0.12  # reset caps opacities at 2 x prune_opa = 0.1; one Adam step after it moves them a little


def test_installed_gsplat_needs_the_opacity_reset_fix_exactly_when_the_version_says():
    """The plain DefaultStrategy of the installed gsplat resets opacities at step 6 (reset_every 3)
    or never; the version check must say which. When a newer gsplat is pinned this tells whether
    models.gaussians.densify.OPACITY_RESET_BROKEN_UP_TO must move."""
    from gsplat.strategy import DefaultStrategy

    from models.gaussians.densify import opacity_reset_needs_fix

    plain = _opacities_after(DefaultStrategy(**RESET))
    resets = bool((plain <= RESET_CAP).all())
    assert resets != opacity_reset_needs_fix()
    assert opacity_reset_needs_fix("1.5.3") and not opacity_reset_needs_fix("9.0.0")


@pytest.mark.parametrize("fix", [True, False])
def test_staged_strategy_resets_only_when_the_stage_allows(fix):
    """With the fix (gsplat 1.5.3) the subclass runs the reset; without it (a gsplat whose own reset
    works) it switches gsplat's reset off for a stage without reset_opacity."""
    from models.gaussians.densify import StagedDefaultStrategy, opacity_reset_needs_fix

    if not fix and opacity_reset_needs_fix():
        # the installed gsplat never resets: "off" is what it does anyway; check the off switch only
        off = _opacities_after(StagedDefaultStrategy(**RESET, reset_opacity=False, fix_opacity_reset=False))
        assert (off > RESET_CAP).any()
        return
    on = _opacities_after(StagedDefaultStrategy(**RESET, fix_opacity_reset=fix))
    assert (on <= RESET_CAP).all()
    off = _opacities_after(StagedDefaultStrategy(**RESET, reset_opacity=False, fix_opacity_reset=fix))
    assert (off > RESET_CAP).any()


def _update_inputs(n, cameras, seed):
    g = torch.Generator().manual_seed(seed)
    means2d = torch.randn(cameras, n, 2, generator=g)
    means2d.grad = torch.randn(cameras, n, 2, generator=g) * (torch.rand(cameras, n, 1, generator=g) < 0.8)
    radii = (torch.rand(cameras, n, 2, generator=g) * 6).to(torch.int32) * (torch.rand(cameras, n, 1, generator=g) < 0.7)
    return {"width": W, "height": H, "n_cameras": cameras, "radii": radii, "gaussian_ids": None, "means2d": means2d}


@pytest.mark.parametrize("scale2d", [0, 1000])
def test_running_statistics_without_host_reads_are_gsplats_bits(scale2d):
    """The staged strategy's _update_state (no nonzero / boolean indexing, for one unpacked camera) gives
    gsplat's grad2d, count and radii to the bit, over steps; several cameras take gsplat's own path."""
    from gsplat.strategy import DefaultStrategy

    from models.trainers.host_syncs import HostSyncAudit
    n = 300
    params = {"means": torch.zeros(n, 3)}
    ours, theirs = build_strategy({"refine_scale2d_stop_iter": scale2d}), DefaultStrategy(refine_scale2d_stop_iter=scale2d)
    for cameras in (1, 2):
        s_ours, s_theirs = ours.initialize_state(scene_scale=1.0), theirs.initialize_state(scene_scale=1.0)
        for step in range(4):
            info = _update_inputs(n, cameras, seed=10 * cameras + step)
            with HostSyncAudit() as audit:
                ours._update_state(params, s_ours, info)
            theirs._update_state(params, s_theirs, info)
            if cameras == 1:
                assert audit.total() == 0, audit.per_call_site()
        for key in ("grad2d", "count") + (("radii",) if scale2d else ()):
            assert s_ours[key].dtype == s_theirs[key].dtype
            assert torch.equal(s_ours[key], s_theirs[key]), (cameras, key)
        assert (s_ours["count"] > 0).any() and (s_ours["count"] < 4).any()   # visible and culled ones both
