"""JSON that other tools can read: non-finite floats become ``null`` (``NaN`` is not JSON).

>>> dumps({"loss": float("nan"), "steps": [1.5, float("inf")]})
'{"loss": null, "steps": [1.5, null]}'
"""
from __future__ import annotations

import json
import math

__all__ = ["finite_or_null", "dumps"]


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
