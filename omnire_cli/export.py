"""omnire-export: write a trained run's exports for other splat tools (INRIA 3DGS PLY, cameras.json,
background).

    omnire-export outputs/quick                  # -> outputs/quick/exports/ (viewer axes: y down)
    omnire-export outputs/multi --frame 12       # + scene_frame_012.ply: the scene graph posed at frame 12
    omnire-export outputs/quick --axes world --out /tmp/world_exports

What each file holds and why the default axes are y-down: models/exports.py. Bad input (a missing
checkpoint, a frame the scene does not have) gives one error line and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omnire_cli.errors import fail


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="omnire-export", description="write a trained run's exports for other splat tools")
    p.add_argument("run", help="run folder (its newest checkpoint is used) or a checkpoint file")
    p.add_argument("--frame", type=int, default=None, help="also write the whole scene posed at this frame")
    p.add_argument("--axes", choices=["viewer", "world"], default="viewer",
                   help="viewer: x right, y down, z forward (INRIA/SuperSplat; default); world: the training world, z up")
    p.add_argument("--out", default=None, help="output folder (default <run>/exports)")
    args = p.parse_args(argv)

    from models.exports import export_run
    from models.mesh.run_io import RunInputError
    from models.viewer.adapter import open_run
    try:
        trainer, run_dir, ckpt = open_run(args.run)
        written = export_run(trainer, Path(args.out) if args.out else run_dir / "exports", axes=args.axes,
                             frame=args.frame)
    except (RunInputError, ValueError) as exc:
        return fail(exc)
    print(f"exports of {ckpt} (step {trainer.step}, axes {args.axes}):")
    for path in written.values():
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
