"""The name of a scene's output folder inside a sweep.

`hydra.sweep.subdir: ${scene_name:${scene}}` (configs/omnire_sugar.yaml) puts each scene of a
multirun into `<sweep dir>/<name>`: the last part of `scene.path` for a processed scene
(/data/waymo/023 -> 023), `synthetic_seed<N>` for a generated street without a path.
"""
from __future__ import annotations

import os
import re
from typing import Any

from omegaconf import OmegaConf

RESOLVER = "scene_name"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def scene_name(scene: Any) -> str:
    """A folder name for a scene config (a mapping with `type`, `path`, `seed`)."""
    get = scene.get if hasattr(scene, "get") else (lambda k, d=None: getattr(scene, k, d))
    path = get("path", None)
    if path not in (None, "", "???"):
        name = os.path.basename(os.path.normpath(str(path)))
    else:
        name = f"{get('type', 'scene')}_seed{get('seed', 0)}"
    name = _UNSAFE.sub("_", name).strip("._")
    return name or "scene"


def register() -> None:
    """Register the `scene_name` resolver (idempotent); any process that resolves hydra.sweep.subdir needs it."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, scene_name)


register()
