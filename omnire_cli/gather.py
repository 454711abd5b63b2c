"""omnire-gather: one table over the scenes of a sweep: status, steps, stage, PSNR/SSIM, Gaussians,
mesh metrics, wall time.

    omnire-gather outputs/fleet                 # Markdown table; writes results.{md,csv,json}
    omnire-gather outputs/fleet --format csv    # print CSV (or json) instead
    omnire-gather outputs/fleet --no-write      # print only

SWEEP_DIR is a sweep's output_dir (one folder per scene); failed scenes are listed with their
one-line error. Bad input: one `error: ...` line, exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omnire_cli.errors import fail
from sweeps.gather import FORMATS, GatherInputError, gather


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="omnire-gather", description="one table over the scenes of a sweep")
    parser.add_argument("sweep_dir", type=Path, help="the sweep's output_dir (one folder per scene)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="md", help="what to print (default: md)")
    parser.add_argument("--no-write", action="store_true", help="do not write SWEEP_DIR/results.{md,csv,json}")
    args = parser.parse_args(argv)
    try:
        rows = gather(args.sweep_dir)
    except GatherInputError as exc:
        return fail(exc)
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
