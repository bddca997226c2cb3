"""What a trained model has seen: the elements of its training data, and the records beyond them.

A model still predicts for an element it never met in training (XPaiNN's embedding covers H..Og),
but such a prediction is an extrapolation: :func:`unseen_elements` names the records of a file
that hold one, so ``tsym eval`` can say so before it reports their errors.
"""
from __future__ import annotations

import os
from pathlib import Path

from ase.data import chemical_symbols

from tsym.runtime.data.extxyz import iter_frames
from tsym.runtime.model.checkpoint import read_model

__all__ = ["training_elements", "unseen_elements", "describe_unseen"]


def _elements(path: str | os.PathLike) -> set[int]:
    with open(path) as f:
        return {int(z) for atoms in iter_frames(f) for z in atoms.numbers}


def training_elements(checkpoint: str | os.PathLike) -> set[int] | None:
    """The atomic numbers of the data files a training checkpoint's config names (``train``, and
    ``valid`` where given); None for a model checkpoint or when the files are no longer there."""
    config = read_model(checkpoint).config
    data = config.get("data") or {}
    files = [data.get(k) for k in ("train", "valid") if data.get(k)]
    if not files or not all(Path(f).is_file() for f in files):
        return None
    try:
        return set().union(*(_elements(f) for f in files))
    except (OSError, ValueError):  # a file changed since training: say nothing rather than guess
        return None


def unseen_elements(checkpoint: str | os.PathLike, data: str | os.PathLike
                    ) -> tuple[set[int], dict[int, list[int]]]:
    """``(training elements, {unseen atomic number: record indices of data})``; both empty when
    the training data is unknown (:func:`training_elements`)."""
    seen = training_elements(checkpoint)
    if seen is None:
        return set(), {}
    records: dict[int, list[int]] = {}
    with open(data) as f:
        for k, atoms in enumerate(iter_frames(f)):
            for z in sorted(set(int(z) for z in atoms.numbers) - seen):
                records.setdefault(z, []).append(k)
    return seen, records


def describe_unseen(data: str, seen: set[int], records: dict[int, list[int]]) -> str:
    """One warning line for :func:`unseen_elements`' result (records 0-based, as in errors)."""
    parts = []
    for z, where in sorted(records.items()):
        shown = ", ".join(map(str, where[:5])) + (f", ... ({len(where)} records)"
                                                  if len(where) > 5 else "")
        parts.append(f"{chemical_symbols[z]} (record{'s' if len(where) > 1 else ''} {shown})")
    known = " ".join(chemical_symbols[z] for z in sorted(seen))
    return (f"{data}: elements the model never saw in training: {'; '.join(parts)}; its "
            f"training data holds {known}: predictions for these records are extrapolations")
