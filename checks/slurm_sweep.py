"""`make test-slurm`: a tiny sweep on the single-node SLURM of tools/slurm/setup_local_slurm.sh.

1. writes three tiny street scenes (processed layout) and submits them as one sweep
   (hydra/launcher=slurm, one CPU and one torch thread per job);
2. in the middle of training, requeues one job with `scontrol requeue` (SLURM's SIGTERM: the
   trainer writes a checkpoint and the job exits; SLURM starts it again) and signals another with
   SIGUSR2 through `scancel --signal` (submitit's timeout/preemption protocol: checkpoint, then
   submitit requeues it);
3. checks that every scene finished, that the two interrupted jobs ran more than once and
   continued from their checkpoints, and that each ends bitwise equal to an uninterrupted run of the
   same scene (a second sweep on the same cluster): exported PLY bytes, metrics, final checkpoint;
4. prints the gather table of both sweeps.

    .venv/bin/python -m checks.slurm_sweep [--work outputs/test_slurm] [--record FILE]

Exit status 0 when every check passed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

from sweeps.compare import run_differences  # noqa: E402
from sweeps.gather import gather, to_markdown  # noqa: E402

SCENES = {"alpha": 0, "bravo": 1, "charlie": 2}
SCENE_ARGS = dict(num_frames=4, cameras=[0], width=48, height=32, moving_cars=1, parked_cars=2, trees=2, poles=1,
                  lidar_beams=16, lidar_azimuths=180, supersample=1)
# 20 / 5 / 15 steps: every stage, a checkpoint every 5 steps; one thread so that runs are bitwise reproducible
TRAIN = ["optim.stage_schedule=[{name:pretrain,steps:20},{name:entropy,steps:5},{name:sugar,steps:15}]",
         "densify.refine_start_iter=2", "densify.refine_every=2", "densify.reset_every=1000",
         "densify.grow_grad2d=0.00005", "model.init_opacity=0.6", "model.sh_degree_interval=3",
         "sugar.num_samples=500", "sugar.knn=8", "sugar.knn_every=3", "checkpoint.every=5", "checkpoint.keep=0",
         "log.progress=false", "log.snapshot_every=10", "num_threads=1", "scene.test_every=4",
         "scene.max_init_points=400"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=30", "hydra.launcher.poll_s=2"]


class Log:
    def __init__(self, record: Path | None) -> None:
        self.lines: list = []
        self.record = record

    def __call__(self, msg: str = "") -> None:
        print(msg, flush=True)
        self.lines.append(msg)

    def save(self) -> None:
        if self.record is not None:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            self.record.write_text("\n".join(self.lines) + "\n", encoding="utf-8")


def make_scenes(root: Path) -> dict:
    from scenes import SyntheticParams, generate
    paths = {}
    for name, seed in SCENES.items():
        folder = root / name
        if not (folder / ".complete.json").exists():
            generate(SyntheticParams(seed=seed, **SCENE_ARGS), folder)
        paths[name] = folder
    return paths


def sweep_command(out: Path, scenes: list) -> list:
    return [str(REPO / ".venv/bin/python"), "-m", "omnire_cli.train", "--config-name", "omnire_sugar_quick",
            "--multirun", *SLURM, "scene=processed", "scene.path=" + ",".join(str(s) for s in scenes),
            f"output_dir={out}", *TRAIN]


def checkpoint_steps(run: Path) -> list:
    return sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("step_*.pt"))


def job_status(run: Path) -> dict:
    try:
        return json.loads((run / "job.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the sweep ended (status {proc.returncode}) before {what}")
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs/test_slurm")
    parser.add_argument("--record", type=Path, default=None, help="also write this output to a file")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for each sweep")
    args = parser.parse_args(argv)
    log = Log(args.record)
    if shutil.which("sbatch") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        log("error: no SLURM here; start the test cluster first: sudo sh tools/slurm/setup_local_slurm.sh")
        return 2
    work = args.work.resolve()
    for sub in ("sweep", "reference"):
        shutil.rmtree(work / sub, ignore_errors=True)
    t0 = time.time()
    scenes = make_scenes(work / "scenes")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log(f"# make test-slurm ({time.strftime('%Y-%m-%d %H:%M:%S %Z')}, host {os.uname().nodename}, "
        f"{os.cpu_count()} CPUs)")
    log(subprocess.run(["sinfo", "--version"], capture_output=True, text=True).stdout.strip()
        + "; " + subprocess.run(["sinfo", "-h", "-o", "partition %P, nodes %D, CPUs %c, state %T"],
                                capture_output=True, text=True).stdout.strip())
    failures: list = []

    # 1-2. the sweep, with two jobs interrupted in the middle
    sweep = work / "sweep"
    cmd = sweep_command(sweep, [scenes[n] for n in SCENES])
    log(f"\n## sweep: {' '.join(cmd[1:])}")
    logfile = open(work / "sweep.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logfile, stderr=subprocess.STDOUT)
    interrupts = {"alpha": ("scontrol requeue", lambda jid: ["scontrol", "requeue", jid]),
                  "bravo": ("SIGUSR2 (scancel --signal=USR2)", lambda jid: ["scancel", "--signal=USR2", jid])}
    try:
        for name, (how, command) in interrupts.items():
            run = sweep / name
            wait_for(lambda: any(s >= 10 for s in checkpoint_steps(run)), args.timeout,
                     f"{name} to reach step 10", proc)
            jid = job_status(run)["attempts"][-1]["job_id"]
            subprocess.run(command(jid), check=True)
            log(f"{name}: {how} of job {jid} at checkpoint step {max(checkpoint_steps(run))} "
                f"({time.time() - t0:.0f} s)")
        # SLURM keeps a requeued batch job pending for a while (~3 minutes here) before it is eligible
        # again; move the start of our two requeued jobs to now so that the check takes seconds.
        requeued = {job_status(sweep / n)["attempts"][0]["job_id"] for n in interrupts}
        end = time.time() + args.timeout
        while proc.poll() is None and time.time() < end:
            pending = subprocess.run(["squeue", "-h", "-r", "-t", "PD", "-o", "%i"], capture_output=True,
                                     text=True).stdout.split()
            for jid in set(pending) & requeued:
                if subprocess.run(["scontrol", "update", f"JobId={jid}", "StartTime=now"],
                                  capture_output=True).returncode == 0:
                    log(f"job {jid} requeued and pending: start time moved to now ({time.time() - t0:.0f} s)")
                    requeued.discard(jid)
            time.sleep(0.5)
        rc = proc.wait(timeout=max(1.0, end - time.time()))
    finally:
        if proc.poll() is None:
            proc.kill()
        logfile.close()
    log(f"sweep exit status {rc} ({time.time() - t0:.0f} s)")
    if rc != 0:
        failures.append(f"the sweep exited with status {rc} (log: {work / 'sweep.log'})")

    # 3. checks
    for name in SCENES:
        st = job_status(sweep / name)
        attempts = st.get("attempts", [])
        summary = ", ".join(f"{a['status']} {a['step_start']}->{a['step_end']} (job {a.get('job_id')}, restart "
                            f"{a.get('slurm_restart_count')})" for a in attempts)
        log(f"{name}: {st.get('status')}; attempts: {summary}")
        if st.get("status") != "finished":
            failures.append(f"{name} did not finish: {st.get('status')} {st.get('error') or ''}")
        if name in interrupts:
            if len(attempts) < 2 or attempts[0]["status"] not in ("interrupted", "requeued"):
                failures.append(f"{name} was not interrupted and requeued: {summary}")
            elif attempts[1]["step_start"] != attempts[0]["step_end"] or not attempts[1]["step_start"]:
                failures.append(f"{name}'s second attempt did not continue the checkpoint: {summary}")

    reference = work / "reference"
    cmd = sweep_command(reference, [scenes[n] for n in interrupts])
    log(f"\n## uninterrupted reference: {' '.join(cmd[1:])}")
    with open(work / "reference.log", "w") as f:
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=args.timeout).returncode
    log(f"reference exit status {rc} ({time.time() - t0:.0f} s)")
    for name in interrupts:
        diffs = run_differences(sweep / name, reference / name)
        log(f"{name}: requeued run vs uninterrupted run: " + ("bitwise identical (gaussians.ply bytes, metrics.json, "
                                                               "every tensor of the final checkpoint)"
                                                               if not diffs else "DIFFERENT: " + "; ".join(diffs[:5])))
        if diffs:
            failures.append(f"{name} differs from the uninterrupted run: {diffs[:3]}")

    # 4. tables
    log("\n## omnire-gather " + str(sweep.relative_to(REPO) if sweep.is_relative_to(REPO) else sweep))
    log(to_markdown(gather(sweep)))
    log("\n## omnire-gather " + str(reference.relative_to(REPO) if reference.is_relative_to(REPO) else reference))
    log(to_markdown(gather(reference)))
    log(f"\n{'PASSED' if not failures else 'FAILED'} in {time.time() - t0:.0f} s")
    for f in failures:
        log(f"  - {f}")
    log.save()
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
