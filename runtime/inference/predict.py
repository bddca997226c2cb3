"""Trained models in use: load a run or checkpoint, write predictions to extxyz, an ASE calculator.

:func:`load_model` accepts a run directory (``best.pt``, else ``last.pt``), a training checkpoint
(``tsym-train/1``: a :class:`~tsym.runtime.model.TrainedModel` whose outputs are de-normalised,
i.e. in the units of the training labels) or a model checkpoint written by
:meth:`TensorModel.save <tsym.runtime.model.TensorModel.save>` (``tsym-model/1``: raw outputs).
It refuses weights holding NaN or inf (:class:`~tsym.runtime.errors.NonFiniteWeightsError`).

:func:`predict_structures` returns copies of the structures with every head's prediction stored
under its spec name (plus an optional suffix), flattened row-major: a structure-level tensor in
``atoms.info`` (``3**n`` numbers), an atom-level one in ``atoms.arrays`` (``[n_atoms, 3**n]``).
Note that ASE's extxyz reader moves ``info`` keys that are ASE property names (``dipole``, ...)
into ``atoms.calc.results``.

:class:`~tsym.runtime.inference.calculator.TsymCalculator` (an ASE calculator) reports each
head under its spec name and, for these spec names, also under ASE's standard property name
(:data:`ASE_NAMES`):

=========================  ============================  ===============  =====
spec name                  ASE property                  level            order
=========================  ============================  ===============  =====
dipole                     ``dipole``                    structure        1
polarization               ``polarization``              structure        1
dielectric                 ``dielectric_tensor``         structure        2
born_charges               ``born_effective_charges``    atom             2
charges                    ``charges``                   atom             0
=========================  ============================  ===============  =====

A spec whose level or order differs from the table keeps its spec name only.

>>> from ase.build import molecule
>>> from tsym.runtime.inference.calculator import TsymCalculator
>>> calc = TsymCalculator(load_model("runs/dipole"))                   # doctest: +SKIP
>>> water = molecule("H2O"); water.calc = calc                          # doctest: +SKIP
>>> water.get_dipole_moment()                                           # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm.auto import tqdm

from tsym.compiler import HeadPlan
from tsym.runtime.model.checkpoint import read_model, resolve_checkpoint
from tsym.runtime.data.labels import LabelSpec
from tsym.runtime.data.extxyz import iter_frames, unreadable_reason
from tsym.runtime.errors import DataError, NonFiniteWeightsError, PredictError
from tsym.runtime.finite import describe, nonfinite_tensors
from tsym.runtime.model import TensorModel, TrainedModel, build_model, predict_batched
from tsym.runtime.spectra import derivatives as position_derivatives

__all__ = ["ASE_NAMES", "load_model", "check_finite", "model_plans", "checkpoint_labels",
           "predict_structures", "iter_predictions", "predict_file", "read_lazily",
           "check_suffix"]

#: spec name -> (ASE property name, level, order) under which :class:`TsymCalculator` also
#: reports the prediction.
ASE_NAMES = {
    "dipole": ("dipole", "structure", 1),
    "polarization": ("polarization", "structure", 1),
    "dielectric": ("dielectric_tensor", "structure", 2),
    "dielectric_tensor": ("dielectric_tensor", "structure", 2),
    "born_charges": ("born_effective_charges", "atom", 2),
    "born_effective_charges": ("born_effective_charges", "atom", 2),
    "charges": ("charges", "atom", 0),
}


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> TrainedModel | TensorModel:
    """The model of a run directory or checkpoint, in eval mode, predicting in data units.

    A training checkpoint gives a :class:`~tsym.runtime.model.TrainedModel` (EMA weights,
    outputs de-normalised with the stored training statistics); a model checkpoint gives the
    :class:`~tsym.runtime.model.TensorModel` it holds (no normalisation to undo).
    """
    path = resolve_checkpoint(path)
    model = build_model(checkpoint=path).to(device).eval()
    check_finite(model, path)
    return model


def check_finite(model, where: str | os.PathLike = "the model") -> None:
    """Refuse a model whose weights (or normalisation) hold NaN or inf.

    Raises :class:`~tsym.runtime.errors.NonFiniteWeightsError` naming ``where`` and the tensors.
    """
    bad = nonfinite_tensors(model.state_dict())
    if bad:
        raise NonFiniteWeightsError(
            f"{where}: the model's weights are not finite ({sum(bad.values())} NaN/inf values "
            f"in {describe(bad)}); it would predict NaN; use a checkpoint written before the "
            "training diverged, or train again (lower optimiser.lr, set training.grad_clip)")


def model_plans(model) -> dict[str, HeadPlan]:
    """``{spec name: HeadPlan}`` of a :class:`TensorModel` or :class:`TrainedModel`."""
    plans = model.plans
    if isinstance(plans, dict):
        return dict(plans)
    return {plan.name: plan for plan in plans}


def checkpoint_labels(path: str | os.PathLike, model=None) -> dict[str, LabelSpec]:
    """The label of each head as the run read it (key, format, unit, scale from its config).

    For a model checkpoint (no training config) each head's label key is its spec name, in
    ``flat`` format.
    """
    path = resolve_checkpoint(path)
    model = load_model(path) if model is None else model
    heads = read_model(path).config.get("heads") or {}
    out = {}
    for name, plan in model_plans(model).items():
        h = heads.get(name) or {}
        key = h.get("key") or name
        out[name] = LabelSpec(name=name, key=key, format=h.get("format", "flat"),
                              unit=h.get("unit"), scale=float(h.get("scale", 1.0)),
                              level=plan.level, order=plan.order)
    return out


#: what ``suffix`` may hold: extxyz keys are bare words, and ``=`` splits ``key=value``
_SUFFIX = re.compile(r"[A-Za-z0-9_.+-]*")


def check_suffix(suffix: object) -> str:
    """``suffix`` if it makes extxyz keys that read back as written, else a PredictError.

    >>> check_suffix("_pred")
    '_pred'
    """
    if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
        raise PredictError(f"--suffix {suffix!r}: a key suffix may hold ASCII letters, digits "
                           "and _ . + - only (extxyz would not read the key back); write e.g. "
                           "--suffix _pred")
    return suffix


def _flat(value: np.ndarray, level: str) -> np.ndarray | float:
    if level == "atom":
        return value.reshape(value.shape[0], -1) if value.ndim > 1 else value  # [n, 3^k] or [n]
    flat = value.reshape(-1)  # [3^k]
    return float(flat[0]) if value.ndim == 0 else flat


def _with_predictions(batch: Sequence[Atoms], preds: dict[str, np.ndarray],
                      plans: dict[str, HeadPlan], suffix: str) -> list[Atoms]:
    """Copies of ``batch`` with its predictions (own float64 copies, no views of ``preds``)."""
    out, offset = [], 0
    for k, atoms in enumerate(batch):
        new = atoms.copy()
        n = len(atoms)
        written = set()
        for name, plan in plans.items():
            key = f"{name}{suffix}"
            if plan.level == "atom":
                new.arrays.pop(key, None)
                new.new_array(key, np.array(_flat(preds[name][offset:offset + n], "atom"),
                                            dtype=np.float64))  # [n, 3^k] or [n], a copy
            else:
                value = _flat(preds[name][k], "structure")
                new.info[key] = value if isinstance(value, float) else np.array(
                    value, dtype=np.float64)  # [3^k], a copy
            written.add(key)
        results = getattr(atoms.calc, "results", None) or {}
        kept = {key: v for key, v in results.items() if key not in written}
        if kept:
            new.calc = SinglePointCalculator(new, **kept)
        offset += n
        out.append(new)
    return out


def iter_predictions(model, structures: Atoms | Iterable[Atoms], *, batch_size: int = 32,
                     suffix: str = "", source: str = "<structures>", derivatives: bool = False
                     ) -> Iterator[list[Atoms]]:
    """Batches of copies of ``structures`` holding the predictions, one batch at a time.

    ``structures`` is read lazily (a generator such as ``ase.io.iread`` works): only one batch
    of structures and its predictions is alive at a time, so memory does not grow with the
    number of structures.  The batches are those of ``model.predict(structures, batch_size)``,
    so the numbers are the same.  Graph errors name ``source`` and the record's place in the
    input (0-based).  ``derivatives``: also each structure-level head's derivative with respect
    to the positions (:func:`tsym.runtime.spectra.derivatives`) in ``atoms.arrays`` under
    ``NAME_derivatives`` + suffix, ``[n_atoms, 3^(k+1)]`` (the displacement direction last).
    """
    if isinstance(structures, Atoms):
        structures = [structures]
    if batch_size < 1:
        raise PredictError(f"--batch-size must be >= 1, got {batch_size}")
    check_suffix(suffix)
    plans = model_plans(model)
    items = iter(structures)
    first = 0
    while batch := list(itertools.islice(items, batch_size)):
        preds = predict_batched(model, list(plans.values()), batch, batch_size,
                                source=source, first=first)
        out = _with_predictions(batch, preds, plans, suffix)
        if derivatives:
            grads = position_derivatives(model, batch, batch_size=batch_size, source=source)
            offset = 0
            for atoms in out:
                n = len(atoms)
                for name, value in grads.items():  # [N, 3, ..., 3, 3]
                    key = f"{name}_derivatives{suffix}"
                    atoms.arrays.pop(key, None)
                    atoms.new_array(key, value[offset:offset + n].reshape(n, -1).astype(
                        np.float64))  # [n, 3^(k+1)]
                offset += n
        yield out
        first += len(batch)


def predict_structures(model, structures: Atoms | Iterable[Atoms], *, batch_size: int = 32,
                       suffix: str = "", source: str = "<structures>",
                       derivatives: bool = False) -> list[Atoms]:
    """Copies of ``structures`` holding the predictions (key = spec name + ``suffix``).

    Structure-level heads go to ``atoms.info``, atom-level heads to ``atoms.arrays``, flattened
    row-major (``3**n`` numbers per structure or atom), each an array of its own.  A key already
    present (also among the results of an attached single-point calculator) is replaced; results
    of such a calculator are otherwise kept.  Errors name ``source`` and the structure's place
    in ``structures`` (``FILE:record 40: ...``).  For many structures use :func:`predict_file`,
    which keeps one batch in memory.  ``derivatives``: as :func:`iter_predictions`.
    """
    return [atoms for batch in iter_predictions(model, structures, batch_size=batch_size,
                                                suffix=suffix, source=source,
                                                derivatives=derivatives) for atoms in batch]



def read_lazily(path: str | os.PathLike, format: str | None = None) -> Iterator[Atoms]:
    """The structures of ``path`` one at a time; read errors as DataError naming the record.

    Extended XYZ (``.xyz``, ``.extxyz``) is split frame by frame here, so memory stays flat
    however long the file (``ase.io.iread`` first indexes every frame); other formats go
    through ``ase.io.iread``.
    """
    source = str(path)
    if not Path(source).is_file():
        raise DataError(source, None, "is a folder, not a structures file"
                        if Path(source).is_dir() else "no such file")
    plainly_not = unreadable_reason(source)
    if plainly_not:
        raise DataError(source, None, *plainly_not)
    extxyz = format in ("extxyz", "xyz") or (format is None and Path(source).suffix.lower()
                                               in (".xyz", ".extxyz"))
    count = 0
    try:
        with contextlib.ExitStack() as stack:
            if extxyz:
                frames = iter_frames(stack.enter_context(open(source)))
            else:
                frames = ase.io.iread(source, index=":", format=format)
            for atoms in frames:
                yield atoms
                count += 1
    except Exception as err:  # noqa: BLE001 - ASE raises many kinds for unreadable files
        raise DataError(source, count if extxyz or count else None,
                        f"cannot read structures ({type(err).__name__}: {err})") from None


def _keep_labels(frames: Iterable[Atoms], keys: Sequence[str], source: str
                 ) -> Iterator[Atoms]:
    """``frames``, refusing one that holds a key a prediction would be written under."""
    for record, atoms in enumerate(frames):
        results = getattr(atoms.calc, "results", None) or {}
        for key in keys:
            if key in atoms.info or key in atoms.arrays or key in results:
                raise PredictError(
                    f"{source}:record {record}: the input holds '{key}', which the prediction "
                    f"'{key}' would replace; give --suffix (e.g. --suffix _pred) to keep both, "
                    "or --overwrite-labels to replace the labels")
        yield atoms


def _regular_or_new(path: Path) -> bool:
    """Whether ``path`` is a regular file or nothing (not a symlink, device, FIFO, socket)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True


def predict_file(model, structures: str | os.PathLike, output: str | os.PathLike, *,
                 batch_size: int = 32, suffix: str = "", progress: bool = True,
                 overwrite_labels: bool = False, derivatives: bool = False) -> int:
    """Predict every structure of the file ``structures``; write them to extxyz ``output``.

    Streams: structures are read lazily, predicted a batch at a time and each batch is
    appended to ``output`` when it is done, so memory stays flat in the number of structures.
    A regular (or new) ``output`` appears under its name only when complete (written as a hidden
    temp file beside it, then renamed); anything else (a device, FIFO, symlink) is written into
    as it is, never replaced.  ``output`` may not be ``structures``, and a structure holding a
    key a prediction would be written under (a label of the same name) is refused unless
    ``overwrite_labels``: give a ``suffix``.  ``progress``: a tqdm bar on stderr when stderr is a
    terminal.  Returns the number of structures written.
    """
    output = Path(output)
    check_suffix(suffix)
    frames = read_lazily(structures)
    if output.exists() and Path(structures).exists() and os.path.samefile(structures, output):
        raise PredictError(f"{output}: the output is the input file {structures}; the "
                           "predictions would replace it: give another output file")
    if not overwrite_labels:
        frames = _keep_labels(frames, [f"{name}{suffix}" for name in model_plans(model)],
                              str(structures))
    atomic = _regular_or_new(output)
    tmp = output.with_name(f".{output.name}.part") if atomic else output
    count = 0
    try:
        with open(tmp, "w") as f, tqdm(desc="predict", unit=" structures", leave=False,
                                       disable=None if progress else True) as bar:
            for batch in iter_predictions(model, frames, batch_size=batch_size, suffix=suffix,
                                          derivatives=derivatives,
                                          source=str(structures)):
                ase.io.write(f, batch, format="extxyz")
                count += len(batch)
                bar.update(len(batch))
        if atomic:
            os.replace(tmp, output)
    except OSError as err:
        raise PredictError(f"{output}: cannot write predictions ({err.strerror or err})") from None
    finally:
        if atomic:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return count
