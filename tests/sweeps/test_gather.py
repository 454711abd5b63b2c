"""tools/gather.py: one table over a sweep's scene folders."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweeps.gather import GatherInputError, gather, to_csv, to_json, to_markdown

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = {"optim": {"stage_schedule": [{"name": "pretrain", "steps": 7}, {"name": "entropy", "steps": 2},
                                         {"name": "sugar", "steps": 6}]}}


def scene(root: Path, name: str, *, ckpts=(), metrics=None, job=None, evaluation=None, config=True) -> Path:
    folder = root / name
    (folder / "checkpoints").mkdir(parents=True)
    if config:
        (folder / "config.yaml").write_text(yaml.safe_dump(SCHEDULE))
    for step in ckpts:
        (folder / "checkpoints" / f"step_{step:06d}.pt").write_bytes(b"")
    for file, data in (("metrics.json", metrics), ("job.json", job), ("eval.json", evaluation)):
        if data is not None:
            (folder / file).write_text(json.dumps(data))
    return folder


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "fleet"
    scene(root, "alpha", ckpts=(10, 15), metrics={"step": 15, "num_gaussians": 1234,
                                                  "test": {"psnr": 21.5, "ssim": 0.75, "views": 2}},
          job={"scene": "alpha", "status": "finished", "error": None, "wall_time_s": 12.0,
               "attempts": [{"start": 0, "end": 5, "step_end": 8}, {"start": 9, "end": 16, "step_end": 15}]},
          evaluation={"surface": {"chamfer": 0.1234, "fscore": 0.5, "normal_consistency": 0.8}})
    scene(root, "broken", job={"scene": "broken", "status": "failed", "wall_time_s": 1.0,
                               "error": "SceneFormatError: intrinsics/0.txt: expected 9 numbers",
                               "attempts": [{"start": 0, "end": 1, "step_end": None}]})
    scene(root, "charlie", ckpts=(8,))                           # a run without job.json, stopped at step 8
    (root / ".submitit" / "1").mkdir(parents=True)               # launcher files are not scenes
    (root / "multirun.yaml").write_text("{}")
    return root


def test_one_row_per_scene_with_what_the_run_wrote(sweep):
    rows = {r["scene"]: r for r in gather(sweep)}
    assert list(rows) == ["alpha", "broken", "charlie"]
    a = rows["alpha"]
    assert (a["status"], a["steps"], a["total_steps"], a["stage"]) == ("finished", 15, 15, "sugar (done)")
    assert (a["psnr"], a["ssim"], a["gaussians"], a["chamfer"], a["attempts"]) == (21.5, 0.75, 1234, 0.1234, 2)
    b = rows["broken"]
    assert b["status"] == "failed" and b["steps"] is None and b["error"].startswith("SceneFormatError")
    c = rows["charlie"]
    assert (c["status"], c["steps"], c["stage"]) == ("partial", 8, "entropy")


def test_markdown_csv_and_json_hold_the_same_table(sweep):
    rows = gather(sweep)
    md = to_markdown(rows)
    assert "| alpha | finished | 15/15 | sugar (done) | 21.50 | 0.7500 | 1234 | 0.1234 |" in md
    assert "- broken: SceneFormatError: intrinsics/0.txt: expected 9 numbers" in md
    assert md.rstrip().endswith("3 scene(s): 1 failed, 1 finished, 1 partial")
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [r["scene"] for r in table] == ["alpha", "broken", "charlie"] and table[0]["psnr"] == "21.5"
    assert json.loads(to_json(rows))[1]["error"] == rows[1]["error"]


def test_cli_writes_the_three_files_and_rejects_a_folder_without_scenes(sweep, tmp_path):
    tool = [sys.executable, str(REPO / "tools/gather.py")]
    out = subprocess.run(tool + [str(sweep)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "| charlie | partial | 8/15 | entropy |" in out.stdout
    assert {p.name for p in sweep.glob("results.*")} == {"results.md", "results.csv", "results.json"}
    (tmp_path / "empty").mkdir()
    bad = subprocess.run(tool + [str(tmp_path / "empty")], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "holds no scene folder" in bad.stderr
    with pytest.raises(GatherInputError, match="no such folder"):
        gather(tmp_path / "nope")
