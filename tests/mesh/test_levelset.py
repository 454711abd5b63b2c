import math

import numpy as np
import pytest
import torch

from models.mesh.levelset import KnnGaussianDensity, extract_level_set_points, levelset_mesh, poisson_mesh
from tests.mesh.helpers import intrinsics, plane_depth, pose, rot_y

W, H = 64, 48
WALL_Z = 2.0
THICK = 0.005  # the Gaussians' smallest scale


def _wall_gaussians(spacing=0.05):
    """Thin, opaque, overlapping flat Gaussians on a grid on z = WALL_Z (normal along z)."""
    g = np.arange(-2.0, 2.0 + 1e-9, spacing)
    X, Y = np.meshgrid(g, g)
    n = X.size
    means = torch.tensor(np.stack([X.ravel(), Y.ravel(), np.full(n, WALL_Z)], -1), dtype=torch.float32)
    scales = torch.tensor([[spacing, spacing, THICK]] * n, dtype=torch.float32)
    # Rotation by 90 degrees about z (w, x, y, z): still flat in the plane, exercises the quaternion.
    quats = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]] * n)
    opacities = torch.full((n, 1), 0.95)
    return dict(means=means, scales=scales, quats=quats, opacities=opacities)


def _views():
    K = intrinsics(50.0, W, H)
    c2ws = [pose(), pose(rot_y(15), position=(-0.3, 0.1, 0.2))]
    return [K, K], c2ws, [plane_depth(K, c, W, H, WALL_Z) for c in c2ws]


def test_level_set_points_of_a_flat_wall_lie_just_in_front_of_it():
    Ks, c2ws, depths = _views()
    rgbs = [np.full((H, W, 3), 0.25), np.full((H, W, 3), 0.75)]
    pts = extract_level_set_points(depths, Ks, c2ws, rgbs=rgbs, progress=False, **_wall_gaussians())
    assert len(pts.points) > 0.95 * 2 * W * H  # nearly every ray finds the surface
    # The level set d = 0.3 sits a couple of thicknesses in front of the Gaussians' plane
    # (the summed density at the plane is ~6, so exp(-z^2/2t^2) = 0.05 -> z ~ 2.5 t).
    offset = WALL_Z - pts.points[:, 2]
    assert offset.min() > 0 and offset.max() < 4 * THICK
    assert np.ptp(offset) < 0.5 * THICK
    # Truncating the sum to 16 neighbours leaves a small in-plane gradient (< 0.5 degree).
    np.testing.assert_allclose(pts.normals, np.tile([0.0, 0.0, -1.0], (len(pts.normals), 1)), atol=1e-2)
    assert np.median(np.abs(pts.normals[:, :2])) < 3e-3
    assert set(np.unique(pts.colors.round(2))) == {0.25, 0.75}


def test_missing_depth_gives_no_points_and_chunking_does_not_change_results():
    Ks, c2ws, depths = _views()
    depths = [depths[0].copy()]
    depths[0][:, : W // 2] = 0.0
    depths[0][0, W // 2 :] = np.inf
    g = _wall_gaussians()
    a = extract_level_set_points(depths, Ks[:1], c2ws[:1], chunk_rays=97, progress=False, **g)
    b = extract_level_set_points(depths, Ks[:1], c2ws[:1], chunk_rays=100_000, progress=False, **g)
    assert len(a.points) == (H - 1) * (W // 2)
    np.testing.assert_allclose(a.points, b.points, atol=1e-6)
    assert a.colors is None


def test_transparent_gaussians_are_dropped_before_extraction():
    Ks, c2ws, depths = _views()
    g = _wall_gaussians()
    g["opacities"] = torch.full_like(g["opacities"], 0.4)
    with pytest.raises(ValueError, match="opacity"):
        extract_level_set_points(depths, Ks, c2ws, progress=False, **g)


def test_injected_density_and_global_sigma_give_the_analytic_crossing():
    Ks, c2ws, depths = _views()
    width = 0.01

    def density(p):  # a soft slab around z = WALL_Z; first crossing of 0.3 at WALL_Z - width*sqrt(2 ln(1/0.3))
        return torch.exp(-0.5 * ((p[:, 2] - WALL_Z) / width) ** 2)

    pts = extract_level_set_points(depths, Ks, c2ws, density_fn=density, sigma=0.01, progress=False)
    expected = WALL_Z - width * math.sqrt(2 * math.log(1 / 0.3))
    # Linear interpolation between samples 0.3 sigma apart: a small, bounded error.
    np.testing.assert_allclose(pts.points[:, 2], expected, atol=5e-4)
    np.testing.assert_allclose(pts.normals[:, 2], -1.0, atol=1e-4)


def test_builtin_density_and_gradient_match_the_formula():
    rng = np.random.default_rng(0)
    n = 40
    means = torch.tensor(rng.normal(size=(n, 3)), dtype=torch.float64)
    A = torch.linalg.qr(torch.tensor(rng.normal(size=(n, 3, 3))))[0]
    scales = torch.tensor(rng.uniform(0.2, 1.0, size=(n, 3)))
    opac = torch.tensor(rng.uniform(0.5, 1.0, size=n))
    dens = KnnGaussianDensity(means, A, scales, opac, k=n)  # k = n: the exact full sum
    p = torch.tensor(rng.normal(size=(7, 3)), requires_grad=True)
    y = torch.einsum("nji,mnj->mni", A, p[:, None, :] - means[None]) / scales[None]
    ref = (opac * torch.exp(-0.5 * (y ** 2).sum(-1))).sum(-1)
    (ref_grad,) = torch.autograd.grad(ref.sum(), p)
    d, grad = dens(p.detach(), with_grad=True)
    torch.testing.assert_close(d, ref.detach())
    torch.testing.assert_close(grad, ref_grad)


def test_poisson_mesh_of_the_wall_lies_on_the_level_set():
    Ks, c2ws, depths = _views()
    mesh = levelset_mesh(depths, Ks, c2ws, poisson_depth=6, n_threads=1, progress=False, **_wall_gaussians())
    assert len(mesh.faces) > 1000
    offset = WALL_Z - mesh.vertices[:, 2]
    assert np.percentile(np.abs(offset - 2.5 * THICK), 99) < THICK
    # Decimation reaches the requested triangle count.
    pts = extract_level_set_points(depths, Ks, c2ws, progress=False, **_wall_gaussians())
    small = poisson_mesh(pts.points, pts.normals, depth=6, target_triangles=500, n_threads=1)
    assert 0 < len(small.faces) <= 500
    with pytest.raises(ValueError, match="at least 4 points"):
        poisson_mesh(np.zeros((2, 3)), np.zeros((2, 3)))


def test_quaternions_and_rotation_matrices_give_the_same_points():
    from models.rendering.projection import quat_to_rotmat as _quat_to_rotmat

    q = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)], [2.0, 0.0, 0.0, 0.0]])
    R = _quat_to_rotmat(q)  # wxyz, any norm
    torch.testing.assert_close(R[0] @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(R[1], torch.eye(3))

    Ks, c2ws, depths = _views()
    g = _wall_gaussians()
    tilt = torch.tensor([[math.cos(0.1), math.sin(0.1), 0.0, 0.0]] * len(g["means"]))  # 0.2 rad about x
    g["quats"] = tilt
    a = extract_level_set_points(depths[:1], Ks[:1], c2ws[:1], progress=False, **g)
    g_r = dict(g, quats=None, rotmats=_quat_to_rotmat(tilt))
    b = extract_level_set_points(depths[:1], Ks[:1], c2ws[:1], progress=False, **g_r)
    np.testing.assert_allclose(a.points, b.points, atol=1e-6)
    # Tilted disks: the surface normal follows them (mean normal tilted about x, facing the camera).
    n = a.normals.mean(0)
    assert n[2] < 0 and abs(n[1]) > 0.05
