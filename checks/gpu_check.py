"""GPU check: the PyTorch backend against gsplat's CUDA rasterizer, then fwd+bwd timings; and the
compiled CPU backend ("cpp", run on this machine's CPU) against gsplat.

    .venv/bin/python -m checks.gpu_check --out gpu_check.json [--n-big 100000 --size-big 1280x1920]

Phases (each in its own try/except; a failure is printed and recorded, the rest still runs):
  0. environment (torch, CUDA, gsplat versions, device name)
  1. gsplat warm-up (compiles its CUDA kernels at first use: may take minutes)
  2. agreement on a moderate scene (RGB+ED, 2 cameras, SH degree 3): max abs difference of
     colours, alphas, ED depth (where alpha > 0.05) and relative difference of the gradients of
     means/quats/scales/opacities/SH and of means2d, radii agreement
  3. timings: forward+backward at ~100k Gaussians, 1280x1920 (halving N / resolution on
     out-of-memory), median of 5 after a warm-up, both backends, peak GPU memory
  3b. gsplat_repeatability: the same inputs rendered and differentiated twice with gsplat (its
     backward accumulates with atomics): whether outputs and gradients are bitwise equal, and the
     largest relative difference and the share of differing entries of each gradient
  4. cpp_vs_gsplat: the compiled CPU backend (built on first use here: its compile time is
     recorded) on the CPU copy of the agreement scene against gsplat on CUDA: output and gradient
     differences as in phase 2, bitwise repeatability of two CPU calls, and CPU fwd+bwd timings of
     cpp against the PyTorch backend (5k and 20k Gaussians at 128x192, median of 5)
Prints a table and writes the JSON to --out. Needs only the project and a gsplat build.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

import torch  # noqa: E402

RESULTS = {"phases": {}, "errors": {}}
DEVICE = "cuda"
DRY = False  # --dry-run-cpu: CPU tensors, the dense reference stands in for gsplat (tests the script)


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def render(*args, backend, **kw):
    from models.rendering import rasterization
    if DRY and backend == "gsplat":
        from models.rendering.reference import rasterization_dense
        return rasterization_dense(*args, **kw)
    return rasterization(*args, backend=backend, **kw)


def phase(name):
    def deco(fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            print(f"== {name}", flush=True)
            try:
                out = fn(*a, **k)
                RESULTS["phases"][name] = {"ok": True, "seconds": time.perf_counter() - t0, "result": out}
                return out
            except Exception as e:  # keep going: one failure must not lose the other phases
                traceback.print_exc()
                RESULTS["phases"][name] = {"ok": False, "seconds": time.perf_counter() - t0}
                RESULTS["errors"][name] = f"{type(e).__name__}: {e}"
                print(f"!! {name} failed: {type(e).__name__}: {e}", flush=True)
                return None
            finally:
                torch.cuda.empty_cache() if torch.cuda.is_available() else None
        return run
    return deco


def scene(n, width, height, n_cams=1, sh_degree=None, seed=0):
    from models.rendering.random_scene import frontal_gaussians
    out = frontal_gaussians(n, width, height, n_cams=n_cams, sh_degree=sh_degree, seed=seed)
    return [t.to(DEVICE) for t in out]


@phase("environment")
def env():
    import gsplat
    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "torch_cuda": torch.version.cuda, "gsplat": getattr(gsplat, "__version__", "?"),
            "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    print(info)
    return info


@phase("gsplat_warmup")
def warmup():
    t0 = time.perf_counter()
    inp = [t.requires_grad_(True) for t in scene(100, 64, 48)]
    c, a, _ = render(*inp, 64, 48, backend="gsplat")
    c.sum().backward()
    sync()
    return {"first_call_s": time.perf_counter() - t0}


@phase("agreement")
def agreement(n=20000, width=320, height=192):
    if DRY:
        width, height = 48, 32
    base = scene(n, width, height, n_cams=2, sh_degree=3, seed=1)
    res = {"n": n, "width": width, "height": height}
    outs, grads = {}, {}
    for be in ("gsplat", "torch"):
        inp = [t.clone().requires_grad_(True) for t in base]
        c, a, meta = render(*inp, width, height, sh_degree=3, render_mode="RGB+ED", backend=be)
        meta["means2d"].retain_grad()
        w = torch.randn(c.shape, generator=torch.Generator().manual_seed(0)).to(DEVICE)
        ((c[..., :3] * w[..., :3]).sum() + a.sum() + 0.1 * (c[..., 3:] * (a > 0.05)).sum()).backward()
        outs[be] = (c.detach(), a.detach(), meta["radii"])
        grads[be] = {k: t.grad for k, t in zip(["means", "quats", "scales", "opacities", "sh"], inp[:5])}
        grads[be]["means2d"] = meta["means2d"].grad
    (cg, ag, rg), (ct, at, rt) = outs["gsplat"], outs["torch"]
    cov = ag[..., 0] > 0.05
    res["max_abs_rgb"] = (cg[..., :3] - ct[..., :3]).abs().max().item()
    res["max_abs_alpha"] = (ag - at).abs().max().item()
    res["max_abs_ed_covered"] = (cg[..., 3] - ct[..., 3]).abs()[cov].max().item()
    res["max_depth"] = cg[..., 3][cov].max().item()
    res["radii_visible_agree"] = ((rg > 0).all(-1) == (rt > 0).all(-1)).float().mean().item()
    res["radii_equal"] = (rg == rt).all(-1).float().mean().item()
    vis = (rg > 0).all(-1)
    for k in grads["gsplat"]:
        gg, gt = grads["gsplat"][k], grads["torch"][k]
        if k == "means2d":
            gg, gt = gg[vis], gt[vis]
        res[f"grad_rel_{k}"] = ((gg - gt).abs().max() / gg.abs().max().clamp(min=1e-20)).item()
    for k, v in res.items():
        print(f"  {k:24s} {v}")
    return res


@phase("surface_agreement")
def surface_agreement(n=20000, width=320, height=192):
    """render_gaussians(surface=True) on gsplat against the torch backend: normals, unbiased depth and
    the gradients of a loss on them (issue 25; in --dry-run-cpu the compiled backend stands in)."""
    from models.cameras import Camera, rigid_inverse
    from models.rendering.render import render_gaussians
    if DRY:
        width, height = 48, 32
    means, quats, scales, opacities, colors, viewmats, Ks = scene(n, width, height, seed=2)
    camera = Camera(rigid_inverse(viewmats[0]), Ks[0], width, height)
    first = "cpp" if DRY else "gsplat"
    res, maps, grads = {"n": n, "width": width, "height": height, "first": first}, {}, {}
    for be in (first, "torch"):
        inp = {k: t.clone().requires_grad_(True) for k, t in
               zip(("means", "quats", "scales", "opacities"), (means, quats, scales, opacities))}
        out = render_gaussians(dict(inp, colors=colors), camera, render_mode="RGB+ED", backend=be, surface=True)
        s = out.surface
        ok = s.valid & (out.alpha > 0.5)
        (s.normals[ok].sum() + 0.01 * s.unbiased_depth[ok].sum()).backward()
        maps[be] = (s.normals.detach(), s.unbiased_depth.detach(), s.valid, ok)
        grads[be] = {k: t.grad for k, t in inp.items()}
    (na, da, va, oka), (nt, dt, vt, okt) = maps[first], maps["torch"]
    both = oka & okt
    res["valid_agree"] = (va == vt).float().mean().item()
    res["max_abs_normal"] = (na - nt).abs()[both].max().item() if both.any() else None
    res["max_rel_unbiased_depth"] = ((da - dt).abs() / dt.abs().clamp_min(1e-6))[both].max().item() if both.any() else None
    for k in grads[first]:
        ga, gt = grads[first][k], grads["torch"][k]
        res[f"grad_rel_{k}"] = ((ga - gt).abs().max() / ga.abs().max().clamp(min=1e-20)).item()
    for k, v in res.items():
        print(f"  {k:24s} {v}")
    return res


def _time(fn, reps=5):
    ts = []
    for i in range(reps + 1):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        if i:
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _compare(outs, grads, a, b):
    """Differences of backend b against backend a (tensors on any device)."""
    (ca, aa, ra), (cb, ab, rb) = [tuple(t.cpu() for t in outs[k]) for k in (a, b)]
    cov = aa[..., 0] > 0.05
    res = {"max_abs_rgb": (ca[..., :3] - cb[..., :3]).abs().max().item(),
           "max_abs_alpha": (aa - ab).abs().max().item(),
           "max_abs_ed_covered": (ca[..., 3] - cb[..., 3]).abs()[cov].max().item(),
           "radii_visible_agree": ((ra > 0).all(-1) == (rb > 0).all(-1)).float().mean().item()}
    vis = (ra > 0).all(-1)
    for k in grads[a]:
        ga, gb = grads[a][k].cpu(), grads[b][k].cpu()
        if k == "means2d":
            ga, gb = ga[vis], gb[vis]
        res[f"grad_rel_{k}"] = ((ga - gb).abs().max() / ga.abs().max().clamp(min=1e-20)).item()
    return res


def _render_with_grads(base, width, height, be):
    inp = [t.clone().requires_grad_(True) for t in base]
    c, a, meta = render(*inp, width, height, sh_degree=3, render_mode="RGB+ED", backend=be)
    meta["means2d"].retain_grad()
    w = torch.randn(c.shape, generator=torch.Generator().manual_seed(0)).to(c.device)
    ((c[..., :3] * w[..., :3]).sum() + a.sum() + 0.1 * (c[..., 3:] * (a > 0.05)).sum()).backward()
    grads = {k: t.grad for k, t in zip(["means", "quats", "scales", "opacities", "sh"], inp[:5])}
    grads["means2d"] = meta["means2d"].grad
    return (c.detach(), a.detach(), meta["radii"]), grads


@phase("gsplat_repeatability")
def gsplat_repeatability(n=20000, width=320, height=192):
    if DRY:
        width, height = 48, 32
    base = scene(n, width, height, n_cams=2, sh_degree=3, seed=1)
    (out1, grads1), (out2, grads2) = [_render_with_grads(base, width, height, "gsplat") for _ in range(2)]
    res = {"n": n, "width": width, "height": height,
           "outputs_bitwise_equal": all(torch.equal(x, y) for x, y in zip(out1, out2))}
    for k in grads1:
        a, b = grads1[k], grads2[k]
        res[f"grad_bitwise_equal_{k}"] = bool(torch.equal(a, b))
        res[f"grad_rel_{k}"] = ((a - b).abs().max() / a.abs().max().clamp(min=1e-20)).item()
        res[f"grad_share_differing_{k}"] = (a != b).float().mean().item()
    for k, v in res.items():
        print(f"  {k:32s} {v}")
    return res


@phase("cpp_vs_gsplat")
def cpp_vs_gsplat(n=20000, width=320, height=192):
    from models.rendering import cpp_backend
    if DRY:
        width, height = 48, 32
    t0 = time.perf_counter()
    if not cpp_backend.available():
        raise RuntimeError(f"the compiled CPU backend did not build: {cpp_backend._error}")
    res = {"n": n, "width": width, "height": height, "cpu_threads": torch.get_num_threads(),
           "extension_load_s": time.perf_counter() - t0, "extension": cpp_backend.extension_name()}
    base = scene(n, width, height, n_cams=2, sh_degree=3, seed=1)
    outs, grads = {}, {}
    outs["gsplat"], grads["gsplat"] = _render_with_grads(base, width, height, "gsplat")
    cpu = [t.cpu() for t in base]
    outs["cpp"], grads["cpp"] = _render_with_grads(cpu, width, height, "cpp")
    again, grads_again = _render_with_grads(cpu, width, height, "cpp")
    res.update(_compare(outs, grads, "gsplat", "cpp"))
    res["cpp_bitwise_repeatable"] = all(torch.equal(x, y) for x, y in zip(outs["cpp"], again)) and all(
        torch.equal(grads["cpp"][k], grads_again[k]) for k in grads_again)
    for n_t in ((500,) if DRY else (5000, 20000)):
        inp = [t.cpu() for t in scene(n_t, 192, 128, seed=3)]
        for be in ("cpp", "torch"):
            def step():
                params = [t.clone().requires_grad_(True) for t in inp]
                c, a, _ = render(*params, 192, 128, backend=be)
                (c.sum() + a.sum()).backward()
            res[f"cpu_fwd_bwd_ms_{be}_{n_t}_128x192"] = _time(step) * 1e3
    for k, v in res.items():
        print(f"  {k:34s} {v}")
    return res


@phase("timing")
def timing(n_big, height, width, budget_s=240.0):
    rows = []
    t_start = time.perf_counter()
    for be in ("gsplat", "torch"):
        n, h, w = n_big, height, width
        while True:
            if time.perf_counter() - t_start > budget_s:
                rows.append({"backend": be, "error": "time budget exhausted"})
                break
            try:
                base = scene(n, w, h, sh_degree=3, seed=2)
                params = [t.clone().requires_grad_(True) for t in base]

                def step():
                    c, a, _ = render(*params, w, h, sh_degree=3, backend=be)
                    (c.sum() + a.sum()).backward()
                if DEVICE == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                t = _time(step)
                mem = torch.cuda.max_memory_allocated() / 2 ** 20 if DEVICE == "cuda" else float("nan")
                row = {"backend": be, "n": n, "height": h, "width": w, "fwd_bwd_s": t, "peak_mb": mem}
                print(f"  {be:7s} N={n:7d} {h}x{w}: {t * 1000:9.1f} ms  peak {mem:8.0f} MB", flush=True)
                rows.append(row)
                break
            except torch.cuda.OutOfMemoryError as e:
                print(f"  {be} OOM at N={n} {h}x{w}: halving", flush=True)
                torch.cuda.empty_cache()
                if n > 10000:
                    n //= 2
                elif h > 256:
                    h, w = h // 2, w // 2
                else:
                    rows.append({"backend": be, "error": f"OOM: {e}"})
                    break
            finally:
                base = params = None
                torch.cuda.empty_cache()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--n-big", type=int, default=100_000)
    ap.add_argument("--size-big", default="1280x1920", help="HxW")
    ap.add_argument("--n-agree", type=int, default=20_000)
    ap.add_argument("--dry-run-cpu", action="store_true",
                    help="exercise the script on CPU with tiny sizes (dense reference instead of gsplat)")
    args = ap.parse_args(argv)
    global DEVICE, DRY
    if args.dry_run_cpu:
        DEVICE, DRY = "cpu", True
        args.n_big, args.size_big, args.n_agree = 2000, "64x96", 500
    h, w = (int(v) for v in args.size_big.lower().split("x"))
    env()
    if not torch.cuda.is_available() and not DRY:
        print("no CUDA device: nothing more to check")
    else:
        warmup()
        agreement(args.n_agree)
        surface_agreement(args.n_agree)
        rows = timing(args.n_big, h, w) or []
        gsplat_repeatability(args.n_agree)
        cpp_vs_gsplat(args.n_agree)
        print(f"\n{'backend':8s} {'N':>8s} {'HxW':>10s} {'fwd+bwd ms':>11s} {'peak MB':>8s}")
        for r in rows:
            if "error" in r:
                print(f"{r['backend']:8s} error: {r['error']}")
            else:
                print(f"{r['backend']:8s} {r['n']:8d} {r['height']}x{r['width']:<5d} {r['fwd_bwd_s'] * 1e3:11.1f} {r['peak_mb']:8.0f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(RESULTS, indent=2, default=str))
    print(f"wrote {args.out}; errors: {RESULTS['errors'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
