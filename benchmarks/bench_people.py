"""People on the street: MultiTrainer with pedestrians and cyclists left out of the loss (a) against
deformable nodes for them (b) and SMPL nodes for the pedestrians (c), and the rigid-only scene graph's
step time on the street without people (r).

Cases (configs/omnire_sugar_multi.yaml with the quick config's schedule and densification, 700 / 200 / 600;
--schedule seed: the seed config's 7000 / 2000 / 6000 and its densification):
  a_people_masked    scene=synthetic_people, model.deformable.enabled=false: people get no node, their
                     boxes' rectangles are out of the loss (the background alone is rendered there)
  b_deformable       scene=synthetic_people, deformable nodes (models/gaussians/deformable.py), the MLP field
  b2_deformable_planes  the same with the plane-factorised field (model.deformable.field=planes)
  c_smpl             scene=synthetic_people, SMPL nodes for the pedestrians (models/gaussians/smpl_nodes.py)
                     posed by the synthetic walker body model (scenes/smpl_synthetic.py, written to
                     <out>/smpl_walker.npz), whose poses are the figures' own; cyclists stay deformable
  r_rigid_only       scene=synthetic (the same street without people): background + rigid nodes only,
                     for the step time at a similar Gaussian count
For each: test PSNR on the human pixels (dynamic_masks/human) and on the whole image, the background's
level-set and TSDF surface against the ground truth (Chamfer, F@5cm within 40 m: the quality benchmark's
protocol), Gaussians per model, seconds per step (all stages) and per stage. Prints one table and writes
the JSON (default docs/measurements/people_quick_cpu.json).

    .venv/bin/python -m benchmarks.bench_people --out outputs/bench_people
    .venv/bin/python -m benchmarks.bench_people --cases b_deformable --steps 150 --json /tmp/p.json
    .venv/bin/python -m benchmarks.bench_people --schedule seed --out outputs/bench_people_seed
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, Sequence

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

from omnire_cli.errors import fail  # noqa: E402

CONFIG = "omnire_sugar_multi"
# configs/omnire_sugar_quick.yaml's settings besides its schedule (omnire_sugar_multi builds on the seed's config)
QUICK = ["model.sh_degree=1", "model.sh_degree_interval=100", "densify.refine_start_iter=100",
         "densify.refine_every=100", "densify.reset_every=300", "densify.refine_stop_iter=1500", "sugar.knn_every=50",
         "checkpoint.every=0", "log.snapshot_every=0", "log.progress=false"]
# the seed config's own densification and SH: only what a benchmark run must not write or print
SEED = ["checkpoint.every=0", "log.snapshot_every=0", "log.progress=false"]
SCHEDULES = {"quick": (1500, QUICK, "docs/measurements/people_quick_cpu.json"),
             "seed": (15000, SEED, "docs/measurements/people_seed_cpu.json")}
WALKER = "smpl_walker.npz"   # the synthetic walker body model, written into --out for c_smpl
CASES = {
    "a_people_masked": ["scene=synthetic_people", "model.deformable.enabled=false"],
    "b_deformable": ["scene=synthetic_people"],
    "b2_deformable_planes": ["scene=synthetic_people", "model.deformable.field=planes"],
    "c_smpl": ["scene=synthetic_people", "model.smpl.body_model={out}/" + WALKER],
    "r_rigid_only": ["scene=synthetic"],
}


def case_overrides(name: str, out: Path) -> list:
    """A case's overrides, the walker body model's path filled in (written there first)."""
    overrides = [o.format(out=out) for o in CASES[name]]
    if any(WALKER in o for o in overrides) and not (out / WALKER).is_file():
        from scenes.smpl_synthetic import write_walker_model
        write_walker_model(out / WALKER)
    return overrides


def run_case(name: str, out: Path, steps: int, overrides: Sequence[str], reuse: bool,
             base: Sequence[str] = QUICK) -> Dict[str, Any]:
    from models.mesh.run_io import (PROTOCOL_MAX_DEPTH, RunInputError, default_mesh_path, evaluate_run_images,
                                    extract_run_mesh, load_run, save_mesh, surface_metrics)
    from models.quality.training import train_bench_run
    from models.quality.variants import bench_schedules
    schedule = bench_schedules(steps)["c_pretrain_entropy_sugar"]
    all_overrides = [*base, *case_overrides(name, out), *overrides]
    print(f"[{name}] {' '.join(all_overrides)}", flush=True)
    timing = train_bench_run(CONFIG, out / name, schedule, all_overrides, reuse=reuse)
    run = load_run(out / name)
    test = evaluate_run_images(run)["test"]
    surfaces = {}
    for method in ("levelset", "tsdf"):
        try:
            mesh = extract_run_mesh(run, method=method, progress=False)
            m = surface_metrics(run, save_mesh(mesh, default_mesh_path(run, method)), tau=0.05,
                                max_depth=PROTOCOL_MAX_DEPTH)
            surfaces[method] = None if m is None else {k: m.get(k) for k in ("chamfer", "accuracy", "completeness",
                                                                             "precision", "recall", "fscore")}
        except RunInputError as exc:
            surfaces[method] = {"error": str(exc)}
    stages = {s["name"]: s["steps"] for s in schedule}
    return {"case": name, "overrides": all_overrides, "schedule": schedule, "timing_s": timing,
            "seconds_per_step": sum(timing.values()) / steps,
            "seconds_per_step_by_stage": {k: v / stages[k] for k, v in timing.items() if k in stages},
            "psnr": test["psnr"], "psnr_whole_image": test.get("psnr_whole_image", test["psnr"]),
            "psnr_human": test.get("psnr_human"), "human_views": test.get("human_views", 0),
            "ssim": test["ssim"], "test_views": test["views"],
            "gaussians": {k: int(m.num_gaussians) for k, m in run.scene.models.items()}, "surfaces": surfaces}


def _f(x, fmt="{:.2f}"):
    return "n/a" if x is None else fmt.format(x)


def format_table(rows: Dict[str, Dict[str, Any]]) -> str:
    head = ["case", "human PSNR", "whole PSNR", "SSIM", "LS Chamfer", "LS F@5cm", "TSDF Chamfer", "TSDF F@5cm",
            "Gaussians (bg / rigid / deformable / SMPL)", "s / step", "s / step by stage"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for name, r in rows.items():
        s = r["surfaces"]
        g = r["gaussians"]
        def sm(method, key):
            v = (s.get(method) or {}).get(key)
            return _f(v, "{:.3f}")
        lines.append(" | ".join([
            name, _f(r["psnr_human"]), _f(r["psnr_whole_image"]), _f(r["ssim"], "{:.4f}"),
            sm("levelset", "chamfer"), sm("levelset", "fscore"), sm("tsdf", "chamfer"), sm("tsdf", "fscore"),
            f"{g.get('Background', 0)} / {g.get('RigidNodes', 0)} / {g.get('DeformableNodes', 0)} / {g.get('SMPLNodes', 0)}",
            _f(r["seconds_per_step"], "{:.4f}"),
            ", ".join(f"{k} {v:.4f}" for k, v in r["seconds_per_step_by_stage"].items())]))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/bench_people"))
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="quick",
                   help="quick: 700 / 200 / 600 with the quick config's densification; seed: 7000 / 2000 / 6000 "
                        "with the seed config's")
    p.add_argument("--steps", type=int, default=None, help="total steps (7 : 2 : 6 stages; default: the schedule's)")
    p.add_argument("--reuse", action="store_true", help="keep finished runs of --out")
    p.add_argument("--json", type=Path, default=None, help="default: docs/measurements/people_<schedule>_cpu.json")
    p.add_argument("overrides", nargs="*", help="config overrides for every run (e.g. scene.seed=1)")
    args = p.parse_args(argv)
    default_steps, base, default_json = SCHEDULES[args.schedule]
    args.steps = default_steps if args.steps is None else args.steps
    args.json = Path(default_json) if args.json is None else args.json
    from models.mesh.run_io import RunInputError
    names = [c for c in args.cases.split(",") if c]
    bad = [c for c in names if c not in CASES]
    if bad:
        return fail(f"--cases {','.join(bad)}: expected some of {', '.join(CASES)}")
    import torch
    t0 = time.perf_counter()
    rows = {}
    try:
        for name in names:
            rows[name] = run_case(name, args.out, args.steps, args.overrides, args.reuse, base)
    except RunInputError as exc:
        return fail(str(exc))
    table = format_table(rows)
    print(table)
    result = {"command": "python -m benchmarks.bench_people " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads",
              "config": CONFIG, "schedule": args.schedule, "steps": args.steps, "wall_seconds": time.perf_counter() - t0,
              "table": table, "cases": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
