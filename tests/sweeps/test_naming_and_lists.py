"""Per-scene folder names and scene-list files."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from sweeps.naming import scene_name
from sweeps.scene_list import expand_argv, read_scene_list


def test_scene_name_is_the_folder_name_or_the_synthetic_seed():
    assert scene_name({"type": "processed", "path": "/data/waymo/023/"}) == "023"
    assert scene_name({"type": "processed", "path": "/data/segment 1:a"}) == "segment_1_a"
    assert scene_name({"type": "synthetic", "path": None, "seed": 4}) == "synthetic_seed4"


def test_sweep_subdir_resolves_to_the_scene_name():
    cfg = OmegaConf.create({"scene": {"type": "processed", "path": "/x/abc"},
                            "hydra": {"sweep": {"subdir": "${scene_name:${scene}}"}}})
    assert cfg.hydra.sweep.subdir == "abc"


@pytest.fixture
def scene_dirs(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / "scenes" / name).mkdir(parents=True)
    return tmp_path / "scenes"


def test_scene_list_file_becomes_a_sweep(scene_dirs, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"# fleet\nscenes/a\n\n{scene_dirs / 'b'}   # absolute\nscenes/c\n")
    assert read_scene_list(lst) == [scene_dirs / "a", scene_dirs / "b", scene_dirs / "c"]
    argv = expand_argv(["train.py", "--multirun", f"scene_list={lst}", "output_dir=o"])
    assert argv[:3] == ["train.py", "--multirun", "scene=processed"]
    assert argv[3] == "scene.path=" + ",".join(f"'{scene_dirs / n}'" for n in "abc")
    assert argv[4] == "output_dir=o"
    # a scene option given by the user is kept
    assert "scene=processed" not in expand_argv(["t", "-m", "scene=synthetic", f"scene_list={lst}"])[1:2]


def test_scene_list_errors_name_the_file_and_every_bad_line(scene_dirs, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("scenes/a\nscenes/missing\nscenes/a\n")
    with pytest.raises(ValueError, match=r"line 2: .*missing is not a folder.*2 scenes would share the output folder 'a'"):
        read_scene_list(lst)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no scene folder"):
        read_scene_list(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="no such file"):
        read_scene_list(tmp_path / "nope.txt")
    lst.write_text("scenes/a\n")
    with pytest.raises(ValueError, match="--multirun"):
        expand_argv(["t", f"scene_list={lst}"])
    with pytest.raises(ValueError, match="not both"):
        expand_argv(["t", "-m", f"scene_list={lst}", "scene.path=/x"])
    assert expand_argv(["t", "a=1"]) == ["t", "a=1"]
