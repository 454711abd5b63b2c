"""One scene of a sweep: status file, failures, and the two preemption paths (with a stand-in trainer)."""
from __future__ import annotations

import json
import os
import signal

import pytest
from hydra.conf import HydraConf
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from sweeps.job import INTERRUPTED_EXIT, run_sweep_job


class StandIn:
    """What run_sweep_job reads of a trainer."""

    def __init__(self, total=10):
        self.step, self.total, self.stops = 0, total, []

    @property
    def finished(self):
        return self.step >= self.total

    def request_stop(self, signum):
        self.stops.append(signum)


@pytest.fixture
def job(tmp_path):
    out = tmp_path / "sweep" / "023"
    hydra = OmegaConf.create({"hydra": OmegaConf.structured(HydraConf)})
    hydra.hydra.runtime.output_dir = str(out)
    HydraConfig.instance().set_config(hydra)
    cfg = OmegaConf.create({"scene": {"type": "processed", "path": "/data/023"}, "output_dir": "sweep",
                            "resume": None, "stop_after": None})
    previous = signal.getsignal(signal.SIGUSR2)
    yield cfg, out
    signal.signal(signal.SIGUSR2, previous)


def status(out):
    return json.loads((out / "job.json").read_text())


def test_a_finished_scene_trains_into_its_folder_with_resume_auto(job):
    cfg, out = job
    seen = {}

    def train(cfg, argv=None, on_built=None):
        seen.update(output_dir=cfg.output_dir, resume=cfg.resume)
        t = StandIn()
        on_built(t)
        t.step = 10
        return t

    result = run_sweep_job(cfg, train=train)
    assert seen == {"output_dir": str(out), "resume": "auto"}
    assert result == {"scene": "023", "status": "finished", "step": 10, "output_dir": str(out)}
    st = status(out)
    assert st["status"] == "finished" and st["attempts"][0]["step_start"] == 0 and st["attempts"][0]["step_end"] == 10


def test_a_failing_scene_is_reported_in_one_line_and_raised(job):
    cfg, out = job

    def train(cfg, argv=None, on_built=None):
        raise ValueError("scene /data/023: images/000_0.jpg is not an image\n(details)")

    with pytest.raises(ValueError):
        run_sweep_job(cfg, train=train)
    st = status(out)
    assert st["status"] == "failed" and st["error"] == "ValueError: scene /data/023: images/000_0.jpg is not an image"


def test_preemption_signal_checkpoints_first_then_hands_over_to_submitit(job):
    cfg, out = job
    calls = []
    trainer = StandIn()

    def submitit_handler(signum, frame):          # stands in for submitit's checkpoint_and_try_requeue
        calls.append(("submitit", trainer.step, status(out)["status"]))
        raise SystemExit(-1)

    signal.signal(signal.SIGUSR2, submitit_handler)

    def train(cfg, argv=None, on_built=None):
        on_built(trainer)
        os.kill(os.getpid(), signal.SIGUSR2)       # arrives while "training"
        trainer.step = 4                          # the trainer saw request_stop, finished its step, saved
        return trainer

    with pytest.raises(SystemExit):
        run_sweep_job(cfg, train=train)
    assert trainer.stops == [signal.SIGUSR2]
    assert calls == [("submitit", 4, "requeued")]
    assert signal.getsignal(signal.SIGUSR2) is submitit_handler     # handed back


def test_a_signal_before_training_stops_after_the_first_step(job):
    cfg, out = job
    trainer = StandIn()
    signal.signal(signal.SIGUSR2, lambda s, f: (_ for _ in ()).throw(SystemExit(-1)))

    def train(cfg, argv=None, on_built=None):
        os.kill(os.getpid(), signal.SIGUSR2)       # while the scene loads
        on_built(trainer)
        trainer.step = 1
        return trainer

    with pytest.raises(SystemExit):
        run_sweep_job(cfg, train=train)
    assert trainer.stops == [signal.SIGUSR2] and status(out)["attempts"][-1]["status"] == "requeued"


def test_sigterm_stop_exits_without_a_result_and_a_second_attempt_continues(job):
    cfg, out = job

    def stopped(cfg, argv=None, on_built=None):   # SIGTERM: the trainer saved at step 6 and returned
        t = StandIn()
        on_built(t)
        t.step = 6
        return t

    with pytest.raises(SystemExit) as exc:
        run_sweep_job(cfg, train=stopped)
    assert exc.value.code == INTERRUPTED_EXIT and status(out)["status"] == "interrupted"

    def resumed(cfg, argv=None, on_built=None):
        t = StandIn()
        t.step = 6                                # resume=auto found the checkpoint
        on_built(t)
        t.step = 10
        return t

    run_sweep_job(cfg, train=resumed)
    st = status(out)
    assert st["status"] == "finished"
    assert [(a["status"], a["step_start"], a["step_end"]) for a in st["attempts"]] == [
        ("interrupted", 0, 6), ("finished", 6, 10)]
