"""Finiteness checks of weights: which tensors of a model or state dict hold NaN or inf.

Used by training (stop on the first non-finite parameter) and by every loader of a trained
model (predict, eval, export refuse non-finite weights).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["nonfinite_parameters", "nonfinite_tensors", "describe", "divergence_message"]


def nonfinite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of the parameters of ``module`` holding NaN or inf (one device sync if none)."""
    named = list(module.named_parameters())
    if not named:
        return []
    flags = torch.stack([torch.isfinite(p.detach()).all() for _, p in named])  # [P]
    if bool(flags.all()):
        return []
    return [n for (n, _), ok in zip(named, flags.tolist()) if not ok]


def nonfinite_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``{name: number of NaN/inf entries}`` of the floating tensors of a state dict."""
    out = {}
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
            bad = int((~torch.isfinite(t.detach())).sum())
            if bad:
                out[name] = bad
    return out


def describe(names, limit: int = 3) -> str:
    """``'a, b, c and 4 more'``."""
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


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
