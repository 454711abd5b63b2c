"""Fit Gaussians to one procedural image through the renderer (a smoke test of the whole loop:
rasterization -> loss -> backward -> DefaultStrategy densification -> Adam) and print the PSNR.

    .venv/bin/python -m benchmarks.fit_image                       # 2k points, 500 steps, CPU
    .venv/bin/python -m benchmarks.fit_image --steps 300 --points 1000 --log-every 50

Densification is gsplat's DefaultStrategy (refine every 50 steps from step 100 to 80 % of the run,
grow_grad2d 5e-4 as drivestudio uses).

The target is a small textured street-like scene ray-cast analytically (checkered ground, striped
wall, a brick-textured box front), OpenCV camera at the origin looking down +z. Points are
initialized in front of the camera by back-projecting random pixels to the scene's true depth,
with noise, coloured by the target (like a LiDAR + camera point cloud).
"""
from __future__ import annotations

import argparse

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

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
                  log_every=args.log_every, backend=args.backend, log=lambda line: print(line, flush=True))
    print(f"PSNR {r.psnr:.2f} dB after {r.steps} steps, {r.num_gaussians} Gaussians, {r.seconds:.1f} s")
    return r


if __name__ == "__main__":
    main()
