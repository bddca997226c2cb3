"""The run directory and checkpoints of a training run (the ``Trainer`` of ``loop.py``).

:class:`RunDir` is the part of the trainer that reads and writes ``run_dir``: the resume checks
(the config may change only in :data:`RESUMABLE_CHANGES` and the ``refine`` section), the files
written before training, ``metrics.jsonl`` records, and the checkpoint state (what ``last.pt``
and ``best.pt`` hold; :mod:`tsym.runtime.model.checkpoint` describes the format).
"""
from __future__ import annotations

import yaml

from tsym.runtime.model.checkpoint import (TRAIN_FORMAT, model_record, read_training, remove_stale_temps,
                                     rng_state, save_atomic, set_rng_state, write_text_atomic)
from tsym.runtime.errors import TrainError
from tsym.runtime.finite import dumps
from tsym.runtime.training.config import config_changes
from tsym.runtime.training.guard import resume_refusal
from tsym.runtime.training.setup import truncate_metrics

__all__ = ["RunDir", "RESUMABLE_CHANGES"]

#: Training keys that may change between a run and its resumption.
RESUMABLE_CHANGES = ("epochs", "max_steps", "progress", "log_every", "checkpoint_every",
                     "num_workers", "device")


class RunDir:
    """Run-directory methods of the trainer (its ``cfg``, ``dist``, ``run_dir``, ``net``,
    ``ema``, ``opt``, ``sched`` and counters)."""

    def _check_dir(self, resume: bool) -> dict | None:
        """The checkpoint to resume from (its config checked against ours), or None."""
        last = self.run_dir / "last.pt"
        if resume:
            ckpt = read_training(last)
            for key, was, now in config_changes(ckpt["config"], self.cfg.to_dict()):
                if (key.removeprefix("training.") not in RESUMABLE_CHANGES
                        and key.split(".")[0] != "refine"):
                    raise TrainError(f"{self.cfg.source}: cannot resume {last}: {key} was "
                                     f"{was!r}, now {now!r}")
        elif last.exists():
            raise TrainError(f"{self.run_dir}: the run directory already holds a checkpoint "
                             "(last.pt)\nhint: pass --resume to continue it, or another --run-dir")
        else:
            ckpt = None
        return ckpt

    def _check_inputs(self, ckpt: dict, plans) -> None:
        """Refuse to resume when the data, split or specs differ from the run's start."""
        why = resume_refusal(ckpt, self.split_info.inputs, plans)
        if why:
            raise TrainError(f"{self.cfg.source}: cannot resume {self.run_dir / 'last.pt'}: {why}")

    def _init_dir(self, ckpt: dict | None) -> None:
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.run_dir)
            write_text_atomic(self.run_dir / "config.yaml",
                               yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
            truncate_metrics(self.run_dir / "metrics.jsonl", ckpt["step"] if ckpt else 0)

    def log(self, record: dict) -> None:
        if self.dist.main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(dumps(record) + "\n")

    # -------------------------------------------------------------------------- checkpoints
    def _state(self) -> dict:
        model = self.net.model
        weights = self.ema.merged(model) if self.ema else model.state_dict()
        return {
            "format": TRAIN_FORMAT,
            "model": model_record(model, weights),
            "normalisation": {k: v.to_dict() for k, v in self.net.norms.items()},
            "config": self.cfg.to_dict(),
            "train_state_dict": {k: v.detach().cpu().clone()
                                 for k, v in model.state_dict().items()},
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "epoch_loss": self.epoch_loss,
            "epoch_steps": self.epoch_steps,
            "best_valid": self.best_valid,
            "best_step": self.best_step,
            "refined": self.refined,
            "world_size": self.dist.world,
            "inputs": self.split_info.inputs,
        }

    def save(self, name: str, state: dict | None = None) -> dict | None:
        """Write ``state`` (default: the current one) to ``run_dir/name`` on rank 0."""
        if not self.dist.main:
            return None
        state = state if state is not None else self._state()
        save_atomic(state, self.run_dir / name)
        self.saved[name] = self.step
        return state

    def load_best(self) -> bool:
        """Load ``best.pt``'s weights (the EMA weights of the best evaluation), if it exists."""
        best = self.run_dir / "best.pt"
        if best.exists():
            self.net.model.load_state_dict(read_training(best)["model"]["state_dict"])
        return best.exists()

    def _restore(self, ckpt: dict) -> None:
        self.net.model.load_state_dict(ckpt["train_state_dict"])
        if self.ema:
            self.ema.load_state_dict(ckpt["ema"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.step, self.epoch_loss, self.epoch_steps = (ckpt["step"], ckpt["epoch_loss"],
                                                       ckpt["epoch_steps"])
        self.best_valid, self.best_step = ckpt["best_valid"], ckpt["best_step"]
        self.refined = ckpt.get("refined", 0)
        self.saved["last.pt"] = self.step
        if (self.run_dir / "best.pt").exists() and self.best_step >= 0:
            self.saved["best.pt"] = self.best_step
