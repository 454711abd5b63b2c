"""Forward+backward seconds of the render backends: the compiled C++ backend, the PyTorch backend and
the dense reference on random frontal scenes, or a trained model in its own training views (the
library behind `python -m benchmarks.bench_render`).

Each configuration is timed as the median of `reps` runs after one warm-up, with gradients for the
Gaussians (means, quats, scales, opacities, colours) and not the cameras, as in training. Peak
memory is the process's peak resident set increase around each configuration (Linux ru_maxrss; a
high-water mark, so later rows can only report growth).
"""
from __future__ import annotations

import resource
import statistics
import time
from typing import Iterator, Sequence

from models.rendering import rasterization
from models.rendering.random_scene import frontal_gaussians
from models.rendering.reference import rasterization_dense

BACKENDS = ("cpp", "torch")  # the CPU backends a trained run can be timed with


class BackendsDisagree(RuntimeError):
    """Two backends found different contributing (pixel, Gaussian) pairs: their timings are not comparable."""


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


def time_grid(ns: Sequence[int], sizes: Sequence[str], *, reps: int, dense_reps: int, dense: bool = True,
              pixel_chunk: int = 2048) -> Iterator[dict]:
    """One row per size ("HxW") and Gaussian count of a random frontal scene: seconds of the compiled
    (cpp_s) and PyTorch (fast_s) backends and of the dense reference (dense_s; None without dense),
    contributing pairs, the dense reference's runs (1 without warm-up above 50M pixel x Gaussian
    products) and the peak-memory growth of each (MB)."""
    for size in sizes:
        h, w = (int(v) for v in size.lower().split("x"))
        for n in ns:
            inputs = bench_scene(n, w, h)
            m0 = peak_rss_mb()
            t_cpp, meta_c = time_fwd_bwd(lambda *a: rasterization(*a, backend="cpp"), inputs, w, h, reps)
            m_cpp = peak_rss_mb() - m0
            m0 = peak_rss_mb()
            t_fast, meta = time_fwd_bwd(lambda *a: rasterization(*a, backend="torch"), inputs, w, h, reps)
            m_fast = peak_rss_mb() - m0
            if meta_c["n_pairs"] != meta["n_pairs"]:
                raise BackendsDisagree(f"backends disagree on contributing pairs: {meta_c['n_pairs']} vs "
                                       f"{meta['n_pairs']}")
            t_dense = m_dense = None
            reps_d = 0
            if dense:
                reps_d = 1 if n * h * w > 50e6 else dense_reps
                m0 = peak_rss_mb()
                t_dense, _ = time_fwd_bwd(
                    lambda *a: rasterization_dense(*a, pixel_chunk=pixel_chunk), inputs, w, h, reps_d,
                    warmup=reps_d > 1)
                m_dense = peak_rss_mb() - m0
            yield dict(n=n, size=size, cpp_s=t_cpp, fast_s=t_fast, dense_s=t_dense, n_pairs=meta["n_pairs"],
                       dense_reps=reps_d, cpp_mb=m_cpp, fast_mb=m_fast, dense_mb=m_dense)


def run_sh_degree(run) -> int:
    """The SH degree a run's model renders with at its step, as training renders it."""
    from models.gaussians.vanilla import sh_degree_at

    return sh_degree_at(run.step, int(run.config.model.sh_degree_interval), run.model.sh_degree)


def time_run_views(run, *, views: int, mode: str, backends: Sequence[str], reps: int) -> Iterator[dict]:
    """Render fwd+bwd of a trained model (an opened run) in `views` evenly spaced training views, per
    backend (gradients for the Gaussians' parameters, as in training): one row per view with the
    Gaussians it keeps (visible), its contributing pairs and each backend's seconds (<backend>_s)."""
    model, train_views = run.model, list(run.cameras.train_views)
    sh_degree = run_sh_degree(run)
    picks = sorted({round(i * (len(train_views) - 1) / max(views - 1, 1)) for i in range(views)})
    g = {k: v.detach() for k, v in model.get_gaussians().items()}
    inputs = [g["means"], g["quats"], g["scales"], g["opacities"], g["colors"]]
    for i in picks:
        cam = train_views[i].camera
        times, pairs = {}, {}
        for b in backends:
            def fn(*a, b=b):
                return rasterization(*a[:5], cam.viewmat[None], cam.K[None], a[5], a[6], sh_degree=sh_degree,
                                     render_mode=mode, backend=b)
            times[b], meta = time_fwd_bwd(fn, inputs, cam.width, cam.height, reps)
            pairs[b] = meta["n_pairs"]
        if len(set(pairs.values())) > 1:
            raise BackendsDisagree(f"view {i}: backends disagree on contributing pairs: {pairs}")
        visible = int((meta["radii"][0] > 0).all(-1).sum())
        yield dict(view=i, height=cam.height, width=cam.width, visible=visible, n_pairs=meta["n_pairs"],
                   **{f"{b}_s": t for b, t in times.items()})
