"""Stage machinery shared by every trainer (seed T-FR-ARCH-001).

`StageSpec`, `StageSchedule` and `OpacityEntropyScheduler` are small value objects: they know stages
and positions, nothing of training. `StageSchedule.to_state()/from_state()` follow the spirit of
torch's `state_dict()/load_state_dict()`: plain Python values, enough to rebuild an equal schedule
at the same position. `BasicTrainer` decides the stage once per step and delivers stage events.
"""
from __future__ import annotations

import logging
import math
import numbers
import os
import signal
import threading
import time
import warnings
from contextlib import ExitStack
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from omegaconf import DictConfig, OmegaConf

from models.trainers import checkpoint as ckpt
from models.trainers.resume import CheckpointFallbackWarning, output_dir_problem, resume_newest  # noqa: F401
from models.trainers.stage_context import (DEFAULT_STAGE_FEATURES, KNOWN_FEATURES, StageContext,
                                           resolve_features)
from models.trainers.trace import StageTrace
from models.trainers.config_schema import check_stage_features, training_config

# A stage's on/off features (the seed's YAML names them under `hooks`): models.trainers.stage_context.
# The old names stay importable for code and tests written against them.
KNOWN_HOOKS = KNOWN_FEATURES
DEFAULT_STAGE_HOOKS = DEFAULT_STAGE_FEATURES


def _is_int(value: Any) -> bool:
    """True for Python/numpy integers, False for bools, floats and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass
class StageSpec:
    name: str
    steps: int
    hooks: Dict[str, bool] = field(default_factory=dict)   # the configured features (the seed's name)

    @property
    def features(self) -> Dict[str, bool]:
        """Every feature of the stage: its configured ones over the defaults of its name (unknown: off)."""
        return resolve_features(self.name, self.hooks)

    def resolved_hooks(self) -> Dict[str, bool]:
        """The seed-era name of `features`."""
        return self.features


def _as_spec(entry: Any, index: int) -> StageSpec:
    if isinstance(entry, StageSpec):
        return entry
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"name", "steps", "hooks", "features"}
        if unknown:
            raise ValueError(f"stage {index}: unknown key(s) {sorted(unknown)}; expected name, steps, hooks")
        if "name" not in entry or "steps" not in entry:
            raise ValueError(f"stage {index} ({dict(entry)}): expected keys 'name' and 'steps'")
        if "hooks" in entry and "features" in entry:
            raise ValueError(f"stage {index} ({entry['name']!r}): give its features under one key, hooks "
                             "(the seed's name) or features, not both")
        key = "features" if "features" in entry else "hooks"
        hooks = entry.get(key) or {}
        if not isinstance(hooks, Mapping):
            raise ValueError(f"stage {index} ({entry['name']!r}): {key} must be a mapping of name -> bool, got {hooks!r}")
        return StageSpec(name=entry["name"], steps=entry["steps"], hooks=dict(hooks))
    raise ValueError(f"stage {index}: expected a StageSpec or a mapping with name/steps, got {entry!r}")


class StageSchedule:
    """A run split into consecutive stages; `step(global_step)` says where a step falls."""

    def __init__(self, stages: Sequence[Union[StageSpec, Mapping[str, Any]]]) -> None:
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
            raise ValueError(f"stage schedule must be a list of stages, got {stages!r}")
        specs = [_as_spec(s, i) for i, s in enumerate(stages)]
        if not specs:
            raise ValueError("stage schedule is empty: expected at least one stage, e.g. {name: pretrain, steps: 7000}")
        seen = set()
        for i, spec in enumerate(specs):
            if not isinstance(spec.name, str) or not spec.name.strip():
                raise ValueError(f"stage {i}: name must be a non-empty string, got {spec.name!r}")
            if spec.name in seen:
                raise ValueError(f"stage {i}: duplicate stage name {spec.name!r}; stage names must be unique")
            seen.add(spec.name)
            if not _is_int(spec.steps) or spec.steps <= 0:
                raise ValueError(
                    f"stage {i} ({spec.name!r}): steps must be a positive integer, got {spec.steps!r}")
            for hook, on in spec.hooks.items():
                if hook not in KNOWN_FEATURES:
                    raise ValueError(
                        f"stage {i} ({spec.name!r}): unknown hook {hook!r}; known hooks: {', '.join(KNOWN_FEATURES)}")
                if not isinstance(on, bool):
                    raise ValueError(f"stage {i} ({spec.name!r}): hook {hook!r} must be true or false, got {on!r}")
        self._stages: Tuple[StageSpec, ...] = tuple(
            StageSpec(s.name, int(s.steps), dict(s.hooks)) for s in specs)
        ends, total = [], 0
        for s in self._stages:
            total += s.steps
            ends.append(total)
        self._ends: List[int] = ends
        self._starts: List[int] = [0] + ends[:-1]
        self._names: Tuple[str, ...] = tuple(s.name for s in self._stages)
        self._total = total
        self._stage_index = 0
        self._offset = 0

    # ----- queries -------------------------------------------------------------------------
    @property
    def stages(self) -> Tuple[StageSpec, ...]:
        return self._stages

    @property
    def names(self) -> Tuple[str, ...]:
        return self._names

    @property
    def total_steps(self) -> int:
        return self._total

    @property
    def stage_index(self) -> int:
        """Index of the stage of the last `step()` call (or of the restored position)."""
        return self._stage_index

    @property
    def offset(self) -> int:
        """Step within that stage of the last `step()` call (or of the restored position)."""
        return self._offset

    @property
    def global_step(self) -> int:
        return self._starts[self._stage_index] + self._offset

    def start_of(self, stage: Union[int, str]) -> int:
        """Global step at which a stage (index or name) begins."""
        return self._starts[self.index_of(stage) if isinstance(stage, str) else stage]

    def index_of(self, name: str) -> int:
        try:
            return self._names.index(name)
        except ValueError:
            raise KeyError(f"no stage named {name!r}; stages: {', '.join(self._names)}") from None

    def describe(self) -> str:
        def one(s: StageSpec) -> str:  # a stage's own hooks too: two schedules may differ in those only
            hooks = ", ".join(f"{k}={str(bool(v)).lower()}" for k, v in sorted(s.hooks.items()))
            return f"{s.name} {s.steps}" + (f" (hooks {hooks})" if hooks else "")
        parts = ", ".join(one(s) for s in self._stages)
        return f"{self._total} steps: {parts}"

    def __len__(self) -> int:
        return len(self._stages)

    def __repr__(self) -> str:
        return (f"StageSchedule({self.describe()}; at stage {self._stage_index} "
                f"({self._names[self._stage_index]}), offset {self._offset})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StageSchedule):
            return NotImplemented
        return (self._stages == other._stages and self._stage_index == other._stage_index
                and self._offset == other._offset)

    # ----- the hot path --------------------------------------------------------------------
    def step(self, global_step: int) -> Tuple[str, int]:
        """(stage name, step within the stage) for a 0-indexed global step; remembers the position."""
        if type(global_step) is not int and not _is_int(global_step):  # fast path for plain ints
            raise ValueError(f"global step must be an integer, got {global_step!r}")
        if global_step < 0:
            raise ValueError(f"step {global_step} is negative; steps start at 0")
        if global_step >= self._total:
            raise ValueError(f"step {global_step} is past the end of the schedule ({self.describe()})")
        index = bisect_right(self._ends, global_step)
        offset = global_step - self._starts[index]
        self._stage_index = index
        self._offset = offset
        return self._names[index], offset

    def locate(self, global_step: int) -> Tuple[int, int]:
        """(stage index, offset) of a global step without moving the schedule's position."""
        if not _is_int(global_step) or not 0 <= global_step < self._total:
            raise ValueError(f"step {global_step!r} is outside the schedule ({self.describe()})")
        index = bisect_right(self._ends, global_step)
        return index, global_step - self._starts[index]

    # ----- state ---------------------------------------------------------------------------
    def to_state(self) -> Dict[str, Any]:
        return {
            "stage_index": self._stage_index,
            "offset": self._offset,
            "stages": [{"name": s.name, "steps": s.steps, "hooks": dict(s.hooks)} for s in self._stages],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], stages: Optional[Sequence[Any]] = None) -> "StageSchedule":
        """Rebuild a schedule at its saved position. `stages` (optional) replaces the saved stage list."""
        if not isinstance(state, Mapping):
            raise ValueError(f"stage state must be a mapping, got {type(state).__name__}")
        if stages is None:
            if "stages" not in state:
                raise ValueError("stage state has no 'stages' list; expected the output of StageSchedule.to_state()")
            stages = state["stages"]
        schedule = cls(stages)
        schedule.set_position(state)
        return schedule

    def set_position(self, state: Mapping[str, Any]) -> None:
        """Move to a saved {stage_index, offset} position, validating it against this schedule."""
        for key in ("stage_index", "offset"):
            if key not in state:
                raise ValueError(f"stage state is missing {key!r}; expected keys stage_index and offset")
        index, offset = state["stage_index"], state["offset"]
        if not _is_int(index) or not 0 <= index < len(self._stages):
            raise ValueError(
                f"stage state: stage_index {index!r} is out of range; expected 0..{len(self._stages) - 1} "
                f"({self.describe()})")
        steps = self._stages[index].steps
        if not _is_int(offset) or not 0 <= offset < steps:
            raise ValueError(
                f"stage state: offset {offset!r} is out of range for stage {index} "
                f"({self._names[index]!r}, {steps} steps); expected 0..{steps - 1}")
        self._stage_index, self._offset = int(index), int(offset)


class OpacityEntropyScheduler:
    """Each stage's opacity-entropy weight, from a {stage name: weight} table."""

    def __init__(self, table: Mapping[str, float]) -> None:
        if not isinstance(table, Mapping):
            raise ValueError(f"opacity entropy table must be a mapping stage -> weight, got {table!r}")
        clean: Dict[str, float] = {}
        for name, w in table.items():
            ok = isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(float(w)) and w >= 0
            if not ok:
                raise ValueError(
                    f"opacity entropy table: weight for stage {name!r} must be a finite number >= 0, got {w!r}")
            clean[str(name)] = float(w)
        self._table = clean

    @property
    def table(self) -> Dict[str, float]:
        return dict(self._table)

    def weight(self, stage_name: str) -> float:
        try:
            return self._table[stage_name]
        except KeyError:
            known = ", ".join(self._table) or "(none)"
            raise KeyError(f"no opacity entropy weight for stage {stage_name!r}; known stages: {known}") from None

    def check_covers(self, schedule: StageSchedule) -> None:
        """Fail now (before step 0) if some stage of the schedule has no weight."""
        missing = [n for n in schedule.names if n not in self._table]
        if missing:
            raise ValueError(
                f"render.opacity_entropy.table has no weight for stage(s) {', '.join(map(repr, missing))}; "
                f"table has: {', '.join(self._table) or '(none)'}; schedule: {schedule.describe()}")


# =============================================================================================
# BasicTrainer: the stage machinery every trainer shares.
# =============================================================================================

logger = logging.getLogger("models.trainers")

StageCallback = Callable[[str, "BasicTrainer", StageSpec], None]


@dataclass
class StepInfo:
    """What a step callback receives after every training step."""

    step: int                   # the global step that ran (0-indexed; trainer.step is now step + 1)
    stage: str                  # its stage and the step within it
    stage_step: int
    values: Dict[str, float]    # what train_step returned (losses, psnr, num_gaussians, ...)
    seconds: float              # wall time of train_step (on a GPU: of its host side; the device may still run)
    outputs: Any = None         # the trainer's own outputs of the step (SingleTrainer: StepOutputs)


StepCallback = Callable[["BasicTrainer", StepInfo], None]


class ScheduleChangedWarning(UserWarning):
    """A checkpoint made under another stage schedule was loaded."""


class NonFiniteLossError(RuntimeError):
    """A training step produced a NaN or infinite loss."""


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) or OmegaConf.is_list(node) else node


def _install_signal_handlers(handler: Callable) -> Dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_signal_handlers(previous: Dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _restore_stage_position(sched: StageSchedule, state: Mapping[str, Any], source: str) -> Optional[int]:
    """Move `sched` to a checkpoint's position (its global step decides where the checkpoint's schedule
    differs from the config's, with a warning); returns the index of the stage whose start event has
    fired (None: the next step fires it)."""
    step = state.get("step")
    if not _is_int(step) or step < 0:
        raise ValueError(f"{source}: 'step' must be an integer >= 0, got {step!r}")
    try:
        saved = StageSchedule.from_state(state.get("stage"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source}: bad stage state: {exc}") from None
    active = state.get("stage_active")
    if active is not None and (not _is_int(active) or not 0 <= active < len(saved)):
        raise ValueError(f"{source}: stage_active {active!r} is out of range for {saved.describe()}")
    if step > sched.total_steps:
        raise ValueError(f"{source}: step {step} is past the end of the configured schedule ({sched.describe()})")
    if saved.stages == sched.stages:
        expected = sched.locate(min(step, sched.total_steps - 1))
        if (saved.stage_index, saved.offset) != expected:
            raise ValueError(f"{source}: stage position {saved.stage_index}/{saved.offset} does not match "
                             f"step {step} (expected {expected[0]}/{expected[1]} in {sched.describe()})")
        sched.set_position(state["stage"])
        return active
    position = sched.locate(min(step, sched.total_steps - 1))
    sched.set_position({"stage_index": position[0], "offset": position[1]})
    msg = (f"{source} was made under another stage schedule ({saved.describe()}); the config's is "
           f"({sched.describe()}). Global step {step} decides: stage {sched.names[position[0]]!r}, "
           f"step {position[1]}")
    if active is not None and step > 0:
        prev_index = sched.locate(min(step - 1, sched.total_steps - 1))[0]
        active = prev_index if sched.names[prev_index] == saved.names[active] else None
    warnings.warn(msg, ScheduleChangedWarning, stacklevel=3)
    logger.warning(msg)
    return active


# keys that say how this process was started, not what the run is: a resumed run's checkpoints
# are byte-identical to an uninterrupted run's only if these are left out of them
RUN_CONTROL_KEYS = {"resume": False, "stop_after": None}


def config_for_checkpoint(cfg: DictConfig) -> Dict[str, Any]:
    config = OmegaConf.to_container(cfg, resolve=True)
    for key, neutral in RUN_CONTROL_KEYS.items():
        if key in config:
            config[key] = neutral
    return config


class BasicTrainer:
    """Decides the stage once per step, delivers stage events, saves and restores the run.

    Subclasses build their models in `setup()` and compute one step in `train_step()`, reading the
    step's stage from `self.stage_context` (a StageContext value); they react to stages in
    `on_stage_start` / `on_stage_end` and extend `state_dict` / `load_state_dict`.
    `self.step` is the number of completed steps, i.e. the global step that runs next.
    """

    def __init__(self, cfg: Any, output_dir: Optional[os.PathLike] = None,
                 resume: Union[bool, str, os.PathLike, None] = False, argv: Optional[list] = None, *,
                 inference: bool = False) -> None:
        """`inference=True` builds the models for rendering only (no optimizer, strategy or sampler;
        nothing is written; the dataset is read); `models.trainers.inference.open_trainer` builds one.
        Opening a run for rendering needs no trainer: models.run.open_run."""
        if inference and output_dir is not None:
            raise ValueError("an inference trainer writes nothing: output_dir must be None")
        self.inference = bool(inference)
        self.cfg: DictConfig = training_config(cfg)   # typed, every default filled, every value checked
        try:
            self.stage_schedule = StageSchedule(_plain(self.cfg.optim.stage_schedule))
        except ValueError as exc:
            raise ValueError(f"optim.stage_schedule: {exc}") from None
        check_stage_features(self.stage_schedule)
        self.opacity_entropy_scheduler = OpacityEntropyScheduler(_plain(self.cfg.render.opacity_entropy.table))
        self.opacity_entropy_scheduler.check_covers(self.stage_schedule)
        try:
            self.stage_schedule.set_position(_plain(self.cfg.resume_state.stage))
        except ValueError as exc:
            raise ValueError(f"resume_state.stage: {exc}") from None

        self.step: int = self.stage_schedule.global_step
        self.current_stage: str = self.stage_schedule.names[self.stage_schedule.stage_index]
        self.stage_step: int = self.stage_schedule.offset
        # the seed's view of the stage's entropy weight, updated at stage transitions; the step reads
        # the weight from its StageContext
        self.render_cfg = OmegaConf.create(_plain(self.cfg.render))
        self.render_cfg.opacity_entropy_weight = self.opacity_entropy_scheduler.weight(self.current_stage)
        self.stage_context: Optional[StageContext] = None   # the stage of the step that runs (update_stage)
        self._stage_features: Dict[int, Tuple[Mapping[str, bool], Tuple]] = {}
        self._active_stage: Optional[int] = None     # stage whose start event has fired, not yet ended
        self._stage_callbacks: List[StageCallback] = []
        self._step_callbacks: List[StepCallback] = []
        self._step_locks: List[Any] = []
        self.last_outputs: Any = None                # set by train_step for the step callbacks
        self._stop_requested = False
        self.stop_checkpoint: Optional[Path] = None   # set when SIGTERM / SIGINT stopped train() early
        self.output_dir = Path(output_dir) if output_dir is not None else None
        if self.output_dir is not None and output_dir_problem(self.output_dir):
            raise ValueError(output_dir_problem(self.output_dir))

        self.setup()
        resume_path = resume_newest(resume, self.output_dir, self.load_state_dict)
        if resume_path is not None:
            logger.info("resumed from %s at step %d (stage %s, step %d of %d)", resume_path, self.step,
                        self.current_stage, self.stage_step, self.current_stage_spec.steps)
        self.trace = (StageTrace(self.output_dir / "trace", argv, str(resume_path) if resume_path else None)
                      if self.output_dir is not None else None)
        self.on_ready()

    # ----- for subclasses --------------------------------------------------------------------
    def setup(self) -> None:
        """Build models, optimizers, data (before a checkpoint is loaded)."""

    def on_ready(self) -> None:
        """Called once the trainer is built and any checkpoint is loaded (write run files here)."""

    def train_step(self) -> Dict[str, float]:
        """One optimisation step at `self.step` in `self.stage_context`."""
        return {}

    def on_stage_start(self, stage: StageSpec) -> None:
        """Called once when a stage begins (also after a resume exactly on its first step)."""

    def on_stage_end(self, stage: StageSpec) -> None:
        """Called once when a stage ends, just before the next one starts."""

    def on_train_end(self) -> None:
        """Called once when the schedule's last step has run."""

    def check_deferred(self) -> None:
        """Run the checks that steps deferred so as not to wait for the device (SingleTrainer: the non-finite
        loss on a GPU) and raise what they find. `train()` calls it before every checkpoint, at its end and when
        a step fails (a NaN some steps before is then the error to report)."""

    # ----- stages and callbacks ----------------------------------------------------------------
    def add_stage_callback(self, callback: StageCallback) -> None:
        """`callback(event, trainer, stage)` with event "stage_start" or "stage_end"."""
        self._stage_callbacks.append(callback)

    def add_step_callback(self, callback: StepCallback) -> None:
        """`callback(trainer, StepInfo)` after every step that `train()` runs: monitoring, snapshots,
        a viewer. Called in the order added, before the step's checkpoint or a requested stop."""
        self._step_callbacks.append(callback)

    def hold_during_step(self, lock: Any) -> None:
        """`train()` holds `lock` (a context manager, e.g. threading.Lock) while each step runs, so a
        reader holding it (a viewer's render thread) sees no half-updated parameters."""
        self._step_locks.append(lock)

    @property
    def current_stage_spec(self) -> StageSpec:
        return self.stage_schedule.stages[self.stage_schedule.index_of(self.current_stage)]

    @property
    def stage_features(self) -> Mapping[str, bool]:
        """The current stage's features (every KNOWN_FEATURES flag)."""
        return self.current_stage_spec.features

    @property
    def total_steps(self) -> int:
        return self.stage_schedule.total_steps

    @property
    def finished(self) -> bool:
        return self.step >= self.stage_schedule.total_steps

    def update_stage(self) -> Tuple[str, int]:
        """Decide the stage of `self.step`: the one place where steps are compared with stages. Builds
        the step's StageContext; at a stage transition, the seed's render_cfg weight and the events."""
        sched = self.stage_schedule
        self.current_stage, self.stage_step = sched.step(self.step)
        index = sched.stage_index
        weight = self.opacity_entropy_scheduler.weight(self.current_stage)
        if self.stage_context is None or self.stage_context.index != index:
            self.render_cfg.opacity_entropy_weight = weight
        known = self._stage_features.get(index)
        if known is None:  # the stage's features and the stages before it, once per stage
            known = self._stage_features[index] = (StageContext.frozen(sched.stages[index].features),
                                                   tuple((s.name, s.steps) for s in sched.stages[:index]))
        self.stage_context = StageContext(self.current_stage, index, self.stage_step, self.step, known[0], weight,
                                          known[1])
        if index != self._active_stage:
            self._transition(index, weight)
        return self.current_stage, self.stage_step

    def _transition(self, index: int, weight: float) -> None:
        stages = self.stage_schedule.stages
        prev = stages[self._active_stage] if self._active_stage is not None else None
        prev_weight = self.opacity_entropy_scheduler.weight(prev.name) if prev is not None else None
        if prev is not None:
            self._emit("stage_end", prev)
            logger.info("stage %s -> %s at step %d (opacity entropy weight %s -> %s)",
                        prev.name, stages[index].name, self.step, prev_weight, weight)
        else:
            logger.info("stage start %s at step %d (opacity entropy weight %s)", stages[index].name, self.step, weight)
        if getattr(self, "trace", None) is not None:
            self.trace.transition(self.step, prev.name if prev else None, stages[index].name, prev_weight, weight)
        self._active_stage = index
        self._emit("stage_start", stages[index])

    def _emit(self, event: str, stage: StageSpec) -> None:
        (self.on_stage_start if event == "stage_start" else self.on_stage_end)(stage)
        for callback in self._stage_callbacks:
            callback(event, self, stage)

    # ----- the loop ------------------------------------------------------------------------------
    def train(self, num_steps: Optional[int] = None) -> None:
        """Run to the end of the schedule (or `num_steps` more steps). SIGTERM / SIGINT finish the
        current step, write a checkpoint and return, so that `resume=true` continues the run."""
        if self.inference:
            raise RuntimeError(f"this {type(self).__name__} was opened for inference (no optimizer); "
                               "build it with inference=False to train")
        end = self.total_steps if num_steps is None else min(self.total_steps, self.step + num_steps)
        every = self.cfg.checkpoint.every
        previous = _install_signal_handlers(self.request_stop)
        try:
            while self.step < end:
                self.update_stage()
                t0 = time.perf_counter()
                with ExitStack() as held:
                    for lock in self._step_locks:
                        held.enter_context(lock)
                    try:
                        values = self.train_step()
                    except Exception:
                        self.check_deferred()   # raises (chained) if a deferred check finds a bad step first
                        raise
                info = StepInfo(self.step, self.current_stage, self.stage_step, values or {},
                                time.perf_counter() - t0, self.last_outputs)
                self.step += 1
                for callback in self._step_callbacks:
                    callback(self, info)
                if self._stop_requested:
                    self.check_deferred()
                    path = self.save_checkpoint() if self.output_dir is not None else None
                    self.stop_checkpoint = path
                    logger.warning("stop requested: checkpoint %s written at step %d; continue with resume=true",
                                   path, self.step)
                    return
                if every and self.output_dir is not None and self.step % every == 0 and not self.finished:
                    self.save_checkpoint()
            self.check_deferred()
            if self.finished:
                if self.output_dir is not None:
                    self.save_checkpoint()
                self.on_train_end()
        finally:
            _restore_signal_handlers(previous)

    def request_stop(self, signum: int = signal.SIGTERM, frame: Any = None) -> None:
        if self._stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C aborts at once
        self._stop_requested = True
        logger.warning("received %s: finishing the current step, then saving a checkpoint",
                       signal.Signals(signum).name)

    # ----- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        if self.output_dir is None:
            raise ValueError("this trainer has no output_dir, so it has no checkpoint folder")
        return self.output_dir / "checkpoints"

    def save_checkpoint(self) -> Path:
        self.check_deferred()   # no checkpoint after a bad step
        path = ckpt.atomic_save(self.state_dict(), self.checkpoint_dir / ckpt.checkpoint_name(self.step))
        keep = self.cfg.checkpoint.keep
        ckpt.prune_checkpoints(self.checkpoint_dir, keep)
        return path

    def save_state_dict(self, path: os.PathLike) -> Path:
        """Write `state_dict()` atomically to a file."""
        self.check_deferred()
        return ckpt.atomic_save(self.state_dict(), path)

    # ----- state -------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Stage position of the step that runs next (the last step if the run is finished)."""
        stage = self.stage_schedule.to_state()
        position = self.step if self.step < self.total_steps else self.total_steps - 1
        stage["stage_index"], stage["offset"] = self.stage_schedule.locate(position)
        return {
            "format": ckpt.FORMAT,
            "trainer": type(self).__name__,   # which class reopens the run (models.trainers.inference)
            "step": self.step,
            "stage": stage,
            "stage_active": self._active_stage,
            "config": config_for_checkpoint(self.cfg),
        }

    def load_state_dict(self, state: Union[Dict[str, Any], os.PathLike, str]) -> None:
        source = "checkpoint"
        if not isinstance(state, dict):
            source = str(state)
            state = ckpt.load_checkpoint(state)
        active = _restore_stage_position(self.stage_schedule, state, source)
        sched = self.stage_schedule
        self.step = int(state["step"])
        self._active_stage = active
        self.current_stage = sched.names[sched.stage_index]
        self.stage_step = sched.offset
        self.stage_context = None   # the next update_stage builds it (and writes the seed's weight)
        self.render_cfg.opacity_entropy_weight = self.opacity_entropy_scheduler.weight(self.current_stage)
