"""Atomic checkpoint writes: a reader (or a process killed mid-write) never sees a partial file."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

import torch

__all__ = ["save_atomic", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".tmp"
#: How torch's zip writer reports a failed write(2) (a full disk): a RuntimeError saying this.
_WRITER_FAILED = ("inline_container", "PytorchStreamWriter", "file write failed")


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temp file, fsync, ``os.replace``, fsync dir).

    A failed write (a full disk, a read-only folder) raises ``OSError`` naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise OSError(err.errno, f"cannot write here ({err.strerror})", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, RuntimeError) and not any(m in str(err) for m in _WRITER_FAILED):
            raise
        free = shutil.disk_usage(path.parent).free
        raise OSError(getattr(err, "errno", None) or errno.EIO, "writing failed "
                      f"({getattr(err, 'strerror', None) or 'a short write'}; {free} bytes free "
                      "on its disk)", str(path)) from None
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
