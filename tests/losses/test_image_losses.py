import math

import pytest
import torch

from models.losses import (
    lidar_depth_loss,
    opacity_entropy_loss,
    photometric_loss,
    sky_opacity_loss,
)


def _images(seed=0, h=32, w=40):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(h, w, 3, generator=g), torch.rand(h, w, 3, generator=g)


# ---------------------------------------------------------------- photometric
def test_photometric_zero_for_identical_images():
    img, _ = _images()
    loss, parts = photometric_loss(img.clone(), img)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert parts["l1"].item() == 0.0
    assert parts["ssim"].item() == pytest.approx(1.0, abs=1e-5)


def test_photometric_combines_l1_and_ssim_with_lambda():
    a, b = _images()
    loss, parts = photometric_loss(a, b, ssim_lambda=0.2)
    assert parts["l1"].item() == pytest.approx((a - b).abs().mean().item(), rel=1e-6)
    expected = 0.8 * parts["l1"] + 0.2 * (1 - parts["ssim"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    l1_only, _ = photometric_loss(a, b, ssim_lambda=0.0)
    assert l1_only.item() == pytest.approx(parts["l1"].item(), rel=1e-6)


def test_photometric_mask_excludes_pixels():
    gt, noise = _images()
    mask = torch.zeros(gt.shape[:2], dtype=torch.bool)
    mask[:, :20] = True
    pred = gt.clone()
    pred[~mask] = noise[~mask]                      # differs only where the mask is False
    pred.requires_grad_(True)
    loss, parts = photometric_loss(pred, gt, mask=mask)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    loss.backward()
    assert pred.grad[~mask].abs().max().item() == 0.0
    # without the mask the same images do differ
    assert photometric_loss(pred.detach(), gt)[0].item() > 0.05


def test_photometric_masked_l1_is_mean_over_masked_pixels():
    gt, pred = _images(1)
    mask = torch.zeros(gt.shape[:2], dtype=torch.bool)
    mask[5:15, 3:30] = True
    _, parts = photometric_loss(pred, gt, mask=mask)
    assert parts["l1"].item() == pytest.approx((pred - gt).abs()[mask].mean().item(), rel=1e-5)


def test_photometric_rejects_wrong_shapes():
    a, b = _images()
    with pytest.raises(ValueError, match="H, W, 3"):
        photometric_loss(a.permute(2, 0, 1), b.permute(2, 0, 1))


# ---------------------------------------------------------------- entropy
def test_entropy_values_at_known_opacities():
    vis = torch.ones(1, dtype=torch.bool)
    assert opacity_entropy_loss(torch.tensor([0.5]), vis).item() == pytest.approx(math.log(2), rel=1e-5)
    for a in (0.0, 1.0, 1e-7, 1 - 1e-7):
        assert opacity_entropy_loss(torch.tensor([a]), vis).item() == pytest.approx(0.0, abs=1e-5)
    a = torch.tensor([0.2, 0.5, 0.9])
    ent = -(a * a.log() + (1 - a) * (1 - a).log())
    assert opacity_entropy_loss(a, torch.ones(3, dtype=torch.bool)).item() == pytest.approx(ent.mean().item(), rel=1e-5)


def test_entropy_only_counts_visible_gaussians():
    a = torch.tensor([0.5, 0.999, 0.5, 0.001])
    vis = torch.tensor([False, True, False, True])
    assert opacity_entropy_loss(a, vis).item() < 0.01
    assert opacity_entropy_loss(a, ~vis).item() == pytest.approx(math.log(2), rel=1e-5)


def test_entropy_gradient_pushes_away_from_one_half():
    a = torch.tensor([0.3, 0.7, 0.45, 0.55], requires_grad=True)
    opacity_entropy_loss(a, torch.ones(4, dtype=torch.bool)).backward()
    stepped = a.detach() - 0.1 * a.grad             # a gradient-descent step
    assert ((stepped - 0.5).abs() > (a.detach() - 0.5).abs()).all()


def test_entropy_with_nothing_visible_is_zero_in_graph():
    a = torch.full((5,), 0.5, requires_grad=True)
    loss = opacity_entropy_loss(a, torch.zeros(5, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert a.grad.abs().sum().item() == 0.0


# ---------------------------------------------------------------- sky / lidar
def test_sky_opacity_prefers_empty_sky_and_opaque_ground():
    sky = torch.zeros(8, 8, dtype=torch.bool)
    sky[:3] = True
    good = (~sky).float()
    assert sky_opacity_loss(good, sky).item() < 1e-4
    assert sky_opacity_loss(1 - good, sky).item() > 10
    alpha = torch.full((8, 8), 0.5, requires_grad=True)
    sky_opacity_loss(alpha, sky).backward()
    assert (alpha.grad[sky] > 0).all() and (alpha.grad[~sky] < 0).all()


def test_lidar_depth_is_l1_over_returns_only():
    depth = torch.full((4, 5), 10.0, requires_grad=True)
    lidar = torch.zeros(4, 5)
    lidar[0, 0], lidar[2, 3] = 12.0, 9.0              # errors 2 and 1; the rest: no return
    loss = lidar_depth_loss(depth, None, lidar)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert depth.grad[lidar == 0].abs().sum().item() == 0.0
    # accumulated depth is normalised by alpha first
    acc = torch.full((4, 5), 5.0)
    alpha = torch.full((4, 5), 0.5)
    assert lidar_depth_loss(acc, alpha, lidar, depth_is_accumulated=True).item() == pytest.approx(1.5)
    assert lidar_depth_loss(depth, None, torch.zeros(4, 5)).item() == 0.0
