"""Command-line arguments that several ``tsym`` commands share, and the checks of their values
made before any work (a count >= 1, an output file whose folder exists).

>>> positive_int("3")
3
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from tsym.compiler import TsymError

__all__ = ["add_model_argument", "positive_int", "check_output_file", "check_output_folder"]


def add_model_argument(parser) -> None:
    """The trained model to use: a run directory or a checkpoint file."""
    parser.add_argument("model", help="run directory (best.pt, else last.pt) or checkpoint file")


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1 (``--batch-size``, ``--limit``, ``--stop-after``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """``path`` if a file can be written there; else a :class:`TsymError` naming the problem."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise TsymError(f"{path}: the {what} is a folder; give a file name")
    if not folder.is_dir():
        _refuse_file_as_folder(path, folder, what)
        raise TsymError(f"{path}: cannot write the {what}: the folder {folder} does not exist "
                        "(create it first)")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise TsymError(f"{path}: cannot write the {what}: permission denied")
    return path


def _refuse_file_as_folder(path: Path, folder: Path, what: str) -> None:
    """Raise a TsymError when ``folder`` or one of its parents is an existing non-folder."""
    for above in (folder, *folder.parents):
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                raise TsymError(f"{path}: cannot write the {what}: {above} is a file, not a "
                                "folder; give a path inside a folder")
            return


def check_output_folder(path: str | os.PathLike, what: str = "output (-o)") -> Path:
    """``path`` if it is a folder or can be made one; else a :class:`TsymError` saying that a
    folder is expected (``-o FILE`` used to end in ``FILE: File exists``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TsymError(f"{path}: is a file, but the {what} must be a folder; give a folder "
                        "name (it is created when missing)")
    _refuse_file_as_folder(path, path, what)
    return path
