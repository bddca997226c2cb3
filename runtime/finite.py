"""Non-finite numbers: which weights hold NaN or inf, and JSON that never holds ``NaN``.

Used by training (stop on the first non-finite parameter; JSON records), by every loader of a
trained model (predict, eval and export refuse non-finite weights) and by the JSON writers.

>>> dumps({"loss": float("nan"), "steps": [1.5, float("inf")]})
'{"loss": null, "steps": [1.5, null]}'
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping

import torch

__all__ = ["nonfinite_parameters", "nonfinite_tensors", "describe", "finite_or_null", "dumps"]


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


def finite_or_null(value):
    """``value`` with every non-finite float (in dicts, lists, tuples) replaced by None."""
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value, **kwargs) -> str:
    """``json.dumps`` of :func:`finite_or_null` ``(value)``: never ``NaN`` or ``Infinity``."""
    return json.dumps(finite_or_null(value), allow_nan=False, **kwargs)
