"""StageSchedule (seed T-FR-ARCH-001): stage per global step, boundaries, state round trip, bad input."""
import pytest

from models.trainers.base import StageSchedule, StageSpec

SEED = [StageSpec("pretrain", 7000), StageSpec("entropy", 2000), StageSpec("sugar", 6000)]


def seed_schedule():
    return StageSchedule(SEED)


def test_whole_15000_step_sequence():
    sched = seed_schedule()
    seq = [sched.step(s) for s in range(15000)]
    expected = ([("pretrain", i) for i in range(7000)] + [("entropy", i) for i in range(2000)]
                + [("sugar", i) for i in range(6000)])
    assert seq == expected
    assert sched.total_steps == 15000


@pytest.mark.parametrize("step, expected", [
    (0, ("pretrain", 0)), (6999, ("pretrain", 6999)), (7000, ("entropy", 0)), (8999, ("entropy", 1999)),
    (9000, ("sugar", 0)), (14999, ("sugar", 5999)), (8000, ("entropy", 1000)),
])
def test_boundaries(step, expected):
    assert seed_schedule().step(step) == expected


def test_step_records_position_and_state_round_trip():
    sched = seed_schedule()
    sched.step(8000)
    state = sched.to_state()
    assert state["stage_index"] == 1 and state["offset"] == 1000
    restored = StageSchedule.from_state(state)
    assert restored == sched
    assert restored.stages == sched.stages
    assert (restored.stage_index, restored.offset, restored.global_step) == (1, 1000, 8000)
    assert restored.step(9000) == ("sugar", 0)
    assert restored != sched  # position moved


def test_round_trip_keeps_hooks_and_survives_plain_serialisation():
    import json
    sched = StageSchedule([{"name": "a", "steps": 3, "hooks": {"densify": True}}, {"name": "b", "steps": 2}])
    sched.step(4)
    state = json.loads(json.dumps(sched.to_state()))
    assert StageSchedule.from_state(state) == sched
    assert StageSchedule.from_state(state).stages[0].hooks == {"densify": True}


def test_accepts_config_mappings():
    sched = StageSchedule([{"name": "pretrain", "steps": 7000}, {"name": "entropy", "steps": 2000},
                           {"name": "sugar", "steps": 6000}])
    assert sched == seed_schedule()


@pytest.mark.parametrize("stages, fragment", [
    ([], "empty"),
    ([StageSpec("", 10)], "stage 0: name must be a non-empty string"),
    ([StageSpec("a", 10), StageSpec("a", 5)], "duplicate stage name 'a'"),
    ([StageSpec("a", 0)], "steps must be a positive integer, got 0"),
    ([StageSpec("a", -3)], "got -3"),
    ([StageSpec("a", True)], "got True"),
    ([StageSpec("a", 7000.5)], "got 7000.5"),
    ([StageSpec("a", 7000.0)], "got 7000.0"),
    ([StageSpec("a", "7000")], "got '7000'"),
    ([StageSpec("a", 5), StageSpec("b", None)], "stage 1 ('b')"),
    ([StageSpec("a", 5, hooks={"densfy": True})], "unknown hook 'densfy'"),
    ([{"name": "a"}], "expected keys 'name' and 'steps'"),
])
def test_bad_stages(stages, fragment):
    with pytest.raises(ValueError, match=None) as err:
        StageSchedule(stages)
    assert fragment in str(err.value)


@pytest.mark.parametrize("step, fragment", [
    (15000, "step 15000 is past the end of the schedule (15000 steps: pretrain 7000, entropy 2000, sugar 6000)"),
    (-1, "step -1 is negative"),
    (1.0, "must be an integer"),
    (True, "must be an integer"),
    ("3", "must be an integer"),
])
def test_bad_global_step(step, fragment):
    with pytest.raises(ValueError) as err:
        seed_schedule().step(step)
    assert fragment in str(err.value)


@pytest.mark.parametrize("state, fragment", [
    ({"offset": 0, "stages": [{"name": "a", "steps": 2}]}, "missing 'stage_index'"),
    ({"stage_index": 0, "stages": [{"name": "a", "steps": 2}]}, "missing 'offset'"),
    ({"stage_index": 1, "offset": 0, "stages": [{"name": "a", "steps": 2}]}, "stage_index 1 is out of range"),
    ({"stage_index": -1, "offset": 0, "stages": [{"name": "a", "steps": 2}]}, "stage_index -1 is out of range"),
    ({"stage_index": 0, "offset": 2, "stages": [{"name": "a", "steps": 2}]}, "offset 2 is out of range"),
    ({"stage_index": 0, "offset": -1, "stages": [{"name": "a", "steps": 2}]}, "offset -1 is out of range"),
    ({"stage_index": 0, "offset": 0}, "no 'stages'"),
    ("not a dict", "must be a mapping"),
])
def test_bad_state(state, fragment):
    with pytest.raises(ValueError) as err:
        StageSchedule.from_state(state)
    assert fragment in str(err.value)


def test_hooks_defaults_for_seed_names_and_overrides():
    sched = StageSchedule([{"name": "pretrain", "steps": 1}, {"name": "sugar", "steps": 1, "hooks": {"densify": True}},
                           {"name": "custom", "steps": 1}])
    pre, sugar, custom = (s.resolved_hooks() for s in sched.stages)
    assert pre["densify"] and not pre["render_depth"] and not pre["sugar_losses"]
    assert sugar["render_depth"] and sugar["sugar_losses"] and sugar["densify"]  # overridden
    assert not any(custom.values())
