"""Extra composited channels and the surface maps (per-pixel normals, unbiased depth): agreement with
the dense reference on the compiled and PyTorch backends, the exactness that justifies the unbiased
depth, float64 gradchecks, and the gsplat path's inputs."""
import math

import pytest
import torch

from models.cameras import Camera
from models.rendering import rasterization
from models.rendering.rasterize import gsplat_colors_with_extra
from models.rendering.reference import rasterization_dense
from models.rendering.render import render_gaussians
from models.rendering.sh import eval_sh
from models.rendering.surface import surface_channels, surface_maps
from tests.rendering.scenes import random_scene
from tests.rendering.fixtures import BACKENDS, backend, one_thread  # noqa: F401 (fixtures)

NAMES = ["means", "quats", "scales", "opacities", "colors", "extra"]
GEOMETRY = ["means", "quats", "scales", "opacities"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _rel_err(x, y):
    return ((x - y).abs().max() / y.abs().max().clamp(min=1e-12)).item()


@pytest.mark.parametrize("mode", ["RGB", "RGB+ED", "D"])
@pytest.mark.parametrize("per_camera", [False, True], ids=["extra_N", "extra_CN"])
def test_extra_channels_match_dense(mode, per_camera, backend):
    C, W, H, E = 2, 44, 36, 5
    inputs = random_scene(400, W, H, C, seed=12)
    g = torch.Generator().manual_seed(3)
    extra = torch.randn((C, 400, E) if per_camera else (400, E), generator=g)
    bg = torch.rand(C, 3, generator=g)
    a = [t.clone().requires_grad_(True) for t in inputs[:5] + [extra]]
    b = [t.clone().requires_grad_(True) for t in inputs[:5] + [extra]]
    out_f = rasterization(*a[:5], *inputs[5:], W, H, backend=backend, render_mode=mode, backgrounds=bg, extra=a[5])
    out_d = rasterization_dense(*b[:5], *inputs[5:], W, H, render_mode=mode, backgrounds=bg, extra=b[5])
    n_col = 0 if mode == "D" else 3
    assert out_f[0].shape == (C, H, W, n_col + E + (mode != "RGB"))
    assert (out_f[0][..., :n_col + E] - out_d[0][..., :n_col + E]).abs().max() <= 1e-5
    if mode != "RGB":
        covered = out_d[1][..., 0] > 0.05 if "ED" in mode else torch.ones_like(out_d[1][..., 0], dtype=torch.bool)
        assert (out_f[0][..., -1] - out_d[0][..., -1]).abs()[covered].max() <= 1e-4
    # the other channels are those of a render without extras, to the bit (extras have background 0)
    plain = rasterization(*inputs, W, H, backend=backend, render_mode=mode, backgrounds=bg)[0]
    assert torch.equal(out_f[0][..., :n_col], plain[..., :n_col])
    if mode != "RGB":
        assert torch.equal(out_f[0][..., -1], plain[..., -1])
    gen = torch.Generator().manual_seed(1)
    wc, wa = torch.randn(out_f[0].shape, generator=gen), torch.randn(out_f[1].shape, generator=gen)
    ((out_f[0] * wc).sum() + (out_f[1] * wa).sum()).backward()
    ((out_d[0] * wc).sum() + (out_d[1] * wa).sum()).backward()
    for name, x, y in zip(NAMES, a, b):
        if y.grad is None:  # colours in "D"
            assert x.grad is None or (x.grad == 0).all(), name
            continue
        assert _rel_err(x.grad, y.grad) <= 2e-4, name


def test_channels_of_a_plain_render_are_unchanged_bitwise(backend):
    """Compositing extras beside the colours leaves the colour, depth and alpha bits as they were."""
    gs, cam = _scene(seed=5)
    plain = render_gaussians(gs, cam, render_mode="RGB+ED", backend=backend, background=torch.ones(3))
    surf = render_gaussians(gs, cam, render_mode="RGB+ED", backend=backend, background=torch.ones(3), surface=True)
    assert plain.surface is None and surf.surface is not None
    for x, y in zip(plain[:3], surf[:3]):
        assert torch.equal(x, y)


def test_bad_extra_shape_is_one_clear_error():
    inputs = random_scene(10, 16, 12)
    with pytest.raises(ValueError, match="extra"):
        rasterization(*inputs, 16, 12, extra=torch.zeros(9, 2))


def test_compiled_surface_channels_match_pytorch():
    from models.rendering import cpp_backend
    assert cpp_backend.available(), cpp_backend._error
    means, quats, scales, _, _, vm, _ = random_scene(2000, 64, 48, 2, seed=3)
    quats[:7] *= 1e-14                                  # below the normalisation's clamp
    scales[7:20, 1] = scales[7:20, 0]                   # ties: the first smallest axis, as torch.argmin
    w = torch.randn(2000, 4, generator=torch.Generator().manual_seed(0))
    res = {}
    for be, threads in (("torch", 1), ("cpp", 1), ("cpp", 2)):
        torch.set_num_threads(threads)
        p = [t.clone().requires_grad_(True) for t in (means, quats)]
        out = surface_channels(p[0], p[1], scales, vm[1], backend=be)
        (out * w).sum().backward()
        res[be, threads] = [out, p[0].grad, p[1].grad]
    for x, y in zip(res["cpp", 1], res["torch", 1]):
        assert _rel_err(x, y) <= 1e-5
    for x, y in zip(res["cpp", 1], res["cpp", 2]):
        assert torch.equal(x, y)
    d = [t[20:80].double().requires_grad_(True) for t in (means, quats)]
    s64, v64 = scales[20:80].double(), vm[1].double()
    assert torch.autograd.gradcheck(lambda m, q: surface_channels(m, q, s64, v64, backend="cpp"), d,
                                    eps=1e-6, atol=1e-6, rtol=1e-4)


def _scene(n=300, W=40, H=32, seed=5, dtype=torch.float32):
    means, quats, scales, opac, colors, vm, K = random_scene(n, W, H, 2, seed=seed, dtype=dtype)
    gs = {"means": means, "quats": quats, "scales": scales, "opacities": opac, "colors": colors}
    return gs, Camera.from_viewmat(vm[1], K[1], W, H)


def _dense_surface(gs, cam, **kw):
    """The surface maps from the dense reference's composite of the same channels."""
    extra = surface_channels(gs["means"], gs["quats"], gs["scales"], cam.viewmat)
    c, a, _ = rasterization_dense(gs["means"], gs["quats"], gs["scales"], gs["opacities"], gs["colors"],
                                  cam.viewmat[None], cam.K[None], cam.width, cam.height, extra=extra, **kw)
    return c[0], a[0, ..., 0], surface_maps(c[0, ..., 3:7], a[0, ..., 0], cam.K, cam.viewmat)


def _surface_loss(s, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ((s.normals * torch.randn(s.normals.shape, generator=g)).sum()
            + (s.unbiased_depth * torch.randn(s.unbiased_depth.shape, generator=g)).sum()
            + (s.normals_world * torch.randn(s.normals_world.shape, generator=g)).sum())


def test_surface_maps_match_dense(backend):
    gs, cam = _scene(n=500, W=48, H=40, seed=8)
    fa = {k: v.clone().requires_grad_(True) for k, v in gs.items()}
    da = {k: v.clone().requires_grad_(True) for k, v in gs.items()}
    out = render_gaussians(fa, cam, backend=backend, render_mode="RGB+ED", surface=True)
    _, alpha_d, sd = _dense_surface(da, cam)
    s = out.surface
    assert (out.alpha - alpha_d).abs().max() <= 1e-5
    assert (s.normal_sum - sd.normal_sum).abs().max() <= 1e-5
    assert (s.distance_sum - sd.distance_sum).abs().max() <= 1e-5 * sd.distance_sum.abs().max()
    assert torch.equal(s.valid, sd.valid) and s.valid.float().mean() > 0.5
    v = s.valid & (alpha_d > 0.05)
    assert (s.normals - sd.normals)[v].abs().max() <= 1e-4
    assert (s.normals_world - sd.normals_world)[v].abs().max() <= 1e-4
    assert ((s.unbiased_depth - sd.unbiased_depth).abs() / sd.unbiased_depth.clamp(min=1e-6))[v].max() <= 1e-4
    # unit normals facing the camera: n̂ · r < 0 wherever the depth is valid
    assert ((s.normals[s.valid].norm(dim=-1) - 1).abs() <= 1e-5).all()
    assert (s.normals[s.valid] * cam.pixel_rays()[s.valid]).sum(-1).max() < 0
    _surface_loss(s).backward()
    _surface_loss(sd).backward()
    for k in GEOMETRY:
        assert fa[k].grad.abs().max() > 0, k
        assert _rel_err(fa[k].grad, da[k].grad) <= 1e-3, k


def _oblique_plane(theta, psi, spacing=0.12):
    """Flat overlapping Gaussians on the plane through camera point (0, 0, 4) tilted by ``theta``
    about the camera's y axis (camera normal n = (sin θ, 0, -cos θ), facing the camera, plane
    distance 4 cos θ), in a world where the camera is turned by ``psi`` about y and moved."""
    s, c = math.sin(theta), math.cos(theta)
    A, B = torch.meshgrid(torch.arange(-3.0, 8.0, spacing), torch.arange(-4.0, 4.0, spacing), indexing="ij")
    A, B = A.reshape(-1), B.reshape(-1)
    p_cam = torch.stack([A * c, B, 4.0 + A * s], -1)                 # p0 + a e1 + b e2, e1 = (cos θ, 0, sin θ)
    Ry = torch.tensor([[math.cos(psi), 0, math.sin(psi)], [0, 1.0, 0], [-math.sin(psi), 0, math.cos(psi)]])
    c2w = torch.eye(4)
    c2w[:3, :3], c2w[:3, 3] = Ry, torch.tensor([0.7, -0.3, 1.1])
    means = p_cam @ Ry.T + c2w[:3, 3]
    # local axes (e1, e2, -n) = rotation about y by psi - theta in the world
    half = 0.5 * (psi - theta)
    quats = torch.tensor([math.cos(half), 0.0, math.sin(half), 0.0]).repeat(len(A), 1)
    scales = torch.tensor([spacing, spacing, 1e-4]).repeat(len(A), 1)
    gs = {"means": means, "quats": quats, "scales": scales, "opacities": torch.full((len(A),), 0.9),
          "colors": torch.rand(len(A), 3, generator=torch.Generator().manual_seed(0))}
    n_cam = torch.tensor([s, 0.0, -c])
    return gs, c2w, n_cam, Ry @ n_cam, 4.0 * c


def test_oblique_plane_gives_its_normal_and_exact_depth(backend):
    W, H, f = 48, 36, 40.0
    theta = math.radians(40)
    gs, c2w, n_cam, n_world, dist = _oblique_plane(theta, psi=0.3)
    cam = Camera(c2w, torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]]), W, H)
    out = render_gaussians(gs, cam, render_mode="RGB+ED", backend=backend, surface=True)
    s = out.surface
    r = cam.pixel_rays()
    z_true = dist / -(r @ n_cam)                       # camera z where each pixel's ray meets the plane
    covered = out.alpha > 0.5
    assert covered.float().mean() > 0.95 and s.valid[covered].all()
    assert (s.normals[covered] - n_cam).abs().max() <= 1e-5
    assert (s.normals_world[covered] - n_world).abs().max() <= 1e-5
    err_unbiased = ((s.unbiased_depth - z_true).abs() / z_true)[covered].max()
    err_expected = ((out.depth - z_true).abs() / z_true)[covered].max()
    assert err_unbiased <= 2e-6
    assert err_expected >= 1e-3 and err_expected >= 100 * err_unbiased  # the expected depth is biased


def test_gradcheck_float64_surface(backend):
    gs, cam = _scene(n=6, W=9, H=7, seed=4, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    gs = dict(gs, means=torch.stack([(torch.rand(6, generator=g, dtype=torch.float64) - 0.5) * 1.2,
                                     (torch.rand(6, generator=g, dtype=torch.float64) - 0.5) * 1.0,
                                     2.0 + torch.rand(6, generator=g, dtype=torch.float64)], -1),
              scales=0.12 + 0.15 * torch.rand(6, 3, generator=g, dtype=torch.float64),
              opacities=torch.tensor([0.6, 0.8, 0.5, 0.7, 0.9, 0.4], dtype=torch.float64))
    cam = Camera.from_viewmat(torch.eye(4, dtype=torch.float64),
                              torch.tensor([[8.0, 0, 4.5], [0, 8.0, 3.5], [0, 0, 1]], dtype=torch.float64), 9, 7)
    ref = render_gaussians(gs, cam, backend=backend, surface=True)
    assert ref.surface.valid.float().mean() > 0.5

    def f(means, quats, scales, opacities):
        out = render_gaussians(dict(gs, means=means, quats=quats, scales=scales, opacities=opacities), cam,
                               backend=backend, surface=True)
        s = out.surface
        return s.normals, s.normals_world, s.unbiased_depth, s.distance_sum, out.alpha

    args = [gs[k].clone().requires_grad_(True) for k in GEOMETRY]
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("mode,sh_degree", [("RGB", 2), ("RGB+ED", None), ("ED", 1)])
def test_gsplat_inputs_with_extra_render_the_same(mode, sh_degree):
    """The gsplat path's inputs (SH evaluated before compositing, colours and extras in one tensor),
    rendered here by the torch backend in place of gsplat, give the render of the direct path."""
    C, W, H = 2, 32, 24
    inputs = random_scene(300, W, H, C, seed=9)
    g = torch.Generator().manual_seed(2)
    if sh_degree is not None:
        inputs[4] = 0.3 * torch.randn(300, (sh_degree + 1) ** 2, 3, generator=g)
    extra = torch.randn(300, 4, generator=g)
    bg = torch.rand(C, 3, generator=g)
    means, viewmats = inputs[0], inputs[5]
    direct = rasterization(*inputs, W, H, backend="torch", sh_degree=sh_degree, render_mode=mode, backgrounds=bg,
                           extra=extra)
    colors, deg, bgs, gmode = gsplat_colors_with_extra(means, inputs[4], extra, viewmats, sh_degree, bg, mode,
                                                       lambda d, dirs, sh: eval_sh(d, dirs, sh))
    assert deg is None and colors.shape[:2] == (C, 300)
    via = rasterization(*inputs[:4], colors, *inputs[5:], W, H, backend="torch", render_mode=gmode, backgrounds=bgs)
    assert via[0].shape == direct[0].shape
    assert (via[0] - direct[0]).abs().max() <= 1e-5 and torch.equal(via[1], direct[1])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_surface_matches_torch_on_cuda():
    gs, cam = _scene(n=3000, W=96, H=64, seed=1)
    gs, cam = {k: v.cuda() for k, v in gs.items()}, cam.to("cuda")
    outs, grads = {}, {}
    for be in ("gsplat", "torch"):
        p = {k: v.clone().requires_grad_(True) for k, v in gs.items()}
        out = render_gaussians(p, cam, backend=be, render_mode="RGB+ED", surface=True)
        s = out.surface
        (s.normal_sum.sum() + s.distance_sum.sum() + out.rgb.sum()).backward()
        outs[be], grads[be] = (out, s), p
    (og, sg), (ot, st) = outs["gsplat"], outs["torch"]
    assert (og.rgb - ot.rgb).abs().max() <= 1e-4 and (og.alpha - ot.alpha).abs().max() <= 1e-4
    assert (sg.normal_sum - st.normal_sum).abs().max() <= 1e-4
    assert (sg.distance_sum - st.distance_sum).abs().max() <= 1e-4 * st.distance_sum.abs().max()
    for k in GEOMETRY:
        assert _rel_err(grads["gsplat"][k].grad, grads["torch"][k].grad) <= 1e-3, k
