"""Depth–normal consistency (models.losses.depth_normal_loss) on renders of known geometry."""
from __future__ import annotations

import math

import torch

from models.cameras import Camera
from models.losses import depth_normal_loss, flatten_loss, image_edge_weight
from models.rendering.render import render_gaussians


def _plane(tilt: float, jitter: float = 0.0, spacing: float = 0.12):
    """Flat Gaussians on a plane through camera point (0, 0, 4) tilted by `tilt` about y; `jitter`
    turns each Gaussian's own normal off the plane's by up to that many radians."""
    s, c = math.sin(tilt), math.cos(tilt)
    A, B = torch.meshgrid(torch.arange(-3.0, 6.0, spacing), torch.arange(-3.0, 3.0, spacing), indexing="ij")
    A, B = A.reshape(-1), B.reshape(-1)
    means = torch.stack([A * c, B, 4.0 + A * s], -1)
    g = torch.Generator().manual_seed(0)
    half = -0.5 * tilt + 0.5 * jitter * (2 * torch.rand(len(A), generator=g) - 1)
    quats = torch.stack([torch.cos(half), torch.zeros_like(half), torch.sin(half), torch.zeros_like(half)], -1)
    scales = torch.tensor([spacing, spacing, 1e-4]).repeat(len(A), 1)
    return {"means": means, "quats": quats, "scales": scales, "opacities": torch.full((len(A),), 0.9),
            "colors": torch.full((len(A), 3), 0.5)}


def _loss(gs, backend="cpp"):
    W, H, f = 40, 30, 36.0
    cam = Camera(torch.eye(4), torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]]), W, H)
    out = render_gaussians(gs, cam, render_mode="RGB+ED", backend=backend, surface=True)
    s = out.surface
    return depth_normal_loss(s.normals, s.unbiased_depth, s.valid, out.alpha, cam.K)


def test_a_plane_is_consistent_and_tilted_gaussians_are_not():
    for backend in ("cpp", "torch"):
        flat = _loss(_plane(math.radians(35)), backend)
        rough = _loss(_plane(math.radians(35), jitter=0.6), backend)
        assert flat < 1e-4, (backend, float(flat))
        assert rough > 20 * max(float(flat), 1e-6), (backend, float(rough))


def test_gradients_reach_the_geometry_and_lower_the_loss():
    gs = _plane(math.radians(35), jitter=0.6)
    for k in ("means", "quats", "scales", "opacities"):
        gs[k] = gs[k].clone().requires_grad_(True)
    before = _loss(gs)
    before.backward()
    for k in ("means", "quats", "opacities"):
        assert gs[k].grad.abs().max() > 0, k
    with torch.no_grad():
        gs["quats"] -= 0.05 * gs["quats"].grad / gs["quats"].grad.abs().max()
    assert _loss(gs) < before


def test_masked_pixels_do_not_count():
    W, H, f = 40, 30, 36.0
    cam = Camera(torch.eye(4), torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]]), W, H)
    out = render_gaussians(_plane(math.radians(35), jitter=0.6), cam, render_mode="RGB", surface=True)
    s = out.surface
    nothing = torch.zeros(H, W, dtype=torch.bool)
    assert depth_normal_loss(s.normals, s.unbiased_depth, s.valid, out.alpha, cam.K, mask=nothing) == 0


def test_edge_weight_is_low_on_edges_and_one_on_flat_colour():
    img = torch.zeros(10, 12, 3)
    img[:, 6:] = 1.0
    w = image_edge_weight(img)
    assert w[5, 2] == 1 and w[5, 9] == 1
    assert w[5, 5] == 0 and w[5, 6] == 0


def test_flatten_loss_is_the_mean_smallest_scale_over_a_tenth_of_the_radius():
    scales = torch.tensor([[0.2, 0.01, 0.3], [0.05, 0.4, 0.03]], requires_grad=True)
    loss = flatten_loss(scales, scene_scale=10.0)
    assert torch.isclose(loss, torch.tensor(0.02))
    loss.backward()
    assert torch.equal(scales.grad != 0, torch.tensor([[False, True, False], [False, False, True]]))
    assert flatten_loss(torch.zeros(0, 3), 10.0) == 0
