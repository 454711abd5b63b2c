"""Open a run's exports in the SuperSplat viewer (npm @playcanvas/supersplat-viewer) in headless
Chromium and compare what it shows with this project's render of the first training camera.

    .venv/bin/python -m checks.splat_viewer outputs/demo [--out outputs/demo/supersplat_check]

It writes the exports (viewer axes) into a scratch folder, serves them beside the viewer's static
site, opens `index.html?webgl&noui&nofx&noanim&content=gaussians.ply&settings=supersplat_settings.json`
(noanim: the viewer would otherwise move the camera in a figure-8 around the start), and
prints the mean absolute difference of the screenshot to our render, to our render turned 180
degrees (what a y-up/y-down mix-up shows) and to our render of another camera; it writes
ours | SuperSplat side by side as check.png. The viewer package is installed with npm into
`--viewer-dir` (default outputs/.supersplat_viewer) on first use. Exit status 1 when the
screenshot is not closest to the upright render of the camera, or differs from it by more than
`--max-difference` (a framing that is off, e.g. a wrong field of view, fails there).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from omnire_cli.errors import fail  # noqa: E402  (importing omnire_cli pins the CPU numerics first)

VIEWER_PACKAGE = "@playcanvas/supersplat-viewer@1.36.2"
# On `make demo`'s run the screenshot differs from our render by 0.021 at the right framing, by 0.10
# with the vertical field of view as fov (zoomed in), and by 0.069 while the viewer's idle
# figure-8 camera motion runs (what `noanim` in the URL stops).
MAX_DIFFERENCE = 0.04
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def viewer_site(viewer_dir: Path) -> Path:
    site = viewer_dir / "node_modules" / "@playcanvas" / "supersplat-viewer" / "public"
    if not (site / "index.html").is_file():
        if shutil.which("npm") is None:
            raise SystemExit(fail("npm is needed to install the SuperSplat viewer (apt-get install npm)"))
        viewer_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(viewer_dir), "--no-audit", "--no-fund", VIEWER_PACKAGE],
                       check=True, stdout=subprocess.DEVNULL)
    return site


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd



def stable_screenshot(page, shot_path: Path, timeout: float, ready=lambda: True, failed=lambda: None):
    """Screenshots every 2 s until the picture has content and stops changing (or ``failed()``
    returns an error, or ``timeout`` seconds pass); the last one as float RGB in [0, 1], or None."""
    import numpy as np
    from PIL import Image
    deadline = time.monotonic() + timeout
    previous, shot = None, None
    while time.monotonic() < deadline:
        time.sleep(2.0)
        if failed():
            break
        if not ready():
            continue
        page.screenshot(path=str(shot_path))
        shot = np.asarray(Image.open(shot_path).convert("RGB"), dtype=np.float32) / 255
        if shot.std() > 0.03 and previous is not None and np.abs(shot - previous).mean() < 0.002:
            break
        previous = shot
    return shot


def framing(shot, want, other_render, scale: int, side_by_side: Path):
    """Mean abs differences of a viewer's screenshot (shown ``scale`` times larger) to our render of
    the camera, upright and turned 180 degrees, and to another camera's; writes ours | theirs."""
    import numpy as np
    from PIL import Image
    H, W = want.shape[:2]
    small = np.asarray(Image.fromarray((shot * 255).astype(np.uint8)).resize((W, H), Image.BOX),
                       dtype=np.float32) / 255
    side = np.concatenate([np.asarray(Image.fromarray((want * 255).astype(np.uint8)).resize(
        (W * scale, H * scale), Image.NEAREST), dtype=np.float32) / 255, shot], axis=1)
    Image.fromarray((side * 255).astype(np.uint8)).save(side_by_side)
    return (float(np.abs(small - want).mean()), float(np.abs(small - want[::-1, ::-1]).mean()),
            float(np.abs(small - other_render).mean()))


def print_framing(d_upright: float, d_turned: float, d_other: float, other, viewer: str, side_by_side: Path) -> None:
    """The comparison's lines, as both viewer checks print them."""
    print(f"  upright, same camera      {d_upright:.4f}")
    print(f"  turned 180 degrees        {d_turned:.4f}")
    print(f"  another training camera   {d_other:.4f}  ({other.cam_name}, frame {other.frame_idx})")
    print(f"side by side (ours | {viewer}): {side_by_side}")

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder (its newest checkpoint) or a checkpoint file")
    p.add_argument("--out", default=None, help="folder for check.png and the screenshot (default <run>/supersplat_check)")
    p.add_argument("--viewer-dir", default=str(REPO / "outputs" / ".supersplat_viewer"))
    p.add_argument("--scale", type=int, default=6, help="browser pixels per training-image pixel")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--max-difference", type=float, default=MAX_DIFFERENCE,
                   help="largest mean abs difference to our render that passes (default %(default)s)")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from models.exports import export_run
    from models.run import RunInputError, open_run

    try:
        run = open_run(args.run)
    except RunInputError as exc:
        return fail(exc)
    ckpt = run.checkpoint
    out = Path(args.out) if args.out else Path(run.run_dir) / "supersplat_check"
    site = out / "site"
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(viewer_site(Path(args.viewer_dir)), site)
    export_run(run, site, axes="viewer", formats=("ply",))
    views = run.cameras.train_views
    view = views[0]
    # the contrast: the training camera that looks most away from camera 0
    forward = lambda v: v.camera_to_world[:3, 2]  # noqa: E731
    other = min(views[1:], key=lambda v: float(forward(v) @ forward(view)))
    W, H = view.width, view.height

    def ours(v):
        return run.render_view(v)[0].cpu().numpy()

    want, other_render = ours(view), ours(other)
    httpd = serve(site)
    url = (f"http://127.0.0.1:{httpd.server_address[1]}/index.html?webgl&noui&nofx&noanim"
           "&content=gaussians.ply&settings=supersplat_settings.json")
    shot_path = out / "supersplat.png"
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": W * args.scale, "height": H * args.scale})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        shot = stable_screenshot(page, shot_path, args.timeout)
        browser.close()
    httpd.shutdown()
    if shot is None or shot.std() <= 0.03:
        return fail(f"the SuperSplat viewer showed nothing in {args.timeout:.0f} s (page errors: {errors[:3]})", 1)
    d_upright, d_turned, d_other = framing(shot, want, other_render, args.scale, out / "check.png")
    print(f"{ckpt}: SuperSplat viewer ({VIEWER_PACKAGE}) at training camera 0 ({W}x{H}, shown at "
          f"{W * args.scale}x{H * args.scale}), mean abs difference to our render:")
    print_framing(d_upright, d_turned, d_other, other, "SuperSplat", out / "check.png")
    upright = d_upright < d_turned and d_upright < d_other
    framed = d_upright <= args.max_difference
    print("upright at the training camera" if upright else "NOT upright at the training camera")
    print(f"framed like our render (difference <= {args.max_difference})" if framed else
          f"NOT framed like our render: difference {d_upright:.4f} > {args.max_difference}")
    return 0 if upright and framed else 1


if __name__ == "__main__":
    sys.exit(main())
