"""Which checkpoint a `resume=` value names, and loading the newest readable one of them."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Union

from models.trainers import checkpoint as ckpt

logger = logging.getLogger("models.trainers")

Resume = Union[bool, str, os.PathLike, None]


class CheckpointFallbackWarning(UserWarning):
    """The newest checkpoint could not be read; resume used the one before it."""


def output_dir_problem(output_dir: Union[str, os.PathLike]) -> Optional[str]:
    """What is wrong with `output_dir` as a run's folder (it is a file, or its path passes through
    one), or None: a new folder or an existing one are both fine."""
    path = Path(output_dir).expanduser()
    for p in (path, *path.parents):
        if p.exists():
            if p.is_dir():
                return None
            what = "is a file" if p == path else f"passes through the file {p}"
            return f"output_dir={output_dir} {what}, expected a folder (new or a run's): choose another output_dir"
    return None


def resume_candidates(resume: Resume, output_dir: Optional[Path]) -> List[Path]:
    """Checkpoints to try, newest first: one file for resume=PATH, a folder's checkpoints otherwise."""
    checkpoints = output_dir / "checkpoints" if output_dir is not None else None
    if resume is None or resume is False or (isinstance(resume, str) and resume.lower() in ("", "false", "none")):
        if checkpoints is not None and ckpt.find_latest(checkpoints) is not None:
            raise ValueError(f"{output_dir} already holds checkpoints of an earlier run; pass resume=true "
                             "to continue it, or choose another output_dir (nothing was overwritten)")
        return []
    if resume is True or (isinstance(resume, str) and resume.lower() in ("true", "auto")):
        if checkpoints is None:
            raise ValueError("resume=true needs an output_dir to look for checkpoints in")
        found = ckpt.list_checkpoints(checkpoints)
        if not found and not (isinstance(resume, str) and resume.lower() == "auto"):
            raise ValueError(f"resume=true but {checkpoints} holds no checkpoint (step_*.pt); "
                             "start without resume, or pass resume=PATH")
        return found[::-1]
    if not isinstance(resume, (str, os.PathLike)):
        raise ValueError(f"resume={resume!r}: expected false, true, auto or a checkpoint path")
    path = Path(resume)
    if path.is_dir():
        found = ckpt.list_checkpoints(path) or ckpt.list_checkpoints(path / "checkpoints")
        if not found:
            raise ValueError(f"resume={path}: the folder holds no checkpoint (step_*.pt)")
        return found[::-1]
    return [path]


def resume_newest(resume: Resume, output_dir: Optional[Path], load: Callable[[Path], None]) -> Optional[Path]:
    """`load` the newest readable checkpoint that `resume` names; returns its path (None: fresh start).

    A checkpoint that cannot be read at all (truncated, corrupt: nothing of it was applied) is
    skipped with a warning when `resume` named a folder (true / auto / a directory) and an older
    one exists. Every other problem (unsafe file, wrong config, explicit file) is one error."""
    candidates = resume_candidates(resume, output_dir)
    if output_dir is not None and candidates:
        stale = ckpt.remove_stale_temporaries(output_dir / "checkpoints")
        if stale:
            logger.info("removed %d temporary file(s) of interrupted checkpoint saves in %s", len(stale),
                        output_dir / "checkpoints")
    for i, path in enumerate(candidates):
        try:
            load(path)
            return path
        except ckpt.UnreadableCheckpointError as exc:
            if i + 1 >= len(candidates):
                raise
            msg = f"{exc}. Resuming from the checkpoint before it instead: {candidates[i + 1]}"
            warnings.warn(msg, CheckpointFallbackWarning, stacklevel=3)
            logger.warning(msg)
    return None
