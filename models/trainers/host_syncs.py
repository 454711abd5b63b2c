"""Where a training step makes the host wait for the device: the ops that read a tensor's value on
the host or whose output size depends on its values, each counted at the line of this repository
that called it.

    with HostSyncAudit() as audit:
        trainer.train(num_steps=10)
    audit.per_call_site()   # {("nonzero", "models/sugar/regularizers.py:166"): 10, ...}

Counted (through a TorchDispatchMode, so on any device, also where a CPU does not wait):
  item       aten::_local_scalar_dense: .item(), float(t), int(t), bool(t), `if t:` of a tensor
  nonzero    aten::nonzero / argwhere, torch.where(mask) with one argument
  mask       indexing or index_put with a boolean mask (t[mask]: a nonzero inside)
  sized      masked_select, unique, repeat_interleave without output_size: sizes from values
  to_host    a copy from a non-CPU device to the CPU (.cpu(), .tolist(), .numpy() via .cpu())
  to_device  a copy from pageable (not pinned) CPU memory to a device: CUDA waits for the stream first
             (a tensor drawn on the CPU and moved, torch.tensor(..., device=cuda))
A CPU tensor's .item() (an optimizer's step count) is counted too: it waits for nothing, but the same
line on device tensors would. Ops inside a compiled extension are not seen (gsplat's CUDA code,
the CPU rasterizer's C++).
"""
from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[2]
_ITEM = {"_local_scalar_dense"}
_NONZERO = {"nonzero", "nonzero_static", "argwhere"}
_SIZED = {"masked_select", "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive", "repeat_interleave"}
_INDEX = {"index", "index_put", "index_put_", "_index_put_impl_"}


def _kind(func, args, kwargs) -> Optional[str]:
    name = func.__name__.split(".")[0]
    if name in _ITEM:
        return "item"
    if name in _NONZERO:
        return "nonzero"
    if name in _SIZED:
        if name == "repeat_interleave" and (kwargs or {}).get("output_size") is not None:
            return None
        return "sized"
    if name in _INDEX and len(args) > 1:
        indices = args[1] if isinstance(args[1], (list, tuple)) else ()
        if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices):
            return "mask"
        return None
    if name in ("_to_copy", "copy_"):
        src = args[1] if name == "copy_" else args[0]
        dst = args[0].device if name == "copy_" else (kwargs or {}).get("device")
        if not isinstance(src, torch.Tensor) or dst is None:
            return None
        src_cpu, dst_cpu = src.device.type == "cpu", torch.device(dst).type == "cpu"
        if not src_cpu and dst_cpu:
            return "to_host"
        if src_cpu and not dst_cpu and not src.is_pinned():
            return "to_device"
    return None


def _call_site() -> str:
    """The innermost frame in this repository's code (not this file's, not an installed package's)."""
    here = Path(__file__).resolve()
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename).resolve()
        if path == here or ".venv" in path.parts or "site-packages" in path.parts:
            continue
        try:
            return f"{path.relative_to(REPO).as_posix()}:{frame.lineno}"
        except ValueError:
            continue
    return "?"


class HostSyncAudit(TorchDispatchMode):
    """Counts, while active, the ops above by kind and call site (`counts`: Counter of (kind, site))."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = _kind(func, args, kwargs)
        if kind is not None:
            self.counts[(kind, _call_site())] += 1
        return func(*args, **(kwargs or {}))

    def per_call_site(self) -> Dict[Tuple[str, str], int]:
        return dict(self.counts)

    def total(self) -> int:
        return sum(self.counts.values())
