"""The one-line message of a run that diverged (step, cause, checkpoints kept, what to change)."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from tsym.runtime.finite import describe

__all__ = ["divergence_message"]


def divergence_message(run_dir: str | os.PathLike, step: int, what: str, where: str,
                       losses: Mapping[str, float], params: list[str],
                       kept: Mapping[str, int]) -> str:
    """One line: where the run diverged, why (``what``: loss, gradient or parameter), the
    per-head losses, the checkpoints ``kept`` (``{file name: step}``), what to change."""
    heads = [n for n, v in losses.items() if not math.isfinite(v)]
    values = ", ".join(f"{n} {v:.4g}" for n, v in losses.items())
    if what == "loss":
        cause = (f"the {where} loss of head{'s' if len(heads) > 1 else ''} "
                 f"{', '.join(repr(h) for h in heads)} is not finite ({values})")
    elif what == "gradient":
        cause = f"the gradient norm is not finite (losses finite: {values})"
    else:
        cause = (f"parameters became non-finite after the update ({describe(params)}; "
                 f"losses {values})")
    if kept:
        files = ", ".join(f"{Path(run_dir) / n} (step {s})" for n, s in sorted(kept.items()))
        keep = f"last good checkpoint kept, not overwritten: {files}"
    else:
        keep = ("no checkpoint was written before it (training.checkpoint_every writes "
                "last.pt more often)")
    return (f"{run_dir}: training diverged at step {step}: {cause}; {keep}; lower optimiser.lr "
            "or set training.grad_clip")
