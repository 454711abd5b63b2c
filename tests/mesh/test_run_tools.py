"""tools/extract_mesh.py and tools/eval.py on a tiny trained run: outputs, metrics wiring, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.mesh import load_mesh
from models.mesh.run_io import RunInputError, load_run
from models.trainers.checkpoint import find_latest
from models.trainers.single import MODEL_KEY, SingleTrainer
from tests.script_loader import load_script
from tests.trainers.tiny_run import tiny_config

REPO = Path(__file__).resolve().parents[2]


extract_tool = load_script("extract_mesh")
eval_tool = load_script("eval")
FAST = ["--poisson-depth", "6", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_tools")
    out = root / "run"
    SingleTrainer(tiny_config(root / "scene", out), output_dir=out).train()
    return out


@pytest.fixture(scope="module")
def tiny_multi_run(tmp_path_factory):
    """A tiny MultiTrainer run (background + the moving car's rigid node)."""
    from models.trainers.scene_graph import MultiTrainer

    root = tmp_path_factory.mktemp("run_tools_multi")
    out = root / "run"
    MultiTrainer(tiny_config(root / "scene", out, "trainer=MultiTrainer", "loss.mask_dynamic=false"),
                 output_dir=out).train()
    return out


def one_error_line(capsys, rc, *words):
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


# ----- extraction ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method, depth", [("levelset", "expected"), ("tsdf", "expected"), ("tsdf", "unbiased")])
def test_extract_writes_a_mesh_into_the_run(tiny_run, method, depth, capsys):
    target = tiny_run / "exports" / f"mesh_{method}{'_unbiased' if depth == 'unbiased' else ''}.ply"
    target.unlink(missing_ok=True)
    assert extract_tool.main([str(tiny_run), "--method", method, "--depth", depth, *FAST]) == 0
    assert str(target) in capsys.readouterr().out
    mesh = load_mesh(target)
    assert len(mesh.faces) > 100
    # the mesh lies in the street the cameras saw: not farther from them than the GT depth reaches
    scene = load_run(tiny_run).dataset()  # the GT depth
    centres = torch.stack([v.camera_to_world[:3, 3] for v in scene.train_views]).numpy()
    reach = max(float(v.gt_depth[torch.isfinite(v.gt_depth)].max()) for v in scene.train_views)
    dist = np.linalg.norm(mesh.vertices[:, None, :] - centres[None], axis=-1).min(axis=1)
    assert np.quantile(dist, 0.9) < 1.5 * reach


def test_extract_from_a_checkpoint_file_to_out_with_decimation(tiny_run, tmp_path):
    out = tmp_path / "m.ply"
    ckpt = find_latest(tiny_run / "checkpoints")
    assert extract_tool.main([str(ckpt), "--out", str(out), "--target-triangles", "500", "--pixel-stride", "2",
                              *FAST]) == 0
    assert 0 < len(load_mesh(out).faces) <= 500


def test_extract_opens_a_multitrainer_run(tiny_multi_run, capsys):
    """The trainer class comes from the checkpoint: a scene graph's run (two models) opens and meshes."""
    from models.trainers.scene_graph import RIGID_KEY, MultiTrainer

    run = load_run(tiny_multi_run)
    assert run.trainer_name == MultiTrainer.__name__ and RIGID_KEY in run.scene.models
    target = tiny_multi_run / "exports" / "mesh_tsdf.ply"
    assert extract_tool.main([str(tiny_multi_run), "--method", "tsdf", *FAST]) == 0
    assert str(target) in capsys.readouterr().out
    assert len(load_mesh(target).faces) > 100


def _run_with_flat_gaussians(tiny_run, tmp_path, thickness=1e-6):
    """A copy of the run whose Gaussians are all `thickness` metres thick (their smallest scale)."""
    ckpt = find_latest(tiny_run / "checkpoints")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    log_scales = state["models"][MODEL_KEY]["scales"]
    smallest = log_scales.argmin(dim=-1, keepdim=True)
    state["models"][MODEL_KEY]["scales"] = log_scales.scatter(-1, smallest, float(np.log(thickness)))
    out = tmp_path / "flat" / "checkpoints" / ckpt.name
    out.parent.mkdir(parents=True)
    torch.save(state, out)
    return out.parent.parent


def test_auto_method_meshes_flat_gaussians_by_tsdf_and_others_by_the_level_set(tiny_run, tmp_path, capsys):
    """The level set's samples cannot find a surface of Gaussians micrometres thick (what flattening
    makes); the default method then fuses the depth instead, says so, and omnire-eval finds that mesh."""
    from models.mesh.run_io import FLAT_SCALE_RATIO, auto_mesh_method, find_run_mesh

    run = load_run(tiny_run)
    smallest = run.model.get_gaussians()["scales"].detach().min(dim=-1).values
    assert float(smallest.median()) > FLAT_SCALE_RATIO * run.cameras.scene_radius  # the premise of the next line
    assert auto_mesh_method(run)[0] == "levelset"
    flat = _run_with_flat_gaussians(tiny_run, tmp_path)
    method, why = auto_mesh_method(load_run(flat))
    assert method == "tsdf" and "flat Gaussians" in why
    assert extract_tool.main([str(flat), *FAST]) == 0
    out = capsys.readouterr().out
    assert "method: tsdf (flat Gaussians" in out and str(flat / "exports" / "mesh_tsdf.ply") in out
    (flat / "exports" / "mesh_levelset.ply").write_bytes((flat / "exports" / "mesh_tsdf.ply").read_bytes())
    assert find_run_mesh(load_run(flat)) == flat / "exports" / "mesh_tsdf.ply"  # the auto method's mesh first


# ----- evaluation ---------------------------------------------------------------------------------
def test_eval_opens_a_multitrainer_run(tiny_multi_run, capsys):
    assert eval_tool.main([str(tiny_multi_run), "--points", "20000"]) == 0
    report = json.loads((tiny_multi_run / "eval.json").read_text())
    assert np.isfinite(report["test"]["psnr"]) and 0 < report["test"]["ssim"] <= 1
    # the rigid node's Gaussians are counted with the background's
    from models.trainers.checkpoint import load_checkpoint
    state = load_checkpoint(find_latest(tiny_multi_run / "checkpoints"))
    assert report["num_gaussians"] == sum(len(p["means"]) for p in state["models"].values())
    assert len(state["models"]) == 2



def test_eval_writes_eval_json_with_image_and_surface_metrics(tiny_run, capsys):
    mesh = tiny_run / "exports" / "mesh_tsdf.ply"
    if not mesh.exists():
        assert extract_tool.main([str(tiny_run), "--method", "tsdf", *FAST]) == 0
    (tiny_run / "eval.json").unlink(missing_ok=True)
    assert eval_tool.main([str(tiny_run), "--mesh", str(mesh), "--tau", "0.2", "--points", "20000"]) == 0
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "F-score @ τ=0.2 m" in printed
    # the README's scoring protocol by default, printed beside the figures
    assert "GT surface seen by the training cameras within 40 m; τ = 0.2 m; 20,000 samples per mesh" in printed
    report = json.loads((tiny_run / "eval.json").read_text())
    assert np.isfinite(report["test"]["psnr"]) and 0 < report["test"]["ssim"] <= 1
    s = report["surface"]
    for key in ("accuracy", "completeness", "chamfer", "precision", "recall", "fscore", "normal_consistency"):
        assert np.isfinite(s[key]), key
    assert s["tau"] == 0.2 and s["mesh"] == str(mesh)
    assert s["chamfer"] == pytest.approx((s["accuracy"] + s["completeness"]) / 2)


def test_eval_scores_the_ground_truth_mesh_as_perfect(tiny_run, tmp_path):
    """The GT mesh, exported and scored as a prediction: the scene frame, the camera region and the
    metrics agree with each other only if this comes out (near) perfect."""
    run = load_run(tiny_run)
    gt = tmp_path / "gt.ply"
    run.dataset().load_gt_mesh().export(gt)
    assert eval_tool.main([str(tiny_run), "--mesh", str(gt), "--points", "20000"]) == 0
    s = json.loads((tiny_run / "eval.json").read_text())["surface"]
    assert s["fscore"] > 0.97 and s["chamfer"] < 0.02
    assert eval_tool.main([str(tiny_run), "--mesh", str(gt), "--points", "20000", "--max-depth", "inf"]) == 0
    everything = json.loads((tiny_run / "eval.json").read_text())["surface"]
    assert "at any depth" in everything["protocol"] and "within 40 m" in s["protocol"]


# ----- bad input ----------------------------------------------------------------------------------
def test_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "nope" / "step_000010.pt"
    one_error_line(capsys, extract_tool.main([str(missing), *FAST]), str(missing), "does not exist")
    one_error_line(capsys, eval_tool.main([str(missing)]), str(missing))


def test_folder_without_checkpoints_is_one_error_line(tmp_path, capsys):
    empty = tmp_path / "empty_run"
    (empty / "checkpoints").mkdir(parents=True)
    one_error_line(capsys, extract_tool.main([str(empty), *FAST]), str(empty), "no checkpoints")
    one_error_line(capsys, eval_tool.main([str(empty)]), "no checkpoints")


def test_corrupt_checkpoint_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "run" / "checkpoints" / "step_000001.pt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a torch file")
    one_error_line(capsys, extract_tool.main([str(tmp_path / "run"), *FAST]), str(bad), "could not be read")


def test_a_mesh_file_that_is_not_a_mesh_is_one_error_line(tiny_run, tmp_path, capsys):
    junk = tmp_path / "junk.ply"
    junk.write_text("this is not a PLY file\n")
    before = (tiny_run / "eval.json").read_text() if (tiny_run / "eval.json").exists() else None
    one_error_line(capsys, eval_tool.main([str(tiny_run), "--mesh", str(junk)]), str(junk))
    # nothing on disk is damaged
    after = (tiny_run / "eval.json").read_text() if (tiny_run / "eval.json").exists() else None
    assert after == before


def _run_with_opacities(tiny_run, tmp_path, logit):
    """A copy of the run whose Gaussians all have opacity sigmoid(logit)."""
    ckpt = find_latest(tiny_run / "checkpoints")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    opac = state["models"][MODEL_KEY]["opacities"]
    state["models"][MODEL_KEY]["opacities"] = torch.full_like(opac, logit)
    out = tmp_path / "faded" / "checkpoints" / ckpt.name
    out.parent.mkdir(parents=True)
    torch.save(state, out)
    return out.parent.parent


def test_a_run_without_depth_is_one_error_line(tiny_run, tmp_path, capsys):
    faded = _run_with_opacities(tiny_run, tmp_path, -12.0)  # every Gaussian ~transparent: no depth anywhere
    for method in ("levelset", "tsdf"):
        one_error_line(capsys, extract_tool.main([str(faded), "--method", method, *FAST]), "depth")
    assert not (faded / "exports").exists()


def test_library_errors_are_run_input_errors(tmp_path):
    with pytest.raises(RunInputError, match="does not exist"):
        load_run(tmp_path / "missing")


def test_library_errors_name_parameters_and_the_tools_name_flags(tiny_run, capsys):
    from models.mesh.run_io import extract_run_mesh

    with pytest.raises(RunInputError, match=r"^pixel_stride=0: expected an integer >= 1") as err:
        extract_run_mesh(load_run(tiny_run), pixel_stride=0)
    assert err.value.param == "pixel_stride"
    one_error_line(capsys, extract_tool.main([str(tiny_run), "--pixel-stride", "0", *FAST]),
                   "error: --pixel-stride 0: expected an integer >= 1")
    one_error_line(capsys, eval_tool.main([str(tiny_run), "--tau", "-1"]), "error: --tau -1.0: expected a positive")


def test_tool_process_exits_non_zero_without_traceback(tmp_path):
    missing = tmp_path / "no_such_run"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "extract_mesh.py"), str(missing)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {missing} does not exist (expected a run folder with "
                                                "checkpoints/ or a checkpoint .pt file)"]


# ----- bench_quality ------------------------------------------------------------------------------
def test_bench_schedules_share_the_step_budget_and_the_pretrain():
    from models.quality.variants import bench_schedules

    s = bench_schedules(1500)
    assert s["c_pretrain_entropy_sugar"] == [{"name": "pretrain", "steps": 700}, {"name": "entropy", "steps": 200},
                                             {"name": "sugar", "steps": 600}]
    assert s["a_pretrain"] == [{"name": "pretrain", "steps": 1500}]
    assert s["b_pretrain_entropy"] == [{"name": "pretrain", "steps": 700}, {"name": "entropy", "steps": 800}]
    for total in (15, 301, 1500):
        assert all(sum(st["steps"] for st in v) == total for v in bench_schedules(total).values())
    with pytest.raises(RunInputError):
        bench_schedules(10)


def test_normals_from_depth_of_a_fronto_parallel_plane_face_the_camera():
    from models.depth_normals import normals_from_depth

    K = np.array([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]])
    depth = np.full((12, 16), 3.0)
    n = normals_from_depth(depth, K, depth > 0, towards_camera=False)  # as the quality benchmark's figure
    assert np.allclose(np.abs(n[..., 2]), 1.0, atol=1e-6)


def test_quality_bench_trains_and_opens_a_multitrainer_variant(tiny_multi_run, tmp_path):
    """The quality benchmark trains the configured trainer class and reopens its runs through the
    inference loader (its figure renders every run)."""
    from models.quality.figure import quality_figure
    from models.quality.training import train_bench_run
    from tests.trainers.tiny_run import TINY_SCENE, TINY_TRAINING
    from models.trainers.scene_graph import MultiTrainer

    scene = load_run(tiny_multi_run).config.scene.path
    out = tmp_path / "multi_variant"
    schedule = [{"name": "pretrain", "steps": 3}, {"name": "entropy", "steps": 2}]
    timing = train_bench_run("omnire_sugar_quick", out, schedule,
                             [*TINY_SCENE, f"scene.path={scene}", *TINY_TRAINING, "trainer=MultiTrainer",
                              "loss.mask_dynamic=false", "log.snapshot_every=0"])
    assert set(timing) == {"pretrain", "entropy"}
    assert load_run(out).trainer_name == MultiTrainer.__name__
    figure = quality_figure({"multi": {"run_dir": str(out), "mesh": None},
                             "multi_full": {"run_dir": str(tiny_multi_run), "mesh": None}}, tmp_path / "q.png")
    assert figure.stat().st_size > 10_000


@pytest.mark.slow
def test_bench_quality_end_to_end_on_the_tiny_scene(tiny_run, tmp_path):
    """Three short runs, meshes, the table and the figure (about a minute on 2 cores)."""
    from tests.trainers.tiny_run import TINY_SCENE

    def bench(args):  # as its command line runs it
        res = subprocess.run([sys.executable, "-m", "benchmarks.bench_quality", *args], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        return res.returncode

    scene = load_run(tiny_run).config.scene.path
    out = tmp_path / "bq"
    args = ["--steps", "30", "--out", str(out), "--poisson-depth", "6", "--points", "20000", *TINY_SCENE,
            f"scene.path={scene}", "model.init_opacity=0.6", "num_threads=1", "log.progress=false"]
    assert bench(args) == 0
    results = json.loads((out / "bench_quality.json").read_text())
    assert list(results) == ["a_pretrain", "b_pretrain_entropy", "c_pretrain_entropy_sugar"]
    assert (out / "bench_quality.png").stat().st_size > 10_000
    mtime = (out / "a_pretrain" / "bench_timing.json").stat().st_mtime
    assert bench([*args, "--reuse"]) == 0  # finished runs are not trained again
    assert (out / "a_pretrain" / "bench_timing.json").stat().st_mtime == mtime
