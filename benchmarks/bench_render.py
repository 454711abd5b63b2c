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

# on a shared, oversubscribed machine spinning OpenMP workers distort timings badly
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

import torch  # noqa: E402

from models.rendering.timing import BACKENDS, BackendsDisagree, run_sh_degree, time_grid, time_run_views  # noqa: E402


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
    try:
        return bench_run(args) if args.run else bench_grid(args)
    except BackendsDisagree as exc:
        raise SystemExit(str(exc)) from None


def bench_grid(args):
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, "
          f"compiled/PyTorch reps {args.reps}, median after 1 warm-up")
    hdr = (f"{'N':>6} {'HxW':>8} {'pairs':>9} {'compiled s':>10} {'pytorch s':>9} {'dense s':>9} {'reps':>4} "
           f"{'cpp MB':>7} {'torch MB':>8} {'dense MB':>8} {'vs torch':>8} {'vs dense':>8}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for r in time_grid(args.n, args.size, reps=args.reps, dense_reps=args.dense_reps, dense=not args.no_dense,
                       pixel_chunk=args.pixel_chunk):
        t_cpp, t_fast, t_dense, m_dense = r["cpp_s"], r["fast_s"], r["dense_s"], r["dense_mb"]
        sp = f"{t_dense / t_cpp:7.0f}x" if t_dense else "-"
        ds = f"{t_dense:9.3f}" if t_dense else f"{'-':>9}"
        dm = f"{m_dense:8.0f}" if m_dense is not None else f"{'-':>8}"
        print(f"{r['n']:>6} {r['size']:>8} {r['n_pairs']:>9} {t_cpp:10.4f} {t_fast:9.3f} {ds} {r['dense_reps']:>4} "
              f"{r['cpp_mb']:7.0f} {r['fast_mb']:8.0f} {dm} {t_fast / t_cpp:7.1f}x {sp:>8}", flush=True)
        rows.append(r)
    print("compiled = backend='cpp' (C++ kernels), pytorch = backend='torch'; pairs = contributing (pixel, "
          "Gaussian) pairs; MB = growth of the process peak RSS (high-water mark); dense uses pixel chunks "
          "with checkpointing; 'vs' = speed-up of the compiled backend.")
    return rows


def bench_run(args):
    """A trained model in its training views, per backend."""
    backends = [b for b in args.backends.split(",") if b]
    if not backends or any(b not in BACKENDS for b in backends):
        raise SystemExit(f"--backends {args.backends!r}: expected a comma-separated list of cpp and torch "
                         "(the CPU backends)")
    from models.mesh.run_io import RunInputError, load_run
    try:
        run = load_run(args.run)
    except RunInputError as exc:
        raise SystemExit(f"--run: {exc}") from None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {run.checkpoint} (step {run.step}): "
          f"{run.model.num_gaussians} Gaussians, SH degree {run_sh_degree(run)}, mode {args.mode}; "
          f"median of {args.reps} after 1 warm-up")
    hdr = f"{'view':>5} {'HxW':>8} {'visible':>8} {'pairs':>9} " + " ".join(f"{b + ' s':>9}" for b in backends)
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for r in time_run_views(run, views=args.views, mode=args.mode, backends=backends, reps=args.reps):
        print(f"{r['view']:>5} {r['height']}x{r['width']:<4} {r['visible']:>8} {r['n_pairs']:>9} "
              + " ".join(f"{r[b + '_s']:9.4f}" for b in backends), flush=True)
        rows.append(r)
    print("visible = Gaussians the view keeps (radius > 0); pairs = contributing (pixel, Gaussian) pairs (the "
          "same for every backend, or the run stops); s = fwd+bwd seconds (projection, SH, compositing).")
    return rows


if __name__ == "__main__":
    main()
