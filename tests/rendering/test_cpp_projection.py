"""The compiled projection and SH kernels against their PyTorch references (models/rendering/projection.py,
sh.py): outputs, gradients of every input, float64 gradcheck and bitwise determinism across thread counts."""
import pytest
import torch

from models.rendering import cpp_backend
from models.rendering.projection import project_gaussians
from models.rendering.rasterize import rasterization
from models.rendering.sh import eval_sh

pytestmark = pytest.mark.skipif(not cpp_backend.available(), reason="the C++ extension cannot be built here")


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _cameras(C, dtype, g):
    """C cameras looking roughly along +z from around the origin."""
    vms, Ks = [], []
    for c in range(C):
        a = 0.3 * (torch.rand(3, generator=g, dtype=dtype) - 0.5)
        skew = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=dtype)
        R = torch.linalg.matrix_exp(skew)
        vm = torch.eye(4, dtype=dtype)
        vm[:3, :3] = R
        vm[:3, 3] = torch.randn(3, generator=g, dtype=dtype) * 0.5
        vms.append(vm)
        Ks.append(torch.tensor([[60.0 + 10 * c, 0, 31.0], [0, 58.0, 23.0], [0, 0, 1]], dtype=dtype))
    return torch.stack(vms), torch.stack(Ks)


def _gaussians(N, dtype, g, spread=4.0):
    """Gaussians in front of, beside and behind the cameras; huge, tiny, transparent and opaque ones."""
    means = torch.randn(N, 3, generator=g, dtype=dtype) * spread + torch.tensor([0, 0, 5.0], dtype=dtype)
    quats = torch.randn(N, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.randn(N, 3, generator=g, dtype=dtype) * 1.2 - 2.0)
    opac = torch.rand(N, generator=g, dtype=dtype)
    return means, quats, scales, opac


@pytest.mark.parametrize("antialiased", [False, True])
def test_projection_matches_pytorch(antialiased):
    """float32 C++ against the float64 PyTorch projection (the truth here): no further off than the
    float32 PyTorch projection is, on outputs and on the gradients of every input."""
    g = torch.Generator().manual_seed(0)
    means, quats, scales, opac = _gaussians(3000, torch.float32, g)
    vms, Ks = _cameras(3, torch.float32, g)
    outs, grads = {}, {}
    vis = None
    for name, fn, dt in (("ref", project_gaussians, torch.float64), ("torch", project_gaussians, torch.float32),
                         ("cpp", cpp_backend.project_gaussians_cpp, torch.float32)):
        args = [t.to(dt).clone().requires_grad_(True) for t in (means, quats, scales, opac)]
        p = fn(*args, vms.to(dt), Ks.to(dt), 64, 48, 0.01, 1e10, 0.3, 0.0, antialiased=antialiased)
        if vis is None:
            vis = (p.radii > 0).all(-1)
        wg = torch.Generator().manual_seed(5)
        # a loss on the visible Gaussians only (culled ones carry placeholder values in both)
        loss = sum((x * torch.randn(x.shape, generator=wg, dtype=dt) * (vis[..., None] if x.dim() == 3 else vis)).sum()
                   for x in (p.means2d, p.conics, p.depths, p.opacities))
        loss.backward()
        outs[name] = [p.radii, p.means2d, p.conics, p.depths, p.opacities]
        grads[name] = [a.grad for a in args]
    assert vis.sum() > 500
    # radii: integers from float32 arithmetic; a ceil() at an exact boundary may differ in rare cases
    assert (outs["ref"][0] != outs["cpp"][0]).any(-1).float().mean() < 1e-3
    for i in range(1, 5):
        ref = outs["ref"][i].detach()[vis]
        err_t = (outs["torch"][i].detach()[vis] - ref).abs()
        err_c = (outs["cpp"][i].detach()[vis] - ref).abs()
        assert err_c.max() <= max(2 * float(err_t.max()), 1e-6 * float(ref.abs().max())), i
        assert err_c.max() <= 1e-4 * float(ref.abs().max()), i
    for name, ref, a, b in zip(("means", "quats", "scales", "opacities"), grads["ref"], grads["torch"], grads["cpp"]):
        scale = float(ref.abs().max())
        assert (b - ref).abs().max() <= max(2 * float((a - ref).abs().max()), 1e-5 * scale), name
        # typical Gaussians agree closely (the worst ones sit at the near plane, where float32 loses in both)
        rel = (b - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-6 * scale) if ref.dim() > 1 else \
            (b - ref).abs() / ref.abs().clamp_min(1e-6 * scale)
        assert rel.median() <= 1e-5, name


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_pytorch(degree):
    g = torch.Generator().manual_seed(degree)
    N, C = 2000, 2
    means = torch.randn(N, 3, generator=g)
    means[0] = torch.tensor([0.5, -0.25, 1.0])          # the camera centre of camera 0 below: zero direction
    coeffs = torch.randn(N, 16, 3, generator=g) * 0.4
    campos = torch.stack([torch.tensor([0.5, -0.25, 1.0]), torch.randn(3, generator=g)])
    v = torch.randn(C, N, 3, generator=g)
    res = {}
    for name in ("torch", "cpp"):
        m, co = means.clone().requires_grad_(True), coeffs.clone().requires_grad_(True)
        if name == "torch":
            out = torch.clamp_min(eval_sh(degree, m[None] - campos[:, None], co[None].expand(C, -1, -1, -1)) + 0.5, 0)
        else:
            out = cpp_backend.sh_colors_cpp(degree, m, co, campos)
        (out * v).sum().backward()
        res[name] = (out, torch.zeros_like(m) if m.grad is None else m.grad, co.grad)  # degree 0: no means grad
    for a, b in zip(res["torch"], res["cpp"]):
        assert (a - b).detach().abs().max() <= 1e-5 * max(1.0, float(a.detach().abs().max()))


def test_culled_gaussians_skip_sh_and_get_zero_projection_gradients():
    """A Gaussian culled in a camera gets colour 0 there (SH not evaluated; the rasterizer never reads it),
    the others their SH colour bit for bit; Gaussians used by no camera get exact zero gradients from the
    projection's backward, which skips them without recomputing their covariance."""
    g = torch.Generator().manual_seed(7)
    means, quats, scales, opac = _gaussians(3000, torch.float32, g)
    coeffs = torch.randn(3000, 16, 3, generator=g) * 0.3
    vms, Ks = _cameras(2, torch.float32, g)
    p = cpp_backend.project_gaussians_cpp(means, quats, scales, opac, vms, Ks, 64, 48)
    kept = (p.radii > 0).all(-1)
    assert 0 < int(kept.sum()) < kept.numel()
    campos = -(vms[:, :3, :3].transpose(-1, -2) @ vms[:, :3, 3:])[..., 0]
    full = cpp_backend.sh_colors_cpp(3, means, coeffs, campos)
    culled_aware = cpp_backend.sh_colors_cpp(3, means, coeffs, campos, p.radii)
    assert torch.equal(culled_aware[kept], full[kept])
    assert torch.all(culled_aware[~kept] == 0)
    args = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac)]
    p = cpp_backend.project_gaussians_cpp(*args, vms, Ks, 64, 48)
    w = kept[..., None].float()  # upstream gradients only where a camera keeps the Gaussian
    ((p.means2d * w).sum() + (p.conics * w).sum() + (p.opacities * kept).sum() + (p.depths * kept).sum()).backward()
    unused = ~kept.any(0)
    assert int(unused.sum()) > 0
    for a in args:
        assert torch.all(a.grad[unused] == 0)
        assert a.grad[~unused].abs().sum() > 0


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_in_two_parts_is_bitwise_the_one_tensor_path(degree):
    """sh0 [N,1,3] and shN [N,15,3] read in place (rasterization(sh_rest=...), as the trainer renders) give
    the same colours and the same gradients, bit for bit, as their concatenation; the degrees above the one
    in use get exact zero gradients, with and without the projection's culling."""
    g = torch.Generator().manual_seed(10 + degree)
    N, C = 3000, 2
    means, quats, scales, opac = _gaussians(N, torch.float32, g)
    coeffs = torch.randn(N, 16, 3, generator=g) * 0.3
    vms, Ks = _cameras(C, torch.float32, g)
    campos = -(vms[:, :3, :3].transpose(-1, -2) @ vms[:, :3, 3:])[..., 0]
    radii = cpp_backend.project_gaussians_cpp(means, quats, scales, opac, vms, Ks, 64, 48).radii
    v = torch.randn(C, N, 3, generator=g)
    for r in (None, radii):
        m1, co = means.clone().requires_grad_(True), coeffs.clone().requires_grad_(True)
        one = cpp_backend.sh_colors_cpp(degree, m1, co, campos, r)
        (one * v).sum().backward()
        m2 = means.clone().requires_grad_(True)
        sh0, shN = coeffs[:, :1].clone().requires_grad_(True), coeffs[:, 1:].clone().requires_grad_(True)
        two = cpp_backend.sh_colors_cpp(degree, m2, sh0, campos, r, rest=shN)
        (two * v).sum().backward()
        assert torch.equal(one, two)
        assert torch.equal(m1.grad, m2.grad)
        assert torch.equal(co.grad, torch.cat([sh0.grad, shN.grad], 1))
        assert torch.all(co.grad[:, (degree + 1) ** 2:] == 0)
    # through rasterization(): the compiled backend in place, the PyTorch one concatenating
    for backend in ("cpp", "torch"):
        outs = []
        for split in (False, True):
            args = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, coeffs)]
            colors, rest = (args[4][:, :1], args[4][:, 1:]) if split else (args[4], None)
            img, alpha, _ = rasterization(*args[:4], colors, vms, Ks, 64, 48, sh_degree=degree, backend=backend,
                                          sh_rest=rest)
            (img.pow(2).sum() + alpha.sum()).backward()
            outs.append([img, alpha] + [a.grad for a in args])
        for x, y in zip(*outs):
            assert torch.equal(x, y)
    with pytest.raises(ValueError, match="sh_rest"):
        rasterization(means, quats, scales, opac, coeffs[:, :1], vms, Ks, 64, 48, sh_rest=coeffs[:, 1:])
    with pytest.raises(ValueError, match="K0 \\+ K1 >= 16"):
        rasterization(means, quats, scales, opac, coeffs[:, :1], vms, Ks, 64, 48, sh_degree=3,
                      sh_rest=coeffs[:, 1:9])


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    means, quats, scales, opac = _gaussians(24, torch.float64, g, spread=1.0)
    scales = scales.clamp(0.05, 0.5)
    opac = 0.2 + 0.7 * opac
    vms, Ks = _cameras(2, torch.float64, g)
    for aa in (False, True):
        def f(m, q, s, o):
            p = cpp_backend.project_gaussians_cpp(m, q, s, o, vms, Ks, 64, 48, 0.01, 1e10, 0.3, 0.0, antialiased=aa)
            return p.means2d, p.depths, p.conics, p.opacities
        args = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac)]
        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4)
    coeffs = torch.randn(24, 16, 3, generator=g, dtype=torch.float64) * 0.2
    campos = torch.randn(2, 3, generator=g, dtype=torch.float64)
    for degree in (1, 3):
        args = [means.clone().requires_grad_(True), coeffs.clone().requires_grad_(True)]
        assert torch.autograd.gradcheck(lambda m, co: cpp_backend.sh_colors_cpp(degree, m, co, campos), args,
                                        eps=1e-6, atol=1e-6, rtol=1e-4)
        args = [means.clone().requires_grad_(True), coeffs[:, :1].clone().requires_grad_(True),
                coeffs[:, 1:].clone().requires_grad_(True)]  # in two parts (sh0, shN)
        assert torch.autograd.gradcheck(lambda m, c0, cr: cpp_backend.sh_colors_cpp(degree, m, c0, campos, rest=cr),
                                        args, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_bitwise_deterministic_across_thread_counts():
    g = torch.Generator().manual_seed(4)
    means, quats, scales, opac = _gaussians(20000, torch.float32, g)
    coeffs = torch.randn(20000, 16, 3, generator=g)
    vms, Ks = _cameras(2, torch.float32, g)
    runs = []
    for threads in (2, 1, 2):
        torch.set_num_threads(threads)
        args = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, coeffs)]
        p = cpp_backend.project_gaussians_cpp(*args[:4], vms, Ks, 64, 48)
        cols = cpp_backend.sh_colors_cpp(3, args[0], args[4], torch.zeros(2, 3))
        (p.means2d.sum() + p.conics.pow(2).sum() + p.depths.sum() + p.opacities.sum() + cols.pow(2).sum()).backward()
        runs.append([p.radii, p.means2d, p.conics, cols] + [a.grad for a in args])
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            assert torch.equal(x, y)


def test_sugar_density_kernel_matches_pytorch_and_is_deterministic():
    from models.sugar.geometry import density_terms, neighbour_table, take
    from models.rendering.projection import quat_to_rotmat
    g = torch.Generator().manual_seed(7)
    N, M, K = 400, 1500, 17
    means = torch.randn(N, 3, generator=g)
    rot = quat_to_rotmat(torch.randn(N, 4, generator=g))
    scales = torch.exp(torch.randn(N, 3, generator=g) * 0.5 - 1.0)
    opac = torch.rand(N, generator=g)
    points = torch.randn(M, 3, generator=g)
    nbr = torch.randint(N, (M, K), generator=g)
    vt, vb = torch.randn(M, K, generator=g), torch.randn(M, generator=g)
    res = {}
    for name in ("torch", "cpp", "cpp1"):
        torch.set_num_threads(1 if name == "cpp1" else 2)
        args = [t.clone().requires_grad_(True) for t in (points, means, rot, scales, opac)]
        table = neighbour_table(*args[1:])
        if name == "torch":
            rows = take(table, nbr)
            terms, beta = density_terms(args[0], rows)[0], rows[..., 13].mean(dim=1)
        else:
            terms, beta = cpp_backend.sugar_density_cpp(args[0], table, nbr)
        ((terms * vt).sum() + (beta * vb).sum()).backward()
        res[name] = [terms, beta] + [a.grad for a in args]
    for a, b in zip(res["torch"], res["cpp"]):
        assert (a - b).detach().abs().max() <= 1e-5 * max(1.0, float(a.detach().abs().max()))
    for a, b in zip(res["cpp"], res["cpp1"]):
        assert torch.equal(a, b)
    args = [points.double().requires_grad_(True), neighbour_table(means, rot, scales, opac).double().requires_grad_(True)]
    small = nbr[:40, :5].contiguous() % 30
    assert torch.autograd.gradcheck(lambda p, t: cpp_backend.sugar_density_cpp(p[:40], t[:30], small), args,
                                    eps=1e-6, atol=1e-6, rtol=1e-4)


def test_sugar_normal_kernel_matches_pytorch_and_is_deterministic(monkeypatch):
    from models.rendering.projection import quat_to_rotmat
    from models.sugar.geometry import knn, sample_points_around_gaussians
    from models.sugar.regularizers import sugar_normal_loss
    g = torch.Generator().manual_seed(11)
    N, M = 300, 2000
    means = torch.randn(N, 3, generator=g) * torch.tensor([2.0, 2.0, 0.3])   # a noisy slab: mixed signs
    quats = torch.randn(N, 4, generator=g)
    scales = torch.exp(torch.randn(N, 3, generator=g) * 0.5 - 1.5)
    opac = torch.rand(N, generator=g)
    nb = knn(means, 16)
    points, gidx = sample_points_around_gaussians(means, quat_to_rotmat(quats), scales, torch.arange(N), M,
                                                  generator=torch.Generator().manual_seed(3))
    res = {}
    for name in ("torch", "cpp", "cpp1"):
        torch.set_num_threads(1 if name == "cpp1" else 2)
        with monkeypatch.context() as mp:
            if name == "torch":
                mp.setattr(cpp_backend, "load_extension", lambda: None)
            q = quats.clone().requires_grad_(True)
            loss, stats = sugar_normal_loss(points, gidx, nb, (means, quat_to_rotmat(q), scales, opac))
            loss.backward()
        res[name] = (loss.detach(), q.grad, stats["normal_residual"])
    assert res["torch"][0] > 1e-2                                   # random normals: far from aligned
    assert torch.allclose(res["cpp"][0], res["torch"][0], rtol=1e-5, atol=0)
    assert (res["cpp"][1] - res["torch"][1]).abs().max() <= 1e-5 * res["torch"][1].abs().max()
    assert res["cpp"][2] == pytest.approx(res["torch"][2], rel=1e-5)
    assert torch.equal(res["cpp"][0], res["cpp1"][0]) and torch.equal(res["cpp"][1], res["cpp1"][1])
    # float64: the same agreement, tighter (no gradcheck: the weights depend on the normals but carry no
    # gradient by design, as in SuGaR, so finite differences see a term the analytic gradient leaves out)
    out = {}
    for name in ("torch", "cpp"):
        with monkeypatch.context() as mp:
            if name == "torch":
                mp.setattr(cpp_backend, "load_extension", lambda: None)
            q = quats.double().requires_grad_(True)
            loss, _ = sugar_normal_loss(points.double(), gidx, nb, (means.double(), quat_to_rotmat(q),
                                                                     scales.double(), opac.double()))
            loss.backward()
        out[name] = (loss.detach(), q.grad)
    assert torch.allclose(out["cpp"][0], out["torch"][0], rtol=1e-12, atol=0)
    assert (out["cpp"][1] - out["torch"][1]).abs().max() <= 1e-12 * out["torch"][1].abs().max()


def test_sugar_frames_kernel_matches_pytorch_gradchecks_and_is_deterministic(monkeypatch):
    """gaussian_frames in C++ against its PyTorch composition (quat_to_rotmat, neighbour_table,
    gaussian_normals): values and the gradients of all four inputs, for any subset of the outputs used;
    float64 gradcheck; the same bytes at 1 and 2 threads."""
    from models.sugar.geometry import gaussian_frames
    g = torch.Generator().manual_seed(5)
    N = 700
    means, quats, scales, opac = _gaussians(N, torch.float32, g)
    quats[:5] *= 1e-3                                   # far from unit norm: the normalisation's gradient
    weights = [torch.randn(N, 3, 3, generator=g), torch.randn(N, 14, generator=g), torch.randn(N, 3, generator=g)]
    for used in ((0, 1, 2), (1,), (2,), (0, 2)):
        res = {}
        for name in ("torch", "cpp", "cpp1"):
            torch.set_num_threads(1 if name == "cpp1" else 2)
            with monkeypatch.context() as mp:
                if name == "torch":
                    mp.setattr(cpp_backend, "load_extension", lambda: None)
                args = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac)]
                outs = gaussian_frames(*args)
                sum((outs[i] * weights[i]).sum() for i in used).backward()
            res[name] = [o.detach() for o in outs] + [a.grad if a.grad is not None else torch.zeros_like(a)
                                                      for a in args]
        for a, b in zip(res["torch"], res["cpp"]):
            assert (a - b).abs().max() <= 1e-5 * max(1.0, float(a.abs().max())), used
        for a, b in zip(res["cpp"], res["cpp1"]):
            assert torch.equal(a, b)
    args = [t[:25].double().clone().requires_grad_(True) for t in (means, quats, scales, opac)]
    assert torch.autograd.gradcheck(lambda *a: cpp_backend.sugar_frames_cpp(*a), args, eps=1e-6, atol=1e-6,
                                    rtol=1e-4)
