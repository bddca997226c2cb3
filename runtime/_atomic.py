"""Atomic checkpoint writes: a reader (or a process killed mid-write) never sees a partial file."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch

__all__ = ["save_atomic", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".tmp"


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temp file, fsync, ``os.replace``, fsync dir)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not on every OS)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
