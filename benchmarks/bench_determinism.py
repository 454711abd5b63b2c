"""What bitwise reproducibility costs on the CPU: SuGaR's regularizers (sample + SDF + normal loss,
forward and backward) with the deterministic gathers (`take` = index_select, today's code) side by
side with the plain `tensor[index]` gathers they replaced (not reproducible with several threads)
and with those under `torch.use_deterministic_algorithms(True)` (reproducible, serial index_put).

    .venv/bin/python -m benchmarks.bench_determinism                 # default sizes, 2 threads
    .venv/bin/python -m benchmarks.bench_determinism --gaussians 15000 --samples 5000 --knn 16 --runs 9

Prints a table: median seconds of `--runs` timed runs (after one warm-up) and whether 5 repeated
runs gave bitwise-identical gradients.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path


from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)
import torch  # noqa: E402

import models.sugar.geometry as geometry  # noqa: E402
import models.sugar.regularizers as regularizers  # noqa: E402
from models.sugar.geometry import knn, sample_points_around_gaussians  # noqa: E402
from models.sugar.regularizers import sugar_normal_loss, sugar_sdf_loss  # noqa: E402
from models.rendering.projection import quat_to_rotmat  # noqa: E402


def plain_take(values, index):
    return values[index]


@contextmanager
def variant(name: str):
    """Swap the gather used by the regularizers (module globals) for one variant."""
    original = geometry.take
    if name != "index_select (take)":
        geometry.take = regularizers.take = plain_take
    if name.endswith("deterministic_algorithms"):
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        geometry.take = regularizers.take = original
        torch.use_deterministic_algorithms(False)


def make_problem(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([40.0, 10.0, 4.0]) + torch.tensor([-20.0, -5.0, 5.0])
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.3 - 2.5)
    opac = torch.rand(n, generator=g) * 0.5 + 0.5
    depth = torch.full((96, 160), 10.0) + torch.rand(96, 160, generator=g)
    alpha = torch.ones(96, 160)
    K = torch.tensor([[110.0, 0, 80], [0, 110.0, 48], [0, 0, 1]])
    return means, quats, scales, opac, depth, alpha, K


def step(problem, nbrs, samples: int, seed: int):
    means, quats, scales, opac, depth, alpha, K = problem
    params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac)]
    m, q, s, o = params
    rot = quat_to_rotmat(q)
    gen = torch.Generator().manual_seed(seed)
    cand = torch.ones(m.shape[0], dtype=torch.bool)
    points, gidx = sample_points_around_gaussians(m, rot, s, cand, samples, generator=gen)
    gs = (m, rot, s, o)
    sdf, _ = sugar_sdf_loss(points, gidx, nbrs, gs, depth, alpha, torch.eye(4), K, 20.0, min_alpha=0.0,
                            surface_threshold=1e9)
    normal, _ = sugar_normal_loss(points, gidx, nbrs, gs)
    (sdf + normal).backward()
    return torch.cat([p.grad.reshape(-1) for p in params])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaussians", type=int, default=15000)
    ap.add_argument("--samples", type=int, default=5000, help="sugar.num_samples (the CPU default)")
    ap.add_argument("--knn", type=int, default=16)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    problem = make_problem(args.gaussians)
    nbrs = knn(problem[0], k=args.knn)
    rows = []
    names = ["index_select (take)", "tensor[index]", "tensor[index] + use_deterministic_algorithms"]
    times = {n: [] for n in names}
    grads = {n: [] for n in names}
    for n in names:  # warm-up
        with variant(n):
            step(problem, nbrs, args.samples, 0)
    for r in range(args.runs):  # interleaved, so load changes hit every variant alike
        for n in names:
            with variant(n):
                t0 = time.perf_counter()
                g = step(problem, nbrs, args.samples, 0)
                times[n].append(time.perf_counter() - t0)
                if r < 5:
                    grads[n].append(g)
    ref = statistics.median(times[names[1]])
    print(f"SuGaR SDF + normal loss, forward + backward: {args.gaussians} Gaussians, {args.samples} samples, "
          f"k={args.knn}, {args.threads} threads, median of {args.runs}")
    print(f"{'gather':48s} {'seconds':>8s} {'vs tensor[index]':>17s} {'5 runs identical':>17s}")
    for n in names:
        med = statistics.median(times[n])
        same = all(torch.equal(grads[n][0], g) for g in grads[n][1:])
        rows.append((n, med))
        print(f"{n:48s} {med:8.4f} {med / ref:16.2f}x {str(same):>17s}")


if __name__ == "__main__":
    main()
