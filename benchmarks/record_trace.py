"""Record the seed's acceptance run into state/trace/T-FR-ARCH-001/.

    .venv/bin/python -m benchmarks.record_trace [--config-name omnire_sugar_quick] [--stop-after 800]

Runs a real training in two processes: the first stops after `--stop-after` steps (the quick
schedule's equivalent of the seed's 8,000-step checkpoint) and writes a checkpoint; the second
continues it with resume=true to the end. Writes the command lines, each process's INFO output,
the run's stage-transition trace and a summary of the seed's acceptance checks.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd, log_path: Path) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_path.write_text(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:])
        raise SystemExit(f"command failed ({proc.returncode}): {shlex.join(cmd)}")
    print(f"{time.time() - t0:7.1f} s  {shlex.join(cmd)}")
    return proc.stdout


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-name", default="omnire_sugar_quick")
    ap.add_argument("--stop-after", type=int, default=800)
    ap.add_argument("--run-dir", default="outputs/trace_T-FR-ARCH-001")
    ap.add_argument("--out", default="state/trace/T-FR-ARCH-001")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for both processes")
    args = ap.parse_args(argv)
    run_dir, out = REPO / args.run_dir, REPO / args.out
    shutil.rmtree(run_dir, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "omnire_cli.train", "--config-name", args.config_name, f"output_dir={args.run_dir}",
            "log.progress=false", *args.overrides]
    first = base + [f"stop_after={args.stop_after}"]
    second = base + ["resume=true"]
    log1 = run(first, out / "run1_until_checkpoint.log")
    log2 = run(second, out / "run2_resumed.log")
    shutil.copy(run_dir / "trace" / "stage_transitions.jsonl", out / "stage_transitions.jsonl")
    if (run_dir / "metrics.json").is_file():
        shutil.copy(run_dir / "metrics.json", out / "metrics.json")
    (out / "commands.txt").write_text("\n".join(shlex.join(["python"] + c[1:]) for c in (first, second)) + "\n")

    resumed = re.search(r"resumed from (\S+) at step (\d+) \(stage (\w+), step (\d+) of (\d+)\)", log2)
    records = [json.loads(line) for line in (out / "stage_transitions.jsonl").read_text().splitlines()]
    transitions = [r for r in records if r["event"] == "transition"]
    sugar = next((r for r in transitions if r["to"] == "sugar"), None)
    checks = {
        "resumed_from": resumed.group(1) if resumed else None,
        "resumed_step": int(resumed.group(2)) if resumed else None,
        "current_stage_after_resume": resumed.group(3) if resumed else None,
        "stage_step_after_resume": int(resumed.group(4)) if resumed else None,
        "sugar_weight_on_first_sugar_step": sugar["weights"]["to"] if sugar else None,
        "first_sugar_step": sugar["step"] if sugar else None,
        "commands_in_trace": [r["command"] for r in records if r["event"] == "command"],
        "transitions": [(r["step"], r["from"], r["to"], r["weights"]) for r in transitions],
    }
    (out / "acceptance.json").write_text(json.dumps(checks, indent=2) + "\n")
    info = [ln for ln in (log1 + log2).splitlines() if "[INFO]" in ln or "[WARNING]" in ln]
    print("\n".join(info))
    print(json.dumps(checks, indent=2))


if __name__ == "__main__":
    main()
