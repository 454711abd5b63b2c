"""omnire-demo (`make demo`): the main job on the default embedded scene.

Trains a SingleTrainer through the quick schedule (pretrain 700 -> entropy 200 -> sugar 600) on
the default synthetic street (generated on first use into data/), then prints what the run wrote.

    omnire-demo [--out outputs/demo] [--resume] [hydra overrides ...]

Ctrl-C (or SIGTERM) finishes the current step, writes a checkpoint and ends with one line saying
where it is and how to continue (`--resume` continues the demo's run instead of starting over).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from models.trainers import USER_ERRORS, run_training
from models.trainers.checkpoint import find_latest
from models.trainers.trace import read_trace
from omnire_cli.errors import fail
from omnire_cli.invocation import again, console_command

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/demo", help="the demo's own output folder (replaced on each run)")
    ap.add_argument("--resume", action="store_true",
                    help="continue the demo's interrupted run from its newest checkpoint instead of starting over")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    out = (REPO / args.out).resolve()
    if not args.resume:
        shutil.rmtree(out, ignore_errors=True)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("omnire_sugar_quick", overrides=[f"output_dir={out}", *args.overrides,
                                                       *(["resume=true"] if args.resume else [])])
    import logging
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out_args = ["--out", args.out] if args.out != "outputs/demo" else []
    resume = again([*out_args, "--resume", *args.overrides])
    t0 = time.time()
    try:
        trainer = run_training(cfg, argv=[sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    except USER_ERRORS as exc:
        return fail(exc)
    except KeyboardInterrupt:  # a second Ctrl-C: no new checkpoint
        latest = find_latest(out / "checkpoints")
        print(f"aborted; newest checkpoint: {latest}; continue with: {resume}" if latest else
              f"aborted before the first checkpoint; start again with: {again([*out_args, *args.overrides])}", file=sys.stderr)
        return 130
    if trainer.stop_checkpoint is not None:
        print(f"stopped at step {trainer.step} of {trainer.total_steps}: checkpoint {trainer.stop_checkpoint}; "
              f"continue with: {resume}", file=sys.stderr)
        return 0
    wall = time.time() - t0
    metrics = json.loads((out / "metrics.json").read_text())
    print(f"\ntrained {trainer.step} steps in {wall:.0f} s; test PSNR {metrics['test']['psnr']:.2f} dB, "
          f"SSIM {metrics['test']['ssim']:.3f}; {metrics['num_gaussians']} Gaussians")
    print("stage transitions:")
    for r in read_trace(out / "trace"):
        if r["event"] == "transition":
            print(f"  step {r['step']:>5}: {r['from']} -> {r['to']} (entropy weight {r['weights']['to']})")
    print(f"outputs in {out}:")
    for name in ("config.yaml", "metrics.json", "exports/gaussians.ply", "renders", "checkpoints", "trace",
                 "tensorboard"):
        print(f"  {name}")
    print(f"mesh: {console_command('omnire-mesh')} {args.out}   |   evaluate: {console_command('omnire-eval')} {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
