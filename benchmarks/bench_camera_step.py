"""What the camera models (pose refinement, per-camera appearance, the sky's cube map) cost per
training step, at equal Gaussians: whole SingleTrainer steps resumed from one run's checkpoints, with
each module on alone, all three on, and none (the reference), in fresh processes, interleaved.

    .venv/bin/python -m benchmarks.bench_camera_step [--out DIR] [--at 600,1300] [--steps 200] [--rounds 5]
        [--json PATH] [KEY=VALUE ...]

It trains the quick staged schedule (omnire_sugar_quick, every camera model on, KEY=VALUE overrides
added) into <out>/run, keeping a checkpoint every 100 steps, unless <out>/run has them already. From
the checkpoints at the --at steps (600: pretrain, densifying; 1300: the sugar stage) it writes one copy
per variant with the other modules' state taken out (the Gaussians, their optimizers and the step
kept), so every variant trains the same Gaussians. Each process loads a copy with the matching config,
trains 10 untimed steps, then --steps timed ones. Prints, per checkpoint, the median ms per step of
each variant and its ratio to none. Run one benchmark at a time: two CPU-heavy processes on two cores
slow each other several-fold.

A whole run with the modules on costs more than this where the modules change what the run grows:
pose refinement on perfect poses moves them by a few cm early on and the pretrain densifies more
(docs/results.md, "Real cameras").
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)
import torch  # noqa: E402

from benchmarks.bench_step_ab import one  # noqa: E402  (one fresh process: resume a checkpoint, time steps)
from models.quality.cameras import (CAMERA_MODULES as MODULES, MODULE_VARIANTS as VARIANTS,  # noqa: E402
                                    keep_camera_models)

REPO = Path(__file__).resolve().parents[1]
CONFIG = "omnire_sugar_quick"

def train_run(run: Path, overrides: Sequence[str], last_step: int) -> None:
    if (run / "checkpoints" / f"step_{last_step:06d}.pt").is_file() or (run / "metrics.json").is_file():
        return   # trained before (a finished run that lacks the step: main() says so)
    cmd = [sys.executable, "-m", "omnire_cli.train", "--config-name", CONFIG, f"output_dir={run}",
           "log.progress=false", "checkpoint.every=100", "checkpoint.keep=0", *MODULES.values(), *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"training the benchmark's run failed:\n{proc.stderr[-3000:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_camera_step"))
    ap.add_argument("--at", default="600,1300", help="the checkpoints' steps (multiples of 100, before the run's end)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("overrides", nargs="*", help="config overrides of the run and of every timed process")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        ap.error(f"--steps {args.steps} --rounds {args.rounds}: expected at least 1 of each")
    try:
        at = [int(s) for s in args.at.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--at {args.at}: expected comma-separated steps, e.g. 600,1300")
    if not at or any(s <= 0 or s % 100 for s in at):
        ap.error(f"--at {args.at}: expected positive multiples of 100 (the run keeps a checkpoint every 100 steps)")
    run = args.out / "run"
    train_run(run, args.overrides, max(at))
    missing = [s for s in at if not (run / "checkpoints" / f"step_{s:06d}.pt").is_file()]
    if missing:
        ap.error(f"--at {args.at}: {run} has no checkpoint at step {', '.join(map(str, missing))} "
                 "(steps before the run's last, which the quick schedule puts at 1,500)")
    rows: List[dict] = []
    for step in at:
        state = torch.load(run / "checkpoints" / f"step_{step:06d}.pt", map_location="cpu", weights_only=True)
        copies = {}
        for name, keep in VARIANTS.items():
            copies[name] = args.out / "checkpoints" / f"step_{step:06d}_{name}.pt"
            copies[name].parent.mkdir(parents=True, exist_ok=True)
            torch.save(keep_camera_models(state, keep), copies[name])
        times: Dict[str, List[float]] = {name: [] for name in VARIANTS}
        info: dict = {}
        for _ in range(args.rounds):
            for name, keep in VARIANTS.items():
                r = one(REPO, copies[name], args.steps, CONFIG, [MODULES[m] for m in keep] + list(args.overrides))
                times[name].append(r["ms_per_step"])
                info = r
        med = {name: statistics.median(v) for name, v in times.items()}
        rows.append({"step": step, "stage": info["stage"], "gaussians": info["gaussians"], "ms_per_step": times,
                     "median": med, "ratio": {name: med[name] / med["none"] for name in VARIANTS}})
    print(f"{'step':>5} {'stage':<9} {'Gaussians':>9} " + " ".join(f"{n + ' ms':>15}" for n in VARIANTS))
    for r in rows:
        cells = [f"{r['median'][n]:6.1f} (x{r['ratio'][n]:.2f})" for n in VARIANTS]
        print(f"{r['step']:>5} {r['stage']:<9} {r['gaussians']:>9,} " + " ".join(f"{c:>15}" for c in cells))
    print(f"(median of {args.rounds} fresh processes per variant, interleaved, {args.steps} steps each after 10 "
          "untimed; ratio: against none, the same Gaussians; each process's figures in --json)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "steps": args.steps, "rounds": args.rounds,
                                         "config": CONFIG, "overrides": args.overrides, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
