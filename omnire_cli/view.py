"""omnire-view: serve the web viewer of a trained run (its newest checkpoint) or a checkpoint file.

    omnire-view outputs/demo                  # then open http://localhost:8080
    omnire-view outputs/quick --port 8081 --render-height 360
    omnire-train --config-name omnire_sugar_quick output_dir=outputs/quick viewer=true   # live

Ctrl-C stops it. Bad input (a missing run, a folder without checkpoints) gives one error line and
exit status 2. What the viewer shows: models/viewer/server.py.
"""
from __future__ import annotations

import argparse
import sys

from omnire_cli.errors import fail


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="omnire-view", description="serve the web viewer of a trained run")
    p.add_argument("run", help="run folder (its newest checkpoint is used) or a checkpoint file")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all interfaces, as viser)")
    p.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu or cuda")
    p.add_argument("--render-height", type=int, default=None, help="render height in pixels (default 240 CPU, 720 CUDA)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for rendering")
    args = p.parse_args(argv)

    import torch

    from models.mesh.run_io import RunInputError
    from models.trainers.device import resolve_device
    from models.run import open_run
    try:
        device = str(resolve_device(args.device))
        if args.threads is not None:  # opening a run sets no thread count: the command line's request
            torch.set_num_threads(args.threads)
        run = open_run(args.run, device=device)
    except (RunInputError, ValueError) as exc:
        return fail(exc)
    from models.viewer.server import ViewerServer
    try:
        viewer = ViewerServer(run, host=args.host, port=args.port, run_dir=run.run_dir,
                              render_height=args.render_height)
    except OSError as exc:
        return fail(f"could not listen on {args.host}:{args.port} ({exc}); pick another --port")
    print(f"viewer of {run.checkpoint} (step {run.step}, {run.num_gaussians:,} Gaussians): "
          f"http://localhost:{viewer.port}  (Ctrl-C to stop)", flush=True)
    viewer.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
