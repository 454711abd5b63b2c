"""The `scene` config group: turning a config into a scene folder and a loaded scene."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .driving_dataset import DrivingScene, LoadOptions
from .processed_layout import SceneFormatError, index_layout
from .synthetic import COMPLETE_MARKER, WALKER_MODEL_FILE, SyntheticParams, generate, write_people_smpl

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO_ROOT / "data"

GENERATOR_KEYS = {f.name for f in fields(SyntheticParams)}
LOADER_KEYS = {"downscale", "test_every", "start_frame", "end_frame", "max_init_points", "load_gt",
               "moving_threshold", "class_map"}
COMMON_KEYS = {"type", "path"}
PROCESSED_KEYS = COMMON_KEYS | LOADER_KEYS | {"cameras", "seed", "dataset", "undistort"}
SYNTHETIC_KEYS = COMMON_KEYS | LOADER_KEYS | GENERATOR_KEYS


def _as_dict(cfg) -> dict:
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    if isinstance(cfg, dict):
        return dict(cfg)
    return dict(vars(cfg))


def _check_keys(cfg: dict, allowed: set, kind: str):
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise SceneFormatError(f"scene config: unknown key(s) {unknown} for type {kind!r}; expected a subset of "
                               f"{sorted(allowed)}")


def _scene_type(cfg: dict) -> str:
    kind = cfg.get("type", "synthetic")
    if kind not in ("synthetic", "processed"):
        raise SceneFormatError(f"scene.type: expected 'synthetic' or 'processed'; found {kind!r}")
    return kind


def synthetic_params(cfg) -> SyntheticParams:
    cfg = _as_dict(cfg)
    _check_keys(cfg, SYNTHETIC_KEYS, "synthetic")
    try:
        return SyntheticParams(**{k: v for k, v in cfg.items() if k in GENERATOR_KEYS})
    except (TypeError, ValueError) as e:
        raise SceneFormatError(f"scene config: {e}") from None


def synthetic_path(params: SyntheticParams, path=None) -> Path:
    if path in (None, "", "???"):
        return CACHE_DIR / f"synthetic_{params.seed}_{params.digest()}"
    return Path(os.path.expanduser(str(path)))


def _is_complete(path: Path, digest: str) -> bool:
    marker = path / COMPLETE_MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("digest") == digest
    except (json.JSONDecodeError, OSError):
        return False


def _ours(path: Path) -> bool:
    """A folder we may delete to regenerate: empty, or written by this generator (marker or gt/meta.json)."""
    if not any(path.iterdir()):
        return True
    if (path / COMPLETE_MARKER).exists():
        return True
    meta = path / "gt" / "meta.json"
    try:
        return json.loads(meta.read_text()).get("generator") == "scenes.synthetic"
    except (OSError, json.JSONDecodeError):
        return False


def prepare_synthetic(params: SyntheticParams, path: Path, timings: dict | None = None) -> Path:
    """Generate the scene into `path` unless a complete copy with the same parameters is there.

    The scene is written into a temporary sibling folder and renamed into place, with the completion
    marker written last, so an interrupted run never leaves a folder that looks complete.
    """
    path = Path(path)
    digest = params.digest()
    if _is_complete(path, digest):
        if params.pedestrians and not (path / WALKER_MODEL_FILE).is_file():
            write_people_smpl(path)   # a street generated before the SMPL files were part of it
        return path
    if path.exists():
        if not path.is_dir() or not _ours(path):
            raise SceneFormatError(f"{path}: expected a synthetic scene folder (or none) to generate into; found "
                                   "other content, which will not be overwritten")
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent == CACHE_DIR and not (CACHE_DIR / ".gitignore").exists():
        (CACHE_DIR / ".gitignore").write_text("# generated scenes (scenes/config.py)\n*\n")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        generate(params, tmp, timings)
        try:
            os.rename(tmp, path)
        except OSError:
            if not _is_complete(path, digest):  # another process did not finish it either
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def prepare_scene(scene_cfg) -> Path:
    """Return the folder of the scene `scene_cfg` describes, generating a synthetic one if needed."""
    cfg = _as_dict(scene_cfg)
    kind = _scene_type(cfg)
    if kind == "synthetic":
        params = synthetic_params(cfg)
        return prepare_synthetic(params, synthetic_path(params, cfg.get("path")))
    path = _processed_path(cfg)
    index_layout(path, _cameras(cfg), cfg.get("dataset") or "auto")
    return path


def _processed_path(cfg: dict) -> Path:
    _check_keys(cfg, PROCESSED_KEYS, "processed")
    path = cfg.get("path")
    if path in (None, "", "???"):
        raise SceneFormatError("scene.path: expected the folder of a drivestudio-processed scene for type "
                               "'processed'; found it unset")
    path = Path(os.path.expanduser(str(path)))
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return path


def _cameras(cfg: dict):
    cams = cfg.get("cameras")
    return None if cams is None else [str(c) for c in cams]


def load_options(scene_cfg) -> LoadOptions:
    cfg = _as_dict(scene_cfg)
    kind = _scene_type(cfg)
    opts = {k: cfg[k] for k in LOADER_KEYS if k in cfg and cfg[k] is not None}
    if kind == "synthetic":
        opts["cameras"] = [str(c) for c in synthetic_params(cfg).cameras]
        opts["dataset"] = "waymo"          # the generator writes Waymo's format
    else:
        opts["cameras"] = _cameras(cfg)
        opts["dataset"] = cfg.get("dataset") or "auto"
        if cfg.get("undistort") is not None:
            opts["undistort"] = bool(cfg["undistort"])
    if opts.get("class_map") is not None and not isinstance(opts["class_map"], dict):
        raise SceneFormatError(f"scene.class_map: expected a mapping of class name -> node type; found "
                               f"{opts['class_map']!r}")
    opts["seed"] = int(cfg.get("seed", 0) or 0)
    return LoadOptions(**opts)


def check_scene_config(scene_cfg) -> None:
    """Check the scene config's keys and values without reading or writing anything (SceneFormatError)."""
    cfg = _as_dict(scene_cfg)
    if _scene_type(cfg) == "processed":
        _check_keys(cfg, PROCESSED_KEYS, "processed")
    load_options(cfg)


def load_scene(scene_cfg) -> DrivingScene:
    """Prepare (generate or validate) the scene folder and load it; all checks happen here."""
    cfg = _as_dict(scene_cfg)
    if _scene_type(cfg) == "synthetic":
        return DrivingScene.load(prepare_scene(cfg), load_options(cfg))
    path = _processed_path(cfg)
    options = load_options(cfg)
    return DrivingScene.load(path, options, index=index_layout(path, options.cameras, options.dataset))


def compose_scene_config(option: str = "synthetic", overrides=()):
    """The `scene` group option from configs/ with Hydra overrides (e.g. 'scene.seed=3'), outside a run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    if GlobalHydra.instance().is_initialized():   # inside a Hydra app: compose in that context
        return compose(config_name=None, overrides=[f"+scene={option}", *overrides]).scene
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose(config_name=None, overrides=[f"+scene={option}", *overrides]).scene
