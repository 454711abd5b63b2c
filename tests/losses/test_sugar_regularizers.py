"""Behaviour of SuGaR's regularizers on a wall of Gaussians seen by a camera (see _scenes.wall)."""
import pytest
import torch

from models.sugar import (
    knn,
    quat_to_rotmat,
    sample_points_around_gaussians,
    sugar_density_loss,
    sugar_normal_loss,
    sugar_sdf_loss,
    visible_surface_mask,
)
from ._scenes import logit, random_rotmats, wall

M = 8000


def _samples(w, rotmats, scales, seed=0, m=M):
    n = w["means"].shape[0]
    return sample_points_around_gaussians(w["means"], rotmats, scales, torch.arange(n), m,
                                          generator=torch.Generator().manual_seed(seed))


def _variants(w):
    """The wall as built, its Gaussians randomly rotated, and the same Gaussians made fat."""
    n = w["means"].shape[0]
    wide = w["scales"][0, 0].item()
    return {
        "wall": (w["rotmats"], w["scales"]),
        "rotated": (random_rotmats(n, torch.Generator().manual_seed(1)), w["scales"]),
        "fat": (w["rotmats"], torch.full_like(w["scales"], wide)),
    }


def _sdf(w, rotmats, scales, **kw):
    nb = knn(w["means"], 16)
    pts, gi = _samples(w, rotmats, scales)
    return sugar_sdf_loss(pts, gi, nb, (w["means"], rotmats, scales, w["opacities"]),
                          w["depth_map"], w["alpha_map"], w["viewmat"], w["K"],
                          w["scene_extent"], **kw)


@pytest.fixture(scope="module")
def scene():
    return wall()


def test_sdf_loss_is_small_for_a_thin_wall_and_large_otherwise(scene):
    losses = {name: _sdf(scene, R, s) for name, (R, s) in _variants(scene).items()}
    good, stats = losses["wall"]
    assert stats["sdf_kept"] > 0.8 * M               # nearly every sample lies in the image
    assert good.item() < 0.005
    for name in ("rotated", "fat"):
        assert losses[name][0].item() > 8 * good.item(), name


def test_sdf_loss_weight_and_residual_clamp(scene):
    R, s = _variants(scene)["fat"]
    base, stats = _sdf(scene, R, s)
    assert base.item() == pytest.approx(0.2 * stats["sdf_residual"], rel=1e-5)
    assert _sdf(scene, R, s, weight=1.0)[0].item() == pytest.approx(5 * base.item(), rel=1e-5)
    clamped, _ = _sdf(scene, R, s, max_residual=0.01)
    assert clamped.item() <= 0.2 * 0.01 + 1e-7


def test_sdf_keeps_only_gaussians_on_the_visible_surface(scene):
    w = dict(scene)
    # the rendered surface is 1 m in front of the wall: every wall Gaussian is occluded
    w["depth_map"] = scene["depth_map"] - 1.0
    loss, stats = _sdf(w, scene["rotmats"], scene["scales"])
    assert stats["sdf_kept"] == 0 and loss.item() == 0.0
    # empty pixels (alpha ~ 0) do not count as a surface
    w = dict(scene, alpha_map=torch.zeros_like(scene["alpha_map"]))
    assert _sdf(w, scene["rotmats"], scene["scales"])[1]["sdf_kept"] == 0
    # camera turned around: everything is behind it
    w = dict(scene, viewmat=torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0])))
    assert _sdf(w, scene["rotmats"], scene["scales"])[1]["sdf_kept"] == 0


def test_visible_surface_mask_uses_two_sigma_along_the_ray():
    w = wall()
    means = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 5.009], [0.0, 0.0, 5.011], [0.0, 0.0, 4.0]])
    R = torch.eye(3).expand(4, 3, 3)
    s = torch.tensor([[0.15, 0.15, 0.005]]).expand(4, 3)   # σ along the optical axis = 0.005
    keep = visible_surface_mask(means, R, s, w["depth_map"], w["viewmat"], w["K"], w["alpha_map"])
    assert keep.tolist() == [True, True, False, False]
    # the same offsets pass when the Gaussian is turned so that the ray meets its wide axis
    R90 = quat_to_rotmat(torch.tensor([[0.7071068, 0.7071068, 0.0, 0.0]])).expand(4, 3, 3)
    keep = visible_surface_mask(means, R90, s, w["depth_map"], w["viewmat"], w["K"], w["alpha_map"])
    assert keep.tolist() == [True, True, True, False]


def test_normal_loss_zero_for_aligned_and_large_for_random_normals(scene):
    nb = knn(scene["means"], 16)
    out = {}
    for name, (R, s) in _variants(scene).items():
        pts, gi = _samples(scene, R, s)
        out[name] = sugar_normal_loss(pts, gi, nb, (scene["means"], R, s, scene["opacities"]))
    assert out["wall"][0].item() < 1e-6
    assert out["fat"][0].item() < 1e-6          # still aligned: the regularizer is about normals
    assert out["rotated"][0].item() > 0.02
    assert out["rotated"][1]["normal_residual"] > 0.1
    # flipping half of the normals (R → −R keeps axes, changes their sign) changes nothing
    flip = torch.where(torch.arange(len(nb)) % 2 == 0, 1.0, -1.0).view(-1, 1, 1)
    R = scene["rotmats"] * flip
    pts, gi = _samples(scene, R, scene["scales"])
    assert sugar_normal_loss(pts, gi, nb, (scene["means"], R, scene["scales"],
                                           scene["opacities"]))[0].item() < 1e-6


def test_density_mode_prefers_a_wall_with_unit_density():
    w = wall(wide=0.08)                        # neighbours overlap to a density of about 1
    nb = knn(w["means"], 16)
    out = {}
    for name, (R, s) in _variants(w).items():
        pts, gi = _samples(w, R, s)
        out[name] = sugar_density_loss(pts, gi, nb, (w["means"], R, s, w["opacities"]))[0].item()
    assert out["wall"] < 0.02
    assert out["rotated"] > 4 * out["wall"] and out["fat"] > 4 * out["wall"]


def _params(w, seed=2):
    """Leaf parameters as a trainer holds them, perturbed away from the perfect wall."""
    g = torch.Generator().manual_seed(seed)
    n = w["means"].shape[0]
    quats = torch.tensor([1.0, 0, 0, 0]).expand(n, 4) + 0.2 * torch.randn(n, 4, generator=g)
    return {
        "means": (w["means"] + 0.01 * torch.randn(n, 3, generator=g)).requires_grad_(True),
        "quats": quats.clone().requires_grad_(True),
        "log_scales": w["scales"].log().clone().requires_grad_(True),
        "raw_opacity": torch.full((n,), logit(0.9)).requires_grad_(True),
        "depth_map": w["depth_map"].clone().requires_grad_(True),
    }


def _all_losses(w, p, seed=0):
    R = quat_to_rotmat(p["quats"])
    s = p["log_scales"].exp()
    gs = (p["means"], R, s, torch.sigmoid(p["raw_opacity"]))
    nb = knn(p["means"], 16)
    pts, gi = sample_points_around_gaussians(p["means"], R, s, torch.arange(len(nb)), 4000,
                                             generator=torch.Generator().manual_seed(seed))
    sdf, _ = sugar_sdf_loss(pts, gi, nb, gs, p["depth_map"], w["alpha_map"], w["viewmat"],
                            w["K"], w["scene_extent"])
    dens, _ = sugar_density_loss(pts, gi, nb, gs)
    nrm, _ = sugar_normal_loss(pts, gi, nb, gs)
    return sdf, dens, nrm


def test_gradients_are_finite_and_reach_every_parameter(scene):
    p = _params(scene)
    sdf, dens, nrm = _all_losses(scene, p)
    expected = {
        "sdf": (sdf, ["means", "quats", "log_scales", "raw_opacity", "depth_map"]),
        "density": (dens, ["means", "quats", "log_scales", "raw_opacity"]),
        "normal": (nrm, ["quats"]),
    }
    for name, (loss, targets) in expected.items():
        grads = torch.autograd.grad(loss, [p[t] for t in targets], allow_unused=True,
                                    retain_graph=True)
        for t, gr in zip(targets, grads):
            assert gr is not None, f"{name}: no gradient into {t}"
            assert torch.isfinite(gr).all(), f"{name}: non-finite gradient into {t}"
            assert gr.abs().sum() > 0, f"{name}: zero gradient into {t}"
    # the depth map only receives gradient around the samples' projections (bilinear taps)
    (g_depth,) = torch.autograd.grad(sdf, [p["depth_map"]])
    assert 0 < (g_depth != 0).float().mean() < 1


def test_losses_are_deterministic_with_a_fixed_generator(scene):
    p = _params(scene)
    a = [t.item() for t in _all_losses(scene, p, seed=5)]
    b = [t.item() for t in _all_losses(scene, p, seed=5)]
    c = [t.item() for t in _all_losses(scene, p, seed=6)]
    assert a == b and a != c


def test_sdf_gradient_descent_flattens_the_wall(scene):
    """A few Adam steps on the SDF + normal terms reduce them for a perturbed wall."""
    p = _params(scene)
    params = [p["means"], p["quats"], p["log_scales"], p["raw_opacity"]]
    opt = torch.optim.Adam(params, lr=5e-3)
    first = None
    for step in range(15):
        sdf, _, nrm = _all_losses(scene, p, seed=step)
        loss = sdf + nrm
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_sdf_loss_matches_a_hand_computed_value_in_front_of_and_behind_the_surface():
    w = wall()
    # Gaussian 0 on the surface at the image centre; 16 neighbours far away (density ~0 at p)
    far = torch.stack([torch.full((16,), 100.0), torch.arange(16.0), torch.full((16,), 5.0)], -1)
    means = torch.cat([torch.tensor([[0.0, 0.0, 5.0]]), far])
    R = torch.eye(3).expand(17, 3, 3)
    s = torch.full((17, 3), 0.1)
    a = torch.full((17,), 0.8)
    nb = knn(means, 16)
    delta = 0.05
    pts = torch.tensor([[0.0, 0.0, 5.0 - delta], [0.0, 0.0, 5.0 + delta]])   # f̂ = +δ and −δ
    loss, stats = sugar_sdf_loss(pts, torch.zeros(2, dtype=torch.long), nb, (means, R, s, a),
                                 w["depth_map"], w["alpha_map"], w["viewmat"], w["K"],
                                 scene_extent=5.0)
    d = 0.8 * torch.exp(torch.tensor(-0.5 * delta ** 2 / 0.1 ** 2)) / 17    # SuGaR's d / k
    f = 0.1 * torch.sqrt(-2 * torch.log(d))                                 # β = 0.1
    expected = 0.2 * (f - delta).abs() / (5.0 / 10)
    assert stats["sdf_kept"] == 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_normal_loss_matches_a_hand_computed_value():
    import math
    # Gaussian 0 at the origin with normal +z; Gaussian 1 nearby, turned 120° about y (its
    # normal points away from n_0, so it is flipped); 15 more far away (weight 0).
    th = math.radians(120)
    quat1 = torch.tensor([math.cos(th / 2), 0.0, math.sin(th / 2), 0.0])
    far = torch.stack([torch.full((15,), 50.0), torch.arange(15.0), torch.zeros(15)], -1)
    means = torch.cat([torch.tensor([[0.0, 0, 0], [0.1, 0, 0]]), far])
    quats = torch.cat([torch.tensor([[1.0, 0, 0, 0]]), quat1[None], torch.tensor([[1.0, 0, 0, 0]]).expand(15, 4)])
    R = quat_to_rotmat(quats)
    s = torch.tensor([0.2, 0.2, 0.01]).expand(17, 3).clone()
    s[1] = torch.tensor([0.15, 0.25, 0.02])
    a = torch.full((17,), 0.9)
    a[1] = 0.6
    nb = knn(means, 16)
    p = torch.tensor([[0.05, 0.02, 0.004]])
    loss, _ = sugar_normal_loss(p, torch.zeros(1, dtype=torch.long), nb, (means, R, s, a))

    n0 = torch.tensor([0.0, 0, 1])
    n1 = -torch.tensor([math.sin(th), 0.0, math.cos(th)])             # flipped towards n0
    ws = []
    for j, n in ((0, n0), (1, n1)):
        cov = R[j] @ torch.diag(s[j] ** 2) @ R[j].T
        x = p[0] - means[j]
        a_hat = a[j] * torch.exp(-0.5 * x @ torch.linalg.solve(cov, x))
        ws.append(a_hat * (x @ n).abs() / s[j].min() ** 2)
    w0, w1 = [w / (ws[0] + ws[1]) for w in ws]
    expected = 0.2 * (n0 - (w0 * n0 + w1 * n1)).pow(2).sum()
    assert expected.item() > 1e-3                                    # the case is not trivial
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_sdf_loss_is_invariant_to_a_rigid_change_of_world_frame(scene):
    """Moving world and camera together changes nothing: checks the viewmat / ray conventions."""
    R_var, s = _variants(scene)["rotated"]
    nb = knn(scene["means"], 16)
    gs = (scene["means"], R_var, s, scene["opacities"])
    pts, gi = _samples(scene, R_var, s)
    args = (scene["depth_map"], scene["alpha_map"])
    ref, ref_stats = sugar_sdf_loss(pts, gi, nb, gs, *args, scene["viewmat"], scene["K"], 5.0)

    T = torch.eye(4)
    T[:3, :3] = random_rotmats(1, torch.Generator().manual_seed(3))[0]
    T[:3, 3] = torch.tensor([3.0, -1.0, 7.0])                        # world' = T · world
    move = lambda x: x @ T[:3, :3].T + T[:3, 3]
    gs_t = (move(scene["means"]), T[:3, :3] @ R_var, s, scene["opacities"])
    pts_t, gi_t = sample_points_around_gaussians(gs_t[0], gs_t[1], s, torch.arange(len(nb)), M,
                                                 generator=torch.Generator().manual_seed(0))
    assert torch.allclose(pts_t, move(pts), atol=1e-4)
    viewmat_t = scene["viewmat"] @ torch.linalg.inv(T)
    out, out_stats = sugar_sdf_loss(pts_t, gi_t, nb, gs_t, *args, viewmat_t, scene["K"], 5.0)
    assert abs(out_stats["sdf_kept"] - ref_stats["sdf_kept"]) <= 0.001 * M
    assert out.item() == pytest.approx(ref.item(), rel=1e-2)


def test_visible_surface_mask_is_invariant_to_a_rigid_change_of_world_frame():
    w = wall()
    g = torch.Generator().manual_seed(4)
    n = 2000
    means = torch.cat([torch.rand(n, 2, generator=g) * 5 - 2.5,
                       5 + 0.1 * torch.randn(n, 1, generator=g)], dim=1)
    R = random_rotmats(n, g)
    s = torch.cat([torch.full((n, 2), 0.05), torch.full((n, 1), 0.003)], dim=1)
    args = (w["depth_map"], w["viewmat"], w["K"], w["alpha_map"])
    ref = visible_surface_mask(means, R, s, *args)
    assert 0.1 < ref.float().mean() < 0.9                # the 2σ test decides here
    T = torch.eye(4)
    T[:3, :3] = random_rotmats(1, g)[0]
    T[:3, 3] = torch.tensor([-2.0, 4.0, 1.0])
    moved = visible_surface_mask(means @ T[:3, :3].T + T[:3, 3], T[:3, :3] @ R, s,
                                 w["depth_map"], w["viewmat"] @ torch.linalg.inv(T), w["K"],
                                 w["alpha_map"])
    assert (moved != ref).sum() <= 2


def _tilted_plane(tilt_deg, spacing=0.2, half=3.0, depth=5.0, thin=0.005, wide=0.15, size=64, focal=50.0):
    """A plane through (0, 0, depth) whose normal is turned tilt_deg from the view axis (about x),
    covered by thin Gaussians lying in it; the depth map is the exact plane depth per pixel centre."""
    import math
    t = math.radians(tilt_deg)
    u = torch.tensor([1.0, 0.0, 0.0])
    n = torch.tensor([0.0, -math.sin(t), math.cos(t)])
    v = torch.linalg.cross(n, u)
    ticks = torch.arange(-half, half + 1e-6, spacing)
    a, b = torch.meshgrid(ticks, ticks / max(math.cos(t), 0.2), indexing="xy")
    centre = torch.tensor([0.0, 0.0, depth])
    means = centre + a.reshape(-1, 1) * u + b.reshape(-1, 1) * v
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    rays = torch.stack([(xs - size / 2) / focal, (ys - size / 2) / focal, torch.ones_like(xs)], -1)
    depth_map = (n @ centre) / (rays @ n)          # z of the ray's hit (the ray has z = 1)
    m = means.shape[0]
    return {
        "means": means, "rotmats": torch.stack([u, v, n], dim=1).expand(m, 3, 3).clone(),
        "scales": torch.tensor([wide, wide, thin]).expand(m, 3).clone(), "opacities": torch.full((m,), 0.99),
        "viewmat": torch.eye(4), "K": K, "depth_map": depth_map, "alpha_map": torch.ones(size, size),
        "scene_extent": depth,
    }


def test_sdf_estimate_along_the_normal_removes_the_grazing_angle_bias():
    """sugar.sdf_estimate=normal: SuGaR's f̂ is a camera-z difference, its ideal f a distance along the
    normal. Facing the camera the two agree; on a plane seen at a grazing angle SuGaR's residual grows
    (it would be lowest with Gaussians 1/cos(tilt) times thicker), the normal estimate's does not."""
    losses = {}
    for tilt in (0, 70):
        w = _tilted_plane(tilt)
        for est in ("depth", "normal"):
            losses[tilt, est] = _sdf(w, w["rotmats"], w["scales"], estimate=est)[0].item()
    assert losses[0, "normal"] == pytest.approx(losses[0, "depth"], rel=1e-3)
    assert losses[70, "depth"] > 2 * losses[70, "normal"]
    assert losses[70, "normal"] < 1.5 * losses[0, "normal"]
    with pytest.raises(ValueError, match="'depth' or 'normal'"):
        _sdf(_tilted_plane(0), *_variants(_tilted_plane(0))["wall"], estimate="ray")


def test_precomputed_frames_give_the_same_losses_and_gradients(scene):
    """The trainer hands the three terms the neighbour table and normals of gaussian_frames (one compiled
    pass on a CPU); each term must give what it gives when it builds them itself, value and gradients."""
    from models.sugar.geometry import gaussian_frames
    w = scene
    out = {}
    for name in ("own", "frames"):
        p = _params(w)
        s, opac = p["log_scales"].exp(), torch.sigmoid(p["raw_opacity"])
        if name == "frames":
            R, table, normals = gaussian_frames(p["means"], p["quats"], s, opac)
            kw_t, kw_tn = {"table": table}, {"table": table, "normals": normals}
        else:
            R, kw_t, kw_tn = quat_to_rotmat(p["quats"]), {}, {}
        gs = (p["means"], R, s, opac)
        nb = knn(p["means"].detach(), 16)
        pts, gi = sample_points_around_gaussians(p["means"], R, s, torch.arange(len(nb)), 4000,
                                                 generator=torch.Generator().manual_seed(0))
        sdf, _ = sugar_sdf_loss(pts, gi, nb, gs, p["depth_map"], w["alpha_map"], w["viewmat"], w["K"],
                                w["scene_extent"], **kw_t)
        dens, _ = sugar_density_loss(pts, gi, nb, gs, **kw_tn)
        nrm, _ = sugar_normal_loss(pts, gi, nb, gs, **kw_tn)
        leaves = [p[k] for k in ("means", "quats", "log_scales", "raw_opacity", "depth_map")]
        out[name] = [(loss.detach(), torch.autograd.grad(loss, leaves, allow_unused=True, retain_graph=True))
                     for loss in (sdf, dens, nrm)]
    for (la, ga), (lb, gb) in zip(out["own"], out["frames"]):
        assert torch.allclose(la, lb, rtol=1e-5, atol=1e-7)
        for a, b, leaf in zip(ga, gb, leaves):   # an unused input: None, or zeros from the fused backward
            a = torch.zeros_like(leaf) if a is None else a
            b = torch.zeros_like(leaf) if b is None else b
            # float32 sums over 4,000 samples in another order: ~1e-4 of the largest entry
            assert (a - b).abs().max() <= 1e-3 * max(1e-6, float(a.abs().max()))
