"""Training one variant of the staged-quality comparison in-process, with its seconds per stage and
per-stage statistics (Gaussians at each stage's start and end, the share of undecided opacities)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from models.mesh.run_io import RunInputError
from models.quality.variants import compose_config, configured_hooks, schedule_override

UNDECIDED = (0.1, 0.9)  # an opacity in this open interval is "undecided" (neither opaque nor gone)


def undecided_share(trainer) -> float:
    """Share of the Gaussians (every model) whose opacity lies in UNDECIDED."""
    lo, hi = UNDECIDED
    op = [torch.sigmoid(m.params["opacities"].detach()).reshape(-1) for m in trainer.models.values()]
    op = torch.cat(op) if op else torch.zeros(0)
    return float(((op > lo) & (op < hi)).float().mean()) if len(op) else 0.0


def train_bench_run(config_name: str, out: Path, schedule: list, overrides: Sequence[str] = (),
                    reuse: bool = False, budget_s: Optional[float] = None) -> Dict[str, float]:
    """Train one variant in-process into `out`; returns seconds per stage (also in out/bench_timing.json;
    per-stage statistics in out/bench_stages.json: Gaussians after each stage starts and when it ends,
    the share of undecided opacities at its end). The stages keep the hooks the config gives them.
    With reuse, a finished run (timing file and final checkpoint) is not trained again, and an
    unfinished one (a budget ran out) resumes from its latest checkpoint. With budget_s the run stops
    cleanly (checkpoint) after about that many seconds; the result is then None."""
    import threading
    import time

    from models.trainers.checkpoint import checkpoint_name, find_latest
    from models.trainers import configure_process
    from models.trainers.inference import trainer_class

    total = sum(s["steps"] for s in schedule)
    timing_file, stages_file, partial_file = out / "bench_timing.json", out / "bench_stages.json", out / "bench_partial.json"
    if reuse and timing_file.is_file() and (out / "checkpoints" / checkpoint_name(total)).is_file():
        return json.loads(timing_file.read_text())
    resume = bool(reuse and partial_file.is_file() and find_latest(out / "checkpoints") is not None)
    if out.exists() and not resume:
        import shutil
        shutil.rmtree(out)  # a partial or stale run of the benchmark's own folder
    hooks = configured_hooks(config_name, overrides)
    schedule = [dict(s, hooks={**hooks.get(s["name"], {}), **(s.get("hooks") or {})}) for s in schedule]
    cfg = compose_config(config_name, [*overrides, schedule_override(schedule), f"output_dir={out}"])
    try:  # the configured trainer class: SingleTrainer, or MultiTrainer with trainer=MultiTrainer
        cfg = configure_process(cfg)  # checked; threads and seeds from the config, as omnire-train sets them
        trainer = trainer_class(cfg.trainer)(cfg, output_dir=out, resume=resume)
    except ValueError as exc:
        raise RunInputError(f"{out.name}: bad configuration: {exc}") from None
    acc = json.loads(partial_file.read_text()) if resume else {"seconds": {}, "stages": {}}
    seconds, stats = acc["seconds"], acc["stages"]

    def timed(fn):  # wall time of the stage decision (prune, neighbours) and the step, per stage
        def run(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                seconds[trainer.current_stage] = seconds.get(trainer.current_stage, 0.0) + time.perf_counter() - t0
        return run

    def on_stage(event, tr, stage):
        rec = stats.setdefault(stage.name, {})
        if event == "stage_start":
            rec["gaussians_at_start"] = tr.num_gaussians
        else:
            rec.update(gaussians_at_end=tr.num_gaussians, undecided_at_end=undecided_share(tr))

    trainer.update_stage, trainer.train_step = timed(trainer.update_stage), timed(trainer.train_step)
    trainer.add_stage_callback(on_stage)
    timer = threading.Timer(budget_s, trainer.request_stop) if budget_s else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        trainer.train()
    except ValueError as exc:  # e.g. a bad scene
        raise RunInputError(f"{out.name}: training stopped: {exc}") from None
    finally:
        if timer:
            timer.cancel()
    if not trainer.finished:
        partial_file.write_text(json.dumps(acc, indent=2))
        return None
    last = schedule[-1]["name"]
    stats.setdefault(last, {}).update(gaussians_at_end=trainer.num_gaussians, undecided_at_end=undecided_share(trainer))
    timing = {s["name"]: seconds.get(s["name"], 0.0) for s in schedule}
    stages_file.write_text(json.dumps({"schedule": schedule, "stages": stats}, indent=2))
    timing_file.write_text(json.dumps(timing, indent=2))
    partial_file.unlink(missing_ok=True)
    return timing
