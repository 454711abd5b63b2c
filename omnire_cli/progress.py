"""Whether a command shows progress bars: tqdm redraws its bar with carriage returns, which is right
on a terminal and garbage in a log file, a pipe or a SLURM output (training's monitor prints plain
lines there instead; models/trainers/monitor.py)."""
from __future__ import annotations

import sys


def bars_wanted(disabled: bool = False) -> bool:
    """True when progress bars were not turned off and stderr (where tqdm writes) is a terminal."""
    return not disabled and sys.stderr.isatty()
