"""``tsym eval``: per-head error metrics of a model on labelled structures.

For each head, over the labelled items (structures, or labelled atoms of an atom-level head),
with ``D = T_pred - T_true`` (Cartesian, data units)::

    mae, rmse                  over all Cartesian entries
    component_mae/_rmse        per entry, nested [3, ..., 3] lists (row-major)
    norm_mae, norm_rmse        of the Frobenius norm |D| per item
    true_norm_rms              sqrt(mean |T_true|^2), the scale to compare errors with
    per_l["2e"]                rmse / mae of the irreps coordinates (``plan.from_cartesian``) of
                               that (l, parity) block, and norm_mae / norm_rmse of the block

Derived quantities (``derived``):

* order 2: ``isotropic_mae`` of ``tr T / 3``; ``anisotropy_mae`` of ``|sym(T) - tr T / 3 I|``;
* order 4 with the minor symmetries ``ijkl = jikl = ijlk`` (elastic stiffness): the Voigt 6x6
  (IEEE order xx, yy, zz, yz, xz, xy) gives the Voigt, Reuss and Hill bulk and shear moduli
  (:func:`vrh_moduli`, MAE of each) and the share of positive definite predictions
  (:func:`positive_definite_share`, mechanically stable);
* crystals (all three directions periodic): the deviation of each prediction from the crystal's
  own point group, :func:`~tsym.runtime.data.crystal.point_group_deviation` (mean and max, ``symmetry``).

>>> c = np.zeros((6, 6)); c[:3, :3] = 60.0; c[[0, 1, 2], [0, 1, 2]] = 100.0  # lambda 60, mu 20
>>> c[[3, 4, 5], [3, 4, 5]] = 20.0
>>> {k: round(float(v), 6) for k, v in vrh_moduli(c).items()}
{'K_V': 73.333333, 'G_V': 20.0, 'K_R': 73.333333, 'G_R': 20.0, 'K_H': 73.333333, 'G_H': 20.0}
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from e3nn import o3

from tsym.compiler import HeadPlan
from tsym.runtime.data.crystal import point_group_deviation, symmetry_ops
from tsym.runtime.data.dataset import Dataset, read_dataset
from tsym.runtime.data.labels import LabelSpec
from tsym.runtime.data.voigt import tensor4_to_voigt
from tsym.runtime.errors import DataError
from tsym.runtime.errors import LabelSpecError
from tsym.runtime.finite import dumps
from tsym.runtime.inference.predict import model_plans

__all__ = ["evaluate", "EvalReport", "HeadResult", "tensor_metrics", "vrh_moduli",
           "positive_definite_share", "irrep_blocks", "is_elastic"]


# --------------------------------------------------------------------------------- metrics
def irrep_blocks(irreps: str) -> dict[str, np.ndarray]:
    """``{"2e": component indices}`` of each (l, parity) block of ``irreps`` (all its copies)."""
    out: dict[str, list[int]] = {}
    for (mul, ir), sl in zip(o3.Irreps(irreps), o3.Irreps(irreps).slices()):
        out.setdefault(str(ir), []).extend(range(sl.start, sl.stop))
    return {k: np.asarray(v) for k, v in out.items()}


def _mae_rmse(d: np.ndarray) -> dict:
    return {"mae": float(np.abs(d).mean()), "rmse": float(np.sqrt((d ** 2).mean()))}


def tensor_metrics(pred: np.ndarray, true: np.ndarray, plan: HeadPlan | None = None) -> dict:
    """Error metrics of ``pred`` against ``true``, both ``[M, 3, ..., 3]`` (module docstring).

    ``per_l`` (and the plan's symmetric projection) needs ``plan``.
    """
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.shape[0] == 0:
        raise ValueError(f"pred {pred.shape} and true {true.shape} must match and be non-empty")
    m, shape = pred.shape[0], pred.shape[1:]
    d = (pred - true).reshape(m, -1)  # [M, 3^n]
    norms = np.linalg.norm(d, axis=1)  # [M]
    out = {"n": int(m), **_mae_rmse(d),
           "component_mae": np.abs(d).mean(axis=0).reshape(shape).tolist(),
           "component_rmse": np.sqrt((d ** 2).mean(axis=0)).reshape(shape).tolist(),
           "norm_mae": float(norms.mean()), "norm_rmse": float(np.sqrt((norms ** 2).mean())),
           "true_norm_rms": float(np.sqrt((true.reshape(m, -1) ** 2).sum(axis=1).mean()))}
    if plan is not None:
        yp, yt = _irreps_of(plan, pred), _irreps_of(plan, true)  # [M, dim]
        out["per_l"] = {}
        for name, idx in irrep_blocks(plan.irreps).items():
            db = yp[:, idx] - yt[:, idx]  # [M, block dim]
            bn = np.linalg.norm(db, axis=1)  # [M]
            out["per_l"][name] = {**_mae_rmse(db), "norm_mae": float(bn.mean()),
                                  "norm_rmse": float(np.sqrt((bn ** 2).mean())),
                                  "dim": int(idx.size)}
    return out


def _irreps_of(plan: HeadPlan, t: np.ndarray) -> np.ndarray:
    return plan.from_cartesian(torch.from_numpy(np.ascontiguousarray(t, np.float64))).numpy()


def _rank2(pred: np.ndarray, true: np.ndarray) -> dict:
    def iso(t):
        return np.trace(t, axis1=-2, axis2=-1) / 3.0  # [M]

    def aniso(t):
        s = 0.5 * (t + np.swapaxes(t, -1, -2))
        dev = s - iso(t)[:, None, None] * np.eye(3)
        return np.linalg.norm(dev.reshape(len(t), -1), axis=1)  # [M]

    di, da = iso(pred) - iso(true), aniso(pred) - aniso(true)
    return {"isotropic_mae": float(np.abs(di).mean()),
            "isotropic_rmse": float(np.sqrt((di ** 2).mean())),
            "anisotropy_mae": float(np.abs(da).mean()),
            "anisotropy_rmse": float(np.sqrt((da ** 2).mean()))}


def is_elastic(plan: HeadPlan) -> bool:
    """A stiffness-like tensor: order 4 with the minor and major symmetries ``ijkl = jikl = ijlk
    = klij`` (every basis tensor has them) and no more, i.e. the 21 independent components of a
    triclinic stiffness -- not a fully symmetric rank-4 property such as the second
    hyperpolarizability (15 components), whose Voigt moduli would mean nothing."""
    if plan.order != 4 or plan.num_components != 21:
        return False
    q = plan.change_of_basis.numpy()  # [d, 3, 3, 3, 3]
    return bool(np.allclose(q, q.swapaxes(1, 2), atol=1e-12)
                and np.allclose(q, q.swapaxes(3, 4), atol=1e-12)
                and np.allclose(q, q.transpose(0, 3, 4, 1, 2), atol=1e-12))


def vrh_moduli(c: np.ndarray) -> dict[str, np.ndarray]:
    """Voigt, Reuss, Hill bulk (K) and shear (G) moduli of stiffness matrices ``[..., 6, 6]``.

    IEEE Voigt order, no factors (``C_44 = C_yzyz``); the symmetric part of ``c`` is used.
    ``K_V = ((C11+C22+C33) + 2(C12+C23+C31)) / 9``,
    ``G_V = ((C11+C22+C33) - (C12+C23+C31) + 3(C44+C55+C66)) / 15``; with ``S = C^-1``,
    ``K_R = 1 / ((S11+S22+S33) + 2(S12+S23+S31))``,
    ``G_R = 15 / (4(S11+S22+S33) - 4(S12+S23+S31) + 3(S44+S55+S66))``; Hill = the means.
    Reuss (and Hill) values are NaN where ``C`` is singular.
    """
    c = np.asarray(c, dtype=np.float64)
    c = 0.5 * (c + np.swapaxes(c, -1, -2))
    lead = c.shape[:-2]
    c = c.reshape(-1, 6, 6)

    def parts(m):
        a = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
        b = m[:, 0, 1] + m[:, 1, 2] + m[:, 2, 0]
        s = m[:, 3, 3] + m[:, 4, 4] + m[:, 5, 5]
        return a, b, s

    a, b, s = parts(c)
    kv, gv = (a + 2 * b) / 9.0, (a - b + 3 * s) / 15.0
    scale = np.abs(c).reshape(len(c), -1).max(axis=1)
    singular = np.linalg.cond(c) > 1e12 if len(c) else np.zeros(0, bool)
    singular |= scale == 0
    safe = np.where(singular[:, None, None], np.eye(6), c)
    sa, sb, ss = parts(np.linalg.inv(safe))
    with np.errstate(divide="ignore", invalid="ignore"):
        kr = np.where(singular, np.nan, 1.0 / (sa + 2 * sb))
        gr = np.where(singular, np.nan, 15.0 / (4 * sa - 4 * sb + 3 * ss))
    out = {"K_V": kv, "G_V": gv, "K_R": kr, "G_R": gr, "K_H": (kv + kr) / 2, "G_H": (gv + gr) / 2}
    return {k: v.reshape(lead) for k, v in out.items()}


def positive_definite_share(c: np.ndarray) -> float:
    """Share of the 6x6 matrices ``[M, 6, 6]`` whose symmetric part has all eigenvalues > 0."""
    c = np.asarray(c, dtype=np.float64).reshape(-1, 6, 6)
    if len(c) == 0:
        return float("nan")
    eig = np.linalg.eigvalsh(0.5 * (c + np.swapaxes(c, -1, -2)))  # [M, 6]
    return float((eig.min(axis=1) > 0).mean())


def _elastic(pred: np.ndarray, true: np.ndarray) -> dict:
    cp, ct = tensor4_to_voigt(pred), tensor4_to_voigt(true)  # [M, 6, 6]
    mp, mt = vrh_moduli(cp), vrh_moduli(ct)
    out = {}
    for k in mp:
        d = mp[k] - mt[k]
        ok = np.isfinite(d)
        out[f"{k}_mae"] = float(np.abs(d[ok]).mean()) if ok.any() else float("nan")
        if not ok.all():
            out[f"{k}_n_singular"] = int((~ok).sum())
    out["positive_definite_share"] = positive_definite_share(cp)
    out["positive_definite_share_true"] = positive_definite_share(ct)
    return out


def _symmetry(plan: HeadPlan, structures: Sequence, pred: np.ndarray, true: np.ndarray,
              masks: Sequence | None, symprec: float) -> dict | None:
    """Mean / max point-group deviation of the predictions (and labels) over the crystals."""
    dev_p, dev_t, offset, k = [], [], 0, 0
    for i, atoms in enumerate(structures):
        n = len(atoms)
        if plan.level == "atom":
            rows = pred[offset:offset + n]
            lab = masks[i] if masks is not None else np.ones(n, bool)
            lrows = true[k:k + int(lab.sum())]
            k += int(lab.sum())
            offset += n
        else:
            rows, lrows, lab = pred[i], true[i], None
        if not np.asarray(atoms.pbc).all():
            continue
        try:
            ops = symmetry_ops(atoms, symprec=symprec)
            dev_p.append(point_group_deviation(rows, atoms, level=plan.level, axial=plan.axial,
                                               ops=ops))
            if lab is None or lab.all():
                dev_t.append(point_group_deviation(lrows, atoms, level=plan.level,
                                                   axial=plan.axial, ops=ops))
        except ValueError:  # spglib found nothing usable: no verdict for this crystal
            continue
    if not dev_p:
        return None
    out = {"n_crystals": len(dev_p), "pred_mean": float(np.mean(dev_p)),
           "pred_max": float(np.max(dev_p))}
    if dev_t:
        out["true_mean"], out["true_max"] = float(np.mean(dev_t)), float(np.max(dev_t))
    return out


# ------------------------------------------------------------------------------- evaluate
@dataclass(frozen=True, eq=False)
class HeadResult:
    """Predictions and labels of one head over its labelled items, and their metrics."""

    plan: HeadPlan = field(repr=False)
    pred: np.ndarray = field(repr=False)  # [M, 3, ..., 3] float64
    true: np.ndarray = field(repr=False)  # [M, 3, ..., 3] float64
    metrics: dict
    unit: str | None = None

    @property
    def name(self) -> str:
        return self.plan.name


@dataclass(frozen=True, eq=False)
class EvalReport:
    """What :func:`evaluate` measured: one :class:`HeadResult` per evaluated head."""

    source: str
    n_structures: int
    heads: dict[str, HeadResult]

    def to_dict(self) -> dict:
        """JSON-ready: ``{"source", "n_structures", "heads": {name: {level, order, irreps,
        unit, metrics}}}``."""
        return {"source": self.source, "n_structures": self.n_structures,
                "heads": {name: {"level": h.plan.level, "order": h.plan.order,
                                 "irreps": h.plan.irreps, "unit": h.unit, **h.metrics}
                          for name, h in self.heads.items()}}

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON (NaN, e.g. a Reuss modulus of a singular C, as null)."""
        path = Path(path)
        path.write_text(dumps(self.to_dict(), indent=1) + "\n")
        return path

    def summary(self) -> str:
        """A few human-readable lines per head."""
        lines = [f"{self.source}: {self.n_structures} structures"]
        for name, h in self.heads.items():
            m, unit = h.metrics, f", {h.unit}" if h.unit else ""
            what = "atoms" if h.plan.level == "atom" else "structures"
            lines.append(f"{name} ({h.plan.irreps}, {m['n']} {what}{unit}): MAE {m['mae']:.4g}  "
                         f"RMSE {m['rmse']:.4g}  |err| MAE {m['norm_mae']:.4g}  RMSE "
                         f"{m['norm_rmse']:.4g}  (|T| RMS {m['true_norm_rms']:.4g})")
            lines.append("    per l RMSE: " + "  ".join(
                f"{ir} {v['rmse']:.4g}" for ir, v in m.get("per_l", {}).items()))
            derived = m.get("derived", {})
            if derived:
                lines.append("    " + "  ".join(f"{k} {v:.4g}" for k, v in derived.items()
                                                if not k.endswith("_rmse")))
            if "symmetry" in m:
                s = m["symmetry"]
                lines.append(f"    point-group deviation of predictions over {s['n_crystals']} "
                             f"crystals: mean {s['pred_mean']:.3g}  max {s['pred_max']:.3g}")
        return "\n".join(lines)


def evaluate(model, data: str | os.PathLike | Dataset,
             labels: Sequence[LabelSpec] | Mapping[str, LabelSpec] | None = None, *,
             batch_size: int = 32, symprec: float = 1e-2, on_error: str = "fail",
             crystal_symmetry: bool = True) -> EvalReport:
    """Metrics of ``model`` on labelled structures.

    Parameters
    ----------
    model : TrainedModel or TensorModel
        Predictions in data units (see :func:`tsym.runtime.inference.predict.load_model`).
    data : path to extended XYZ, or a Dataset
    labels : LabelSpecs, optional
        Which heads to evaluate and where their labels are (needed with a path; a Dataset
        brings its own).  Default: one label per head, key = spec name, flat.
    batch_size, symprec, on_error
        Prediction batch size; spglib tolerance (Angstrom); ``read_dataset``'s ``on_error``.
    crystal_symmetry : bool
        Compute the point-group deviation of crystals (spglib per structure).
    """
    plans = model_plans(model)
    if isinstance(labels, Mapping):
        labels = list(labels.values())
    if isinstance(data, Dataset):
        dataset = data
    else:
        if labels is None:
            labels = [LabelSpec(name=n, key=n, level=p.level) for n, p in plans.items()]
        unknown = [s.name for s in labels if s.name not in plans]
        if unknown:
            raise LabelSpecError(f"{data}: labels {unknown} name no head of the model (heads: "
                                 f"{sorted(plans)})")
        dataset = read_dataset(data, labels, plans, on_error=on_error,
                               max_z=getattr(model, "max_z", None))
    if len(dataset) == 0:
        raise DataError(dataset.source, None, "no records to evaluate")
    structures = [r.atoms for r in dataset]
    preds = model.predict(structures, batch_size=batch_size)
    heads = {}
    for spec in dataset.labels:
        plan = plans[spec.name]
        pred = np.asarray(preds[spec.name], dtype=np.float64)
        masks = None
        if plan.level == "atom":
            masks = [r.masks[spec.name] for r in dataset]
            true = np.concatenate([r.labels[spec.name][r.masks[spec.name]] for r in dataset])
            sel = pred[np.concatenate(masks)]
        else:
            true = np.stack([r.labels[spec.name] for r in dataset])
            sel = pred
        if len(true) == 0:
            continue
        metrics = tensor_metrics(sel, true, plan)
        derived = {}
        if plan.order == 2:
            derived.update(_rank2(sel, true))
        if is_elastic(plan):
            derived.update(_elastic(sel, true))
        if derived:
            metrics["derived"] = derived
        sym = _symmetry(plan, structures, pred, true, masks, symprec) if crystal_symmetry else None
        if sym is not None:
            metrics["symmetry"] = sym
        heads[spec.name] = HeadResult(plan, sel, true, metrics, spec.unit or plan.units)
    return EvalReport(dataset.source, len(dataset), heads)
