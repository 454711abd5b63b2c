"""Benchmark: forward+backward seconds of the compiled C++ backend, the PyTorch backend and the dense
reference, side by side in the same run.

    .venv/bin/python -m benchmarks.bench_render                      # full table (N x size grid)
    .venv/bin/python -m benchmarks.bench_render --n 5000 --size 128x192 --reps 5
    .venv/bin/python -m benchmarks.bench_render --no-dense           # compiled and PyTorch backends only
    .venv/bin/python -m benchmarks.bench_render --run outputs/omnire_sugar --views 4 --backends cpp
                                 # a trained model (run folder or checkpoint) in its own training views

With ``--run`` the Gaussians are a trained model's and the cameras its scene's training views (evenly
spaced, ``--views`` of them): a large scene's views each use only part of the model, which the random
frontal scenes of the grid do not show. ``--mode`` picks the render mode (RGB as in pretrain, RGB+ED
as in the sugar stage); ``--backends`` the CPU backends to time (cpp, torch).

Median of ``--reps`` runs after one warm-up (the compiled backend is built before timing starts); the dense reference uses ``--dense-reps`` (default 3,
1 run without warm-up above 50M pixel x Gaussian products) and pixel chunks with checkpointing so it fits in memory.
Peak memory is the process's peak resident set increase measured around each configuration
(Linux ru_maxrss; a high-water mark, so later rows can only report growth).
"""
from __future__ import annotations

import argparse
import os
import resource

# on a shared, oversubscribed machine spinning OpenMP workers distort timings badly
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import statistics
import sys
import time
from pathlib import Path

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

import torch  # noqa: E402

from models.rendering import rasterization  # noqa: E402
from models.rendering.random_scene import frontal_gaussians  # noqa: E402
from models.rendering.reference import rasterization_dense  # noqa: E402


def bench_scene(n, width, height, seed=0):
    """Gaussians spread over the view at depth 2..10 m, 1-3 px footprint sigma, random colour."""
    return frontal_gaussians(n, width, height, seed=seed, depth=(2.0, 10.0), spread=1.1, log_scale_std=0.4)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_fwd_bwd(fn, inputs, width, height, reps, warmup=True):
    times = []
    for i in range(reps + 1 if warmup else reps):
        # gradients for the Gaussians (means, quats, scales, opacities, colours), not the cameras: as in training
        args = [t.clone().requires_grad_(k < 5) for k, t in enumerate(inputs)]
        t0 = time.perf_counter()
        col, alpha, meta = fn(*args, width, height)
        (col.sum() + alpha.sum()).backward()
        dt = time.perf_counter() - t0
        if i > 0 or not warmup:  # first run is the warm-up
            times.append(dt)
    return statistics.median(times), meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="*", default=[1000, 5000, 20000])
    ap.add_argument("--size", nargs="*", default=["64x96", "128x192"], help="HxW")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dense-reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-dense", action="store_true")
    ap.add_argument("--pixel-chunk", type=int, default=2048)
    ap.add_argument("--run", help="a run folder or checkpoint: time its model in its training views instead")
    ap.add_argument("--views", type=int, default=4, help="with --run: how many training views (evenly spaced)")
    ap.add_argument("--mode", default="RGB", choices=["RGB", "RGB+ED"], help="with --run: the render mode")
    ap.add_argument("--backends", default="cpp,torch", help="with --run: comma-separated backends to time")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from models.rendering import cpp_backend
    if not cpp_backend.available():
        raise SystemExit(f"the compiled backend is unavailable: {cpp_backend._error}")
    if args.run:
        return bench_run(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, "
          f"compiled/PyTorch reps {args.reps}, median after 1 warm-up")
    hdr = (f"{'N':>6} {'HxW':>8} {'pairs':>9} {'compiled s':>10} {'pytorch s':>9} {'dense s':>9} {'reps':>4} "
           f"{'cpp MB':>7} {'torch MB':>8} {'dense MB':>8} {'vs torch':>8} {'vs dense':>8}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for size in args.size:
        h, w = (int(v) for v in size.lower().split("x"))
        for n in args.n:
            inputs = bench_scene(n, w, h)
            m0 = peak_rss_mb()
            t_cpp, meta_c = time_fwd_bwd(lambda *a: rasterization(*a, backend="cpp"), inputs, w, h, args.reps)
            m_cpp = peak_rss_mb() - m0
            m0 = peak_rss_mb()
            t_fast, meta = time_fwd_bwd(lambda *a: rasterization(*a, backend="torch"), inputs, w, h, args.reps)
            m_fast = peak_rss_mb() - m0
            if meta_c["n_pairs"] != meta["n_pairs"]:
                raise SystemExit(f"backends disagree on contributing pairs: {meta_c['n_pairs']} vs {meta['n_pairs']}")
            t_dense = m_dense = None
            reps_d = 0
            if not args.no_dense:
                reps_d = 1 if n * h * w > 50e6 else args.dense_reps
                m0 = peak_rss_mb()
                t_dense, _ = time_fwd_bwd(
                    lambda *a: rasterization_dense(*a, pixel_chunk=args.pixel_chunk), inputs, w, h, reps_d,
                    warmup=reps_d > 1)
                m_dense = peak_rss_mb() - m0
            sp = f"{t_dense / t_cpp:7.0f}x" if t_dense else "-"
            ds = f"{t_dense:9.3f}" if t_dense else f"{'-':>9}"
            dm = f"{m_dense:8.0f}" if m_dense is not None else f"{'-':>8}"
            print(f"{n:>6} {size:>8} {meta['n_pairs']:>9} {t_cpp:10.4f} {t_fast:9.3f} {ds} {reps_d:>4} {m_cpp:7.0f} "
                  f"{m_fast:8.0f} {dm} {t_fast / t_cpp:7.1f}x {sp:>8}", flush=True)
            rows.append(dict(n=n, size=size, cpp_s=t_cpp, fast_s=t_fast, dense_s=t_dense))
    print("compiled = backend='cpp' (C++ kernels), pytorch = backend='torch'; pairs = contributing (pixel, "
          "Gaussian) pairs; MB = growth of the process peak RSS (high-water mark); dense uses pixel chunks "
          "with checkpointing; 'vs' = speed-up of the compiled backend.")
    return rows


def bench_run(args):
    """Render fwd+bwd of a trained model in its training views, per backend (gradients for the
    Gaussians' parameters, as in training)."""
    backends = [b for b in args.backends.split(",") if b]
    if not backends or any(b not in ("cpp", "torch") for b in backends):
        raise SystemExit(f"--backends {args.backends!r}: expected a comma-separated list of cpp and torch "
                         "(the CPU backends)")
    from models.gaussians.vanilla import sh_degree_at
    from models.mesh.run_io import RunInputError, load_run
    try:
        run = load_run(args.run)
    except RunInputError as exc:
        raise SystemExit(f"--run: {exc}") from None
    model, views = run.model, list(run.cameras.train_views)
    sh_degree = sh_degree_at(run.step, int(run.config.model.sh_degree_interval), model.sh_degree)  # as training
    picks = sorted({round(i * (len(views) - 1) / max(args.views - 1, 1)) for i in range(args.views)})
    g = {k: v.detach() for k, v in model.get_gaussians().items()}
    inputs = [g["means"], g["quats"], g["scales"], g["opacities"], g["colors"]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {run.checkpoint} (step {run.step}): "
          f"{model.num_gaussians} Gaussians, SH degree {sh_degree}, mode {args.mode}; "
          f"median of {args.reps} after 1 warm-up")
    hdr = f"{'view':>5} {'HxW':>8} {'visible':>8} {'pairs':>9} " + " ".join(f"{b + ' s':>9}" for b in backends)
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for i in picks:
        cam = views[i].camera
        times, pairs = {}, {}
        for b in backends:
            def fn(*a, b=b):
                return rasterization(*a[:5], cam.viewmat[None], cam.K[None], a[5], a[6], sh_degree=sh_degree,
                                     render_mode=args.mode, backend=b)
            times[b], meta = time_fwd_bwd(fn, inputs, cam.width, cam.height, args.reps)
            pairs[b] = meta["n_pairs"]
        if len(set(pairs.values())) > 1:
            raise SystemExit(f"view {i}: backends disagree on contributing pairs: {pairs}")
        visible = int((meta["radii"][0] > 0).all(-1).sum())
        print(f"{i:>5} {cam.height}x{cam.width:<4} {visible:>8} {meta['n_pairs']:>9} "
              + " ".join(f"{times[b]:9.4f}" for b in backends), flush=True)
        rows.append(dict(view=i, visible=visible, n_pairs=meta["n_pairs"], **{f"{b}_s": t for b, t in times.items()}))
    print("visible = Gaussians the view keeps (radius > 0); pairs = contributing (pixel, Gaussian) pairs (the "
          "same for every backend, or the run stops); s = fwd+bwd seconds (projection, SH, compositing).")
    return rows


if __name__ == "__main__":
    main()
