"""Gradients with respect to the camera (viewmats) on the compiled CPU backend: what pose refinement needs
from it. The kernels against finite differences (float64 gradcheck) and against the PyTorch backend through
a whole render, bitwise the same for any thread count, and the Gaussians' gradients the same bits whether
or not the cameras require gradients."""
import pytest
import torch

from models.rendering import cpp_backend
from models.rendering.random_scene import frontal_gaussians
from models.rendering.rasterize import rasterization
from tests.rendering.fixtures import one_thread  # noqa: F401 (fixture)
from tests.rendering.scenes import random_scene

pytestmark = pytest.mark.skipif(not cpp_backend.available(), reason="the C++ extension cannot be built here")


def _hat(w):
    z = torch.zeros((), dtype=w.dtype)
    return torch.stack([torch.stack([z, -w[2], w[1]]), torch.stack([w[2], z, -w[0]]),
                        torch.stack([-w[1], w[0], z])])


def _pose(xi, base):
    """exp(xi^) base: a rigid world->camera transform, differentiable in the 6-vector xi (rotation, then
    translation) through matrix_exp, so that gradcheck perturbs a valid pose."""
    top = torch.cat([_hat(xi[:3]), xi[3:, None]], 1)
    twist = torch.cat([top, torch.zeros(1, 4, dtype=xi.dtype)], 0)
    return torch.linalg.matrix_exp(twist) @ base


def _small_scene(dtype=torch.float64, seed=3, N=24):
    """A few Gaussians in front of two cameras (the scene of test_cpp_projection's gradcheck)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(N, 3, generator=g, dtype=dtype) + torch.tensor([0, 0, 5.0], dtype=dtype)
    quats = torch.randn(N, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.randn(N, 3, generator=g, dtype=dtype) * 1.2 - 2.0).clamp(0.05, 0.5)
    opac = 0.2 + 0.7 * torch.rand(N, generator=g, dtype=dtype)
    coeffs = torch.randn(N, 16, 3, generator=g, dtype=dtype) * 0.2
    vms, Ks = [], []
    for c in range(2):
        xi = torch.cat([0.15 * torch.randn(3, generator=g, dtype=dtype), 0.3 * torch.randn(3, generator=g, dtype=dtype)])
        vms.append(_pose(xi, torch.eye(4, dtype=dtype)))
        Ks.append(torch.tensor([[60.0 + 10 * c, 0, 31.0], [0, 58.0, 23.0], [0, 0, 1]], dtype=dtype))
    return means, quats, scales, opac, coeffs, torch.stack(vms), torch.stack(Ks)


@pytest.mark.parametrize("antialiased", [False, True])
def test_projection_gradcheck_wrt_viewmat(antialiased):
    """float64 finite differences of the compiled projection through a pose's 6-vector; the kernel's
    [C,4,4] gradient has a zero bottom row (gsplat's convention)."""
    means, quats, scales, opac, _, vms, Ks = _small_scene()

    def f(xi):
        vm = torch.stack([_pose(xi[c], vms[c]) for c in range(2)])
        p = cpp_backend.project_gaussians_cpp(means, quats, scales, opac, vm, Ks, 64, 48, 0.01, 1e10, 0.3, 0.0,
                                              antialiased=antialiased)
        return p.means2d, p.depths, p.conics, p.opacities

    xi = torch.zeros(2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, [xi], eps=1e-6, atol=1e-6, rtol=1e-4)
    # the raw matrix entries too (the kernel differentiates them, not only rigid motions)
    top = vms[:, :3].clone().requires_grad_(True)
    bottom = vms[:, 3:]

    def g(top):
        p = cpp_backend.project_gaussians_cpp(means, quats, scales, opac, torch.cat([top, bottom], 1), Ks, 64, 48,
                                              antialiased=antialiased)
        return p.means2d, p.depths, p.conics, p.opacities

    assert torch.autograd.gradcheck(g, [top], eps=1e-6, atol=1e-6, rtol=1e-4)
    vm = vms.clone().requires_grad_(True)
    p = cpp_backend.project_gaussians_cpp(means, quats, scales, opac, vm, Ks, 64, 48, antialiased=antialiased)
    (p.means2d.sum() + p.conics.sum() + p.depths.sum() + p.opacities.sum()).backward()
    assert torch.all(vm.grad[:, 3] == 0) and vm.grad[:, :3].abs().sum() > 0


@pytest.mark.parametrize("degree", [1, 3])
def test_sh_gradcheck_wrt_campos(degree):
    """float64 finite differences of the compiled SH colours in the camera centres (with the means and the
    coefficients, in one tensor and in two parts), culled entries included (colour 0: no gradient)."""
    means, quats, scales, opac, coeffs, vms, Ks = _small_scene()
    campos = torch.randn(2, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    args = [means.clone().requires_grad_(True), coeffs.clone().requires_grad_(True), campos.clone().requires_grad_(True)]
    assert torch.autograd.gradcheck(lambda m, co, cp: cpp_backend.sh_colors_cpp(degree, m, co, cp), args,
                                    eps=1e-6, atol=1e-6, rtol=1e-4)
    radii = cpp_backend.project_gaussians_cpp(means, quats, scales, opac, vms, Ks, 64, 48).radii
    kept = (radii > 0).all(-1)
    assert 0 < int(kept.sum()) < kept.numel()
    args = [means.clone().requires_grad_(True), coeffs[:, :1].clone().requires_grad_(True),
            coeffs[:, 1:].clone().requires_grad_(True), campos.clone().requires_grad_(True)]
    assert torch.autograd.gradcheck(
        lambda m, c0, cr, cp: cpp_backend.sh_colors_cpp(degree, m, c0, cp, radii, rest=cr), args,
        eps=1e-6, atol=1e-6, rtol=1e-4)


def _render_grads(inputs, backend, width, height, camera_grad=True, sh_degree=3, seed=1, **kw):
    """Colours weighted at random, summed: the gradients of means, quats, scales, opacities, colours and
    (when camera_grad) viewmats."""
    args = [t.clone().requires_grad_(i < 5 or (i == 5 and camera_grad)) for i, t in enumerate(inputs)]
    img, alpha, _ = rasterization(*args, width, height, sh_degree=sh_degree, backend=backend, **kw)
    w = torch.randn(img.shape, generator=torch.Generator().manual_seed(seed), dtype=img.dtype)
    ((img * w).sum() + alpha.sum()).backward()
    return [img] + [a.grad for a in args[:6]]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.float32, 1e-3)], ids=["float64", "float32"])
@pytest.mark.parametrize("sh_degree", [1, 3])
def test_render_viewmat_gradient_matches_torch_backend(dtype, tol, sh_degree):
    """The whole render (projection, SH through the camera centre, compositing) on the compiled backend
    gives the cameras the gradient the PyTorch backend gives them (autograd through its projection)."""
    inputs = frontal_gaussians(400, 64, 48, n_cams=2, sh_degree=sh_degree, seed=5)
    inputs = [t.to(dtype) for t in inputs]
    cpp = _render_grads(inputs, "cpp", 64, 48, sh_degree=sh_degree)
    ref = _render_grads(inputs, "torch", 64, 48, sh_degree=sh_degree)
    v_cpp, v_ref = cpp[-1], ref[-1]
    assert torch.all(v_cpp[:, 3] == 0)
    scale = float(v_ref.abs().max())
    assert scale > 0
    assert (v_cpp - v_ref).abs().max() <= tol * scale, ((v_cpp - v_ref).abs().max() / scale)
    for c in range(v_ref.shape[0]):  # each camera on its own: neither is left to the other's scale
        assert (v_cpp[c] - v_ref[c]).norm() <= tol * v_ref[c].norm()


def test_render_viewmat_gradient_with_culled_and_extreme_gaussians():
    """Gaussians behind the camera, off-screen, inside the near plane, huge and tiny (antialiased too):
    the compiled backend's camera gradient still matches the PyTorch one in float64."""
    inputs = [t.double() for t in random_scene(300, 64, 48, n_cams=2, seed=4)]
    coeffs = torch.randn(300, 4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.3
    inputs[4] = coeffs
    for mode in ("classic", "antialiased"):
        cpp = _render_grads(inputs, "cpp", 64, 48, sh_degree=1, rasterize_mode=mode, render_mode="RGB+ED")
        ref = _render_grads(inputs, "torch", 64, 48, sh_degree=1, rasterize_mode=mode, render_mode="RGB+ED")
        assert (cpp[-1] - ref[-1]).abs().max() <= 1e-5 * float(ref[-1].abs().max()), mode


def test_viewmat_gradient_bitwise_across_thread_counts(one_thread):
    """The cameras' gradient (sums over Gaussians) is the same bits at 1 and 2 threads: enough Gaussians
    for many reduction chunks, split differently between the threads."""
    inputs = frontal_gaussians(6000, 96, 64, n_cams=2, sh_degree=3, seed=7)
    runs = [_render_grads(inputs, "cpp", 96, 64)]  # one thread (the fixture)
    torch.set_num_threads(2)
    runs += [_render_grads(inputs, "cpp", 96, 64), _render_grads(inputs, "cpp", 96, 64)]
    assert runs[0][-1].abs().sum() > 0
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            assert torch.equal(x, y)
    # the kernels alone: the projection's and the SH's camera sums (not through the compositing's order)
    means, quats, scales, opac, coeffs, vms, Ks = inputs
    grads = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        vm = vms.clone().requires_grad_(True)
        p = cpp_backend.project_gaussians_cpp(means, quats, scales, opac, vm, Ks, 96, 64)
        campos = -(vm[:, :3, :3].transpose(-1, -2) @ vm[:, :3, 3:])[..., 0]
        cols = cpp_backend.sh_colors_cpp(3, means, coeffs, campos, p.radii)
        (p.means2d.sum() + p.conics.pow(2).sum() + p.depths.sum() + cols.pow(2).sum()).backward()
        grads.append(vm.grad)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_gaussian_gradients_unchanged_by_camera_gradients(sh_degree):
    """means / quats / scales / opacities / colour gradients (and the render) are the same bits whether or
    not the cameras require gradients: the compiled path is taken either way and computes them alike."""
    inputs = frontal_gaussians(3000, 96, 64, n_cams=2, sh_degree=sh_degree, seed=11)
    without = _render_grads(inputs, "cpp", 96, 64, camera_grad=False, sh_degree=sh_degree)
    with_cam = _render_grads(inputs, "cpp", 96, 64, camera_grad=True, sh_degree=sh_degree)
    assert without[-1] is None and with_cam[-1] is not None
    for x, y in zip(without[:-1], with_cam[:-1]):
        assert torch.equal(x, y)


def test_cameras_that_need_gradients_take_the_compiled_projection(monkeypatch):
    """viewmats.requires_grad keeps the compiled projection (pose refinement); Ks.requires_grad still
    falls back to the PyTorch one."""
    means, quats, scales, opac, colors, vms, Ks = frontal_gaussians(50, 32, 24, n_cams=1)
    assert cpp_backend.can_project(means, opac, vms.clone().requires_grad_(True), Ks)
    assert not cpp_backend.can_project(means, opac, vms, Ks.clone().requires_grad_(True))
    calls = []
    real = cpp_backend.project_gaussians_cpp
    monkeypatch.setattr(cpp_backend, "project_gaussians_cpp", lambda *a, **k: calls.append(1) or real(*a, **k))
    rasterization(means, quats, scales, opac, colors, vms.clone().requires_grad_(True), Ks, 32, 24, backend="cpp")
    assert calls
