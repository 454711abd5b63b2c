"""A change's cost per training step, measured against the code before it in the same run: whole
SingleTrainer steps resumed from a run's checkpoints (so at the model size and stage the run had there),
this checkout's code against a reference checkout's, in fresh processes, interleaved.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python -m benchmarks.bench_step_ab --reference /tmp/before \\
        --checkpoint outputs/full/checkpoints/step_006000.pt --checkpoint outputs/full/checkpoints/step_009000.pt \\
        [--steps 50] [--rounds 3] [--json PATH] [--config-name omnire_sugar] [KEY=VALUE ...]

A checkpoint's step decides the stage (step 6,000 of the seed's schedule: pretrain, with densification;
9,000: the first sugar step, after its prune). Each process loads the checkpoint with the run's config
(KEY=VALUE overrides the primary config, `--config-name`, default omnire_sugar, as omnire-train's would), trains 10 untimed steps,
then `--steps` timed ones; `--rounds` processes per side and checkpoint, alternating reference and this
tree. Both import their own `models` package (the reference checkout needs no venv of its own: this
one's, with the reference first on sys.path) and build their own compiled extension (cached by source
hash). Prints the median ms per step of each side and their ratio; run one benchmark at a time (two
CPU-heavy processes on two cores slow each other several-fold).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# one process: the trainer of `root` resumed from a checkpoint, `steps` timed steps after 10 untimed ones
WORKER = r"""
import json, sys, tempfile, time
root, ckpt, steps, config, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
sys.path.insert(0, root)
from models.reproducibility import pin_cpu_numerics
pin_cpu_numerics()
import models
if not models.__file__.startswith(root):
    raise SystemExit(f"imported models from {models.__file__}, not from {root}")
from hydra import compose, initialize_config_dir
from models.trainers import configure_process
from models.trainers.single import SingleTrainer
out = tempfile.mkdtemp()
with initialize_config_dir(config_dir=root + "/configs", version_base="1.3"):
    cfg = compose(config, overrides=[f"output_dir={out}", "log.progress=false", "log.snapshot_every=0",
                                             "log.tensorboard=false", "checkpoint.every=0", *overrides])
configure_process(cfg)
tr = SingleTrainer(cfg, output_dir=out)
tr.load_state_dict(ckpt)
tr.train(num_steps=10)
stage, n = tr.current_stage, tr.num_gaussians
t0 = time.perf_counter()
tr.train(num_steps=steps)
print(json.dumps({"ms_per_step": 1e3 * (time.perf_counter() - t0) / steps, "stage": stage, "gaussians": n}))
"""


def one(root: Path, ckpt: Path, steps: int, config: str, overrides) -> dict:
    proc = subprocess.run([sys.executable, "-c", WORKER, str(root), str(ckpt), str(steps), config,
                           json.dumps(overrides)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the step worker failed ({root}, {ckpt}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, required=True, help="a checkout of the code to compare against")
    ap.add_argument("--checkpoint", type=Path, action="append", required=True, help="a run's checkpoint (repeatable)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--config-name", default="omnire_sugar", help="the run's primary config (omnire-train's)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    ref = args.reference.resolve()
    if not (ref / "models" / "__init__.py").exists():
        ap.error(f"--reference {ref}: not a checkout of this project (no models/__init__.py)")
    for c in args.checkpoint:
        if not c.is_file():
            ap.error(f"--checkpoint {c}: no such file")
    sides = {"reference": ref, "this tree": REPO}
    rows = []
    for ckpt in args.checkpoint:
        times = {name: [] for name in sides}
        info = {}
        for _ in range(args.rounds):
            for name, root in sides.items():
                r = one(root, ckpt.resolve(), args.steps, args.config_name, args.overrides)
                times[name].append(r["ms_per_step"])
                info = r
        med = {name: statistics.median(v) for name, v in times.items()}
        rows.append({"checkpoint": str(ckpt), "stage": info["stage"], "gaussians": info["gaussians"],
                     "ms_per_step": times, "median": med, "ratio": med["this tree"] / med["reference"]})
    print(f"{'checkpoint':<44} {'stage':<9} {'Gaussians':>9} {'reference ms':>13} {'this tree ms':>13} {'ratio':>6}")
    for r in rows:
        print(f"{Path(r['checkpoint']).name:<44} {r['stage']:<9} {r['gaussians']:>9,} "
              f"{r['median']['reference']:>13.1f} {r['median']['this tree']:>13.1f} {r['ratio']:>6.2f}")
    print(f"(median of {args.rounds} fresh processes per side, {args.steps} steps each after 10 untimed; "
          "each process's figures in --json)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "reference": str(ref), "steps": args.steps,
                                         "rounds": args.rounds, "config": args.config_name,
                                         "overrides": args.overrides, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
