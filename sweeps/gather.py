"""One table over the scenes of a sweep folder (omnire-gather).

A scene folder is any sub-folder of the sweep with a job.json, a config.yaml or checkpoints. Each
row says what the folder holds, read from what the run wrote:

  status          job.json (finished / failed / requeued / interrupted / running / stopped); a folder
                  without job.json (a single run) is "finished" when metrics.json is at the last step,
                  "partial" when it only has checkpoints
  steps, stage    the newest of: checkpoints/step_*.pt, metrics.json, job.json; out of the schedule in
                  config.yaml, and the stage of that step
  PSNR, SSIM, Gaussians   metrics.json (test views at the end of training)
  mesh metrics    eval.json's "surface" (omnire-eval after omnire-mesh), where present
  wall time       job.json: the sum of its attempts' durations; attempts = 1 + requeues/restarts
  error           job.json's one-line error of a failed scene
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import OmegaConf

COLUMNS = ["scene", "status", "steps", "total_steps", "stage", "psnr", "ssim", "gaussians", "chamfer",
           "fscore", "normal_consistency", "wall_time_s", "attempts", "error"]


class GatherInputError(ValueError):
    """The sweep folder does not exist or holds no scene folder."""


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _latest_checkpoint_step(folder: Path) -> Optional[int]:
    from models.trainers.checkpoint import list_checkpoints, CHECKPOINT_RE
    ckpts = list_checkpoints(folder / "checkpoints")
    return int(CHECKPOINT_RE.match(ckpts[-1].name).group(1)) if ckpts else None


def _schedule(folder: Path):
    from models.trainers.base import StageSchedule
    path = folder / "config.yaml"
    if not path.is_file():
        return None
    try:
        stages = OmegaConf.to_container(OmegaConf.load(path).optim.stage_schedule, resolve=False)
        return StageSchedule(stages)
    except Exception:                        # an unreadable config: steps without a total or stage
        return None


def is_scene_folder(folder: Path) -> bool:
    return folder.is_dir() and not folder.name.startswith(".") and any(
        (folder / name).exists() for name in ("job.json", "config.yaml", "checkpoints"))


def scene_row(folder: Path) -> Dict[str, Any]:
    folder = Path(folder)
    job = _read_json(folder / "job.json") or {}
    metrics = _read_json(folder / "metrics.json")
    evaluation = _read_json(folder / "eval.json")
    schedule = _schedule(folder)
    total = schedule.total_steps if schedule is not None else None

    steps = [s for s in (_latest_checkpoint_step(folder), (metrics or {}).get("step"),
                         *[a.get("step_end") for a in job.get("attempts", [])]) if isinstance(s, int)]
    step = max(steps) if steps else None
    stage = None
    if schedule is not None and step is not None:
        index, _ = schedule.locate(min(step, schedule.total_steps - 1))
        stage = schedule.names[index] + (" (done)" if step >= schedule.total_steps else "")

    status = job.get("status")
    if status is None:
        if metrics is not None and total is not None and metrics.get("step") == total:
            status = "finished"
        else:
            status = "partial" if step else "empty"
    surface = (evaluation or {}).get("surface") or {}
    test = (metrics or {}).get("test") or {}
    attempts = job.get("attempts") or []
    return {
        "scene": job.get("scene") or folder.name,
        "status": status,
        "steps": step,
        "total_steps": total,
        "stage": stage,
        "psnr": test.get("psnr"),
        "ssim": test.get("ssim"),
        "gaussians": (metrics or {}).get("num_gaussians"),
        "chamfer": surface.get("chamfer"),
        "fscore": surface.get("fscore"),
        "normal_consistency": surface.get("normal_consistency"),
        "wall_time_s": job.get("wall_time_s"),
        "attempts": len(attempts) or None,
        "error": job.get("error"),
        "folder": str(folder),
    }


def gather(sweep_dir: Path) -> List[Dict[str, Any]]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise GatherInputError(f"{sweep_dir}: no such folder (expected a sweep's output_dir, which holds one "
                               "folder per scene)")
    folders = sorted(p for p in sweep_dir.iterdir() if is_scene_folder(p))
    if not folders:
        if is_scene_folder(sweep_dir):       # one run's folder: a table of one row
            folders = [sweep_dir]
        else:
            raise GatherInputError(f"{sweep_dir}: holds no scene folder (a sub-folder with job.json, config.yaml "
                                   "or checkpoints/)")
    return [scene_row(p) for p in folders]


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "psnr":
        return f"{value:.2f}"
    if key in ("ssim", "chamfer", "fscore", "normal_consistency"):
        return f"{value:.4f}"
    if key == "wall_time_s":
        return f"{value:.1f}"
    return str(value)


def to_markdown(rows: List[Dict[str, Any]]) -> str:
    headers = ["scene", "status", "steps", "stage", "PSNR", "SSIM", "Gaussians", "Chamfer (m)", "F-score",
               "normal cons.", "wall time (s)", "attempts"]
    keys = ["scene", "status", "steps", "stage", "psnr", "ssim", "gaussians", "chamfer", "fscore",
            "normal_consistency", "wall_time_s", "attempts"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [_fmt(k, r[k]) for k in keys]
        if r["steps"] is not None and r["total_steps"] is not None:
            cells[2] = f"{r['steps']}/{r['total_steps']}"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines.append("")
        lines += [f"- {r['scene']}: {r['error']}" for r in failed]
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines += ["", f"{len(rows)} scene(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    return "\n".join(lines)


def to_csv(rows: List[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})
    return buf.getvalue()


def to_json(rows: List[Dict[str, Any]]) -> str:
    return json.dumps([{k: r[k] for k in COLUMNS} for r in rows], indent=2)


FORMATS = {"md": to_markdown, "csv": to_csv, "json": to_json}
