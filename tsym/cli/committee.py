"""``tsym eval RUN DATA --committee RUN2 ...``, ``tsym predict RUN IN -o OUT --committee RUN2 ...``.

A committee is RUN and the runs after ``--committee`` (same heads and labels, refused otherwise;
typically one config trained with different ``training.seed``).  Its prediction is the members'
mean, its uncertainty their sample std per irreps coordinate, reported like the kernel readout's:
``NAME_std``, the Frobenius std, per structure (per atom at atom level).  ``--calibrate-on
[VALID.extxyz]`` multiplies each head's std by one factor fitted on the labels of that file
(default: the ``data.valid`` file of the members' configs; never the test data: eval refuses
DATA itself, and a member's training file is refused).  The work is in
:mod:`tsym.runtime.kernel` (``load_committee``, ``predict_committee``, ``evaluate_committee``).
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from tsym.compiler.errors import TsymError

__all__ = ["add_committee_arguments", "check_committee_arguments", "committee_setup",
           "committee_eval",
           "committee_predict"]


def add_committee_arguments(p) -> None:
    """``--committee RUN ...`` and ``--calibrate-on VALID`` on an eval or predict parser."""
    p.add_argument("--committee", nargs="+", default=None, metavar="RUN",
                   help="the other members of a committee with RUN (runs of the same specs, "
                        "e.g. other seeds): predict their mean, with their spread as NAME_std")
    p.add_argument("--calibrate-on", nargs="?", const="", default=None, metavar="VALID",
                   help="with --committee: scale each head's std by one factor fitted on the "
                        "labels of VALID (a validation file, never the test data; default: "
                        "the data.valid file of the members' configs)")


def check_committee_arguments(args) -> None:
    """Refuse ``--calibrate-on`` without ``--committee``."""
    if args.calibrate_on is not None and not args.committee:
        raise TsymError("--calibrate-on scales a committee's std: give --committee RUN2 ...")


def _members(args):
    from tsym.runtime.kernel import load_committee

    return load_committee([args.model, *args.committee])


def _scales(args, members, specs, test: str | None = None) -> dict:
    """``{head: factor}`` fitted on the labels ``specs`` of ``--calibrate-on``, or ``{}``;
    refused when that file is ``test``, the evaluated data."""
    if args.calibrate_on is None:
        return {}
    from tsym.runtime.data.dataset import read_dataset
    from tsym.runtime.kernel import check_scale_source, fit_scales, validation_file

    if not args.calibrate_on:  # bare --calibrate-on: the configs' data.valid
        args.calibrate_on = validation_file(members)
    check_scale_source(args.calibrate_on, test)
    valid = read_dataset(args.calibrate_on, specs, members[0].plans)
    return fit_scales(members, valid)


def committee_setup(args, labels: dict) -> tuple[list, dict]:
    """``(members, {head: std factor})`` for ``tsym eval``: loaded, checked and the scale fitted
    before any evaluation, so that a refusal comes first."""
    from tsym.runtime.kernel import check_scale_source

    if args.calibrate_on:  # before the members load: a refusal costs nothing
        check_scale_source(args.calibrate_on, args.data)
    members = _members(args)
    return members, _scales(args, members, list(labels.values()), test=args.data)


def committee_eval(args, committee: tuple[list, dict], labels: dict, out: Path) -> None:
    """The committee's metrics, calibration (68 % / 95 % coverage per irreps coordinate,
    Spearman of error and std, worst records, a PNG), unseen-element warnings;
    ``committee_metrics.json`` in ``out``.  ``committee``: :func:`committee_setup`'s."""
    from tsym.runtime.data.dataset import read_dataset
    from tsym.runtime.kernel import evaluate_committee

    members, scales = committee
    dataset = read_dataset(args.data, list(labels.values()), members[0].plans,
                           on_error=args.on_error)
    result = evaluate_committee(members, dataset, None if args.no_plots else out,
                                scales=scales, scale_source=args.calibrate_on)
    stream = sys.stderr if args.json else sys.stdout  # --json keeps stdout for the JSON

    def say(line: str) -> None:
        print(line, file=stream)

    def where(w: dict) -> str:
        return f"atom {w['atom']}" if "atom" in w else f"record {w['record']}"

    for name, r in result.items():
        c, raw = r["calibration"], r["raw_calibration"]
        each = ", ".join(f"{m['rmse_frobenius']:.4g}" for m in r["members"])
        say(f"committee {name} ({len(members)} runs): Frobenius RMSE {r['rmse_frobenius']:.4g} "
            f"(members {each}), MAE {r['mae']:.4g}; coverage 68 % {c['coverage_68']:.3f}, "
            f"95 % {c['coverage_95']:.3f}; Spearman(error, std) {c['spearman']:.3f}")
        if r["scale_fitted_on"]:
            say(f"  std x {r['scale']:.4g} (fitted on {r['scale_fitted_on']}); raw spread: "
                f"coverage 68 % {raw['coverage_68']:.3f}, 95 % {raw['coverage_95']:.3f}")
        say("  worst: " + "; ".join(
            f"{where(w)} error {w['error']:.4g} std {w['std']:.4g} "
            f"(std rank {w['std_rank']})" for w in c["worst"]))
        for message in r["unseen"]:
            say(f"  warning: {message}")
        if r["plot"]:
            say(f"plot: {r['plot']}")
    (out / "committee_metrics.json").write_text(json.dumps(result, indent=1, default=str))


def committee_predict(args) -> int:
    """The committee's means under ``NAME{suffix}`` and (scaled) Frobenius stds under
    ``NAME{suffix}_std``; unseen-element warnings on stderr.  Reads the whole file."""
    import ase.io

    from tsym.runtime.kernel import committee_unseen, predict_committee, scale_prediction

    if args.kernel is not None:
        raise TsymError("--kernel and --committee are two kinds of uncertainty: give one")
    if args.derivatives:
        raise TsymError("--derivatives is not written for a committee: predict the derivatives "
                        "of one run without --committee")
    members = _members(args)
    scales = _scales(args, members, list(members[0].labels.values()))
    structures = ase.io.read(args.structures, ":")
    preds = predict_committee(members, structures, batch_size=args.batch_size,
                              source=str(args.structures))
    starts = list(itertools.accumulate([len(a) for a in structures], initial=0))
    for name, plan in members[0].plans.items():
        pred = scale_prediction(preds[name], scales.get(name, 1.0))
        mean, std = pred["cartesian"].numpy(), pred["std"].numpy()
        key = f"{name}{args.suffix}"
        for k, atoms in enumerate(structures):
            if plan.level == "atom":
                rows = slice(starts[k], starts[k + 1])
                atoms.arrays[key] = mean[rows].reshape(len(atoms), -1).copy()
                atoms.arrays[f"{key}_std"] = std[rows].copy()
            else:
                atoms.info[key], atoms.info[f"{key}_std"] = mean[k].reshape(-1), float(std[k])
        for message in committee_unseen(members, structures, plan.level):
            print(f"tsym: warning: {name}: {message}", file=sys.stderr)
        if name in scales:
            print(f"tsym: note: {name}: committee std x {scales[name]:.4g} (fitted on "
                  f"{args.calibrate_on})", file=sys.stderr)
    ase.io.write(args.output, structures, format="extxyz")
    print(args.output)
    return 0
