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
    views = trainer.scene.train_views
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
