"""A tiny generated street scene shared by the scene tests (generated once per session)."""
from __future__ import annotations

import shutil

import pytest

from scenes import SyntheticParams, generate

TINY = dict(seed=3, num_frames=6, cameras=[0, 1, 2], width=64, height=40, ego_speed=1.0,
            moving_cars=2, parked_cars=4, trees=4, poles=2, supersample=2,
            lidar_beams=16, lidar_azimuths=360)


@pytest.fixture(scope="session")
def tiny_params() -> SyntheticParams:
    return SyntheticParams(**TINY)


@pytest.fixture(scope="session")
def tiny_generated(tmp_path_factory, tiny_params):
    """(folder, in-memory StreetScene) of the tiny scene."""
    root = tmp_path_factory.mktemp("tiny") / "scene"
    scene = generate(tiny_params, root)
    return root, scene


@pytest.fixture(scope="session")
def tiny_cfg(tiny_generated):
    root, _ = tiny_generated
    return dict(type="processed", path=str(root), cameras=[0, 1, 2], test_every=3, max_init_points=5000,
                load_gt=True)


@pytest.fixture(scope="session")
def tiny_scene(tiny_cfg):
    from scenes import load_scene
    return load_scene(tiny_cfg)


@pytest.fixture
def scene_copy(tiny_generated, tmp_path):
    """A private copy of the tiny scene folder that a test may damage."""
    dst = tmp_path / "scene"
    shutil.copytree(tiny_generated[0], dst)
    return dst
