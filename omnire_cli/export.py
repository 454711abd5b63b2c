"""omnire-export: write a trained run's exports for other splat tools (INRIA 3DGS PLY, Niantic's SPZ,
glTF with KHR_gaussian_splatting, cameras.json, background).

    omnire-export outputs/quick                  # -> outputs/quick/exports/ (viewer axes: y down)
    omnire-export outputs/quick --format spz     # only gaussians.spz (+ cameras.json, export_info.json)
    omnire-export outputs/multi --frame 12       # + scene_frame_012.ply: the scene graph posed at frame 12
    omnire-export outputs/quick --axes world --out /tmp/world_exports

What each file holds and why the default axes are y-down: models/exports.py. Bad input (a missing
checkpoint, a frame the scene does not have, an unknown format) gives one error line and exit status 2.
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
    p.add_argument("--format", default="ply,spz,gltf",
                   help="comma-separated: ply (INRIA 3DGS), spz (Niantic), gltf (.glb, KHR_gaussian_splatting); "
                        "default all three. SPZ and glTF are y-up whatever --axes says")
    p.add_argument("--out", default=None, help="output folder (default <run>/exports)")
    args = p.parse_args(argv)

    from models.exports import export_run, parse_formats
    from models.run import RunInputError, open_run
    try:
        formats = parse_formats(args.format)  # before the checkpoint is read
        run = open_run(args.run)
        written = export_run(run, Path(args.out) if args.out else Path(run.run_dir) / "exports", axes=args.axes,
                             frame=args.frame, formats=formats)
    except (RunInputError, ValueError) as exc:
        return fail(exc)
    print(f"exports of {run.checkpoint} (step {run.step}, axes {args.axes}, formats {','.join(formats)}):")
    for path in written.values():
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
