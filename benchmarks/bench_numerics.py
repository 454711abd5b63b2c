"""The cost of reproducible numerics: seconds per training step in each stage with the pinned code
paths (the default) and without them (OMNIRE_REPRODUCIBLE=0), measured side by side.

    .venv/bin/python -m benchmarks.bench_numerics [--rounds 3] [--steps 40] [--seed-model]

The modes are fixed when torch loads, so each measurement is a child process in one mode; children
alternate (pinned, fast, pinned, fast, ...) so that both modes see the same machine. A child resumes
a checkpoint of the model under test and runs `--steps` steps of each stage from it:
- quick model: the quick config trained to step 700 (the end of its pretrain, made on first use under
  outputs/bench_numerics/);
- --seed-model: also the seed config's step-7,000 checkpoint (141k Gaussians; made on first use, about
  10 minutes on 2 cores): pretrain and entropy steps at its size, sugar steps after the sugar stage's
  prune, as in a real run.
Entropy steps keep the model's size (the entropy prune is off). The first 3 steps of each segment are
warm-up. Prints the median seconds per step per stage and mode, and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWITCH = "OMNIRE_REPRODUCIBLE"
PINNED_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")
MODELS = {  # name: (config, step of the checkpoint)
    "quick": ("omnire_sugar_quick", 700),
    "seed": ("omnire_sugar", 7000),
}
WARMUP = 3


def checkpoint_for(name: str) -> Path:
    config, step = MODELS[name]
    out = REPO / "outputs" / "bench_numerics" / name
    ckpt = out / "checkpoints" / f"step_{step:06d}.pt"
    if not ckpt.exists():
        print(f"training the {name} model to step {step} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "omnire_cli.train", "--config-name", config, f"output_dir={out}",
                        "log.progress=false", f"stop_after={step}", f"checkpoint.every={step}"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return ckpt


def segments(step: int, steps: int):
    """Schedules that place the checkpoint's global step at the start of each stage's measured run."""
    return {
        "pretrain": [f"optim.stage_schedule=[{{name:pretrain,steps:{step + steps}}},{{name:entropy,steps:10}},"
                     "{name:sugar,steps:10}]"],
        "entropy": [f"optim.stage_schedule=[{{name:pretrain,steps:{step}}},{{name:entropy,steps:{steps}}},"
                    "{name:sugar,steps:10}]", "+optim.stage_schedule.1.hooks={prune_transparent:false}"],
        "sugar": [f"optim.stage_schedule=[{{name:pretrain,steps:{step}}},{{name:entropy,steps:1}},"
                  f"{{name:sugar,steps:{steps}}}]"],
    }


def child(name: str, ckpt: str, steps: int) -> None:
    """One process, one mode: time `steps` steps of each stage from the checkpoint; print JSON."""
    from models.reproducibility import describe, pin_cpu_numerics
    pin_cpu_numerics()
    import logging

    from hydra import compose, initialize_config_dir

    from models.trainers import configure_process
    from models.trainers.single import SingleTrainer
    logging.getLogger("models").setLevel(logging.WARNING)
    config, step = MODELS[name]
    result = {"numerics": describe()}
    for stage, overrides in segments(step, steps).items():
        with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=str(REPO / "configs"),
                                                                         version_base="1.3"):
            cfg = compose(config, overrides=[f"output_dir={tmp}/run", "log.progress=false", "log.tensorboard=false",
                                             "log.snapshot_every=0", "checkpoint.every=0", *overrides])
            configure_process(cfg)
            tr = SingleTrainer(cfg, output_dir=cfg.output_dir, resume=ckpt)
            times = []
            tr.add_step_callback(lambda _, info: times.append((info.stage, info.seconds, tr.num_gaussians)))
            tr.train(num_steps=steps + (1 if stage == "sugar" else 0))
        kept = [(t, n) for s, t, n in times if s == stage][WARMUP:]
        result[stage] = {"seconds": [t for t, _ in kept], "gaussians": kept[0][1] if kept else 0}
    print("RESULT " + json.dumps(result))


def run_child(name: str, ckpt: Path, steps: int, pinned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PINNED_VARS and k != SWITCH}
    env[SWITCH] = "1" if pinned else "0"
    proc = subprocess.run([sys.executable, __file__, "--child", name, str(ckpt), str(steps)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="child processes per mode, alternating")
    ap.add_argument("--steps", type=int, default=40, help="steps per stage in each child (the first 3 are warm-up)")
    ap.add_argument("--seed-model", action="store_true", help="also measure at the seed config's step-7,000 size")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    names = ["quick"] + (["seed"] if args.seed_model else [])
    print(f"{'model':<6} {'stage':<9} {'Gaussians':>9} {'pinned s/step':>14} {'fast s/step':>12} {'ratio':>7}")
    for name in names:
        ckpt = checkpoint_for(name)
        runs = {True: [], False: []}
        for _ in range(args.rounds):
            for pinned in (True, False):
                runs[pinned].append(run_child(name, ckpt, args.steps, pinned))
        for stage in ("pretrain", "entropy", "sugar"):
            med = {p: statistics.median(t for r in runs[p] for t in r[stage]["seconds"]) for p in runs}
            print(f"{name:<6} {stage:<9} {runs[True][0][stage]['gaussians']:>9} {med[True]:>14.4f} {med[False]:>12.4f} "
                  f"{med[True] / med[False]:>7.3f}", flush=True)
    print(f"\nmedians over {args.rounds} alternating child processes per mode, {args.steps - WARMUP} timed steps per "
          f"stage each; pinned: {runs[True][0]['numerics']}; fast: {runs[False][0]['numerics']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
