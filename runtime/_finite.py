"""Finiteness checks of weights: which tensors of a model or state dict hold NaN or inf.

Used by training (stop on the first non-finite parameter) and by every loader of a trained
model (predict, eval, export refuse non-finite weights).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["nonfinite_parameters", "nonfinite_tensors", "describe"]


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
