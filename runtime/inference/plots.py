"""Parity plots (predicted against true) of an :class:`~tsym.runtime.inference.evaluate.EvalReport`, as PNG.

Per head ``NAME`` in ``out_dir``:

* ``NAME_parity.png``: every Cartesian component of every labelled item;
* ``NAME_l<ir>.png`` (e.g. ``NAME_l2e.png``): the irreps coordinates of each (l, parity) block;
* ``NAME_moduli.png`` for an elastic (order 4, minor-symmetric) head: Hill bulk and shear moduli.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no
global backend change).  matplotlib is imported only when plotting.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from tsym.runtime.data.voigt import tensor4_to_voigt
from tsym.runtime.inference.evaluate import (EvalReport, HeadResult, irrep_blocks, is_elastic,
                                             vrh_moduli)

__all__ = ["parity_plots", "parity_plot"]


def parity_plot(path: str | os.PathLike, true: np.ndarray, pred: np.ndarray, title: str,
                unit: str | None = None) -> Path:
    """One scatter of ``pred`` against ``true`` (flattened), the line y = x, MAE and RMSE."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = np.asarray(true, dtype=np.float64).reshape(-1)
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    fig = Figure(figsize=(4.2, 4.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(t, p, s=6, alpha=0.6, linewidths=0)
    if t.size:
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        mae, rmse = float(np.abs(p - t).mean()), float(np.sqrt(((p - t) ** 2).mean()))
        ax.text(0.04, 0.96, f"MAE {mae:.3g}\nRMSE {rmse:.3g}\nn {t.size}",
                transform=ax.transAxes, va="top", fontsize=8)
    suffix = f" [{unit}]" if unit else ""
    ax.set_xlabel(f"true{suffix}")
    ax.set_ylabel(f"predicted{suffix}")
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal", adjustable="box")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def _head_plots(h: HeadResult, out: Path) -> list[Path]:
    name, plan = h.name, h.plan
    paths = [parity_plot(out / f"{name}_parity.png", h.true, h.pred,
                         f"{name}: Cartesian components", h.unit)]
    yp = plan.from_cartesian(torch.from_numpy(np.ascontiguousarray(h.pred))).numpy()
    yt = plan.from_cartesian(torch.from_numpy(np.ascontiguousarray(h.true))).numpy()
    for ir, idx in irrep_blocks(plan.irreps).items():
        paths.append(parity_plot(out / f"{name}_l{ir}.png", yt[:, idx], yp[:, idx],
                                 f"{name}: irreps block {ir} ({idx.size} coordinates)", h.unit))
    if is_elastic(plan):
        mp, mt = vrh_moduli(tensor4_to_voigt(h.pred)), vrh_moduli(tensor4_to_voigt(h.true))
        true = np.concatenate([mt["K_H"], mt["G_H"]])
        pred = np.concatenate([mp["K_H"], mp["G_H"]])
        paths.append(parity_plot(out / f"{name}_moduli.png", true, pred,
                                 f"{name}: Hill bulk and shear moduli", h.unit))
    return paths


def parity_plots(report: EvalReport, out_dir: str | os.PathLike) -> list[Path]:
    """Write the PNGs of every head of ``report`` into ``out_dir`` (created); their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for h in report.heads.values():
        paths += _head_plots(h, out)
    return paths
