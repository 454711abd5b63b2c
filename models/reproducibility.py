"""Same bytes on every x86-64 machine: the process settings that make CPU numerics independent of
the CPU they run on.

The libraries under a training run pick their code by the CPU at hand, and the picks round
differently:
- torch's own kernels (ATen) are compiled three times, for no vector extension, AVX2 and AVX-512,
  and dispatch to the widest the CPU has; a sum over 8-float vectors adds in another order than one
  over 16-float vectors, and the transcendental functions differ between the builds.
- Intel MKL (torch's float matmuls) picks its code path by instruction set, vendor, thread count
  and buffer alignment unless its Conditional Numerical Reproducibility mode is set.
- oneDNN (torch's convolutions) JIT-compiles kernels for the widest instruction set.
- NumPy dispatches its ufuncs to AVX-512 loops where it can, and its OpenBLAS picks kernels by CPU
  model (the synthetic street is generated with NumPy).

Every one of them reads an environment variable that fixes its choice, but only when it loads: so
the settings are made by the entry points (the omnire-* commands, the benchmarks, the tests) before torch or
NumPy is imported, never by the library behind a user's back. ``OMNIRE_REPRODUCIBLE=0`` turns them
off for a little speed on AVX-512 machines; a run's log says which mode it ran in.

What stays outside: CUDA (gsplat's backward accumulates with atomics) and CPUs without AVX2, where
torch falls back to its plain kernels (the log says so).
"""
from __future__ import annotations

import os
import sys
from typing import Dict, MutableMapping, Optional

ENV_SWITCH = "OMNIRE_REPRODUCIBLE"

# The one code path every AVX2 CPU, Intel or AMD, with or without AVX-512, can run.
PINNED: Dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE,STRICT",    # STRICT: the same bits at any thread count and alignment
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
}

_LOADED_TOO_EARLY = ("torch", "numpy")


def requested(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Whether the environment asks for reproducible numerics (the default: anything but 0/false/off/no)."""
    env = os.environ if environ is None else environ
    return env.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def pin_cpu_numerics(environ: Optional[MutableMapping[str, str]] = None) -> Dict[str, str]:
    """An entry point's first call: set the variables of ``PINNED`` in the environment (they reach
    this process's libraries when they load, and every child process: sweep jobs, SLURM jobs).

    Returns what it set ({} when ``OMNIRE_REPRODUCIBLE=0``). Raises RuntimeError when torch or
    NumPy is already loaded, since they would not see the settings and the run would silently
    depend on the machine."""
    env = os.environ if environ is None else environ
    if not requested(env):
        return {}
    early = [m for m in _LOADED_TOO_EARLY if m in sys.modules]
    if early and environ is None and not _pinned(env):
        raise RuntimeError(f"pin_cpu_numerics() must run before torch and NumPy are imported ({', '.join(early)} "
                           f"already loaded); or set {ENV_SWITCH}=0 to run without reproducible numerics")
    env.update(PINNED)
    return dict(PINNED)


def _pinned(env: MutableMapping[str, str]) -> bool:
    return all(env.get(k) == v for k, v in PINNED.items())


def describe() -> str:
    """One log line on the numerics this process runs with (call after torch is loaded)."""
    import torch
    capability = torch.backends.cpu.get_cpu_capability()
    if not requested():
        return (f"numerics: fast ({ENV_SWITCH}=0; torch {capability} kernels): "
                "results depend on this machine's CPU")
    if not _pinned(os.environ):
        return (f"numerics: NOT pinned (torch {capability} kernels): models.reproducibility.pin_cpu_numerics() "
                "did not run before torch was imported; results may differ on another machine")
    if capability != "AVX2":
        return (f"numerics: pinned, but this CPU runs torch's {capability} kernels (it has no AVX2): "
                "results differ from AVX2 machines")
    return "numerics: reproducible (AVX2 code paths in torch, MKL, oneDNN and NumPy; same bytes on any x86-64 CPU with AVX2)"


__all__ = ["ENV_SWITCH", "PINNED", "requested", "pin_cpu_numerics", "describe"]
