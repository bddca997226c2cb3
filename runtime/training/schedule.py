"""The learning-rate schedule of a training run (warm-up, then cosine or plateau)."""
from __future__ import annotations

import math

import torch

from tsym.runtime.training.config import ScheduleConfig

__all__ = ["Schedule", "make_scheduler"]


class Schedule:
    """Warm-up then cosine/constant (``LambdaLR``), or warm-up then ``ReduceLROnPlateau``.

    The loop calls :meth:`before_step` and :meth:`after_step` around each optimiser step and
    :meth:`on_eval` after each evaluation.
    """

    def __init__(self, cfg: ScheduleConfig, opt: torch.optim.Optimizer, total_steps: int):
        self.kind, self.warmup, self.opt = cfg.kind, cfg.warmup_steps, opt
        self.base = [g["lr"] for g in opt.param_groups]
        warmup, floor = cfg.warmup_steps, cfg.min_lr_ratio
        cosine = cfg.kind == "cosine"

        def factor(k: int) -> float:  # lr multiplier of optimiser step k (0-based)
            if k < warmup:
                return (k + 1) / warmup
            if not cosine:
                return 1.0
            p = min((k - warmup) / max(1, total_steps - warmup), 1.0)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))

        if cfg.kind == "plateau":
            self.torch = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=cfg.factor, patience=cfg.patience)
        else:
            self.torch = torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def before_step(self, step: int) -> None:
        if self.kind == "plateau" and step <= self.warmup and self.warmup:
            for group, base in zip(self.opt.param_groups, self.base):
                group["lr"] = base * min(1.0, (step + 1) / self.warmup)

    def after_step(self) -> None:
        if self.kind != "plateau":
            self.torch.step()

    def on_eval(self, metric: float, step: int) -> None:
        if self.kind == "plateau" and step >= self.warmup:
            self.torch.step(metric)

    def state_dict(self) -> dict:
        return self.torch.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.torch.load_state_dict(state)


def make_scheduler(cfg: ScheduleConfig, opt, total_steps: int) -> Schedule:
    return Schedule(cfg, opt, total_steps)
