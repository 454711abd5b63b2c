"""Headless Chromium for the viewer tests: Debian's chromium (installed by
tools/ensure_system_deps.sh), driven by Playwright over its own protocol; never a browser download."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium; missing, the test fails under CI (whose `make test` installs it) and is skipped elsewhere."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        reason = ("Debian's chromium is not installed: run `sh tools/ensure_system_deps.sh` as root "
                  "(or `apt-get install chromium`)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def viewer_process(args, repo: Path, timeout: float = 120.0):
    """`tools/view.py ARGS` as a user runs it; yields (process, url) once it says where it listens."""
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "tools/view.py", *map(str, args)], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + timeout
        url = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                if proc.poll() is not None:
                    raise AssertionError(f"tools/view.py exited with {proc.returncode}:\n{''.join(lines)}")
                continue
            lines.append(line)
            if "http://localhost:" in line and "viewer of" in line:
                url = line.split("http://localhost:")[1].split()[0]
                break
        assert url is not None, f"tools/view.py did not report its address in {timeout} s:\n{''.join(lines)}"
        yield proc, f"http://127.0.0.1:{url}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
