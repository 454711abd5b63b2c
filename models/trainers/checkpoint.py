"""Checkpoint files: a versioned format of plain data, safe loading, atomic writes, retention.

A checkpoint is a `torch.save`d dict (the trainer's `state_dict()`) holding only tensors, numbers,
strings, None, lists, tuples and dicts, so that `torch.load(weights_only=True)` can read it:
opening a checkpoint never runs code, whoever wrote it. Anything else is refused with one error
naming the file (`UnsafeCheckpointError`).

Format history (`state["format"]`); `load_checkpoint` migrates every older one to `FORMAT`:
  1  the first release (commits up to 0abcbc2): RNG states as Python objects, the Python
     `random` state a tuple and NumPy's a tuple holding an ndarray. Read with NumPy's array
     reconstruction allow-listed (data only) and converted by `_migrate_1_to_2`.
  2  RNG states as tensors and numbers (`encode_rng_state`); nothing outside torch's allow-list.
     `rng` held the process's global RNGs (Python, NumPy, torch CPU, every CUDA device), which the
     trainer seeded and restored (commits up to 945dec8).
  3  `rng` is the trainer's own torch state (models.trainers.rng.TrainerRNG): {"torch": the CPU
     generator's state, "cuda": its CUDA device's state or None}; a trainer no longer touches the
     process's RNGs. `_migrate_2_to_3` keeps format 2's torch CPU state as the trainer's (it is the
     stream the gsplat split drew from) and the first CUDA device's state (the one device=auto /
     cuda trains on); the Python and NumPy states are dropped (no training step drew from them).
     Format 3 checkpoints also hold, since the trained scene became a GaussianScene, "graph" (the
     scene graph: scene_graph flag, frames, rigid tracks, per-frame poses) and "cameras" (the
     training and test views: pose, K, size, frame, camera, image name, bit-packed dynamic mask), so
     that models.run.open_run needs no dataset. Both are additions: a format-3 checkpoint without
     them (and every format 1 / 2 one) still opens, through the trainer, which reads the dataset.
     A scene graph with deformable nodes (pedestrians, cyclists) adds "graph"["deformable"] (their
     tracks and pose table), "deformation" (their field's settings and weights) and its Adam under
     "camera_optimizers"["deformation"]; a graph without them is written as before. SMPL nodes
     (model.smpl.body_model) add "smpl": their tracks, per-frame joint rotations, validity, root
     positions and box poses, the pose residual, betas and the body model's own arrays as tensors
     (v_template, shapedirs, posedirs, J_regressor, weights, faces, parents), so that open_run poses
     them without the body-model file: such a checkpoint holds the licensed model's arrays. The
     residual's Adam is "camera_optimizers"["smpl_pose"]. Pose refinement's corrections are
     "pose_refinement"["deltas"] [slots, 6] (rotation, translation); their Adams are
     "camera_optimizers"["pose"] (translations) and ["pose_rotation"] (rotations). Earlier ones
     held one "pose" Adam over all six: training_state.split_pose_optimizer splits it on resume.
A dict without a "format" key was never written by this project and is refused.

Writes go to a temporary file in the same folder, fsync'd, then renamed over the final name, so
a crash, a full disk or a preemption in the middle of a save never leaves a truncated checkpoint
where a good one was; a failed save raises `CheckpointSaveError` and leaves the folder as it was.
"""
from __future__ import annotations

import os
import random
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from models.atomic_write import atomic_write

FORMAT = 3
CHECKPOINT_RE = re.compile(r"^step_(\d+)\.pt$")
TMP_RE = re.compile(r"^\.step_\d+\.pt\..*\.tmp$")
PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, unreadable, not ours, too new, ...)."""


class UnreadableCheckpointError(CheckpointError):
    """The file is not a readable torch file (truncated by a crash, corrupt, empty)."""


class UnsafeCheckpointError(CheckpointError):
    """The file asks the unpickler for code (a global outside the allow-list); nothing was run."""


class CheckpointSaveError(OSError):
    """Writing a checkpoint failed (e.g. the disk is full); the earlier checkpoints are intact."""


def _numpy_globals() -> List[Any]:
    """NumPy's array reconstruction: format 1 held the NumPy RNG state as an ndarray. These build
    plain arrays (numbers) and call nothing else; object arrays would still go through the same
    restricted unpickler, so no other global becomes reachable."""
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in ("UInt32DType", "Int64DType", "Float64DType") if hasattr(dtypes, n)]
    return allowed


LEGACY_SAFE_GLOBALS = _numpy_globals()


# ----- names and folders -------------------------------------------------------------------------
def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}.pt"


def canonical(obj: Any) -> Any:
    """A copy of nested dicts / lists / tuples with fresh containers and interned strings.

    The pickle inside a torch file refers back to an object it has already written (its memo) by
    identity, so equal contents with different object sharing give different bytes: e.g. the key
    'step' of an optimizer state is the same string object as the checkpoint's own 'step' key in
    one process, and a separate one after a resume. With every container fresh and every string
    interned, the bytes depend on the contents only (a resumed run's checkpoints equal an
    uninterrupted run's)."""
    if isinstance(obj, dict):
        return {canonical(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(canonical(v) for v in obj)
    if type(obj) is str:
        return sys.intern(obj)
    return obj


def _write_failure(exc: BaseException) -> Optional[BaseException]:
    """The failed write behind an exception of torch.save, if it is one: an OSError (disk full, file
    too large) or torch's RuntimeError about a write, also where it is only the context of another
    error (when a write fails, torch's zip writer can raise "unexpected pos" while closing, hiding
    the OSError it was handling)."""
    seen: Optional[BaseException] = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) or (isinstance(seen, RuntimeError) and "write" in str(seen).lower()):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def atomic_save(obj: Any, path: PathLike) -> Path:
    """Write `obj` (made `canonical`) to `path` through a temporary file and a rename. On any failure
    the temporary file is removed, `path` (if it existed) is untouched, and `CheckpointSaveError`
    says why."""
    obj = canonical(obj)
    path = Path(path)
    try:
        atomic_write(path, lambda f: torch.save(obj, f), durable=True)
    except BaseException as exc:
        failed = _write_failure(exc)
        if failed is not None:
            reason = failed.strerror if isinstance(failed, OSError) and failed.strerror else str(failed).splitlines()[0]
            raise CheckpointSaveError(
                f"could not write checkpoint {path} ({reason}); nothing was replaced: the earlier checkpoints "
                f"in {path.parent} are intact. Free some space (or fix the folder) and resume") from exc
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


def remove_stale_temporaries(folder: PathLike) -> List[Path]:
    """Temporary files of saves that a kill interrupted (`.step_*.pt.*.tmp`); never a checkpoint."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if TMP_RE.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# ----- RNG states as plain data --------------------------------------------------------------------
def encode_rng_state(python_state: Tuple, numpy_state: Tuple, torch_state: torch.Tensor,
                     cuda_states: Optional[List[torch.Tensor]] = None) -> Dict[str, Any]:
    """Python `random`, NumPy and torch RNG states as tensors and numbers (readable with
    weights_only=True). Inverse: `decode_python_rng` / `decode_numpy_rng`."""
    version, internal, gauss_next = python_state
    kind, keys, pos, has_gauss, cached = numpy_state
    state = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": None if gauss_next is None else float(gauss_next)},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch_state,
    }
    if cuda_states is not None:
        state["cuda"] = list(cuda_states)
    return state


def decode_python_rng(state: Dict[str, Any]) -> Tuple:
    return (int(state["version"]), tuple(int(x) for x in state["state"].tolist()), state["gauss_next"])


def decode_numpy_rng(state: Dict[str, Any]) -> Tuple:
    return (state["kind"], state["keys"].numpy().astype(np.uint32), int(state["pos"]), int(state["has_gauss"]),
            float(state["cached_gaussian"]))


def restore_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(decode_python_rng(state["python"]))
    np.random.set_state(decode_numpy_rng(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----- migrations -----------------------------------------------------------------------------------
def _migrate_1_to_2(state: Dict[str, Any]) -> Dict[str, Any]:
    rng = state.get("rng")
    if rng is not None:
        new = encode_rng_state(tuple(rng["python"]), tuple(rng["numpy"]), rng["torch"], rng.get("cuda"))
        state = dict(state, rng=new)
    return dict(state, format=2)


def _migrate_2_to_3(state: Dict[str, Any]) -> Dict[str, Any]:
    rng = state.get("rng")
    if rng is not None:
        cpu = rng["torch"]
        if not isinstance(cpu, torch.Tensor):
            raise TypeError(f"rng.torch is a {type(cpu).__name__}, expected a uint8 tensor")
        cuda = rng.get("cuda")
        state = dict(state, rng={"torch": cpu, "cuda": cuda[0] if cuda else None})
    return dict(state, format=3)


MIGRATIONS: Dict[int, Callable[[Dict[str, Any]], Dict[str, Any]]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def migrate(state: Dict[str, Any], source: str = "checkpoint") -> Dict[str, Any]:
    """Bring a loaded checkpoint dict of any format this project has written up to `FORMAT`."""
    if "format" not in state:
        raise CheckpointError(f"checkpoint {source} has no 'format' number: it was not written by this trainer "
                              f"(every checkpoint it wrote has one; this version reads formats 1..{FORMAT})")
    version = state["format"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"checkpoint {source}: format {version!r} is not a format number; expected 1..{FORMAT}")
    if version > FORMAT:
        raise CheckpointError(f"checkpoint {source} has format {version}, newer than this version reads "
                              f"(1..{FORMAT}): update the project to open it")
    while state["format"] < FORMAT:
        step = state["format"]
        try:
            state = MIGRATIONS[step](state)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"checkpoint {source}: could not migrate format {step} to {step + 1} "
                                  f"({type(exc).__name__}: {exc}); the file is damaged or not ours") from exc
    return state


# ----- reading --------------------------------------------------------------------------------------
def _unsafe_global(exc: BaseException) -> Optional[str]:
    """The global (importable name) a refused pickle asked for, from torch's weights_only error."""
    m = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return m.group(1) if m else None


def _reason(exc: BaseException) -> str:
    """One line saying why torch could not read a file (its weights_only messages are paragraphs)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        detail = [ln for ln in lines[1:] if not ln.startswith(("Check the documentation", "Please file an issue",
                                                                 "Re-running", "WeightsUnpickler error"))]
        return f"not a torch checkpoint: {detail[-1] if detail else 'the restricted unpickler stopped'}"
    return f"{type(exc).__name__}: {lines[0] if lines else 'no details'}"


def read_checkpoint_file(path: PathLike) -> Any:
    """`torch.load(weights_only=True)` with one clear error for a missing, unreadable or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (expected a file written by this trainer)")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(LEGACY_SAFE_GLOBALS):
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt file
        unsafe = _unsafe_global(exc)
        if unsafe is not None:
            raise UnsafeCheckpointError(
                f"checkpoint {path} refused: it asks to import {unsafe}, which is not plain data; a checkpoint "
                "of this trainer holds only tensors, numbers, strings, lists and dicts. Nothing from the file "
                "was run. Do not open it with weights_only=False unless you trust whoever made it") from None
        raise UnreadableCheckpointError(
            f"checkpoint {path} could not be read ({_reason(exc)}); "
            "expected a torch file written by this trainer (a crash while it was written would leave only a "
            "hidden .tmp file, so this one was damaged or replaced afterwards)") from None


def load_checkpoint(path: PathLike, required: tuple = ("step", "stage")) -> Dict[str, Any]:
    """Read a checkpoint safely, migrate it to the current format and check its keys.

    One clear error when it is missing (FileNotFoundError), unreadable (UnreadableCheckpointError),
    asks for code (UnsafeCheckpointError) or is not ours / too new (CheckpointError)."""
    path = Path(path)
    state = read_checkpoint_file(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a trainer state dict")
    missing = [k for k in required if k not in state] + (["format"] if "format" not in state else [])
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing {', '.join(missing)}; expected a trainer state dict "
                              f"with keys {', '.join(required)} and a format number (1..{FORMAT})")
    return migrate(state, str(path))


def trainer_name_of(state: Dict[str, Any]) -> Any:
    """The trainer class name that wrote a checkpoint: its 'trainer' entry, else its config's `trainer`
    key (checkpoints written before the entry existed), else SingleTrainer (the config's default)."""
    name = state.get("trainer")
    if name is None:
        name = (state.get("config") or {}).get("trainer", "SingleTrainer")
    return name


__all__ = ["FORMAT", "CheckpointError", "UnreadableCheckpointError", "UnsafeCheckpointError", "CheckpointSaveError",
           "atomic_save", "checkpoint_name", "list_checkpoints", "find_latest", "prune_checkpoints",
           "remove_stale_temporaries", "encode_rng_state", "restore_rng_state", "migrate",
           "read_checkpoint_file", "load_checkpoint", "trainer_name_of"]
