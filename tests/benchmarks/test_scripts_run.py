"""Every benchmark and check loads as its command line loads it (`.venv/bin/python -m benchmarks.<name>`,
`-m checks.<name>`, from the repository root, with no sys.path changes), and gpu_check's CPU dry run
writes its report. They run in a child process: tests import nothing from benchmarks/ or checks/."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {folder: sorted(p.stem for p in (REPO / folder).glob("*.py") if p.stem != "__init__")
           for folder in ("benchmarks", "checks")}
WITH_MAIN = ("bench_", "gpu_check", "fit_image", "record_trace", "fault_sigkill", "splat_viewer", "slurm_sweep")

LOAD_ALL = """
import importlib, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    if name.rsplit(".", 1)[1].startswith(WITH_MAIN):
        assert callable(module.main), name + " has no main()"
print("loaded", len(sys.argv) - 1)
"""


def test_every_benchmark_and_check_loads_as_a_module():
    names = [f"{folder}.{name}" for folder, stems in SCRIPTS.items() for name in stems]
    assert "checks.gpu_check" in names and "benchmarks.bench_render" in names
    res = subprocess.run([sys.executable, "-c", f"WITH_MAIN = {WITH_MAIN!r}" + LOAD_ALL, *names], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"loaded {len(names)}" in res.stdout


def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    res = subprocess.run([sys.executable, "-m", "checks.gpu_check", "--dry-run-cpu", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    assert report["phases"]["agreement"]["ok"] and report["phases"]["timing"]["ok"]
    repeat = report["phases"]["gsplat_repeatability"]
    assert repeat["ok"] and repeat["result"]["outputs_bitwise_equal"] is True  # the dense reference is deterministic
    cpp = report["phases"]["cpp_vs_gsplat"]
    assert cpp["ok"] and cpp["result"]["cpp_bitwise_repeatable"] is True
    assert cpp["result"]["max_abs_rgb"] <= 1e-4  # in the dry run the dense reference stands in for gsplat



def test_no_test_imports_a_benchmark_or_check():
    """Tests run benchmarks and checks as commands; what they test of them lives in the library."""
    import ast

    def named(node):  # the modules an import statement or an import-by-name call brings in
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and not node.level:
            return [node.module or ""]
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "load_script", "spec_from_file_location"):
            return [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        return []

    offenders = [f"{path.relative_to(REPO)}:{node.lineno} {name}"
                 for path in sorted((REPO / "tests").rglob("*.py"))
                 for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
                 for name in named(node) if name.split(".")[0] in SCRIPTS]
    assert offenders == []
