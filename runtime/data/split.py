"""Reproducible train/valid/test splits and their JSON files."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tsym.runtime.errors import DataError

__all__ = ["SPLIT_NAMES", "split", "save_split", "load_split"]

SPLIT_NAMES = ("train", "valid", "test")
#: Names older ``split.json`` files use for a part (still read).
_OLD_NAMES = {"valid": "val"}


def split(dataset: Sequence | int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
          groups: Sequence | None = None) -> dict[str, list[int]]:
    """Random disjoint ``{"train", "valid", "test"}`` index lists covering ``range(len(dataset))``.

    Counts are ``round(f * n)`` for train and valid, the rest for test; each list is sorted.  The
    same ``(n, fractions, seed)`` always gives the same split (numpy ``default_rng(seed)``).

    ``groups`` (one hashable per item, e.g. a molecule's name) keeps every group whole in one
    part: the groups are shuffled and dealt to train until it holds ``round(f_train * n)`` items
    or more, then to valid likewise, the rest to test; so no part holds a copy (a displaced
    geometry, a frame of the same trajectory) of another part's item.

    >>> split(6, (0.5, 0.5, 0.0), seed=0, groups=["a", "a", "b", "b", "c", "c"])["valid"] in (
    ...     [0, 1], [2, 3], [4, 5], [0, 1, 2, 3], [0, 1, 4, 5], [2, 3, 4, 5])
    True
    """
    n = dataset if isinstance(dataset, int) else len(dataset)
    f = [float(x) for x in fractions]
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {f}")
    n_train = int(round(f[0] * n))
    n_valid = min(int(round(f[1] * n)), n - n_train)
    if groups is None:
        perm = np.random.default_rng(seed).permutation(n)
        parts = (perm[:n_train], perm[n_train:n_train + n_valid], perm[n_train + n_valid:])
        return {name: sorted(int(i) for i in part) for name, part in zip(SPLIT_NAMES, parts)}
    if len(groups) != n:
        raise ValueError(f"groups must have one entry per item ({n}), got {len(groups)}")
    members: dict = {}
    for i, g in enumerate(groups):  # first-appearance order: independent of the key type
        members.setdefault(g, []).append(i)
    keys = list(members)
    out: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for k in np.random.default_rng(seed).permutation(len(keys)):
        part = ("train" if len(out["train"]) < n_train else
                "valid" if len(out["valid"]) < n_valid else "test")
        out[part].extend(members[keys[k]])
    return {name: sorted(part) for name, part in out.items()}


def save_split(path: str | Path, split_: Mapping[str, Sequence[int]], **meta) -> None:
    """Write a split as JSON (``{"train": [...], "valid": [...], "test": [...], ...meta}``)."""
    payload = {name: [int(i) for i in split_[name]] for name in SPLIT_NAMES}
    overlap = set(payload["train"]) & set(payload["valid"]) | (
        (set(payload["train"]) | set(payload["valid"])) & set(payload["test"]))
    if overlap:
        raise ValueError(f"split parts overlap at indices {sorted(overlap)[:5]}")
    payload.update({k: v for k, v in meta.items() if k not in SPLIT_NAMES + ("val",)})
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def load_split(path: str | Path) -> dict[str, list[int]]:
    """Read a split written by :func:`save_split`; checks the parts are disjoint integer lists."""
    source = str(path)
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(source, None, f"cannot read the split ({err})") from None
    out, seen = {}, set()
    for name in SPLIT_NAMES:
        items = None
        if isinstance(payload, dict):
            items = payload.get(name, payload.get(_OLD_NAMES.get(name, name)))
        if not isinstance(items, list) or not all(isinstance(i, int) and i >= 0 for i in items):
            raise DataError(source, None, f"split part {name!r} must be a list of indices >= 0")
        if seen & set(items):
            raise DataError(source, None, f"split part {name!r} overlaps an earlier part")
        seen |= set(items)
        out[name] = list(items)
    return out
