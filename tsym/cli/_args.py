"""Command-line arguments that several ``tsym`` commands share."""
from __future__ import annotations

__all__ = ["add_model_argument"]


def add_model_argument(parser) -> None:
    """The trained model to use: a run directory or a checkpoint file."""
    parser.add_argument("model", help="run directory (best.pt, else last.pt) or checkpoint file")
