"""Random state: the trainer's own, and the process set-up that entry points do.

A trainer never changes the process: it sets no thread count and seeds no global RNG. It draws from
generators of its own, seeded from `cfg.seed` (the image sampler, the SuGaR point sampler, and
`TrainerRNG` below), and saves them in its checkpoints, so a run gives the same bytes whatever the
process did before it or does between its steps (another trainer, a viewer, a test).

Some third-party code draws from torch's global generator and takes no generator argument: gsplat's
DefaultStrategy splits Gaussians with `torch.randn` (gsplat.strategy.ops.split). The trainer runs
its steps inside `TrainerRNG.scope()`, which puts the trainer's state into the global generator (the
CPU one, and the CUDA one of the trainer's device) and takes it back out afterwards, restoring the
process's state: the draws come from the trainer's stream and the global generator is left as it
was found.

Entry points (`run_training`, the benchmarks that train) call `configure_process(cfg)`: torch's
thread count from `cfg.num_threads` on the CPU, and Python's, NumPy's and torch's global RNGs seeded
from `cfg.seed`, so that other code in the process is deterministic too.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from omegaconf import DictConfig

from models.trainers.config_schema import training_config
from models.trainers.device import resolve_device


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's and torch's global RNGs (an entry point's job, never a trainer's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_process(cfg: Any) -> DictConfig:
    """What an entry point that trains does to its process before building the trainer: check the
    config (models.trainers.config_schema.training_config: one error listing every bad value), set
    torch's thread count from `num_threads` when training on the CPU (null: torch's default), and
    seed the global RNGs from `seed`. Returns the checked, typed config."""
    cfg = training_config(cfg)
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    return cfg


def _cuda_device(device: torch.device) -> torch.device:
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


class TrainerRNG:
    """A trainer's own torch random state: a CPU generator and, on CUDA, one for the trainer's device,
    both seeded from `seed` (the states `torch.manual_seed(seed)` gives the global generators)."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.cpu = torch.Generator().manual_seed(int(seed))
        self.cuda_device: Optional[torch.device] = None
        self.cuda: Optional[torch.Generator] = None
        if torch.device(device).type == "cuda":
            self.cuda_device = _cuda_device(torch.device(device))
            self.cuda = torch.Generator(device=self.cuda_device).manual_seed(int(seed))

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Run code that draws from torch's global generator(s) on the trainer's stream: save the
        global state, set the trainer's, run, keep the trainer's new state, restore the global one."""
        saved_cpu = torch.get_rng_state()
        saved_cuda = torch.cuda.get_rng_state(self.cuda_device) if self.cuda is not None else None
        torch.set_rng_state(self.cpu.get_state())
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda.get_state(), self.cuda_device)
        try:
            yield
        finally:
            self.cpu.set_state(torch.get_rng_state())
            torch.set_rng_state(saved_cpu)
            if self.cuda is not None:
                self.cuda.set_state(torch.cuda.get_rng_state(self.cuda_device))
                torch.cuda.set_rng_state(saved_cuda, self.cuda_device)

    def state_dict(self) -> Dict[str, Any]:
        """The checkpoint's `rng` entry (format 3): {"torch": CPU state, "cuda": the device's state or None}."""
        return {"torch": self.cpu.get_state(), "cuda": None if self.cuda is None else self.cuda.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore a saved state. A CUDA state is used only when training on CUDA (a CPU run's
        checkpoint resumed on CUDA keeps the CUDA generator seeded from `seed`)."""
        cpu = state["torch"]
        if not isinstance(cpu, torch.Tensor):
            raise TypeError(f"rng.torch is a {type(cpu).__name__}, expected a uint8 tensor")
        self.cpu.set_state(cpu)
        cuda = state.get("cuda")
        if self.cuda is not None and cuda is not None:
            self.cuda.set_state(cuda)


__all__ = ["seed_everything", "configure_process", "TrainerRNG"]
