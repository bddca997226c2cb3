"""A committee: several runs with the same specs, their mean as the prediction, their spread as
its uncertainty, judged by the same calibration code as the kernel readouts.

:func:`load_committee` loads the members (run directories or checkpoints) and refuses members
whose heads differ (spec, level, label key, unit or scale), naming the run and the head.
:func:`predict_committee` gives, per head, the members' mean and their **sample** variance
(``ddof=1``) per irreps coordinate, and the Frobenius std ``sqrt(sum var)`` per output (structure
or atom), the form of :meth:`KernelReadout.predict`, so :func:`calibration` and
:func:`calibration_plot` apply unchanged.  The irreps basis of a plan is orthonormal, so the
Frobenius std is also ``sqrt(sum var)`` over the Cartesian components.

A committee's raw spread is usually **under-dispersed** (the members share data, architecture
and most of their errors): its 68 % / 95 % intervals cover less than they claim.
:func:`fit_scale` fits one factor ``s`` per head (``std -> s * std``, the Gaussian maximum
likelihood ``s**2 = mean(error**2 / var)`` over irreps coordinates) on labelled data that must
not be the test data; :func:`evaluate_committee` refuses a scale fitted on the file it evaluates.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from tsym.runtime.errors import CommitteeError
from tsym.runtime.inference.coverage import training_elements
from tsym.runtime.inference.predict import checkpoint_labels, load_model, model_plans
from tsym.runtime.kernel._calibration import calibration, calibration_plot
from tsym.runtime.model import predict_batched
from tsym.runtime.model.checkpoint import read_model, resolve_checkpoint

__all__ = ["Member", "load_committee", "check_committee", "predict_committee", "fit_scale",
           "fit_scales", "validation_file", "check_scale_source", "scale_prediction", "committee_unseen", "evaluate_committee"]


class Member:
    """One run of a committee: ``path`` as given, its ``checkpoint``, ``model``, ``labels``,
    ``plans`` and ``data`` (its config's data section; empty for a model checkpoint)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.checkpoint = resolve_checkpoint(path)
        self.model = load_model(self.checkpoint)
        self.labels = checkpoint_labels(self.checkpoint, self.model)
        self.plans = model_plans(self.model)
        self.data = (read_model(self.checkpoint).config or {}).get("data") or {}


def _signature(member: Member, name: str) -> dict:
    plan, label = member.plans[name], member.labels[name]
    return {"spec": plan.spec_hash, "level": plan.level, "irreps": str(plan.irreps),
            "label key": label.key, "label format": label.format, "unit": label.unit,
            "scale": label.scale}


def check_committee(members: list[Member]) -> None:
    """Refuse fewer than two members, or a member whose heads differ from the first member's."""
    if len(members) < 2:
        raise CommitteeError("a committee needs at least two runs (its std is a sample std)\n"
                             "hint: train the same config with other training.seed values")
    first = members[0]
    for m in members[1:]:
        if set(m.plans) != set(first.plans):
            raise CommitteeError(
                f"{m.path}: heads {', '.join(sorted(m.plans))} differ from those of "
                f"{first.path} ({', '.join(sorted(first.plans))}); a committee's members "
                "predict the same specs")
        for name in first.plans:
            a, b = _signature(first, name), _signature(m, name)
            for what in a:
                if a[what] != b[what]:
                    detail = (f"{b[what]!r} vs {a[what]!r}" if what != "spec" else
                              f"{' '.join(m.plans[name].source.split())!r} vs "
                              f"{' '.join(first.plans[name].source.split())!r}")
                    raise CommitteeError(
                        f"{m.path}: head '{name}' differs from that of {first.path} in its "
                        f"{what} ({detail}); a committee's members predict the same specs\n"
                        "hint: train the members from one config, changing training.seed only")


def load_committee(paths) -> list[Member]:
    """The members at ``paths`` (runs or checkpoints), checked by :func:`check_committee`."""
    members = [Member(p) for p in paths]
    check_committee(members)
    return members


def predict_committee(members: list[Member], structures, batch_size: int = 32,
                      source: str = "<structures>") -> dict[str, dict]:
    """Per head ``{"irreps" [n, dim] (mean), "var" [n, dim] (sample variance, ddof=1),
    "std" [n] (Frobenius), "cartesian" [n, 3, ...] (mean), "members" [m, n, dim]}``, float64;
    ``n`` the structures (structure level) or the atoms (atom level)."""
    structures = list(structures)
    plans = members[0].plans
    outs = [predict_batched(m.model, list(m.plans.values()), structures, batch_size,
                            source=source) for m in members]
    result = {}
    for name, plan in plans.items():
        cart = torch.stack([torch.as_tensor(np.asarray(o[name]), dtype=torch.float64)
                            for o in outs])  # [m, n, 3, ...]
        irr = plan.from_cartesian(cart)  # [m, n, dim]
        var = irr.var(0, correction=1)  # [n, dim]
        result[name] = {"irreps": irr.mean(0), "var": var, "std": var.sum(1).sqrt(),
                        "cartesian": cart.mean(0), "members": irr}
    return result


def scale_prediction(pred: dict, scale: float) -> dict:
    """``pred`` with its std multiplied by ``scale`` (its variance by ``scale**2``)."""
    return {**pred, "var": pred["var"] * scale ** 2, "std": pred["std"] * scale}


def fit_scale(pred: dict, true_irreps: torch.Tensor) -> float:
    """The factor ``s`` maximising the Gaussian likelihood of ``true_irreps`` under ``pred``'s
    mean and ``s**2 * var``: ``sqrt(mean(error**2 / var))`` over the coordinates with var > 0."""
    var = pred["var"]
    keep = var > 1e-30 * var.max().clamp_min(1e-300)
    if not bool(keep.any()):
        raise CommitteeError("the committee's members agree exactly: no spread to scale")
    diff = pred["irreps"] - true_irreps
    return float((diff[keep] ** 2 / var[keep]).mean().sqrt())


def committee_unseen(members: list[Member], structures, level: str) -> list[str]:
    """One line per output holding an element that some member never saw in training (its
    config's ``train``/``valid`` files); nothing for members whose training data is unknown."""
    known = [training_elements(m.checkpoint) for m in members]
    known = [k for k in known if k is not None]
    if not known:
        return []
    seen = set.intersection(*known)
    lines, atom = [], 0
    for k, atoms in enumerate(structures):
        if level == "atom":
            lines += [f"atom {atom + i}: element {chemical_symbols[z]} never seen in training"
                      for i, z in enumerate(atoms.numbers.tolist()) if z not in seen]
        else:
            new = sorted({int(z) for z in atoms.numbers} - seen)
            if new:
                lines.append(f"structure {k}: element(s) "
                             f"{', '.join(chemical_symbols[z] for z in new)} never seen in "
                             "training")
        atom += len(atoms)
    return lines


def _labelled(dataset, name: str, level: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(labels [G or K, 3, ...], rows)``: at atom level only the K labelled atoms, ``rows``
    their places among all atoms of ``dataset``; ``rows`` None at structure level."""
    if level == "structure":
        return torch.as_tensor(np.stack([r.labels[name] for r in dataset])), None
    values = torch.as_tensor(np.concatenate([r.labels[name] for r in dataset]))
    mask = torch.as_tensor(np.concatenate([np.asarray(r.masks[name], dtype=bool)
                                           .reshape(len(r.atoms), -1).all(1) for r in dataset]))
    rows = torch.nonzero(mask).flatten()
    return values[rows], rows


def _rows(pred: dict, rows: torch.Tensor | None) -> dict:
    """``pred`` restricted to the outputs ``rows`` (all for None)."""
    if rows is None:
        return pred
    return {k: (v[:, rows] if k == "members" else v[rows]) for k, v in pred.items()}


def _same_file(a, b) -> bool:
    try:
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_scale_source(scale_source, data) -> None:
    """Refuse a scale fitted (or to be fitted) on ``scale_source`` when it is the file ``data``
    that the committee is evaluated on."""
    if scale_source is not None and _same_file(scale_source, data):
        raise CommitteeError(f"{data}: the committee's scale would be fitted on the data it is "
                             "evaluated on\nhint: fit it on a validation file (--calibrate-on "
                             "VALID.extxyz), never on the test data")


def evaluate_committee(members: list[Member], dataset, out_dir=None, worst: int = 5,
                       scales: dict | None = None, scale_source: str | None = None) -> dict:
    """Metrics and calibration of the committee on a labelled ``dataset`` (as
    :func:`evaluate_kernels`); ``scales`` ``{name: s}`` fitted on ``scale_source``, which may
    not be the evaluated file.  With ``out_dir``, ``committee_calibration_<name>.png``.

    Returns ``{name: {"rmse_frobenius", "mae", "members", "calibration", "raw_calibration",
    "scale", "scale_fitted_on", "unseen", "plot"}}`` (``calibration`` with the scale applied,
    ``raw_calibration`` of the raw spread; ``worst`` entries name the record index in the
    file, or the atom among the dataset's atoms; atom-level heads are judged on their labelled
    atoms only).
    """
    check_scale_source(scale_source, dataset.source)
    structures = [r.atoms for r in dataset]
    preds = predict_committee(members, structures, source=str(dataset.source))
    out = {}
    for name, plan in members[0].plans.items():
        if name not in {s.name for s in dataset.labels}:
            continue
        true, rows = _labelled(dataset, name, plan.level)
        true = true.to(torch.float64)
        true_irreps = plan.from_cartesian(true)
        raw = _rows(preds[name], rows)
        s = float((scales or {}).get(name, 1.0))
        pred = scale_prediction(raw, s)
        cal = calibration(pred, true_irreps, worst=worst)
        raw_cal = calibration(raw, true_irreps, worst=worst)
        for c in (cal, raw_cal):
            for w in c["worst"]:
                if rows is None:
                    w["record"] = int(dataset[w["index"]].index)
                else:
                    w["atom"] = int(rows[w["index"]])
        member_rmse = [float((plan.to_cartesian(x) - true).reshape(len(true), -1).pow(2).sum(1)
                             .mean().sqrt()) for x in raw["members"]]
        diff = pred["cartesian"] - true
        plot = None
        if out_dir is not None:
            title = f"committee {name}" + (f" (std x {s:.3g})" if s != 1.0 else "")
            plot = calibration_plot(pred, true_irreps,
                                    Path(out_dir) / f"committee_calibration_{name}.png", title)
        out[name] = {"rmse_frobenius": float(diff.reshape(len(diff), -1).pow(2).sum(1).mean()
                                             .sqrt()),
                     "mae": float(diff.abs().mean()),
                     "members": [{"run": m.path, "rmse_frobenius": r}
                                 for m, r in zip(members, member_rmse)],
                     "calibration": cal, "raw_calibration": raw_cal, "scale": s,
                     "scale_fitted_on": scale_source if name in (scales or {}) else None,
                     "unseen": committee_unseen(members, structures, plan.level),
                     "plot": plot}
    return out


def validation_file(members: list[Member]) -> str:
    """The ``data.valid`` file the members' configs name (the same for all), else an error."""
    files = {m.data.get("valid") for m in members}
    if len(files) != 1 or None in files:
        raise CommitteeError(
            f"{members[0].path}: the members' configs do not name one validation file "
            f"(data.valid: {', '.join(sorted(str(f) for f in files))})\nhint: give "
            "--calibrate-on VALID.extxyz, labelled structures none of the members trained on")
    return str(files.pop())


def fit_scales(members: list[Member], dataset) -> dict[str, float]:
    """``{name: s}`` by :func:`fit_scale` on a labelled (validation) ``dataset``, for its heads
    (at atom level on the labelled atoms only).  A member's training file is refused."""
    for m in members:
        if m.data.get("train") and _same_file(m.data["train"], dataset.source):
            raise CommitteeError(f"{dataset.source}: {m.path} trained on it; a committee's "
                                 "scale is fitted on structures none of the members trained on"
                                 "\nhint: a validation file (the config's data.valid)")
    preds = predict_committee(members, [r.atoms for r in dataset], source=str(dataset.source))
    out = {}
    for name, plan in members[0].plans.items():
        if name in {s.name for s in dataset.labels}:
            true, rows = _labelled(dataset, name, plan.level)
            out[name] = fit_scale(_rows(preds[name], rows),
                                  plan.from_cartesian(true.to(torch.float64)))
    return out

