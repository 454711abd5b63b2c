"""How the user ran this command, written so that it can be typed again in a fresh shell (the
"continue with: ..." lines of training and the demo)."""
from __future__ import annotations

import os
import shlex
import sys
from typing import Optional, Sequence


def _typable(path: str) -> str:
    """``path`` relative to the working folder when it lies inside it (``.venv/bin/python``), else
    absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return relative if not relative.startswith("..") else absolute


def command_prefix(argv0: Optional[str] = None) -> list:
    """The words that start this command again: ``[".venv/bin/python", "tools/train.py"]`` for a
    script run by the interpreter, ``[".venv/bin/omnire-train"]`` for a console command."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if argv0.endswith(".py"):
        return [_typable(sys.executable), argv0]
    if os.sep not in argv0:  # found on PATH: typed as a bare name
        return [argv0]
    return [_typable(argv0)]


def console_command(name: str) -> str:
    """How to type the console command ``name`` of this installation (``.venv/bin/omnire-mesh``):
    pip puts console commands next to the interpreter."""
    return _typable(os.path.join(os.path.dirname(sys.executable), name))


def again(args: Sequence[str], argv0: Optional[str] = None) -> str:
    """The full command line that runs this command again with ``args``."""
    return shlex.join([*command_prefix(argv0), *map(str, args)])


__all__ = ["command_prefix", "console_command", "again"]
