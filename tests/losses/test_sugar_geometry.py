import math

import pytest
import torch

from models.sugar import (
    gaussian_density,
    gaussian_normals,
    knn,
    quat_to_rotmat,
    sample_image_bilinear,
    sample_points_around_gaussians,
    std_along_directions,
)
from models.cameras import project_points

from ._scenes import random_rotmats


# ---------------------------------------------------------------- rotations / normals
def test_quat_to_rotmat_known_rotation_and_orthonormal():
    # 90° about z (wxyz): x axis -> y axis
    q = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]])
    R = quat_to_rotmat(q)[0]
    assert torch.allclose(R @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6)
    assert torch.allclose(quat_to_rotmat(torch.tensor([[2.0, 0, 0, 0]]))[0], torch.eye(3))
    Rs = quat_to_rotmat(torch.randn(50, 4, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(Rs @ Rs.transpose(1, 2), torch.eye(3).expand(50, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(Rs), torch.ones(50), atol=1e-5)


def test_normals_are_the_axis_of_smallest_scale():
    R = random_rotmats(20, torch.Generator().manual_seed(1))
    scales = torch.rand(20, 3, generator=torch.Generator().manual_seed(2)) + 0.1
    n = gaussian_normals(R, scales)
    expected = R[torch.arange(20), :, scales.argmin(1)]
    assert torch.allclose(n, expected)
    assert torch.allclose(n.norm(dim=-1), torch.ones(20), atol=1e-5)


def test_std_along_direction_matches_covariance():
    g = torch.Generator().manual_seed(3)
    R = random_rotmats(10, g)
    s = torch.rand(10, 3, generator=g) + 0.05
    r = torch.nn.functional.normalize(torch.randn(10, 3, generator=g), dim=-1)
    cov = R @ torch.diag_embed(s ** 2) @ R.transpose(1, 2)
    expected = torch.einsum("ni,nij,nj->n", r, cov, r).sqrt()
    assert torch.allclose(std_along_directions(R, s, r), expected, atol=1e-6)


# ---------------------------------------------------------------- knn
def _brute_knn_dists(x, k):
    d = torch.cdist(x.double(), x.double())
    d.fill_diagonal_(float("inf"))
    return d.topk(k, largest=False).values


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_knn_matches_brute_force(backend):
    x = torch.rand(700, 3, generator=torch.Generator().manual_seed(4)) * 10
    idx = knn(x, 16, backend=backend, chunk_elems=700 * 37)   # several chunks on the torch path
    assert idx.shape == (700, 16) and idx.dtype == torch.long
    assert not (idx == torch.arange(700)[:, None]).any()
    got = (x[idx].double() - x[:, None].double()).norm(dim=-1)
    assert torch.allclose(got, _brute_knn_dists(x, 16), atol=1e-9)


def test_knn_handles_duplicate_points_and_small_inputs():
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(5))
    x = torch.cat([x, x[:10]])                        # 10 exact duplicates
    for backend in ("scipy", "torch"):
        idx = knn(x, 4, backend=backend)
        assert not (idx == torch.arange(60)[:, None]).any()
        assert (idx[:10, 0] == torch.arange(50, 60)).all()   # its twin is the nearest
    with pytest.raises(ValueError, match="k\\+1"):
        knn(torch.rand(5, 3), 16)


# ---------------------------------------------------------------- sampling
def test_samples_have_the_expected_mean_and_covariance():
    g = torch.Generator().manual_seed(6)
    means = torch.tensor([[1.0, -2.0, 3.0]])
    R = random_rotmats(1, g)
    s = torch.tensor([[0.5, 0.2, 0.05]])
    pts, gi = sample_points_around_gaussians(means, R, s, torch.tensor([0]), 200_000, generator=g)
    assert pts.shape == (200_000, 3) and (gi == 0).all()
    assert torch.allclose(pts.mean(0), means[0], atol=0.01)
    cov = torch.cov((pts - means).T)
    expected = 1.5 ** 2 * R[0] @ torch.diag(s[0] ** 2) @ R[0].T
    assert torch.allclose(cov, expected, atol=0.02 * expected.abs().max().item())


def test_samples_come_uniformly_from_candidates_only():
    g = torch.Generator().manual_seed(7)
    means = torch.arange(10.0).repeat_interleave(3).view(10, 3)
    R = torch.eye(3).expand(10, 3, 3)
    s = torch.full((10, 3), 0.01)
    cand = torch.tensor([1, 4, 7])
    _, gi = sample_points_around_gaussians(means, R, s, cand, 30_000, generator=g)
    counts = torch.bincount(gi, minlength=10)
    assert counts[cand].sum() == 30_000
    assert ((counts[cand] - 10_000).abs() < 400).all()
    # a bool mask of candidates works the same
    mask = torch.zeros(10, dtype=torch.bool)
    mask[cand] = True
    _, gi2 = sample_points_around_gaussians(means, R, s, mask, 100, generator=g)
    assert mask[gi2].all()


def test_sampling_is_reproducible_and_differentiable():
    means = torch.randn(20, 3, requires_grad=True)
    quats = torch.randn(20, 4, requires_grad=True)
    log_s = torch.randn(20, 3, requires_grad=True)
    args = (means, quat_to_rotmat(quats), log_s.exp(), torch.arange(0, 20, 2), 500)
    p1, i1 = sample_points_around_gaussians(*args, generator=torch.Generator().manual_seed(8))
    p2, i2 = sample_points_around_gaussians(*args, generator=torch.Generator().manual_seed(8))
    p3, _ = sample_points_around_gaussians(*args, generator=torch.Generator().manual_seed(9))
    assert torch.equal(p1, p2) and torch.equal(i1, i2) and not torch.equal(p1, p3)
    p1.pow(2).sum().backward()
    for t in (means, quats, log_s):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


# ---------------------------------------------------------------- density
def test_density_of_a_single_isotropic_gaussian():
    mu = torch.tensor([[1.0, 2.0, 3.0]])
    R, s, a = torch.eye(3)[None], torch.full((1, 3), 2.0), torch.tensor([0.7])
    r = torch.tensor([0.0, 1.0, 2.0, 4.0])
    dirs = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, -1]]), dim=-1)
    pts = mu + r[:, None] * dirs
    d, terms = gaussian_density(pts, torch.zeros(4, 1, dtype=torch.long), mu, R, s, a)
    assert torch.allclose(d, 0.7 * torch.exp(-r ** 2 / 8), atol=1e-6)
    assert terms.shape == (4, 1) and torch.allclose(terms[:, 0], d)


def test_density_is_anisotropic_and_sums_over_neighbours():
    g = torch.Generator().manual_seed(10)
    R = random_rotmats(2, g)
    s = torch.tensor([[0.3, 1.0, 2.0], [0.5, 0.5, 0.5]])
    mu = torch.tensor([[0.0, 0, 0], [10.0, 0, 0]])
    a = torch.tensor([0.8, 0.4])
    # one standard deviation along each axis of Gaussian 0 -> 0.8·e^-1/2, plus Gaussian 1's tail
    pts = mu[0] + (R[0] * s[0]).T                      # rows: s_i · axis_i
    nbr = torch.tensor([[0, 1]] * 3)
    d, terms = gaussian_density(pts, nbr, mu, R, s, a)
    assert torch.allclose(terms[:, 0], torch.full((3,), 0.8 * math.exp(-0.5)), atol=1e-6)
    tail = 0.4 * torch.exp(-0.5 * ((pts - mu[1]) ** 2).sum(-1) / 0.25)
    assert torch.allclose(terms[:, 1], tail, atol=1e-12)
    assert torch.allclose(d, terms.sum(1))


# ---------------------------------------------------------------- camera helpers
def test_pixel_centre_convention_of_projection_and_bilinear_read():
    K = torch.tensor([[50.0, 0, 32.0], [0, 50.0, 24.0], [0, 0, 1]])
    uv = torch.stack(project_points(torch.tensor([[0.0, 0.0, 3.0], [0.3, -0.6, 3.0]]), K), -1)
    assert torch.allclose(uv, torch.tensor([[32.0, 24.0], [37.0, 14.0]]))
    cols = torch.arange(8.0).expand(6, 8)             # value = column index
    at = torch.tensor([[2.5, 1.5], [3.0, 4.5], [0.2, 0.5], [7.9, 5.9]])
    assert torch.allclose(sample_image_bilinear(cols, at), torch.tensor([2.0, 2.5, 0.0, 7.0]))
