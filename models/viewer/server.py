"""A live web viewer on viser (the library under gsplat's nerfview and nerfstudio's viewer).

Each connected browser gets the scene rendered from its own free camera by this project's
rasterizer (models.rendering: the PyTorch backend on CPU, gsplat on CUDA) and shown as viser's
background image, in one of the render modes RGB / depth / alpha / normals (from the depth). Around
it: the training and test cameras as frusta (click one, or pick it in "Jump to camera", to look
through it), the extracted mesh when the run has one, the scene graph's rigid nodes as boxes posed
at the frame of the time slider (the render composes the nodes at that frame too), and for a live
run the stage, stage step, step, loss and Gaussian count, with pause / resume of training.

Cost when nobody is connected: the render thread sleeps on an event, and the per-step callback
of a live run returns after one lock release and one dictionary lookup (measured by
benchmarks/bench_viewer.py). Training and rendering share the Gaussians through one lock held
for a training step and, by the viewer, only while it copies the composed Gaussians.

The world is the training world (z up); viser's cameras and frusta follow OpenCV conventions, as
ours do.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from models.cameras import field_of_view
from models.depth_normals import normals_from_depth
from models.rendering.projection import quat_to_rotmat
from models.viewer import adapter, scene_layers

logger = logging.getLogger("models.viewer")

RENDER_MODES = ("RGB", "depth", "alpha", "normals")
FREE = "(free camera)"


# ----- images ---------------------------------------------------------------------------------------
def mode_image(mode: str, rgb: torch.Tensor, alpha: torch.Tensor, depth: Optional[torch.Tensor],
               K: torch.Tensor) -> np.ndarray:
    """uint8 [H, W, 3] picture of one render mode."""
    from models.trainers.monitor import colorize_depth

    if mode == "RGB":
        img = rgb.float().cpu().numpy()
    elif mode == "alpha":
        img = np.repeat(alpha.float().cpu().numpy()[..., None], 3, axis=2)
    elif mode == "depth":
        img = colorize_depth(depth, alpha)
    elif mode == "normals":
        d = depth.float().cpu()
        valid = (alpha.cpu() > 0.5) & torch.isfinite(d) & (d > 0)
        n = normals_from_depth(d, K.float().cpu(), valid)
        img = ((n * torch.tensor([1.0, -1.0, -1.0]) + 1) / 2 * valid[..., None]).numpy()  # x right, y up, z out
    else:
        raise ValueError(f"render mode {mode!r}: expected one of {', '.join(RENDER_MODES)}")
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def camera_intrinsics(fov_y: float, aspect: float, height: int) -> Tuple[torch.Tensor, int, int]:
    """(K, width, height) of a pinhole camera with vertical field of view ``fov_y`` (radians)."""
    height = max(8, int(height))
    width = max(8, int(round(height * aspect)))
    f = 0.5 * height / math.tan(0.5 * fov_y)
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return K, width, height


def view_label(split: str, i: int, view) -> str:
    from models.run import view_image_name
    return f"{split} {i}: {view_image_name(view)}"


# ----- the server -------------------------------------------------------------------------------------
class ViewerServer:
    """Serve a scene on http://host:port: a run opened by models.run.open_run (its GaussianScene and
    cameras) or, with ``live``, a training run's trainer (step callback, pause)."""

    def __init__(self, source, *, host: str = "0.0.0.0", port: int = 8080, run_dir: Optional[Path] = None,
                 live: bool = False, render_height: Optional[int] = None, train_render_interval: float = 1.0):
        import viser

        self.source = source  # the trainer or the OpenedRun: its progress too
        self.gaussians, self.cameras, _, _ = adapter.parts(self.source)
        self.live = live
        self.lock = threading.RLock()
        self.scene_version = 0
        self.settings_version = 0
        self.train_render_interval = float(train_render_interval)
        self._last_train_render = 0.0
        self._last_stats = 0.0
        self._rendered: Dict[int, Any] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self.renders_done = 0
        cameras = self.cameras
        self.views: List[Tuple[str, Any]] = ([("train", v) for v in cameras.train_views]
                                             + [("test", v) for v in cameras.test_views])
        self.labels = [view_label(split, i, v) for i, (split, v) in enumerate(self.views)]
        self.frames = sorted(int(f) for f in cameras.frames)
        if render_height is None:
            render_height = 720 if self.gaussians.device.type == "cuda" else 240

        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.port = self.server.get_port()
        self.server.scene.set_up_direction("+z")  # the training world: first ego frame, z up
        gui = self.server.gui
        self.status = gui.add_markdown(self.status_text())
        self.mode = gui.add_dropdown("Render mode", RENDER_MODES, initial_value="RGB")
        self.frame = gui.add_slider("Frame", min=self.frames[0], max=max(self.frames[-1], self.frames[0] + 1), step=1,
                                    initial_value=int(self.views[0][1].frame_idx) if self.views else self.frames[0],
                                    disabled=len(self.frames) < 2)
        self.jump = gui.add_dropdown("Jump to camera", [FREE] + self.labels, initial_value=FREE)
        self.height = gui.add_slider("Render height (px)", min=32, max=1440, step=8, initial_value=int(render_height))
        self.show_cameras = gui.add_checkbox("Show cameras", True)
        self.pause = gui.add_button("Pause training", visible=live)
        for handle in (self.mode, self.frame, self.height):
            handle.on_update(lambda _: self._settings_changed())
        self.frame.on_update(lambda _: self._pose_nodes())
        self.jump.on_update(self._on_jump)
        self.show_cameras.on_update(lambda _: self._set_cameras_visible(self.show_cameras.value))
        self.pause.on_click(lambda _: self.toggle_pause())

        self._add_frusta()
        self._node_boxes = self._add_nodes()
        self._pose_nodes()
        self.mesh_path = self._add_mesh(run_dir)
        self.splats = gui.add_checkbox("Browser splats (viser)", False,
                                       hint="viser's own in-browser splatting of the background Gaussians "
                                            "(degree-0 colour), smoother to orbit on a slow machine")
        self._splat_handle = None
        self.splats.on_update(lambda _: self._toggle_splats())

        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(lambda client: self._rendered.pop(client.client_id, None))
        self._thread = threading.Thread(target=self._render_loop, name="viewer-render", daemon=True)
        self._thread.start()
        if live:
            adapter.add_step_callback(self.source, self.on_step, _StepGate(self))

    # ----- scene contents (models/viewer/scene_layers.py) ------------------------------------------
    def _add_frusta(self) -> None:
        self._frusta = scene_layers.add_frusta(self.server, self.views, self.labels, float(self.cameras.scene_radius),
                                               self.jump_to)

    def _set_cameras_visible(self, visible: bool) -> None:
        for h in self._frusta:
            h.visible = visible

    def _add_nodes(self) -> list:
        return scene_layers.add_node_boxes(self.server, list(self.gaussians.tracks) + list(self.gaussians.deformable_tracks)
                                              + list(self.gaussians.smpl_tracks))

    def _pose_nodes(self) -> None:
        scene_layers.pose_node_boxes(self._node_boxes, self.gaussians, int(self.frame.value))

    def _add_mesh(self, run_dir: Optional[Path]) -> Optional[Path]:
        return scene_layers.add_mesh(self.server, run_dir)

    def _toggle_splats(self) -> None:
        if self._splat_handle is not None:
            self._splat_handle.remove()
            self._splat_handle = None
        if self.splats.value:
            self._splat_handle = scene_layers.add_browser_splats(self.server, self.gaussians.model, self.lock)

    # ----- status -----------------------------------------------------------------------------------
    def status_text(self, steps_done: Optional[int] = None) -> str:
        """Stage, stage step (steps done in the stage), step, loss, Gaussian count."""
        t = self.source
        spec = t.current_stage_spec
        step = int(t.step if steps_done is None else steps_done)
        stage_step = t.stage_step + 1 if step > 0 else 0
        losses = getattr(t, "last_losses", {}) or {}
        loss = f"{losses['loss']:.4f}" if "loss" in losses else "–"
        state = ("paused" if not self._resume.is_set() else "training") if self.live else "checkpoint"
        if t.finished:
            state = "finished"
        return (f"**stage** {t.current_stage} · **stage step** {stage_step} / {spec.steps}  \n"
                f"**step** {step} / {t.total_steps} ({state})  \n"
                f"**loss** {loss} · **Gaussians** {t.num_gaussians:,}")

    def _update_status(self, steps_done: Optional[int] = None) -> None:
        self.status.content = self.status_text(steps_done)

    # ----- live training -----------------------------------------------------------------------------
    def wait_while_paused(self) -> None:
        """Before a live training step: while paused, wait here (a stop request ends the wait)."""
        if not self._resume.is_set():
            self._update_status(int(self.source.step))
            while not self._resume.wait(0.2):
                if getattr(self.source, "_stop_requested", False) or self._stop.is_set():
                    break

    def on_step(self, trainer, losses) -> None:
        """After every training step (a step callback, outside the lock). Nobody connected: returns at once."""
        done = int(trainer.step)  # the loop has counted the step
        if not self._rendered:
            return
        now = time.monotonic()
        if now - self._last_stats >= 0.25:
            self._last_stats = now
            self._update_status(done)
        if now - self._last_train_render >= self.train_render_interval:
            self._last_train_render = now
            self.scene_version += 1
            self._wake.set()

    def toggle_pause(self) -> None:
        if self._resume.is_set():
            self._resume.clear()
            self.pause.label = "Resume training"
        else:
            self._resume.set()
            self.pause.label = "Pause training"
        self._update_status()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    # ----- cameras ----------------------------------------------------------------------------------------
    def _on_jump(self, event) -> None:
        label = self.jump.value
        if label == FREE or event.client is None:
            return
        self.jump_to(event.client, self.labels.index(label))

    def jump_to(self, client, index: int, set_frame: bool = True) -> None:
        """Put ``client``'s camera at view ``index`` (its pose, vertical field of view) and its frame."""
        from models.gaussians.rigid import rotmat_to_quat

        _, view = self.views[index]
        c2w = view.camera_to_world.detach().cpu().double()
        fov = field_of_view(float(view.K[1, 1]), view.height)
        if set_frame and int(self.frame.value) != int(view.frame_idx):
            self.frame.value = int(view.frame_idx)
        with client.atomic():
            client.camera.fov = fov
            client.camera.wxyz = rotmat_to_quat(c2w[:3, :3]).numpy()
            client.camera.position = c2w[:3, 3].numpy()
        self._mark_dirty(client.client_id)

    def _on_connect(self, client) -> None:
        """A new browser starts at the first training camera (a useful view of a street, unlike the origin)."""
        if self.views:
            self.jump_to(client, 0, set_frame=False)
        self._mark_dirty(client.client_id)

    def _settings_changed(self) -> None:
        self.settings_version += 1
        self._wake.set()

    def _mark_dirty(self, client_id: int) -> None:
        self._rendered[client_id] = None
        self._wake.set()

    # ----- rendering ----------------------------------------------------------------------------------------
    def render_for(self, camera_to_world: torch.Tensor, fov_y: float, aspect: float) -> np.ndarray:
        K, W, H = camera_intrinsics(fov_y, aspect, int(self.height.value))
        mode = str(self.mode.value)
        with self.lock:
            snap = adapter.snapshot(self.source, int(self.frame.value))
        rgb, alpha, depth = adapter.render_snapshot(self.source, snap, camera_to_world, K, W, H,
                                                    with_depth=mode in ("depth", "normals"))
        return mode_image(mode, rgb, alpha, depth, K)

    def _render_client(self, client) -> None:
        cam = client.camera
        try:
            key = (cam.update_timestamp, self.settings_version, self.scene_version)
        except AssertionError:  # the browser has not sent its camera yet
            return
        if self._rendered.get(client.client_id) == key:
            return
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, :3] = quat_to_rotmat(torch.as_tensor(np.asarray(cam.wxyz, dtype=np.float64)))
        c2w[:3, 3] = torch.as_tensor(np.asarray(cam.position, dtype=np.float64))
        img = self.render_for(c2w.float(), float(cam.fov), float(cam.aspect))
        client.scene.set_background_image(img, format="jpeg", jpeg_quality=92)
        self._rendered[client.client_id] = key
        self.renders_done += 1

    def _render_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=0.2)
            self._wake.clear()
            for client in list(self.server.get_clients().values()):
                try:
                    self._render_client(client)
                except Exception:  # a failed render must not end the loop (e.g. a client that just left)
                    logger.exception("viewer: render for client %s failed", client.client_id)
            if not self.live or self.source.finished:
                self._update_status()

    # ----- lifetime --------------------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.server.stop()


def attach_live_viewer(trainer, cfg) -> ViewerServer:
    """The viewer of a training run (``viewer=true`` on omnire-train)."""
    port = int(cfg.viewer_port)
    viewer = ViewerServer(trainer, port=port, run_dir=trainer.output_dir, live=True)
    logger.info("viewer: http://localhost:%d (training waits only while paused)", viewer.port)
    return viewer


class _StepGate:
    """What a live trainer holds while each step runs (BasicTrainer.hold_during_step): it first waits
    while the viewer is paused, then takes the viewer's lock, so renders see no half-updated step."""

    def __init__(self, viewer: "ViewerServer") -> None:
        self.viewer = viewer

    def __enter__(self) -> None:
        self.viewer.wait_while_paused()
        self.viewer.lock.acquire()

    def __exit__(self, *exc) -> None:
        self.viewer.lock.release()
