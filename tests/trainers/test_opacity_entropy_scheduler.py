"""OpacityEntropyScheduler (seed T-FR-ARCH-001): weights per stage, unknown stages, bad tables."""
import math

import pytest

from models.trainers.base import OpacityEntropyScheduler, StageSchedule, StageSpec

TABLE = {"pretrain": 0.0, "entropy": 0.3, "sugar": 0.1}


def test_weights_of_the_seed_table():
    sched = OpacityEntropyScheduler(TABLE)
    assert sched.weight("pretrain") == 0.0
    assert sched.weight("entropy") == 0.3
    assert sched.weight("sugar") == 0.1


def test_undefined_stage_raises_keyerror_listing_known_stages():
    with pytest.raises(KeyError) as err:
        OpacityEntropyScheduler(TABLE).weight("refine")
    msg = str(err.value)
    assert "'refine'" in msg and "pretrain, entropy, sugar" in msg


@pytest.mark.parametrize("weight", [-0.1, math.nan, math.inf, "0.3", None, True])
def test_bad_weights(weight):
    with pytest.raises(ValueError) as err:
        OpacityEntropyScheduler({"pretrain": 0.0, "entropy": weight})
    assert "'entropy'" in str(err.value) and "finite number >= 0" in str(err.value)


def test_table_must_be_a_mapping():
    with pytest.raises(ValueError):
        OpacityEntropyScheduler([("pretrain", 0.0)])


def test_covers_every_stage_of_a_schedule():
    sched = StageSchedule([StageSpec("pretrain", 7000), StageSpec("entropy", 2000), StageSpec("sugar", 6000)])
    OpacityEntropyScheduler(TABLE).check_covers(sched)
    with pytest.raises(ValueError) as err:
        OpacityEntropyScheduler({"pretrain": 0.0, "entropy": 0.3}).check_covers(sched)
    assert "'sugar'" in str(err.value) and "render.opacity_entropy.table" in str(err.value)
