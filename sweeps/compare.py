"""Are two finished runs the same run? (a requeued scene against an uninterrupted one)

    .venv/bin/python -m sweeps.compare RUN_A RUN_B     # exit status 0: identical; 1: the differences

Compares the exported Gaussians byte for byte (exports/gaussians.ply), metrics.json, and the final
checkpoints value by value (every tensor with torch.equal: parameters, optimizer moments, RNG
states, sampler, strategy); only the checkpoint's `config` (which holds each run's own paths) is
left out.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List


def _diff(a: Any, b: Any, where: str, out: List[str]) -> None:
    import numpy as np
    import torch
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dtype != b.dtype \
                or a.shape != b.shape or not torch.equal(a, b):
            out.append(f"{where}: tensors differ")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not np.array_equal(np.asarray(a), np.asarray(b)):
            out.append(f"{where}: arrays differ")
    elif isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out.append(f"{where}: keys differ ({sorted(map(str, set(a) ^ set(b)))})")
        for k in sorted(set(a) & set(b), key=str):
            _diff(a[k], b[k], f"{where}.{k}", out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{where}: lengths differ ({len(a)} vs {len(b)})")
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{where}[{i}]", out)
    elif a != b:
        out.append(f"{where}: {a!r} != {b!r}")


def run_differences(run_a: Path, run_b: Path) -> List[str]:
    """What differs between two finished runs (empty: the same bytes and the same final state)."""
    from models.trainers.checkpoint import find_latest, load_checkpoint
    run_a, run_b = Path(run_a), Path(run_b)
    out: List[str] = []
    for rel in ("exports/gaussians.ply", "metrics.json", "checkpoints"):
        for run in (run_a, run_b):
            if not (run / rel).exists():
                out.append(f"{run / rel} is missing")
    if out:
        return out
    if (run_a / "exports/gaussians.ply").read_bytes() != (run_b / "exports/gaussians.ply").read_bytes():
        out.append("exports/gaussians.ply: bytes differ")
    if json.loads((run_a / "metrics.json").read_text()) != json.loads((run_b / "metrics.json").read_text()):
        out.append("metrics.json differs")
    ca, cb = find_latest(run_a / "checkpoints"), find_latest(run_b / "checkpoints")
    if ca.name != cb.name:
        out.append(f"final checkpoints at different steps: {ca.name} vs {cb.name}")
        return out
    sa, sb = load_checkpoint(ca), load_checkpoint(cb)
    sa.pop("config", None)
    sb.pop("config", None)
    _diff(sa, sb, "checkpoint", out)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m sweeps.compare RUN_A RUN_B", file=sys.stderr)
        return 2
    diffs = run_differences(Path(argv[0]), Path(argv[1]))
    if diffs:
        print("\n".join(diffs[:50]))
        return 1
    print(f"identical: {argv[0]} and {argv[1]} (gaussians.ply bytes, metrics.json, final checkpoint state)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
