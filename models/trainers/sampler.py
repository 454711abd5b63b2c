"""Which training image each step uses: a fresh random permutation per epoch, resumable exactly;
and the training views' copies on the training device."""
from __future__ import annotations

from typing import Any, Dict

import torch


class ImageSampler:
    def __init__(self, num_images: int, seed: int = 0) -> None:
        if num_images <= 0:
            raise ValueError("the scene has no training images")
        self.num_images = int(num_images)
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_images, generator=gen).tolist()

    def next(self) -> int:
        if self.position >= self.num_images:
            self.epoch += 1
            self.position = 0
            self._order = self._permutation(self.epoch)
        index = self._order[self.position]
        self.position += 1
        return index

    def state_dict(self) -> Dict[str, Any]:
        return {"num_images": self.num_images, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("num_images") != self.num_images:
            raise ValueError(f"checkpoint's image sampler covers {state.get('num_images')} training images, "
                             f"the scene has {self.num_images}: is this the same scene and split?")
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)


def view_on(view: Any, device: torch.device) -> Any:
    """A copy of a dataset view with its tensors on `device` (the dataset's own stay on the CPU)."""
    return view.on(device)
