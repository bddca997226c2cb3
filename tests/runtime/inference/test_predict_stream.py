"""Streaming predict: the same numbers as the in-memory path, memory flat in the structures.

The memory test measures the peak of Python-level allocations (``tracemalloc``: every Python
object and every numpy buffer; torch's own allocator is not traced, but it holds one batch's
tensors only) while ``predict_file`` predicts ``N = 40`` and then ``10 N`` molecules (3 to 5
atoms).  Streaming keeps one batch of structures and predictions alive, so the two peaks differ
by a constant only: what CPython's free lists keep (up to 2,000 freed tuples of each length,
e.g. ASE's per-atom rows, 72 B each: at most ~140 KiB, refilled after a full garbage
collection).  Measured: 25 to 75 KiB.  We allow 512 KiB.  What that rules out: keeping every
predicted structure (the list path) costs ~4 KiB per molecule with its four predicted tensors,
measured +1.4 MiB for the 360 extra molecules; the quadratic bug of issue 13 (each structure
holding a float64 copy of the whole prediction array) ~16 MiB at 300 molecules.  A warm-up
predict first fills the caches that grow once (ASE's parsers, numpy, torch).
"""
from __future__ import annotations

import filecmp
import io
import sys
import tracemalloc

import numpy as np
import pytest
from ase.build import molecule
from ase.io import read, write

from tsym.runtime.errors import DataError, PredictError
from tsym.runtime.inference.predict import (iter_predictions, predict_file,
                                            predict_structures, read_lazily)

from .test_predict import tiny_model

ALLOWED_GROWTH = 512 * 1024  # bytes, see the module docstring
NAMES = ("H2O", "CH4", "NH3", "CO2")


def molecules(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = molecule(NAMES[k % len(NAMES)])
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        out.append(atoms)
    return out


def test_streamed_file_equals_the_in_memory_path(tmp_path):
    model = tiny_model()
    frames = molecules(23)  # not a multiple of the batch size: a short last batch
    write(tmp_path / "in.extxyz", frames)
    frames = read(tmp_path / "in.extxyz", index=":")
    assert predict_file(model, tmp_path / "in.extxyz", tmp_path / "stream.extxyz",
                        batch_size=5, suffix="_p", progress=False) == 23
    write(tmp_path / "list.extxyz", predict_structures(model, frames, batch_size=5, suffix="_p"),
          format="extxyz")
    assert filecmp.cmp(tmp_path / "stream.extxyz", tmp_path / "list.extxyz", shallow=False)
    # the same batches as model.predict: the same computation, so the same numbers exactly
    want = model.predict(frames, batch_size=5)
    got = [a for batch in iter_predictions(model, iter(frames), batch_size=5) for a in batch]
    np.testing.assert_array_equal(np.stack([a.info["dielectric"] for a in got]),
                                  want["dielectric"].reshape(23, 9))
    np.testing.assert_array_equal(np.concatenate([a.arrays["born_charges"] for a in got]),
                                  want["born_charges"].reshape(-1, 9))
    assert not any(tmp_path.glob(".*.part"))


def test_each_structure_owns_its_predictions():
    out = predict_structures(tiny_model(), molecules(6), batch_size=4)
    for atoms in out:
        for value in (atoms.info["dipole"], atoms.info["polarizability"],
                      atoms.arrays["born_charges"]):
            assert value.base is None  # its own buffer, no view of the batch's arrays
            assert value.dtype == np.float64


def _peak(model, path, out) -> int:
    tracemalloc.start()
    try:
        predict_file(model, path, out, batch_size=8, progress=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_predict_memory_is_flat_in_the_number_of_structures(tmp_path):
    model = tiny_model()
    n = 40
    for count in (n, 10 * n):
        write(tmp_path / f"m{count}.extxyz", molecules(count, seed=count))
    predict_file(model, tmp_path / f"m{10 * n}.extxyz", tmp_path / "warm.extxyz", batch_size=8,
                 progress=False)  # warm-up, not measured
    small = _peak(model, tmp_path / f"m{n}.extxyz", tmp_path / "o1.extxyz")
    large = _peak(model, tmp_path / f"m{10 * n}.extxyz", tmp_path / "o2.extxyz")
    assert len(read(tmp_path / "o2.extxyz", index=":")) == 10 * n
    assert large - small <= ALLOWED_GROWTH, (small, large)


def test_bad_frame_is_named_by_its_place_in_the_file(tmp_path):
    frames = molecules(12)
    frames[9].positions[1] = frames[9].positions[0]  # two atoms on one spot
    write(tmp_path / "in.extxyz", frames)
    with pytest.raises(DataError, match=r"in\.extxyz:record 9: atoms 0 and 1"):
        predict_file(tiny_model(), tmp_path / "in.extxyz", tmp_path / "o.extxyz", batch_size=4,
                     progress=False)
    assert not (tmp_path / "o.extxyz").exists() and not any(tmp_path.glob(".*.part"))


def test_truncated_file_names_the_record(tmp_path):
    write(tmp_path / "in.extxyz", molecules(5))
    lines = (tmp_path / "in.extxyz").read_text().splitlines(keepends=True)
    (tmp_path / "cut.extxyz").write_text("".join(lines[:-2]))  # the last frame loses 2 atoms
    with pytest.raises(DataError, match=r"cut\.extxyz:record 4: cannot read structures"):
        list(read_lazily(tmp_path / "cut.extxyz"))
    with pytest.raises(DataError, match=r"nope\.extxyz: no such file"):
        list(read_lazily(tmp_path / "nope.extxyz"))


def test_batch_size_must_be_positive():
    with pytest.raises(PredictError, match=r"^--batch-size must be >= 1, got 0"):
        list(iter_predictions(tiny_model(), molecules(2), batch_size=0))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    write(tmp_path / "in.extxyz", molecules(6))
    log = io.StringIO()  # a log file: not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    predict_file(tiny_model(), tmp_path / "in.extxyz", tmp_path / "o.extxyz", batch_size=2)
    assert log.getvalue() == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    predict_file(tiny_model(), tmp_path / "in.extxyz", tmp_path / "o.extxyz", batch_size=2)
    assert "predict" in terminal.getvalue() and "structures" in terminal.getvalue()
