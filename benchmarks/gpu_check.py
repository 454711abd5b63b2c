"""Training-step time per stage on the default street: whole SingleTrainer steps on a GPU (or a CPU).

    .venv/bin/python -m benchmarks.gpu_check --out step_check.json [--device auto|cuda|cpu]
        [--configs omnire_sugar_quick,omnire_sugar] [--steps 200] [--warmup 20] [--profile-steps 20]
        [--audit-steps 5] [--stage-scale F] [--full-schedule [--full-config omnire_sugar] [--full-scale 1.0]]
        [KEY=VALUE ...]

Not checks/gpu_check.py: that one checks that the renderers agree (the PyTorch and C++ backends
against gsplat's CUDA rasterizer) and times one render's forward + backward on random Gaussians.
This one times what a user's run spends per step: the trainer's whole step (sampler, render, loss
table, backward, Adam, densification bookkeeping, SuGaR terms, the step callbacks: TensorBoard
every log.scalars_every steps) on the default street, in each stage, and counts the step's
host-device synchronisations.

Phases (each in its own try/except; a failure is printed and recorded in the JSON, the rest runs):
  env                 torch, CUDA, gsplat versions, the device
  stages:<config>     for each config of --configs (Hydra-composed as omnire-train composes it): one
                      run through a copy of its stage schedule (each stage's own features), each stage
                      max(warmup + steps + profile + audit steps, --stage-scale x its configured steps)
                      long (the last one step longer, so the run never reaches its evaluation and
                      exports; --stage-scale 1: the config's own schedule, the model as it trains). At the
                      end of each stage, after its untimed rest (the stage start: the sugar prune, the
                      kNN; at least `warmup` steps): `steps` timed steps, then `profile-steps` steps
                      under torch.profiler. Per stage: median
                      ms per step (between consecutive step callbacks, no added synchronisation),
                      steps/s over the timed window (synchronised at both ends), Gaussian count, peak
                      GPU memory (torch.cuda.max_memory_allocated since the stage began; null on a
                      CPU), and from the profile: wall ms per step, device busy ms per step (the
                      kernels' own time; null on a CPU), and per step the calls that synchronise
                      host and device (aten::_local_scalar_dense: .item() / float() / bool() of a
                      tensor; aten::nonzero: boolean-mask indexing, torch.where(mask);
                      cudaStreamSynchronize / cudaDeviceSynchronize), plus the top ops by host time.
                      Then `audit-steps` steps under models.trainers.host_syncs.HostSyncAudit: each line of
                      this repository that made the step wait, with its calls per step.
  full_schedule:<c>   with --full-schedule: the config's own schedule (each stage's steps times
                      --full-scale) end to end, as omnire-train runs it: per stage its wall time,
                      steps/s, median ms per step, Gaussians at its end and peak GPU memory; then
                      the evaluation and exports.
Prints a table and writes the JSON to --out after every phase (a killed run keeps what it had).
Exit status 1 when a phase failed. On a CPU (--device cpu --steps 3) it exercises every phase.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from models.trainers import configure_process  # noqa: E402
from models.trainers.single import SingleTrainer  # noqa: E402

RESULTS: Dict[str, Any] = {"phases": {}, "errors": {}}
OUT: Optional[Path] = None
# profiler events that stand for a host-device synchronisation (their counts per step are reported)
SYNC_EVENTS = {"item": "aten::_local_scalar_dense", "nonzero": "aten::nonzero",
               "stream_sync": "cudaStreamSynchronize", "device_sync": "cudaDeviceSynchronize"}


def write() -> None:
    if OUT is not None:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(RESULTS, indent=2, default=str))


def run_phase(name: str, fn, *args, **kw) -> Any:
    """fn(*args, **kw), its result and seconds recorded under `name`; an exception is recorded, not raised."""
    t0 = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
        out = fn(*args, **kw)
        RESULTS["phases"][name] = {"ok": True, "seconds": time.perf_counter() - t0, "result": out}
        return out
    except Exception as exc:  # keep going: one failure (an OOM, a config) must not lose the other phases
        traceback.print_exc()
        RESULTS["phases"][name] = {"ok": False, "seconds": time.perf_counter() - t0}
        RESULTS["errors"][name] = f"{type(exc).__name__}: {exc}"
        print(f"!! {name} failed: {type(exc).__name__}: {exc}", flush=True)
        return None
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        write()


class Device:
    """The benchmark's device: synchronisation and peak memory (no-ops / None on a CPU)."""

    def __init__(self, name: str) -> None:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        self.name = name
        self.cuda = torch.device(name).type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_mb(self) -> Optional[float]:
        return torch.cuda.max_memory_allocated() / 2 ** 20 if self.cuda else None


def env(dev: Device) -> Dict[str, Any]:
    import gsplat
    out = {"python": platform.python_version(), "torch": torch.__version__, "gsplat": gsplat.__version__,
           "device": dev.name, "cuda_available": torch.cuda.is_available(), "torch_threads": torch.get_num_threads()}
    if dev.cuda:
        out.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                   gpu_memory_gb=torch.cuda.get_device_properties(0).total_memory / 2 ** 30)
    return out


def config(name: str, dev: Device, out_dir: Path, overrides: List[str]):
    """The config as omnire-train composes it, writing into `out_dir`; progress lines, snapshots and
    periodic checkpoints off (none is part of a step), TensorBoard scalars as configured."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(name, overrides=[f"output_dir={out_dir}", f"device={dev.name}", "log.progress=false",
                                        "log.snapshot_every=0", "checkpoint.every=0", *overrides])


def set_schedule(cfg, lengths: List[int]) -> List[Dict[str, Any]]:
    """The config's stages (names, features) with new lengths."""
    stages = OmegaConf.to_container(cfg.optim.stage_schedule, resolve=True)
    new = [dict(s, steps=int(n)) for s, n in zip(stages, lengths)]
    OmegaConf.update(cfg, "optim.stage_schedule", new, merge=False)
    return new


def build(cfg) -> SingleTrainer:
    configure_process(cfg)   # the config's threads and seeds, as omnire-train sets them
    return SingleTrainer(cfg, output_dir=cfg.output_dir)


class StepClock:
    """perf_counter at every step callback while `on` (a step's time: from one callback to the next)."""

    def __init__(self) -> None:
        self.on, self.marks = False, []

    def __call__(self, trainer, info) -> None:
        if self.on:
            self.marks.append((info.stage, time.perf_counter()))


def summarise_profile(prof, steps: int, wall_s: float, cuda: bool) -> Dict[str, Any]:
    events = prof.key_averages()
    count = {e.key: e.count for e in events}
    device_us = sum(getattr(e, "self_device_time_total", 0.0) for e in events) if cuda else None
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    return {
        "steps": steps,
        "wall_ms_per_step": 1e3 * wall_s / steps,
        "device_busy_ms_per_step": None if device_us is None else device_us / 1e3 / steps,
        "syncs_per_step": {k: count.get(v, 0) / steps for k, v in SYNC_EVENTS.items()},
        "top_host_ops": [{"op": e.key, "calls_per_step": e.count / steps,
                          "self_host_ms_per_step": e.self_cpu_time_total / 1e3 / steps} for e in top],
    }


def profile_steps(tr: SingleTrainer, steps: int, dev: Device) -> Dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.cuda else [])
    dev.sync()
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        tr.train(num_steps=steps)
        dev.sync()
    return summarise_profile(prof, steps, time.perf_counter() - t0, dev.cuda)


def audit_steps(tr: SingleTrainer, steps: int) -> Dict[str, float]:
    """'kind file:line' -> calls per step of what made the host wait (models.trainers.host_syncs)."""
    from models.trainers.host_syncs import HostSyncAudit
    with HostSyncAudit() as audit:
        tr.train(num_steps=steps)
    return {f"{kind} {site}": n / steps for (kind, site), n in sorted(audit.per_call_site().items())}


def stages_phase(name: str, dev: Device, args, overrides: List[str]) -> Dict[str, Any]:
    """One run through a shortened copy of the config's schedule; each stage timed and profiled."""
    tmp = Path(tempfile.mkdtemp(prefix=f"gpu_check_{name}_"))
    cfg = config(name, dev, tmp / "run", overrides)
    tail = args.steps + args.profile_steps + args.audit_steps   # the timed, profiled and audited steps
    configured = [int(s["steps"]) for s in OmegaConf.to_container(cfg.optim.stage_schedule, resolve=True)]
    lengths = [max(args.warmup + tail, round(args.stage_scale * n)) for n in configured]
    schedule = set_schedule(cfg, lengths[:-1] + [lengths[-1] + 1])   # one step more: never finishes
    t0 = time.perf_counter()
    tr = build(cfg)
    out: Dict[str, Any] = {"config": name, "schedule": schedule, "setup_s": time.perf_counter() - t0,
                           "render_backend": tr.render_backend, "stages": {}}
    clock = StepClock()
    tr.add_step_callback(clock)
    for stage, length in zip(schedule, lengths):
        row: Dict[str, Any] = {"gaussians_at_start": tr.num_gaussians}
        dev.reset_peak()
        t0 = time.perf_counter()
        tr.train(num_steps=length - tail)   # the stage start and the untimed rest
        dev.sync()
        row["warmup_steps"] = length - tail
        row["warmup_s"] = time.perf_counter() - t0
        clock.marks, clock.on = [], True
        t0 = time.perf_counter()
        tr.train(num_steps=args.steps)
        dev.sync()
        window = time.perf_counter() - t0
        clock.on = False
        times = [b - a for a, b in zip([t0] + [m for _, m in clock.marks], [m for _, m in clock.marks])]
        row.update(steps=len(times), median_ms=1e3 * statistics.median(times), mean_ms=1e3 * window / len(times),
                   steps_per_s=len(times) / window, gaussians=tr.num_gaussians,
                   stages_seen=sorted({s for s, _ in clock.marks}))
        if args.profile_steps > 0:
            row["profile"] = profile_steps(tr, args.profile_steps, dev)
        if args.audit_steps > 0:
            row["host_syncs_per_step"] = audit_steps(tr, args.audit_steps)
        row["peak_gpu_mb"] = dev.peak_mb()
        out["stages"][stage["name"]] = row
        print(f"   {name} {stage['name']}: {row['median_ms']:.2f} ms/step median, {row['steps_per_s']:.1f} steps/s, "
              f"{row['gaussians']} Gaussians", flush=True)
    return out


def full_schedule_phase(name: str, dev: Device, scale: float, overrides: List[str]) -> Dict[str, Any]:
    """The config's own schedule (times `scale`) end to end: per stage wall time, steps/s, peak memory."""
    tmp = Path(tempfile.mkdtemp(prefix=f"gpu_check_full_{name}_"))
    cfg = config(name, dev, tmp / "run", overrides)
    stages = OmegaConf.to_container(cfg.optim.stage_schedule, resolve=True)
    schedule = set_schedule(cfg, [max(1, round(s["steps"] * scale)) for s in stages]) if scale != 1.0 else stages
    t0 = time.perf_counter()
    tr = build(cfg)
    setup_s = time.perf_counter() - t0
    rows: Dict[str, Dict[str, Any]] = {}
    marks: Dict[str, list] = {}

    def on_stage(event, trainer, spec) -> None:
        dev.sync()
        now = time.perf_counter()
        if event == "stage_start":
            dev.reset_peak()
            rows[spec.name] = {"start": now, "gaussians_at_start": trainer.num_gaussians}
            marks[spec.name] = [now]
        else:
            finish(spec.name, now, trainer)

    def finish(stage: str, now: float, trainer) -> None:
        row, ts = rows[stage], marks[stage]
        times = [b - a for a, b in zip(ts, ts[1:])]
        wall = now - row.pop("start")
        row.update(steps=len(times), wall_s=wall, steps_per_s=len(times) / wall if wall > 0 else None,
                   median_ms=1e3 * statistics.median(times) if times else None,
                   gaussians=trainer.num_gaussians, peak_gpu_mb=dev.peak_mb())

    tr.add_stage_callback(on_stage)
    tr.add_step_callback(lambda trainer, info: marks[info.stage].append(time.perf_counter()))
    last = schedule[-1]["name"]
    t0 = time.perf_counter()
    tr.train()
    dev.sync()
    end = time.perf_counter()
    finish(last, marks[last][-1], tr)   # the last stage ends at its last step; then evaluation and exports
    return {"config": name, "schedule": schedule, "setup_s": setup_s, "train_s": end - t0,
            "finish_s": end - marks[last][-1], "stages": rows, "peak_gpu_mb_run": dev.peak_mb(),
            "metrics": json.loads((Path(cfg.output_dir) / "metrics.json").read_text()).get("test")}


def fmt(value, spec: str) -> str:
    return format("-", f">{spec.split('.')[0]}") if value is None else format(value, spec)


def print_table() -> None:
    print(f"\n{'phase':<28} {'stage':<9} {'steps':>6} {'ms/step':>8} {'steps/s':>8} {'gaussians':>9} "
          f"{'peak MB':>8} {'dev ms':>7} {'item':>5} {'nonzero':>7} {'sync':>5}")
    for phase, rec in RESULTS["phases"].items():
        res = rec.get("result") or {}
        for stage, row in (res.get("stages") or {}).items():
            prof = row.get("profile") or {}
            syncs = prof.get("syncs_per_step") or {}
            cuda_syncs = None if not syncs else syncs.get("stream_sync", 0) + syncs.get("device_sync", 0)
            print(f"{phase:<28} {stage:<9} {row.get('steps', 0):>6} {fmt(row.get('median_ms'), '8.2f')} "
                  f"{fmt(row.get('steps_per_s'), '8.1f')} {row.get('gaussians', 0):>9} "
                  f"{fmt(row.get('peak_gpu_mb'), '8.0f')} {fmt(prof.get('device_busy_ms_per_step'), '7.2f')} "
                  f"{fmt(syncs.get('item'), '5.1f')} {fmt(syncs.get('nonzero'), '7.1f')} {fmt(cuda_syncs, '5.1f')}")
    print("ms/step: median between step callbacks; dev ms: the kernels' busy time per step (profiled); "
          "item / nonzero / sync: calls per step (profiled; item counts CPU scalars too)")
    for phase, rec in RESULTS["phases"].items():
        for stage, row in ((rec.get("result") or {}).get("stages") or {}).items():
            if row.get("host_syncs_per_step") is not None:
                print(f"\n{phase} {stage}: what made the host wait, calls per step")
                for site, n in row["host_syncs_per_step"].items():
                    print(f"  {n:6.2f}  {site}")


def main(argv=None) -> int:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="step_check.json")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:N or cpu")
    ap.add_argument("--configs", default="omnire_sugar_quick,omnire_sugar", help="comma-separated config names")
    ap.add_argument("--steps", type=int, default=200, help="timed steps per stage")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps at the start of each stage")
    ap.add_argument("--profile-steps", type=int, default=20, help="profiled steps per stage (0: no profile)")
    ap.add_argument("--audit-steps", type=int, default=5, help="steps per stage whose synchronisations are "
                    "listed by call site (0: none)")
    ap.add_argument("--stage-scale", type=float, default=0.0,
                    help="stage runs: each stage at least this times its configured steps (1: the config's own "
                         "schedule, timed at the end of each stage)")
    ap.add_argument("--full-schedule", action="store_true", help="also train --full-config's schedule end to end")
    ap.add_argument("--full-config", default="omnire_sugar")
    ap.add_argument("--full-scale", type=float, default=1.0, help="each stage of the full schedule times this")
    ap.add_argument("overrides", nargs="*", help="config overrides for every run (KEY=VALUE)")
    args = ap.parse_args(argv)
    if (args.steps < 1 or args.warmup < 1 or min(args.profile_steps, args.audit_steps, args.stage_scale) < 0
            or args.full_scale <= 0):
        ap.error("--steps and --warmup must be >= 1, --profile-steps, --audit-steps and --stage-scale >= 0, "
                 "--full-scale > 0")
    OUT = Path(args.out)
    dev = Device(args.device)
    RESULTS["args"] = vars(args)
    run_phase("env", env, dev)
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        run_phase(f"stages:{name}", stages_phase, name, dev, args, args.overrides)
    if args.full_schedule:
        run_phase(f"full_schedule:{args.full_config}", full_schedule_phase, args.full_config, dev,
                  args.full_scale, args.overrides)
    print_table()
    write()
    print(f"wrote {OUT}; errors: {RESULTS['errors'] or 'none'}")
    return 1 if RESULTS["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
