"""The viewer in a real browser: tools/view.py on a tiny trained run, opened in headless Chromium.

Checks what a user sees: a frame is drawn (the canvas is not blank), the stage text is there, and
"Jump to camera" shows an image close to the trainer's own render of that training view (closer
than to the render of another view, so the check can tell a jump from no jump)."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from models.trainers.single import SingleTrainer
from tests.trainers.tiny_run import REPO, tiny_config

from .browser import browser, free_port, viewer_process

# what hides the GUI panel and notifications when the canvas alone is compared
HIDE_OVERLAYS = (".mantine-Paper-root, .mantine-Notification-root, .mantine-Notifications-root "
                 "{visibility: hidden !important}")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    trainer = SingleTrainer(tiny_config(root / "scene", root / "run"), output_dir=root / "run")
    trainer.train()
    return trainer, root / "run"


def canvas_image(page) -> np.ndarray:
    """float [H, W, 3] of the viewport with the GUI overlays hidden (the WebGL canvas fills it)."""
    style = page.add_style_tag(content=HIDE_OVERLAYS)
    try:
        png = page.screenshot()
    finally:
        style.evaluate("el => el.remove()")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255.0


def area_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((width, height), Image.BOX),
                      dtype=np.float32) / 255.0


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last is not None and last is not False:
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_viewer_draws_and_jumps_to_a_training_camera(tiny_run, tmp_path):
    trainer, run = tiny_run
    views = trainer.dataset.train_views
    target = len(views) - 1  # not the camera a new browser starts at (training view 0)
    view, other = views[target], views[0]
    want = trainer.render_view(view)[0].numpy()
    other_render = trainer.render_view(other)[0].numpy()
    W, H = view.width, view.height
    port = free_port()
    with viewer_process([run, "--port", port, "--host", "127.0.0.1", "--device", "cpu",
                         "--render-height", 4 * H], REPO) as (_, url), browser() as b:
        page = b.new_page(viewport={"width": 20 * W, "height": 20 * H})  # the view's aspect: no letterboxing
        page.goto(url)
        page.wait_for_selector("canvas", timeout=60_000)
        # the status text: stage and step of the checkpoint
        wait_for(lambda: "stage step" in page.inner_text("body"), 60, "the stage text")
        text = page.inner_text("body")
        assert "sugar" in text and "15 / 15" in text and f"{trainer.num_gaussians:,}" in text, text

        # a frame was drawn: not one flat colour
        first = wait_for(lambda: (lambda img: img if img.std() > 0.02 else None)(canvas_image(page)), 60,
                         "a non-blank canvas")
        page.screenshot(path=str(tmp_path / "first.png"))

        # hide the frusta (they would draw over the comparison), then jump through the GUI
        page.get_by_label("Show cameras").click()
        page.get_by_label("Jump to camera").click()
        label = [o for o in page.get_by_role("option").all_inner_texts() if o.startswith(f"train {target}:")]
        assert label, page.get_by_role("option").all_inner_texts()
        page.get_by_role("option", name=label[0]).click()

        def jumped():
            img = area_resize(canvas_image(page), W, H)
            return img if np.abs(img - want).mean() < 0.5 * np.abs(img - other_render).mean() else None

        got = wait_for(jumped, 60, "the render of the chosen training camera")
        page.screenshot(path=str(tmp_path / "jumped.png"))
    err = np.abs(got - want)
    # inner part (the frame border and the axes gizmo in a corner are the browser's)
    inner = err[2:-2, 4:-4]
    assert inner.mean() < 0.04, f"mean abs difference {inner.mean():.3f} to the training render"
    assert np.abs(got - other_render).mean() > 2 * inner.mean()
    assert not np.allclose(first, first.mean(axis=(0, 1)), atol=0.02)


@pytest.mark.slow
def test_live_training_viewer_pauses_and_resumes(tiny_run, tmp_path):
    """`tools/train.py ... viewer=true`: the browser shows the training stage and step; Pause
    training stops the steps, Resume lets the run finish; the viewer stays up after training."""
    import os
    import signal
    import subprocess
    import sys

    from tests.trainers.tiny_run import TINY_SCENE, TINY_TRAINING

    _, run = tiny_run
    port = free_port()
    longer = [o for o in TINY_TRAINING if not o.startswith("optim.stage_schedule")]
    cmd = [sys.executable, "tools/train.py", "--config-name", "omnire_sugar_quick", *TINY_SCENE, *longer,
           f"scene.path={run.parent / 'scene'}", f"output_dir={tmp_path / 'live'}", "viewer=true",
           f"viewer_port={port}", "optim.stage_schedule=[{name:pretrain,steps:40},{name:entropy,steps:10},"
           "{name:sugar,steps:10}]"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    log = open(tmp_path / "train.out", "w")  # a file, not a pipe: nobody reads it while the browser runs
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 960, "height": 640})
            wait_for(lambda: _try_goto(page, f"http://127.0.0.1:{port}"), 120, "the live viewer")
            wait_for(lambda: "(training)" in page.inner_text("body"), 120, "the training status")
            page.get_by_role("button", name="Pause training").click()
            wait_for(lambda: "(paused)" in page.inner_text("body"), 30, "the paused status")
            time.sleep(1.0)
            paused_at = _shown_step(page)
            time.sleep(3.0)
            assert _shown_step(page) == paused_at, "training went on while paused"
            page.get_by_role("button", name="Resume training").click()
            wait_for(lambda: "(finished)" in page.inner_text("body"), 300,
                     f"the end of training ({(tmp_path / 'train.out').read_text()[-2000:]})")
            assert "60 / 60" in page.inner_text("body")
        assert proc.poll() is None, "the viewer should stay up after training until Ctrl-C"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    out = (tmp_path / "train.out").read_text()
    assert "Traceback" not in out, out[-3000:]
    assert (tmp_path / "live" / "exports" / "gaussians.ply").is_file()


def _try_goto(page, url) -> bool:
    try:
        page.goto(url, timeout=5_000)
        page.wait_for_selector("canvas", timeout=30_000)
        return True
    except Exception:  # not listening yet
        time.sleep(1.0)
        return False


def _shown_step(page) -> int:
    import re
    m = re.search(r"step\s+(\d+)\s*/\s*60\b", page.inner_text("body"))
    assert m, page.inner_text("body")
    return int(m.group(1))
