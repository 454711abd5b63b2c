"""One table over the scenes of a sweep: status, steps, stage, PSNR/SSIM, Gaussians, mesh metrics, wall time.

    .venv/bin/python tools/gather.py outputs/fleet                 # Markdown table; writes results.{md,csv,json}
    .venv/bin/python tools/gather.py outputs/fleet --format csv    # print CSV (or json) instead
    .venv/bin/python tools/gather.py outputs/fleet --no-write      # print only

SWEEP_DIR is a sweep's output_dir (one folder per scene); failed scenes are listed with their
one-line error. Bad input: one `error: ...` line, exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

from sweeps.gather import FORMATS, GatherInputError, gather  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep's output_dir (one folder per scene)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="md", help="what to print (default: md)")
    parser.add_argument("--no-write", action="store_true", help="do not write SWEEP_DIR/results.{md,csv,json}")
    args = parser.parse_args(argv)
    try:
        rows = gather(args.sweep_dir)
    except GatherInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.no_write:
        for ext, fmt in FORMATS.items():
            (args.sweep_dir / f"results.{ext}").write_text(fmt(rows) + ("\n" if ext != "csv" else ""),
                                                           encoding="utf-8")
    print(FORMATS[args.format](rows))
    if not args.no_write:
        print(f"\nwritten: {', '.join(str(args.sweep_dir / f'results.{e}') for e in FORMATS)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
