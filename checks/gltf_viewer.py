"""Open a run's glTF export (gaussians.glb, KHR_gaussian_splatting) in the PlayCanvas engine (npm
`playcanvas`, whose glTF loader reads the extension) in headless Chromium, at the first training
camera, and compare what it draws with this project's render of that camera.

    .venv/bin/python -m checks.gltf_viewer outputs/demo [--out outputs/demo/gltf_check]

No published web viewer on npm opens a .glb splat from a URL parameter (the SuperSplat viewer's
content loader reads PLY and SOG only), so the page is checks/gltf_viewer.html: the engine's own
glTF loader, a camera, nothing else. Prints the mean absolute difference of the screenshot to our
render, to it turned 180 degrees and to another camera's; writes ours | PlayCanvas as check.png.
Exit status 1 when the screenshot is not closest to the upright render or differs from it by more
than --max-difference.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
from omnire_cli.errors import fail  # noqa: E402  (importing omnire_cli pins the CPU numerics first)
from checks.splat_viewer import (CHROMIUM_ARGS, MAX_DIFFERENCE, framing, print_framing, serve,  # noqa: E402
                                 stable_screenshot)

ENGINE_PACKAGE = "playcanvas@2.23.3"


def engine_module(engine_dir: Path) -> Path:
    mjs = engine_dir / "node_modules" / "playcanvas" / "build" / "playcanvas.mjs"
    if not mjs.is_file():
        if shutil.which("npm") is None:
            raise SystemExit(fail("npm is needed to install the PlayCanvas engine (apt-get install npm)"))
        engine_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(engine_dir), "--no-audit", "--no-fund", ENGINE_PACKAGE],
                       check=True, stdout=subprocess.DEVNULL)
    return mjs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder (its newest checkpoint) or a checkpoint file")
    p.add_argument("--out", default=None, help="folder for check.png and the screenshot (default <run>/gltf_check)")
    p.add_argument("--engine-dir", default=str(REPO / "outputs" / ".playcanvas_engine"))
    p.add_argument("--scale", type=int, default=6, help="browser pixels per training-image pixel")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--max-difference", type=float, default=MAX_DIFFERENCE)
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from models.cameras import field_of_view
    from models.exports import Y_UP_FROM_WORLD, background_rgb, export_run
    from models.run import RunInputError, open_run

    try:
        run = open_run(args.run)
    except RunInputError as exc:
        return fail(exc)
    out = Path(args.out) if args.out else Path(run.run_dir) / "gltf_check"
    site = out / "site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    shutil.copy(engine_module(Path(args.engine_dir)), site / "playcanvas.mjs")
    shutil.copy(REPO / "checks" / "gltf_viewer.html", site / "index.html")
    export_run(run, site, axes="viewer", formats=("gltf",))
    views = run.cameras.train_views
    view = views[0]
    forward = lambda v: v.camera_to_world[:3, 2]  # noqa: E731
    other = min(views[1:], key=lambda v: float(forward(v) @ forward(view)))
    W, H = view.width, view.height
    c2w = view.camera_to_world.detach().cpu().double()
    Y = Y_UP_FROM_WORLD.double()
    position = Y @ c2w[:3, 3]
    camera = {"position": position.tolist(), "target": (position + Y @ c2w[:3, 2]).tolist(),
              "up": (Y @ -c2w[:3, 1]).tolist(),  # an OpenCV camera's up is its -y
              "fov": math.degrees(field_of_view(float(view.K[1, 1]), H)),  # PlayCanvas: vertical
              "background": background_rgb(run.scene)}

    def ours(v):
        return run.render_view(v)[0].cpu().numpy()

    want, other_render = ours(view), ours(other)
    httpd = serve(site)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/index.html?camera={quote(json.dumps(camera))}"
    shot_path = out / "playcanvas.png"
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    errors: list = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": W * args.scale, "height": H * args.scale})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        shot = stable_screenshot(page, shot_path, args.timeout, ready=lambda: page.evaluate("!!window.loaded"),
                                 failed=lambda: page.evaluate("window.loadError || null"))
        if page.evaluate("window.loadError || null"):
            errors.append(page.evaluate("window.loadError"))
        browser.close()
    httpd.shutdown()
    if shot is None or shot.std() <= 0.03:
        return fail(f"the PlayCanvas engine drew nothing in {args.timeout:.0f} s (page errors: {errors[:3]})", 1)
    d_upright, d_turned, d_other = framing(shot, want, other_render, args.scale, out / "check.png")
    print(f"{run.checkpoint}: gaussians.glb in the PlayCanvas engine ({ENGINE_PACKAGE}) at training camera 0 "
          f"({W}x{H}, shown at {W * args.scale}x{H * args.scale}), mean abs difference to our render:")
    print_framing(d_upright, d_turned, d_other, other, "PlayCanvas", out / "check.png")
    ok = d_upright < d_turned and d_upright < d_other and d_upright <= args.max_difference
    print("framed like our render" if ok else f"NOT framed like our render (limit {args.max_difference})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
