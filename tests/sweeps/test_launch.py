"""What the launchers decide before they submit anything."""
from __future__ import annotations

import pytest

from sweeps.launch import check_output_dirs, summarize, workstation_capacity


def test_workstation_runs_no_more_jobs_than_the_cores_hold():
    assert workstation_capacity(None, cores=2, threads_per_job=2) == 1      # this machine: sequential
    assert workstation_capacity(None, cores=2, threads_per_job=1) == 2
    assert workstation_capacity(None, cores=16, threads_per_job=2) == 8
    assert workstation_capacity(None, cores=1, threads_per_job=4) == 1      # at least one job
    assert workstation_capacity(None, cores=16, threads_per_job=2, gpus=2) == 2   # one GPU per job
    assert workstation_capacity(2, cores=4, threads_per_job=2) == 2
    with pytest.raises(ValueError, match=r"jobs=2 x num_threads=2 = 4 threads, but this machine has 2 cores"):
        workstation_capacity(2, cores=2, threads_per_job=2)
    with pytest.raises(ValueError, match="positive"):
        workstation_capacity(0, cores=2, threads_per_job=1)
    with pytest.raises(ValueError, match="one job per GPU"):
        workstation_capacity(3, cores=16, threads_per_job=1, gpus=2)


def test_two_jobs_writing_into_one_folder_are_refused_before_launch():
    check_output_dirs(["s/a", "s/b", None, None], [["x=1"], ["x=2"], ["x=3"], ["x=4"]])
    with pytest.raises(ValueError, match=r"s/023: scene.path=/w/023 \| scene.path=/n/023.*hydra.sweep.subdir"):
        check_output_dirs(["s/023", "s/023"], [["scene.path=/w/023"], ["scene.path=/n/023"]])


def test_summary_lists_what_did_not_finish():
    text = summarize([{"scene": "a", "status": "finished", "error": None},
                      {"scene": "b", "status": "failed", "error": "ValueError: bad"}], "out")
    assert text.splitlines()[0] == "sweep out: 1 failed, 1 finished"
    assert "  b: failed: ValueError: bad" in text and "omnire-gather out" in text


def test_launcher_configs_compose_with_their_options():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    configs = str(Path(__file__).resolve().parents[2] / "configs")
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        local = compose("omnire_sugar", overrides=["output_dir=out/fleet"], return_hydra_config=True)
        slurm = compose("omnire_sugar", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                                   "hydra.launcher.timeout_min=60"], return_hydra_config=True)
    assert local.hydra.launcher._target_.endswith("WorkstationLauncher") and local.hydra.launcher.jobs is None
    assert local.hydra.sweep.dir == "out/fleet" and local.hydra.sweep.subdir == "synthetic_seed0"
    assert local.resume is None                    # auto inside a sweep, false for one run
    sl = slurm.hydra.launcher
    assert sl._target_.endswith("ClusterLauncher")
    assert (sl.partition, sl.timeout_min, sl.gpus_per_node, sl.cpus_per_task, sl.mem_gb) == ("gpu", 60, 1, 8, 32)
    assert sl.signal_delay_s == 120 and sl.max_num_timeout == 20
