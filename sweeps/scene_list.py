"""`scene_list=FILE`: sweep over the scene folders listed in a text file.

Hydra's sweeper expands comma-separated values; a fleet of hundreds of scenes is easier to keep in
a file. omnire-train turns `scene_list=FILE` into `scene.path='a','b',...` (and `scene=processed`
unless a scene option is given) before Hydra reads the command line.

File format: one scene folder per line; blank lines and `#` comments are skipped; a relative path
is relative to the file's own folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from .naming import scene_name

ARG = "scene_list="


def read_scene_list(path: str | Path) -> List[Path]:
    """The scene folders of a list file; one error naming every bad line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"scene_list={path}: no such file (expected a text file with one scene folder per line)")
    base = path.resolve().parent
    scenes: List[Path] = []
    problems: List[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "'" in line or "\\" in line:
            problems.append(f"line {number}: {line!r} contains a quote or a backslash")
            continue
        folder = Path(line).expanduser()
        folder = folder if folder.is_absolute() else base / folder
        if not folder.is_dir():
            problems.append(f"line {number}: {folder} is not a folder")
            continue
        scenes.append(folder)
    if not scenes and not problems:
        raise ValueError(f"scene_list={path}: the file lists no scene folder")
    names: dict = {}
    for folder in scenes:
        names.setdefault(scene_name({"path": str(folder)}), []).append(str(folder))
    for name, folders in names.items():
        if len(folders) > 1:
            problems.append(f"{len(folders)} scenes would share the output folder {name!r}: {', '.join(folders)}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")
        raise ValueError(f"scene_list={path}: {shown}")
    return scenes


def expand_argv(argv: Sequence[str]) -> List[str]:
    """Replace `scene_list=FILE` in a command line by the sweep over its scenes (other arguments kept)."""
    argv = list(argv)
    found = [a for a in argv[1:] if a.startswith(ARG)]
    if not found:
        return argv
    if len(found) > 1:
        raise ValueError("scene_list= was given more than once; give one list file")
    if not any(a in ("-m", "--multirun") for a in argv[1:]):
        raise ValueError("scene_list= runs one job per scene: add --multirun (or -m)")
    if any(a.startswith("scene.path=") for a in argv[1:]):
        raise ValueError("give either scene_list=FILE or scene.path=..., not both")
    scenes = read_scene_list(found[0][len(ARG):])
    sweep = "scene.path=" + ",".join(f"'{p}'" for p in scenes)
    out = [sweep if a == found[0] else a for a in argv]
    if not any(a.startswith("scene=") for a in argv[1:]):
        out.insert(out.index(sweep), "scene=processed")
    return out
