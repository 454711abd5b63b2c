"""`make demo`: the main job on the default embedded scene.

Trains a SingleTrainer through the quick schedule (pretrain 700 -> entropy 200 -> sugar 600) on
the default synthetic street (generated on first use into data/), then prints what the run wrote.

    python tools/demo.py [--out outputs/demo] [hydra overrides ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hydra import compose, initialize_config_dir  # noqa: E402

from models.trainers import run_training  # noqa: E402
from models.trainers.trace import read_trace  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/demo", help="the demo's own output folder (replaced on each run)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    out = (REPO / args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("omnire_sugar_quick", overrides=[f"output_dir={out}", *args.overrides])
    import logging
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    trainer = run_training(cfg, argv=[sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
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
    print(f"mesh: .venv/bin/python tools/extract_mesh.py {args.out}   |   evaluate: .venv/bin/python tools/eval.py {args.out}")


if __name__ == "__main__":
    main()
