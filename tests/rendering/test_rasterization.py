"""The fast backends (compiled C++ "cpp" and PyTorch "torch") against the dense reference, and gsplat
conventions. Every agreement test runs once per backend."""
import pytest
import torch

from models.rendering import rasterization
from models.rendering.reference import rasterization_dense
from models.rendering.sh import eval_sh
from tests.rendering.scenes import random_scene
from tests.rendering.fixtures import BACKENDS, backend, one_thread  # noqa: F401 (fixtures)

NAMES = ["means", "quats", "scales", "opacities", "colors", "viewmats", "Ks"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _run_both(inputs, width, height, backend="torch", **kw):
    a = [t.clone().requires_grad_(True) for t in inputs]
    b = [t.clone().requires_grad_(True) for t in inputs]
    out_f = rasterization(*a, width, height, backend=backend, **kw)
    out_d = rasterization_dense(*b, width, height, **kw)
    return a, b, out_f, out_d


def _grads_close(a, b, out_f, out_d, seed=0, rtol=1e-4):
    g = torch.Generator().manual_seed(seed)
    wc = torch.randn(out_f[0].shape, generator=g)
    wa = torch.randn(out_f[1].shape, generator=g)
    ((out_f[0] * wc).sum() + (out_f[1] * wa).sum()).backward()
    ((out_d[0] * wc).sum() + (out_d[1] * wa).sum()).backward()
    for name, x, y in zip(NAMES, a, b):
        gx, gy = x.grad, y.grad
        if gy is None:  # input unused in this render mode (colors in "D"/"ED")
            assert gx is None or (gx == 0).all(), name
            continue
        if name == "Ks":  # only fx, fy, cx, cy enter gsplat's pinhole model
            idx = ([0, 1, 0, 1], [0, 1, 2, 2])
            gx, gy = gx[:, idx[0], idx[1]], gy[:, idx[0], idx[1]]
        assert torch.isfinite(gx).all(), name
        scale = gy.abs().max().clamp(min=1e-12)
        err = (gx - gy).abs().max() / scale
        assert err <= rtol, f"gradient of {name}: relative error {err:.3g}"


@pytest.mark.parametrize("n,width,height,n_cams,seed", [
    (40, 24, 16, 1, 0),
    (300, 61, 47, 2, 1),
    (1500, 96, 64, 1, 2),
    (800, 40, 72, 3, 3),
])
def test_fast_matches_dense_rgb(n, width, height, n_cams, seed, backend):
    inputs = random_scene(n, width, height, n_cams, seed)
    a, b, out_f, out_d = _run_both(inputs, width, height, backend)
    assert out_f[0].shape == (n_cams, height, width, 3) and out_f[1].shape == (n_cams, height, width, 1)
    assert out_d[1].max() > 0.5  # the scene is not empty
    assert (out_f[0] - out_d[0]).abs().max() <= 1e-5
    assert (out_f[1] - out_d[1]).abs().max() <= 1e-5
    assert torch.equal(out_f[2]["radii"], out_d[2]["radii"])
    _grads_close(a, b, out_f, out_d, seed)


def test_extremes_are_culled_and_gradients_finite(backend):
    inputs = random_scene(200, 48, 32, 1, seed=7)
    _, _, (_, _, meta), _ = _run_both(inputs, 48, 32, backend)
    radii = meta["radii"][0]
    k = 10
    assert (radii[:k] == 0).all()           # behind the camera
    assert (radii[k:2 * k] == 0).all()      # off-screen
    assert (radii[4 * k:5 * k] == 0).all()  # nearer than near_plane
    assert radii.dtype == torch.int32 and radii.shape == (200, 2)


@pytest.mark.parametrize("mode", ["D", "ED", "RGB+D", "RGB+ED"])
def test_depth_modes_match_dense(mode, backend):
    inputs = random_scene(400, 48, 40, 2, seed=11)
    bg = torch.rand(2, 3)
    a, b, out_f, out_d = _run_both(inputs, 48, 40, backend, render_mode=mode, backgrounds=bg)
    cf, cd = out_f[0], out_d[0]
    assert cf.shape[-1] == (1 if mode in ("D", "ED") else 4)
    if cf.shape[-1] == 4:
        assert (cf[..., :3] - cd[..., :3]).abs().max() <= 1e-5
    depth_tol = 1e-5 * max(1.0, out_d[2]["depths"].abs().max().item())
    if "ED" in mode:  # ED divides by alpha: compare where the pixel is covered
        covered = out_d[1][..., 0] > 0.05
        assert ((cf[..., -1] - cd[..., -1]).abs()[covered]).max() <= 10 * depth_tol
    else:
        assert (cf[..., -1] - cd[..., -1]).abs().max() <= depth_tol
    _grads_close(a, b, out_f, out_d, rtol=2e-4 if "ED" in mode else 1e-4)


def test_sh_colors_match_dense(backend):
    inputs = random_scene(300, 40, 32, 2, seed=5)
    g = torch.Generator().manual_seed(0)
    inputs[4] = 0.3 * torch.randn(300, 16, 3, generator=g)
    a, b, out_f, out_d = _run_both(inputs, 40, 32, backend, sh_degree=3)
    assert (out_f[0] - out_d[0]).abs().max() <= 1e-5
    _grads_close(a, b, out_f, out_d)


def test_sh_matches_gsplat_torch_impl():
    from gsplat.cuda._torch_impl import _spherical_harmonics
    g = torch.Generator().manual_seed(3)
    dirs = torch.randn(500, 3, generator=g)
    coeffs = torch.randn(500, 16, 3, generator=g)
    for deg in range(4):
        ref = _spherical_harmonics(deg, dirs, coeffs)
        assert torch.allclose(eval_sh(deg, dirs, coeffs), ref, atol=1e-5), deg


def test_projection_matches_gsplat_torch_impl():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci
    from models.rendering.projection import project_gaussians
    means, quats, scales, opac, _, vm, K = random_scene(300, 64, 48, 2, seed=9)
    proj = project_gaussians(means, quats, scales, opac, vm, K, 64, 48)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, vm, K, 64, 48)
    both = (proj.radii > 0).all(-1) & (radii > 0).all(-1)
    assert both.sum() > 100
    assert torch.allclose(proj.means2d[both], means2d[both], atol=1e-4)
    assert torch.allclose(proj.conics[both], conics[both], rtol=1e-4, atol=1e-6)
    assert torch.allclose(proj.depths, depths)
    # opacity-aware radii are never larger than the 3.33-sigma ones
    assert ((proj.radii <= radii) | (radii == 0)).all()


def test_gradcheck_float64_tiny_scene(backend):
    inputs = random_scene(5, 8, 6, 1, seed=4, dtype=torch.float64, extremes=False)
    inputs[3] = torch.tensor([0.6, 0.8, 0.5, 0.7, 0.9], dtype=torch.float64)
    fixed = inputs[5:]

    def f(means, quats, scales, opac, colors):
        c, a, _ = rasterization(means, quats, scales, opac, colors, *fixed, 8, 6, backend=backend)
        return c, a

    args = [t.clone().requires_grad_(True) for t in inputs[:5]]
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_expected_depth_of_a_wall_is_its_depth(backend):
    # a wall of flat, opaque, overlapping Gaussians at z = 4 filling the view
    W, H, f, zw = 40, 30, 40.0, 4.0
    xs = torch.linspace(-3.0, 3.0, 31)
    ys = torch.linspace(-2.5, 2.5, 26)
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    n = gx.numel()
    means = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.full((n,), zw)], -1)
    quats = torch.tensor([1.0, 0, 0, 0]).repeat(n, 1)
    scales = torch.tensor([0.25, 0.25, 1e-4]).repeat(n, 1)
    opac = torch.full((n,), 0.9)
    K = torch.tensor([[[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]]])
    col, alpha, _ = rasterization(means, quats, scales, opac, torch.rand(n, 3), torch.eye(4)[None], K,
                                  W, H, render_mode="RGB+ED", backend=backend)
    assert alpha.min() > 0.99
    assert (col[..., 3] - zw).abs().max() < 1e-4


def test_meta_layout_and_means2d_gradient():
    inputs = random_scene(100, 32, 24, 2, seed=2)
    _, _, meta = rasterization(*[t.requires_grad_(False) for t in inputs[:4]],
                               inputs[4].requires_grad_(True), *inputs[5:], 32, 24)
    for key in ("means2d", "radii", "depths", "conics", "opacities", "width", "height",
                "n_cameras", "gaussian_ids"):
        assert key in meta
    assert meta["means2d"].shape == (2, 100, 2) and meta["radii"].shape == (2, 100, 2)
    assert meta["gaussian_ids"] is None and meta["n_cameras"] == 2
    inputs = random_scene(100, 32, 24, 2, seed=2)
    means = inputs[0].requires_grad_(True)
    c, a, meta = rasterization(means, *inputs[1:], 32, 24)
    meta["means2d"].retain_grad()
    c.sum().backward()
    g = meta["means2d"].grad
    vis = (meta["radii"] > 0).all(-1)
    assert g.shape == (2, 100, 2) and g[vis].abs().sum() > 0 and (g[~vis] == 0).all()


def test_gsplat_backend_refuses_cpu_tensors():
    inputs = random_scene(10, 16, 12)
    with pytest.raises(ValueError, match="CUDA"):
        rasterization(*inputs, 16, 12, backend="gsplat")


def test_empty_view_renders_background(backend):
    inputs = random_scene(10, 16, 12, extremes=False)
    inputs[0] = inputs[0] * torch.tensor([1.0, 1.0, -1.0])  # all behind the camera
    bg = torch.tensor([[0.2, 0.4, 0.6]])
    c, a, _ = rasterization(*inputs, 16, 12, backgrounds=bg, backend=backend)
    assert a.abs().max() == 0 and torch.allclose(c, bg[:, None, None, :].expand_as(c))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_backend_matches_gsplat_on_cuda():
    inputs = [t.cuda() for t in random_scene(3000, 192, 128, 2, seed=1)]
    a = [t.clone().requires_grad_(True) for t in inputs]
    b = [t.clone().requires_grad_(True) for t in inputs]
    cf, af, mf = rasterization(*a, 192, 128, backend="torch", render_mode="RGB+ED")
    cg, ag, mg = rasterization(*b, 192, 128, backend="gsplat", render_mode="RGB+ED")
    assert (cf[..., :3] - cg[..., :3]).abs().max() <= 1e-4
    assert (af - ag).abs().max() <= 1e-4
    covered = ag[..., 0] > 0.05
    assert ((cf[..., 3] - cg[..., 3]).abs()[covered]).max() <= 1e-3
    assert ((mf["radii"] > 0) == (mg["radii"] > 0)).float().mean() > 0.999
    w = torch.randn_like(cf[..., :3])
    (cf[..., :3] * w).sum().backward(); (cg[..., :3] * w).sum().backward()
    for name, x, y in zip(NAMES[:5], a, b):
        err = (x.grad - y.grad).abs().max() / y.grad.abs().max()
        assert err <= 1e-3, (name, err.item())
