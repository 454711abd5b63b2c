"""The staged-quality comparison, end to end: train the three variants with the same total steps,
extract meshes of each the same ways, score them, write one JSON and one figure (the library behind
`python -m benchmarks.bench_quality`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from models.mesh.run_io import RunInputError, default_mesh_path, extract_run_mesh, load_run, save_mesh, split_method
from models.quality.figure import quality_figure
from models.quality.scores import depth_error, pixel_footprint_tau
from models.quality.training import train_bench_run
from models.quality.variants import BENCH_VARIANTS, SEED_STEPS, VARIANT_LABELS, VARIANT_OVERRIDES, bench_schedules


def run_quality_bench(out: Path, *, steps: int = SEED_STEPS, config_name: str = "omnire_sugar",
                      overrides: Sequence[str] = (), reuse: bool = False, methods: Sequence[str] = ("levelset", "tsdf"),
                      poisson_depth: int = 9, pixel_stride: int = 1, tau: float = 0.05,
                      max_depth: Optional[float] = None, n_points: int = 200_000,
                      variants: Sequence[str] = BENCH_VARIANTS, budget_s: Optional[float] = None,
                      figure: bool = True, eval_device: str = "cpu", train_only: bool = False, log=print) -> Optional[Dict[str, Dict[str, Any]]]:
    """Train (a) pretrain, (b) pretrain + entropy, (c) pretrain + entropy + sugar with the same total
    steps, extract meshes of each the same ways (level set, TSDF), evaluate; writes out/bench_quality.json
    and out/bench_quality.png and returns the per-run results (None when budget_s ran out first: rerun
    with reuse to continue). Each run's scores are kept in <run>/bench_result.json and reused (with reuse)
    when the settings match. eval_device: where meshes are extracted and runs evaluated."""
    import time

    t_start = time.perf_counter()
    settings = {"methods": list(methods), "poisson_depth": poisson_depth, "pixel_stride": pixel_stride, "tau": tau,
                "max_depth": max_depth, "n_points": n_points}
    schedules = bench_schedules(steps)
    for m in methods:
        split_method(m)   # a bad name fails before any training
    unknown = [v for v in variants if v not in schedules]
    if unknown:
        raise RunInputError(f"--variants {','.join(unknown)}: expected some of {', '.join(BENCH_VARIANTS)}")
    results: Dict[str, Dict[str, Any]] = {}
    for name in variants:
        schedule = schedules[name]
        run_dir = out / name
        log(f"[{name}] schedule " + ", ".join(f"{s['name']} {s['steps']}" for s in schedule))
        left = None if budget_s is None else budget_s - (time.perf_counter() - t_start)
        if left is not None and left <= 0:
            log(f"[{name}] time budget spent; rerun with --reuse to continue")
            return None
        timing = train_bench_run(config_name, run_dir, schedule, [*VARIANT_OVERRIDES.get(name, ()), *overrides],
                                 reuse=reuse, budget_s=left)
        if timing is None:
            log(f"[{name}] stopped by the time budget at a checkpoint; rerun with --reuse to continue")
            return None
        if train_only:
            results[name] = {"run_dir": str(run_dir), "timing_s": timing}
            continue
        cached = run_dir / "bench_result.json"
        if reuse and cached.is_file():
            prev = json.loads(cached.read_text())
            if prev.get("settings") == settings and prev.get("timing_s", {}).get("pretrain") == timing.get("pretrain"):
                results[name] = prev
                log(f"[{name}] reused its scores")
                continue
        run = load_run(run_dir, device=eval_device)
        stages = json.loads((run_dir / "bench_stages.json").read_text())
        tau_pix = pixel_footprint_tau(run.dataset(), max_depth)
        taus = [tau] + ([tau_pix["tau"]] if tau_pix else [])
        meshes, surfaces, mesh_errors = {}, {}, {}
        timing = dict(timing)
        for method in methods:
            t0 = time.perf_counter()
            try:  # a run with nothing to mesh (e.g. every Gaussian faded) is a result, not a crash
                kind, depth = split_method(method)
                mesh = extract_run_mesh(run, method=kind, poisson_depth=poisson_depth, pixel_stride=pixel_stride,
                                        progress=False, depth=depth)
                meshes[method] = str(save_mesh(mesh, default_mesh_path(run, kind, depth)))
            except RunInputError as exc:
                mesh_errors[method] = str(exc)
                log(f"[{name}] no {method} mesh: {exc}")
            timing[f"mesh_{method}"] = time.perf_counter() - t0
            if method in meshes:
                from models.mesh.run_io import surface_metrics
                surf = surface_metrics(run, meshes[method], tau=tau, n_points=n_points, max_depth=max_depth,
                                       extra_taus=taus)
                surfaces[method] = surf
        from models.mesh.run_io import evaluate_run_images
        image = evaluate_run_images(run)
        res = {"run_dir": str(run_dir), "label": VARIANT_LABELS[name], "schedule": stages["schedule"],
               "stages": stages["stages"], "timing_s": timing, "psnr": image["test"]["psnr"],
               "ssim": image["test"]["ssim"], "num_gaussians": int(image["num_gaussians"]),
               "depth_error": depth_error(run, max_depth), "tau_pixel": tau_pix, "meshes": meshes,
               "mesh_errors": mesh_errors, "surfaces": surfaces,
               # the first method's mesh and scores under the names the figure and older readers use
               "mesh": meshes.get(methods[0]) if methods else None,
               "surface": surfaces.get(methods[0]) if methods else None, "settings": settings}
        cached.write_text(json.dumps(res, indent=2))
        results[name] = res
        log(f"[{name}] PSNR {res['psnr']:.2f} dB, Gaussians {res['num_gaussians']}, "
            + ", ".join(f"{m} Chamfer {surfaces[m]['chamfer']:.3f} m" for m in surfaces))
    if train_only:
        return results
    (out / "bench_quality.json").write_text(json.dumps(results, indent=2))
    if figure:
        quality_figure(results, out / "bench_quality.png")
    return results
