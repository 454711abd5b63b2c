"""Fit Gaussians to a procedural 64x96 textured view through the renderer and print the PSNR.

    .venv/bin/python tools/fit_image.py                       # 2k points, 500 steps, CPU
    .venv/bin/python tools/fit_image.py --steps 300 --points 1000 --log-every 50

Densification is gsplat's DefaultStrategy (refine every 50 steps from step 100 to 80 % of the run,
grow_grad2d 5e-4 as drivestudio uses).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from models.gaussians.fit_image import fit_image  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--sh-degree", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "gsplat"])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = fit_image(args.width, args.height, args.points, args.steps, args.sh_degree, args.seed,
                  log_every=args.log_every, backend=args.backend)
    print(f"PSNR {r.psnr:.2f} dB after {r.steps} steps, {r.num_gaussians} Gaussians, {r.seconds:.1f} s")
    return r


if __name__ == "__main__":
    main()
