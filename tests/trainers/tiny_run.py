"""A tiny but real training configuration: the quick config on a 1-camera, 4-frame, 48x32 street."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[2]

TINY_SCENE = ["scene.num_frames=4", "scene.cameras=[0]", "scene.width=48", "scene.height=32",
              "scene.moving_cars=1", "scene.parked_cars=2", "scene.trees=2", "scene.poles=1",
              "scene.lidar_beams=16", "scene.lidar_azimuths=180", "scene.test_every=4",
              "scene.max_init_points=400", "scene.supersample=1"]
# 7 / 2 / 6: the seed's 7,000 / 2,000 / 6,000 divided by 1,000
TINY_TRAINING = ["optim.stage_schedule=[{name:pretrain,steps:7},{name:entropy,steps:2},{name:sugar,steps:6}]",
                 "densify.refine_start_iter=2", "densify.refine_every=2", "densify.reset_every=1000",
                 "densify.grow_grad2d=0.00005", "model.init_opacity=0.6", "model.sh_degree_interval=3",
                 "sugar.num_samples=500", "sugar.knn=8", "sugar.knn_every=3", "checkpoint.every=0",
                 "log.progress=false", "log.snapshot_every=5", "num_threads=1"]


def tiny_config(scene_dir: Path, output_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("omnire_sugar_quick", overrides=[*TINY_SCENE, f"scene.path={scene_dir}",
                                                        f"output_dir={output_dir}", *TINY_TRAINING, *overrides])
