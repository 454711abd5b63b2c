"""The camera models (models/camera_models.py): the SE(3) maths, pose refinement recovering a known
perturbation, the affine appearance recovering a known gain, and the sky's cube map."""
from __future__ import annotations

import math

import pytest
import torch

from models.camera_models import (AffineAppearance, EnvironmentMap, PoseRefinement, compose_rigid, pose_errors,
                                  rotation_angle_deg, similarity_to, so3_exp, held_out_pose)
from models.cameras import Camera, rigid_inverse
from models.rendering.random_scene import frontal_gaussians
from models.rendering.render import render_gaussians


def test_so3_exp_is_rodrigues_and_smooth_at_zero():
    w = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    r = so3_exp(w)
    assert torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert math.isclose(float(torch.linalg.det(r)), 1.0, abs_tol=1e-12)
    axis, angle = w / w.norm(), float(w.norm())
    assert torch.allclose(r @ axis, axis, atol=1e-12)
    assert math.isclose(float(rotation_angle_deg(r)), math.degrees(angle), rel_tol=1e-9)
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    so3_exp(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()
    assert torch.autograd.gradcheck(so3_exp, (torch.tensor([1e-5, 2e-5, -1e-5], dtype=torch.float64, requires_grad=True),))
    assert torch.autograd.gradcheck(so3_exp, (w.clone().requires_grad_(),))


class _View:
    def __init__(self, c2w, frame, cam="0"):
        self.camera_to_world, self.frame_idx, self.cam_name = c2w, frame, cam


def test_frame_slots_rotate_about_the_rig_centre():
    views = []
    for f in range(3):
        for cam, x in (("0", -0.5), ("1", 0.5)):
            c2w = torch.eye(4)
            c2w[:3, 3] = torch.tensor([x, 0.0, 2.0 * f])
            views.append(_View(c2w, f, cam))
    ref = PoseRefinement.for_views(views, "frame")
    assert ref.num_slots == 3 and ref.slot_of_view == [0, 0, 1, 1, 2, 2]
    assert torch.allclose(ref.pivots[2], torch.tensor([0.0, 0.0, 4.0]))
    assert torch.equal(ref.refine_view(0, views[0].camera_to_world), views[0].camera_to_world)  # the gauge
    d = ref.deltas
    d[2, :3] = torch.tensor([0.0, 0.1, 0.0])
    ref.set_deltas(d)
    a, b = ref.refine_view(4, views[4].camera_to_world), ref.refine_view(5, views[5].camera_to_world)
    # the rig turns as one about its centre: the centre stays, the two cameras keep their distance
    assert torch.allclose((a[:3, 3] + b[:3, 3]) / 2, torch.tensor([0.0, 0.0, 4.0]), atol=1e-6)
    assert math.isclose(float((a[:3, 3] - b[:3, 3]).detach().norm()), 1.0, rel_tol=1e-6)
    # a held-out frame between two training frames takes the nearest one's (the lower on a tie)
    held = _View(views[2].camera_to_world.clone(), 1)
    assert torch.equal(held_out_pose(ref, views[:2] + views[4:], held),
                       compose_rigid(ref.delta(0), held.camera_to_world).detach())


def _render(gs, camera):
    return render_gaussians(gs, camera, background=torch.full((3,), 0.2), backend="cpp").rgb


def test_pose_refinement_recovers_a_known_perturbation():
    """A view rendered from its true pose; the refinement starts at a pose 8 cm and 1.5 degrees off and
    finds its way back by the photometric loss alone (the Gaussians fixed)."""
    W, H = 96, 64
    means, quats, scales, opac, colors, vms, Ks = frontal_gaussians(3000, W, H, seed=3, depth=(2.0, 8.0))
    gs = {"means": means, "quats": quats, "scales": scales * 2.0, "opacities": opac, "colors": colors}
    true_c2w = rigid_inverse(vms[0])
    with torch.no_grad():
        target = _render(gs, Camera(true_c2w, Ks[0], W, H))
    wrong = torch.zeros(6)
    wrong[:3] = torch.tensor([0.012, -0.02, 0.008])       # ~1.4 degrees
    wrong[3:] = torch.tensor([0.05, -0.04, 0.05])         # ~8 cm
    noisy = PoseRefinement([0], torch.zeros(1, 3), "image", anchor_first=False)
    noisy.set_deltas(wrong)
    with torch.no_grad():
        start = noisy.refine(true_c2w, 0).detach()
    ref = PoseRefinement([0], start[None, :3, 3], "image", anchor_first=False)
    opt = torch.optim.Adam(ref.parameters(), lr=2e-3)
    for _ in range(300):
        loss = (_render(gs, Camera(ref.refine(start, 0), Ks[0], W, H)) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    before = pose_errors([start], [true_c2w])
    after = pose_errors([ref.refine(start, 0).detach()], [true_c2w])
    assert after["translation_mean_m"] < before["translation_mean_m"] / 5
    assert after["rotation_mean_deg"] < before["rotation_mean_deg"] / 5


def test_affine_appearance_recovers_a_known_gain():
    W, H = 48, 32
    means, quats, scales, opac, colors, vms, Ks = frontal_gaussians(1500, W, H, seed=5)
    gs = {"means": means, "quats": quats, "scales": scales * 2.0, "opacities": opac, "colors": colors}
    with torch.no_grad():
        canonical = _render(gs, Camera(rigid_inverse(vms[0]), Ks[0], W, H))
    gain = torch.tensor([0.75, 1.2, 0.9])
    seen = (canonical * gain + 0.02).clamp(0, 1)
    app = AffineAppearance(["front", "side"])
    assert app(canonical, "front") is canonical or torch.equal(app(canonical, "front"), canonical)
    opt = torch.optim.Adam(app.parameters(), lr=1e-2)
    for _ in range(400):
        loss = ((app(canonical, "side") - seen) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m = app.matrix("side").detach()
    assert torch.allclose(torch.diagonal(m[:, :3]), gain, atol=0.03)
    assert torch.allclose(m[:, 3], torch.full((3,), 0.02), atol=0.02)
    # the reference camera never moves: the canonical appearance is the first camera's
    assert app.matrix("front") is None


def test_environment_map_looks_up_each_face_and_round_trips():
    sky = EnvironmentMap(4)
    with torch.no_grad():
        for face in range(6):
            sky.texture[face] = torch.logit(torch.tensor(0.1 + 0.15 * face)).expand(3, 4, 4)
    dirs = torch.tensor([[1.0, 0.1, 0.2], [-1.0, 0.2, 0.1], [0.1, 1.0, 0.3], [0.2, -1.0, 0.1],
                         [0.1, 0.3, 1.0], [0.2, 0.1, -1.0]])
    got = sky(dirs)[:, 0]
    assert torch.allclose(got, 0.1 + 0.15 * torch.arange(6.0), atol=1e-5)
    cam = Camera(torch.eye(4), torch.tensor([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]]), 16, 12)
    assert sky.render(cam).shape == (12, 16, 3)
    again = EnvironmentMap.from_state(sky.state())
    assert torch.equal(again.texture, sky.texture)
    with pytest.raises(ValueError, match="expected"):
        EnvironmentMap(8).load(sky.state())


def _random_c2w(g, dtype):
    c2w = torch.eye(4, dtype=dtype)
    c2w[:3, :3] = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0].to(dtype)
    c2w[:3, 3] = (torch.randn(3, generator=g, dtype=torch.float64) * 3).to(dtype)
    return c2w


@pytest.mark.parametrize("mode", ["frame", "image"])
@pytest.mark.parametrize("size", [0.0, 1e-6, 1e-2, 0.7])
def test_host_pose_path_agrees_with_autograd_through_so3_exp(mode, size):
    """refine() on a CPU (host floats, analytic gradient) against the composition through so3_exp with
    autograd, in both of so3_exp's branches (θ² below and above 1e-8), the gauge slot included."""
    g = torch.Generator().manual_seed(11)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        ref = PoseRefinement(list(range(3)), torch.randn(3, 3, generator=g) * 5, mode).to(dtype)
        ref.set_deltas((torch.randn(3, 6, generator=g, dtype=torch.float64) * size).to(dtype))
        c2w, weights = _random_c2w(g, dtype), torch.randn(4, 4, generator=g, dtype=dtype)
        for slot in range(3):
            got, want = [], []
            for fast in (True, False):
                ref.zero_grad()
                if fast:
                    out = ref.refine(c2w, slot)
                else:
                    d = ref.delta(slot)
                    out = compose_rigid(c2w, d) if mode == "image" else compose_rigid(d, c2w)
                (out * weights).sum().backward()
                grad = torch.cat([ref.rotations.grad, ref.translations.grad], 1)
                (got if fast else want).extend([out.detach(), grad.clone()])
            scale = 1.0 + float(want[1].abs().max())
            assert torch.allclose(got[0], want[0], atol=tol, rtol=0), (dtype, slot)
            assert torch.allclose(got[1], want[1], atol=tol * scale, rtol=0), (dtype, slot)
            if slot == 0:
                assert not bool(got[1].any())   # the gauge gets no gradient
    # a pose that itself needs a gradient takes the autograd path (the gradient reaches it)
    c2w = _random_c2w(g, torch.float32).requires_grad_()
    ref.refine(c2w, 1).sum().backward()
    assert c2w.grad is not None


def test_compiled_sky_lookup_agrees_with_pytorch_and_is_thread_independent():
    g = torch.Generator().manual_seed(5)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        sky = EnvironmentMap(8).to(dtype)
        with torch.no_grad():
            sky.texture.copy_(torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64).to(dtype))
        K = torch.tensor([[30.0, 0.5, 20.0], [0.0, 28.0, 12.0], [0.0, 0.0, 1.0]], dtype=dtype)
        for trial in range(3):   # the identity (pixels on face boundaries and ties) and two random turns
            c2w = torch.eye(4, dtype=dtype) if trial == 0 else _random_c2w(g, dtype)
            cam = Camera(c2w, K, 40, 24)
            weights = torch.randn(24, 40, 3, generator=g, dtype=torch.float64).to(dtype)
            got = []
            for render in (sky.render, sky.render_torch):
                sky.texture.grad = None
                out = render(cam)
                (out * weights).sum().backward()
                got.append((out.detach(), sky.texture.grad.clone()))
            assert torch.allclose(got[0][0], got[1][0], atol=tol, rtol=0)
            assert torch.allclose(got[0][1], got[1][1], atol=4 * tol, rtol=0)
    n = torch.get_num_threads()
    bits = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            sky.texture.grad = None
            out = sky.render(Camera(c2w, K, 40, 24))
            (out * weights).sum().backward()
            bits.append((out.detach(), sky.texture.grad.clone()))
    finally:
        torch.set_num_threads(n)
    assert torch.equal(bits[0][0], bits[1][0]) and torch.equal(bits[0][1], bits[1][1])


def test_compiled_colour_transform_agrees_and_has_exact_gradients():
    from models.rendering import cpp_backend
    if not cpp_backend.available():
        pytest.skip("the compiled backend cannot be built here")
    g = torch.Generator().manual_seed(9)
    app = AffineAppearance(["front", "left", "right"], 4, "camera+image").double()
    with torch.no_grad():
        app.affine.copy_(torch.randn(2, 3, 4, generator=g, dtype=torch.float64) * 0.1)
        app.image.copy_(torch.randn(4, 6, generator=g, dtype=torch.float64) * 0.1)
    x = torch.rand(10, 13, 3, generator=g, dtype=torch.float64)
    for cam, image in (("front", None), ("front", 1), ("left", None), ("right", 3)):
        got = app(x, cam, image)
        want = x                                  # the definition: the camera's 3x4, then the image's gain
        m = app.matrix(cam)
        if m is not None:
            want = torch.einsum("ij,hwj->hwi", m[:, :3], want) + m[:, 3]
        if image is not None:
            gain = app.image[image]
            want = want * (1 + gain[:3]) + gain[3:]
        assert torch.allclose(got, want, atol=1e-12, rtol=0), (cam, image)
    m = app.transform("right", 3).detach().requires_grad_()
    assert torch.autograd.gradcheck(cpp_backend.colour_affine_cpp, (x.clone().requires_grad_(), m))
    big = torch.rand(97, 61, 3, generator=g)
    n = torch.get_num_threads()
    bits = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xi, mi = big.clone().requires_grad_(), m.detach().float().requires_grad_()
            cpp_backend.colour_affine_cpp(xi, mi).sum().backward()
            bits.append((xi.grad, mi.grad))
    finally:
        torch.set_num_threads(n)
    assert torch.equal(bits[0][0], bits[1][0]) and torch.equal(bits[0][1], bits[1][1])


def test_aligned_pose_error_takes_out_a_similarity_and_nothing_else():
    """A trajectory scaled, turned and moved as a whole has no aligned error (the absolute one is large);
    noise on top is what is left."""
    g = torch.Generator().manual_seed(4)
    truth = [_random_c2w(g, torch.float64) for _ in range(12)]
    turn = so3_exp(torch.tensor([0.02, -0.01, 0.03], dtype=torch.float64))
    moved = []
    for t in truth:
        m = t.clone()
        m[:3, :3] = turn @ t[:3, :3]
        m[:3, 3] = 0.97 * (turn @ t[:3, 3]) + torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)
        moved.append(m)
    scale, r, shift = similarity_to(torch.stack([m[:3, 3] for m in moved]), torch.stack([t[:3, 3] for t in truth]))
    assert math.isclose(scale, 1 / 0.97, rel_tol=1e-9) and torch.allclose(r, turn.T, atol=1e-9)
    absolute, aligned = pose_errors(moved, truth), pose_errors(moved, truth, align=True)
    assert absolute["translation_mean_m"] > 0.1 and absolute["rotation_mean_deg"] > 1.0
    assert aligned["translation_mean_m"] < 1e-9 and aligned["rotation_mean_deg"] < 1e-5
    noisy = [m.clone() for m in moved]
    for m in noisy:
        m[:3, 3] += torch.randn(3, generator=g, dtype=torch.float64) * 0.05
    assert 0.02 < pose_errors(noisy, truth, align=True)["translation_mean_m"] < 0.12
