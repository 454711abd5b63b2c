"""A scene of each drivestudio dataset trains with both trainers (a few real steps)."""
from __future__ import annotations

import math

import pytest
from hydra import compose, initialize_config_dir

from models.trainers.scene_graph import RIGID_KEY, MultiTrainer
from models.trainers.single import SingleTrainer

from tests.trainers.tiny_run import REPO, TINY_TRAINING

from .drivestudio_fixtures import DATASETS, write_fixture


def _config(truth, out, *extra):
    scene = ["scene=processed", f"scene.path={truth.root}", "scene.test_every=0", "scene.max_init_points=400"]
    if truth.dataset == "nuplan":
        scene.append("scene.undistort=true")
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("omnire_sugar_quick", overrides=[*scene, f"output_dir={out}", *TINY_TRAINING, *extra])


@pytest.mark.parametrize("dataset", DATASETS)     # ~1 s each here (3 s for the first, warming up)
def test_trains_with_both_trainers(dataset, tmp_path):
    truth = write_fixture(dataset, tmp_path / "scene", num_frames=3, width=32, height=24)
    single = SingleTrainer(_config(truth, tmp_path / "single"), output_dir=tmp_path / "single")
    single.train(num_steps=3)
    assert single.step == 3 and single.dataset.dataset == dataset
    multi = MultiTrainer(_config(truth, tmp_path / "multi", "trainer=MultiTrainer", "loss.mask_dynamic=false"),
                         output_dir=tmp_path / "multi")
    # Both moving cars carry the dataset's own vehicle class names; the pedestrian gets no rigid node.
    assert RIGID_KEY in multi.models and len(multi.rigid_tracks) == 2
    assert all(t.node_type == RIGID_KEY for t in multi.rigid_tracks)
    multi.train(num_steps=3)
    assert multi.step == 3 and all(math.isfinite(float(p.detach().sum())) for m in multi.models.values()
                                   for p in m.params.values())
