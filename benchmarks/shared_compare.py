"""Head-kind comparison on the shared data sets: run directories, rotated test, the table.

Helpers of :mod:`run_shared` (``--kind`` and ``--compare``):

* :func:`run_dir_for` -- where a set's run of one head kind lives: ``OUT/runs/<name>__<kind>``;
  for ``selfmix`` the plain ``OUT/runs/<name>`` of an earlier run is used instead when its
  ``config.yaml`` matches the committed YAML (:func:`config_matches`) and no ``__selfmix`` run
  exists;
* :func:`rotated_metrics` -- the best checkpoint on a copy of the test split in which every
  structure and its labels are rotated by a random proper rotation of its own (an equivariant
  head scores the same Frobenius RMSE on both, up to float32 rounding; the ``invariant``
  baseline predicts the unrotated tensor);
* :func:`comparison_table` -- per set and head, the three kinds side by side.
"""
from __future__ import annotations

import json
from pathlib import Path

KINDS = ("selfmix", "linear", "invariant")
_SHORT = {"selfmix": "S", "linear": "L", "invariant": "I"}


def with_kind(cfg: dict, kind: str | None) -> dict:
    """``cfg`` with ``model.head_kwargs.kind = kind`` (``None``: unchanged)."""
    if kind is not None:
        model = cfg.setdefault("model", {})
        model["head_kwargs"] = {**(model.get("head_kwargs") or {}), "kind": kind}
    return cfg


def config_matches(run_dir: Path, cfg: dict) -> list:
    """Differences ``(key, saved, wanted)`` between ``run_dir/config.yaml`` and ``cfg``.

    Both are resolved with the current defaults (:func:`tsym.runtime.training.config.load_config`); a
    head kind ``selfmix`` equals an absent kind (the default).
    """
    import yaml

    from tsym.runtime.training.config import config_changes, load_config

    def norm(d: dict) -> dict:
        d = load_config(d).to_dict()
        hk = d["model"].get("head_kwargs") or {}
        if hk.get("kind") == "selfmix":
            d["model"]["head_kwargs"] = {k: v for k, v in hk.items() if k != "kind"}
        return d

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    return config_changes(norm(saved), norm(cfg))


def run_dir_for(out: Path, name: str, kind: str | None, cfg: dict | None = None) -> Path:
    """The run directory of ``name`` trained with head ``kind`` (see the module docstring)."""
    if kind is None:
        return out / "runs" / name
    own = out / "runs" / f"{name}__{kind}"
    plain = out / "runs" / name
    if (kind == "selfmix" and not own.exists() and (plain / "results.json").is_file()
            and cfg is not None and not config_matches(plain, cfg)):
        return plain
    return own


def rotated_metrics(model, test, seed: int = 1) -> dict:
    """``{head: {"mae", "rmse", "norm_rmse"}}`` of ``model`` on the randomly rotated ``test``."""
    from benchmarks.accuracy import rotated

    from tsym.runtime.inference.evaluate import evaluate
    from tsym.runtime.inference.predict import model_plans

    report = evaluate(model, rotated(test, model_plans(model), seed), crystal_symmetry=False)
    return {name: {k: h.metrics[k] for k in ("mae", "rmse", "norm_rmse")}
            for name, h in report.heads.items()}


def add_rotated(run_dir: Path, model, test) -> dict:
    """Compute :func:`rotated_metrics` once and keep it in ``run_dir/rotated_metrics.json``."""
    path = run_dir / "rotated_metrics.json"
    if path.is_file():
        return json.loads(path.read_text())
    rot = rotated_metrics(model, test)
    path.write_text(json.dumps(rot, indent=1) + "\n")
    return rot


# ------------------------------------------------------------------------------- the table
def _g(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _side(values: list) -> str:
    return " / ".join(_g(v) for v in values)


def _main_derived(heads: list[dict | None]) -> str:
    """The head's main derived quantity for each kind, ``S / L / I``."""
    ref = next(h for h in heads if h is not None)
    d = ref.get("derived", {})
    from e3nn import o3

    dim = o3.Irreps(ref["irreps"]).dim

    def pick(key):
        return [None if h is None else h.get("derived", {}).get(key) for h in heads]

    parts = []
    if "K_H_mae" in d and dim == 21:
        parts += [f"K_VRH MAE {_side(pick('K_H_mae'))}", f"G_VRH MAE {_side(pick('G_H_mae'))}"]
    elif "isotropic_mae" in d:
        parts.append(f"iso MAE {_side(pick('isotropic_mae'))}")
        parts.append(f"aniso MAE {_side(pick('anisotropy_mae'))}")
    if "symmetry" in ref:
        parts.append("pt-group dev. mean " + _side(
            [None if h is None or "symmetry" not in h else h["symmetry"]["pred_mean"]
             for h in heads]))
    return "; ".join(parts) or "-"


def _load(run_dir: Path) -> dict | None:
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    rot = run_dir / "rotated_metrics.json"
    res["rotated"] = json.loads(rot.read_text()) if rot.is_file() else {}
    res["run_dir"] = str(run_dir)
    return res


def collect_kinds(out: Path, names) -> dict[str, dict[str, dict | None]]:
    """``{set: {kind: results or None}}`` for the sets with at least one baseline run."""
    found = {}
    for name in names:
        by_kind = {"selfmix": _load(out / "runs" / f"{name}__selfmix")
                   or _load(out / "runs" / name)}
        by_kind.update({k: _load(out / "runs" / f"{name}__{k}") for k in KINDS[1:]})
        if any(by_kind[k] is not None for k in KINDS[1:]):
            found[name] = by_kind
    return found


def comparison_table(out: Path, names) -> str:
    """Markdown, one row per set and head; each cell ``selfmix / linear / invariant``."""
    rows = ["| data set (epochs, n test) | head | test MAE | Frobenius RMSE (label RMS norm) | "
            "per-l RMSE | main derived | rotated-test Frobenius RMSE | train wall (min) |",
            "|---|---|---|---|---|---|---|---|"]
    notes = []
    for name, by_kind in collect_kinds(out, names).items():
        runs = [by_kind[k] for k in KINDS]
        ref = next(r for r in runs if r is not None)
        epochs = {r["epochs"] for r in runs if r is not None}
        if len(epochs) > 1:
            notes.append(f"{name}: epochs differ between kinds ({sorted(epochs)})")
        if runs[0] is not None and Path(runs[0]["run_dir"]).name == name:
            notes.append(f"{name}: selfmix is the earlier run OUT/runs/{name} (same config)")
        for k, hname in enumerate(ref["heads"]):
            heads = [None if r is None else r["heads"].get(hname) for r in runs]
            h0 = ref["heads"][hname]
            per_l = "; ".join(f"{ir} " + _side([None if h is None else h["per_l"][ir]["rmse"]
                                                for h in heads]) for ir in h0.get("per_l", {}))
            rot = [None if r is None else r["rotated"].get(hname, {}).get("norm_rmse")
                   for r in runs]
            first = k == 0
            what = (f"{name} ({'/'.join(str(e) for e in sorted(epochs))} ep, "
                    f"{ref['n_test']})" if first else "")
            wall = _side([None if r is None else r["wall_train_s"] / 60 for r in runs])
            rows.append(
                f"| {what} | {hname} ({h0['level']}, {h0.get('unit') or '-'}) | "
                f"{_side([None if h is None else h['mae'] for h in heads])} | "
                f"{_side([None if h is None else h['norm_rmse'] for h in heads])} "
                f"({_g(h0['true_norm_rms'])}) | {per_l} | {_main_derived(heads)} | "
                f"{_side(rot)} | {wall if first else ''} |")
    legend = ("Each cell: selfmix / linear / invariant (n/a: not run). MAE over Cartesian "
              "components, RMSE of the error's Frobenius norm, per-l RMSE over irreps "
              "coordinates, data units.")
    return "\n".join([legend, ""] + rows + [""] + [f"- {n}" for n in notes])

