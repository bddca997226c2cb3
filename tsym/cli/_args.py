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

__all__ = ["add_model_argument", "positive_int", "check_output_file"]


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
        raise TsymError(f"{path}: cannot write the {what}: the folder {folder} does not exist "
                        "(create it first)")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise TsymError(f"{path}: cannot write the {what}: permission denied")
    return path
