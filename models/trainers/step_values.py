"""What a training step reports, without making the host wait for the device.

`StepValues` is the mapping `train_step` returns (loss terms, "loss", "psnr", "num_gaussians"): the
step's detached scalars stay on the device, and the first read of any value turns them all into
Python floats in one transfer (and computes the PSNR then). A step nobody reads (no progress line,
no TensorBoard scalar, no viewer status) waits for nothing.

`FiniteLossWatch` stops a run at a NaN or infinite loss and names the step where it happened. Every
step (``every=1``, a CPU's default, where there is no device to wait for): checked before the
step's backward, so the step raises with the parameters untouched. Every N steps (a GPU's default,
N = log.scalars_every): the totals are kept on the device and checked together at the end of every
N-th step, before every checkpoint, at the end of training and when a step fails; the error names
the first bad step, its stage, its terms and the step where it was found. Either way no checkpoint
is written after a bad step: the last good one is untouched.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch

from models.trainers.base import NonFiniteLossError


class StepValues(Mapping):
    """A step's values by name, in order: each loss term, "loss" (their sum), "psnr", "num_gaussians".
    The tensors are read (and `psnr` called) once, when the first value is read."""

    def __init__(self, terms: Mapping[str, torch.Tensor], total: torch.Tensor,
                 psnr: Callable[[], torch.Tensor], num_gaussians: int) -> None:
        self._tensors: Dict[str, Any] = {k: _detached(v) for k, v in terms.items()}
        self._tensors["loss"] = _detached(total)
        self._psnr: Optional[Callable[[], torch.Tensor]] = psnr
        self._keys: Tuple[str, ...] = (*self._tensors, "psnr", "num_gaussians")
        self._num_gaussians = int(num_gaussians)
        self._floats: Optional[Dict[str, Any]] = None

    @property
    def ready(self) -> bool:
        """Whether the values have been read already (reading them again costs nothing)."""
        return self._floats is not None

    def _read(self) -> Dict[str, Any]:
        if self._floats is None:
            tensors = dict(self._tensors)
            tensors["psnr"] = _detached(self._psnr())
            floats = _to_floats(list(tensors.values()))
            values = dict(zip(tensors, floats))
            values["num_gaussians"] = self._num_gaussians
            self._floats, self._psnr = values, None   # (assigned once complete: a reader in another thread
        return self._floats                              #  sees either nothing or every value)

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        return self._read()[key]

    def __contains__(self, key: object) -> bool:   # without reading the values
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"StepValues({dict(self.items())!r})"


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _to_floats(values: List[Any]) -> List[float]:
    """float(v) of each, the tensors in one device-to-host transfer where they share a dtype and device."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if tensors and len({(t.dtype, t.device) for t in tensors}) == 1 and all(t.numel() == 1 for t in tensors):
        read = iter(torch.stack([t.reshape(()) for t in tensors]).tolist())
        return [next(read) if isinstance(v, torch.Tensor) else float(v) for v in values]
    return [float(v) for v in values]


class FiniteLossWatch:
    """The non-finite-loss check of a trainer's steps, at once (``every=1``) or every ``every`` steps."""

    def __init__(self, every: int = 1, where: str = "") -> None:
        self.every = max(1, int(every))
        self.where = where             # the device, for the message of a deferred check
        self._pending: List[Tuple[int, str, int, Dict[str, torch.Tensor], torch.Tensor]] = []

    def before_backward(self, step: int, stage: Any, terms: Mapping[str, torch.Tensor], total: torch.Tensor) -> None:
        """With ``every=1``: raise now if the step's loss is not finite (one synchronisation)."""
        if self.every == 1 and not bool(torch.isfinite(total)):
            raise NonFiniteLossError(_message(step, stage.name, stage.stage_step, terms, total))

    def after_step(self, step: int, stage: Any, terms: Mapping[str, torch.Tensor], total: torch.Tensor) -> None:
        """With ``every > 1``: keep the step's loss; at every ``every``-th step check the kept ones."""
        if self.every == 1:
            return
        self._pending.append((step, stage.name, stage.stage_step, {k: v.detach() for k, v in terms.items()},
                              total.detach()))
        if len(self._pending) >= self.every:
            self.check()

    def check(self) -> None:
        """Check every kept loss (one synchronisation); raise naming the first that is not finite."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        finite = torch.isfinite(torch.stack([p[-1].double().reshape(()) for p in pending])).tolist()
        for ok, (step, name, stage_step, terms, total) in zip(finite, pending):
            if not ok:
                found = pending[-1][0]
                raise NonFiniteLossError(_message(
                    step, name, stage_step, terms, total,
                    f"; found at step {found} (the loss is checked every {self.every} steps{self.where}: the "
                    f"{found - step} step(s) after it ran, and none is saved)" if found != step else ""))

    def clear(self) -> None:
        self._pending = []


def _message(step: int, stage: str, stage_step: int, terms: Mapping[str, torch.Tensor], total: torch.Tensor,
             found: str = "") -> str:
    values = {k: float(v.detach()) for k, v in terms.items()}
    return (f"step {step} (stage {stage}, step {stage_step}): the loss is {float(total.detach())} ({values})"
            f"{found}; stopping without saving. The last good checkpoint is untouched: lower the learning rates "
            "or the regularizer weights and resume from it")
