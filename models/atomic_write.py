"""Writing a file so that no reader, and no crash, ever leaves half of it under its name."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Union


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], object], *,
                 durable: bool = False) -> Path:
    """Write `path` by calling `write(f)` on a new hidden temporary file in the same folder
    (`.<name>.<random>.tmp`, so concurrent writers never share one) and renaming it over `path`.
    On any failure the temporary file is removed, `path` (if it existed) is untouched, and the
    exception propagates. `durable`: fsync the file and then the folder, so that the new file
    survives a power cut (checkpoints). Creates the folder. Returns `path` as a Path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path
