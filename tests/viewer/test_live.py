"""The viewer's parts that need no browser: render modes, the live step callback, pause / resume."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import torch

from models.trainers.single import SingleTrainer
from models.viewer import adapter
from models.depth_normals import normals_from_depth
from models.viewer.server import RENDER_MODES, ViewerServer, camera_intrinsics, mode_image
from tests.trainers.tiny_run import tiny_config

from .browser import free_port


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    return SingleTrainer(tiny_config(root / "scene", root / "run"), output_dir=None)


def test_normals_from_depth_of_a_tilted_plane():
    K, W, H = camera_intrinsics(math.radians(60), 1.5, 48)
    n_true = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, -1.0]), dim=0)  # facing the camera
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    rays = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
    depth = -5.0 / (rays @ n_true)  # the plane n·x = -5 hit at x = depth · ray
    valid = torch.ones(H, W, dtype=torch.bool)
    valid[:, :5] = False
    n = normals_from_depth(depth, K, valid)
    inner = n[:, 7:]  # away from the invalid columns, whose zero depth bends their neighbours' gradients
    assert torch.allclose(inner, n_true.expand_as(inner), atol=1e-4)
    assert not n[~valid].any()


def test_every_render_mode_makes_a_picture(trainer):
    view = trainer.dataset.train_views[0]
    rgb, alpha, depth = adapter.render(trainer, view.camera_to_world, view.K, view.width, view.height,
                                       view.frame_idx)
    want_rgb = trainer.render_view(view)[0]
    assert torch.allclose(rgb, want_rgb, atol=1e-5)  # the same render as the trainer's own at a training camera
    pics = {m: mode_image(m, rgb, alpha, depth, view.K) for m in RENDER_MODES}
    for m, pic in pics.items():
        assert pic.shape == (view.height, view.width, 3) and pic.dtype == np.uint8, m
        assert pic.std() > 1, f"{m} is one flat colour"
    assert len({p.tobytes() for p in pics.values()}) == len(RENDER_MODES)
    with pytest.raises(ValueError, match="render mode 'x'"):
        mode_image("x", rgb, alpha, depth, view.K)


def test_live_viewer_costs_nothing_unwatched_and_pauses_training(trainer):
    viewer = ViewerServer(trainer, host="127.0.0.1", port=free_port(), live=True)
    try:
        start = trainer.step
        trainer.train(num_steps=2)
        assert trainer.step == start + 2
        assert viewer.renders_done == 0 and not viewer._rendered  # nobody connected: nothing rendered
        text = viewer.status_text()
        assert "pretrain" in text and f"{trainer.step} / {trainer.total_steps}" in text and "Gaussians" in text

        viewer.toggle_pause()
        assert viewer.paused and viewer.pause.label == "Resume training"
        worker = threading.Thread(target=trainer.train, kwargs={"num_steps": 2})
        worker.start()
        time.sleep(2.0)
        assert worker.is_alive() and trainer.step == start + 2, "training went on while paused"
        assert "(paused)" in viewer.status.content
        viewer.toggle_pause()
        worker.join(timeout=60)
        assert not worker.is_alive() and trainer.step == start + 4
    finally:
        viewer.stop()
