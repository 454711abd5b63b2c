"""Checkpoint files: atomic writes, discovery of the latest one, retention of the last K.

A checkpoint is a `torch.save`d dict (the trainer's `state_dict()`). It is written to a temporary
file in the same folder, fsync'd, then renamed over the final name, so a crash or a preemption in
the middle of a save never leaves a truncated checkpoint where a good one was.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

CHECKPOINT_RE = re.compile(r"^step_(\d+)\.pt$")
PathLike = Union[str, os.PathLike]


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}.pt"


def atomic_save(obj: Any, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def list_checkpoints(folder: PathLike) -> List[Path]:
    """Checkpoints in a folder, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def find_latest(folder: PathLike) -> Optional[Path]:
    ckpts = list_checkpoints(folder)
    return ckpts[-1] if ckpts else None


def prune_checkpoints(folder: PathLike, keep: int) -> List[Path]:
    """Delete all but the newest `keep` checkpoints; returns the deleted paths."""
    if keep <= 0:
        return []
    old = list_checkpoints(folder)[:-keep]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def load_checkpoint(path: PathLike, required: tuple = ("step", "stage")) -> Dict[str, Any]:
    """Read a checkpoint, with one clear error when it is missing, unreadable or not ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (expected a file written by this trainer)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds for a corrupt file
        raise ValueError(f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}); "
                         "expected a torch file written by this trainer") from exc
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a trainer state dict")
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} is missing {', '.join(missing)}; expected a trainer state dict "
                         f"with keys {', '.join(required)}")
    return state
