"""``tsym train CONFIG.yaml [--resume] [--run-dir DIR]``: train a model from a YAML config.

Wired into ``tsym/cli/__init__.py`` with ``register(subparsers)``; the work is in
:mod:`tsym.runtime.training.loop`.  For several processes, launch it with torchrun::

    torchrun --standalone --nproc_per_node=2 -m tsym train config.yaml --run-dir runs/a
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from tsym.cli._args import positive_int

__all__ = ["register", "cmd_train"]


def cmd_train(args) -> int:
    """Run :func:`tsym.runtime.training.loop.train`; print a one-line JSON summary (rank 0).

    A diverged run raises :class:`~tsym.runtime.errors.DivergedError`: one line on stderr,
    exit 2, no summary."""
    from tsym.runtime.finite import dumps  # the runtime loads when the command runs
    from tsym.runtime.training.loop import train

    run_dir = args.run_dir if args.run_dir else str(Path("runs") / Path(args.config).stem)
    summary = train(args.config, run_dir, resume=args.resume, stop_after=args.stop_after)
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary["best_valid_loss"]
        short = {"run_dir": summary["run_dir"], "steps": summary["steps"],
                 "finished": summary["finished"],
                 "best_valid_loss": best if math.isfinite(best) else None,
                 "best_step": summary["best_step"],
                 "selected_on": summary["selected_on"],  # "train": no valid split, train loss
                 "test": summary["test"]}
        print(dumps(short))
    return 0


def register(subparsers) -> None:
    """Add the ``train`` sub-command to the ``tsym`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "train", help="train a model on labelled structures (YAML config; torchrun for DDP)")
    p.add_argument("config", help="YAML config (sections model, heads, data, optimiser, "
                                  "schedule, training)")
    p.add_argument("--run-dir", default=None,
                   help="where config.yaml, split.json, metrics.jsonl, best.pt and last.pt go "
                        "(default runs/<config name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last.pt")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="STEP",
                   help="stop after this optimiser step (last.pt is written; --resume goes on)")
    p.set_defaults(func=cmd_train)
