"""The one render entry point: background compositing, the depth channel, the rasterizer's info."""
from __future__ import annotations

import pytest
import torch

from models.cameras import Camera
from models.rendering import rasterization
from models.rendering.render import render_gaussians
from tests.rendering.scenes import random_scene


def _scene():
    means, quats, scales, opac, colors, vm, K = random_scene(300, 40, 32, 2, seed=5)
    gs = {"means": means, "quats": quats, "scales": scales, "opacities": opac, "colors": colors}
    return gs, Camera.from_viewmat(vm[1], K[1], 40, 32)


def test_colour_is_composited_over_the_background_and_depth_is_the_ed_channel():
    gs, cam = _scene()
    bg = torch.tensor([0.2, 0.5, 0.9])
    out = render_gaussians(gs, cam, background=bg, render_mode="RGB+ED")
    colors, alphas, _ = rasterization(gs["means"], gs["quats"], gs["scales"], gs["opacities"], gs["colors"],
                                      cam.viewmat[None], cam.K[None], 40, 32, render_mode="RGB+ED")
    alpha = alphas[0, ..., 0]
    assert torch.equal(out.alpha, alpha)
    assert torch.allclose(out.rgb, colors[0, ..., :3] + (1 - alpha)[..., None] * bg)
    assert torch.equal(out.depth, colors[0, ..., 3])
    assert out.info["render_mode"] == "RGB+ED" and out.info["radii"].shape == (1, 300, 2)
    # where nothing is drawn, the background shows
    clear = render_gaussians(dict(gs, opacities=torch.zeros_like(gs["opacities"])), cam, background=bg)
    assert torch.equal(clear.alpha, torch.zeros(32, 40)) and torch.allclose(clear.rgb, bg.expand(32, 40, 3))


def test_colour_only_has_no_depth_and_no_background_means_bare_colour():
    gs, cam = _scene()
    out = render_gaussians(gs, cam)
    assert out.depth is None and out.rgb.shape == (32, 40, 3)
    colors, _, _ = rasterization(gs["means"], gs["quats"], gs["scales"], gs["opacities"], gs["colors"],
                                 cam.viewmat[None], cam.K[None], 40, 32)
    assert torch.equal(out.rgb, colors[0])


def test_the_screen_space_gradient_reaches_the_strategy():
    gs, cam = _scene()
    gs = {k: v.clone().requires_grad_(True) for k, v in gs.items()}
    out = render_gaussians(gs, cam, background=torch.ones(3))
    out.info["means2d"].retain_grad()
    out.rgb.sum().backward()
    assert out.info["means2d"].grad is not None and out.info["means2d"].grad.abs().sum() > 0


def test_bad_render_mode_is_one_clear_error():
    gs, cam = _scene()
    with pytest.raises(ValueError, match="render_mode"):
        render_gaussians(gs, cam, render_mode="RGBD")
