"""omnire-scene-sheet: write a contact sheet PNG of a scene: images, sky and dynamic masks, GT and
LiDAR depth.

  omnire-scene-sheet --out sheet.png                       # the default synthetic scene
  omnire-scene-sheet --out sheet.png scene.num_frames=12   # Hydra-style overrides
  omnire-scene-sheet --out sheet.png --scene processed scene.path=/data/waymo/023
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="omnire-scene-sheet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="synthetic", help="option of the configs/scene group")
    ap.add_argument("--out", type=Path, default=Path("scene_sheet.png"))
    ap.add_argument("--frames", default=None, help="comma-separated frame numbers (default: 4 spread out)")
    ap.add_argument("--cameras", default=None, help="comma-separated camera names (default: all)")
    ap.add_argument("--scale", type=int, default=2, help="pixel zoom of each tile")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. scene.seed=3")
    args = ap.parse_args(argv)

    from scenes import load_scene
    from scenes.config import compose_scene_config
    from scenes.contact_sheet import contact_sheet
    cfg = compose_scene_config(args.scene, args.overrides)
    scene = load_scene(cfg)
    frames = None if args.frames is None else [int(f) for f in args.frames.split(",")]
    cams = None if args.cameras is None else args.cameras.split(",")
    sheet = contact_sheet(scene, frames, cams, args.scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"{args.out}: {sheet.width}x{sheet.height} ({scene.root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
