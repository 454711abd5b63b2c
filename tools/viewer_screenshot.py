"""The README's viewer screenshot: a run's viewer in headless Chromium, seen from behind and above
training camera 0 so that the frusta and the scene graph's boxes show.

    python tools/viewer_screenshot.py outputs/demo --out docs/viewer.png [--back 8 --up 4]
"""
from __future__ import annotations

import argparse
import shutil
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--out", default="docs/viewer.png")
    p.add_argument("--back", type=float, default=8.0, help="metres behind training camera 0")
    p.add_argument("--up", type=float, default=4.0, help="metres above it")
    p.add_argument("--ahead", type=float, default=12.0, help="look at this many metres ahead of it")
    p.add_argument("--mode", default="RGB")
    p.add_argument("--size", default="1280x720")
    args = p.parse_args(argv)

    import numpy as np
    from playwright.sync_api import sync_playwright

    from models.run import open_run
    from models.viewer.server import ViewerServer

    run = open_run(args.run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    viewer = ViewerServer(run, host="127.0.0.1", port=port, run_dir=run.run_dir, render_height=360)
    viewer.mode.value = args.mode
    c2w = run.cameras.train_views[0].camera_to_world.double().numpy()
    fwd, pos = c2w[:3, 2], c2w[:3, 3]
    w, h = (int(x) for x in args.size.split("x"))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                         args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": w, "height": h})
            page.goto(f"http://127.0.0.1:{port}")
            page.get_by_text("stage step").first.wait_for(timeout=60_000)
            deadline = time.monotonic() + 30
            while not viewer.server.get_clients() and time.monotonic() < deadline:
                time.sleep(0.2)
            client = next(iter(viewer.server.get_clients().values()))
            time.sleep(1.0)
            with client.atomic():
                client.camera.up_direction = (0.0, 0.0, 1.0)
                client.camera.position = pos - args.back * fwd + np.array([0, 0, args.up])
                client.camera.look_at = pos + args.ahead * fwd
            before = viewer.renders_done
            deadline = time.monotonic() + 60
            while viewer.renders_done <= before and time.monotonic() < deadline:
                time.sleep(0.3)
            time.sleep(2.0)
            close = page.locator(".mantine-Notification-root button")
            if close.count():
                close.first.click()
                time.sleep(0.5)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out)
            browser.close()
    finally:
        viewer.stop()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
