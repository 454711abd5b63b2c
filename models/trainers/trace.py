"""The run's stage-transition trace: a JSON-lines file in `<output_dir>/trace/`.

The first record of each process (a start or a resume) is the full command line that started it;
then one record per stage transition: time, step, from, to and the entropy weights.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

TRACE_FILE = "stage_transitions.jsonl"


class StageTrace:
    def __init__(self, trace_dir: os.PathLike, argv: Optional[list] = None, resumed_from: Optional[str] = None):
        self.path = Path(trace_dir) / TRACE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        argv = list(sys.argv if argv is None else argv)
        self._write({"event": "command", "time": time.time(), "command": shlex.join([sys.executable] + argv),
                     "argv": argv, "cwd": os.getcwd(), "resumed_from": resumed_from})

    def transition(self, step: int, from_stage: Optional[str], to_stage: str,
                   weight_from: Optional[float], weight_to: float) -> None:
        self._write({"event": "transition", "time": time.time(), "step": step, "from": from_stage,
                     "to": to_stage, "weights": {"from": weight_from, "to": weight_to}})

    def _write(self, record: Dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_trace(trace_dir: os.PathLike) -> list:
    path = Path(trace_dir) / TRACE_FILE
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
