"""Trainers: BasicTrainer (stage machinery), SingleTrainer (one model), MultiTrainer (scene graph)."""
from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Optional


def _user_errors() -> tuple:
    from models.trainers.base import NonFiniteLossError
    from models.trainers.checkpoint import CheckpointSaveError
    return (ValueError, KeyError, FileNotFoundError, CheckpointSaveError, NonFiniteLossError)


# What a command line reports as one `error: ...` line (bad config / scene / checkpoint values, a
# missing file, a failed checkpoint write, a diverged run) instead of a traceback.
USER_ERRORS = _user_errors()


def build_trainer(cfg: Any, argv: Optional[list] = None):
    """The configured trainer class (`trainer` key), built for training. It leaves the process as it
    finds it; an entry point that trains calls `configure_process(cfg)` first (as `run_training` does)."""
    from models.trainers.inference import TRAINERS, trainer_class
    from models.trainers.config_schema import training_config
    cfg = training_config(cfg)
    if cfg.trainer not in TRAINERS:
        raise ValueError(f"trainer={cfg.trainer!r} is not a trainer; expected one of {', '.join(TRAINERS)}")
    cls = trainer_class(cfg.trainer)
    return cls(cfg, output_dir=cfg.output_dir, resume=cfg.resume, argv=argv)


def configure_process(cfg: Any):
    """The process set-up of an entry point that trains: torch threads from `num_threads` (CPU) and
    the global RNGs seeded from `seed` (models.trainers.rng.configure_process)."""
    from models.trainers.rng import configure_process as configure
    return configure(cfg)


def run_training(cfg: Any, argv: Optional[list] = None, on_built: Optional[Callable[[Any], None]] = None):
    """Set up the process (`configure_process`: threads, global seeds), build the configured trainer
    and run it to the end of its schedule (or until SIGTERM). `on_built(trainer)` is called before
    training starts (a sweep job attaches its preemption handler)."""
    logging.getLogger("models").setLevel(logging.INFO)
    cfg = configure_process(cfg)   # the checked, typed config
    trainer = build_trainer(cfg, argv=list(sys.argv if argv is None else argv))
    if on_built is not None:
        on_built(trainer)
    viewer = None
    if cfg.viewer:
        from models.viewer.server import attach_live_viewer
        viewer = attach_live_viewer(trainer, cfg)
    stop_after = cfg.stop_after
    if stop_after is None:
        trainer.train()
    else:
        trainer.train(num_steps=max(0, int(stop_after) - trainer.step))
        if not trainer.finished:
            path = trainer.save_checkpoint()
            logging.getLogger("models.trainers").info(
                "stopped after step %d as asked (stop_after=%d): %s; continue with resume=true",
                trainer.step, int(stop_after), path)
    if viewer is not None:
        logging.getLogger("models.viewer").info("training ended at step %d; the viewer stays up at "
                                                "http://localhost:%d until Ctrl-C", trainer.step, viewer.port)
        viewer.serve_forever()
    return trainer
