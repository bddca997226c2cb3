"""The exponential moving average of a run's weights (what validation and checkpoints use)."""
from __future__ import annotations

import contextlib

import torch

__all__ = ["EMA"]


class EMA:
    """Exponential moving average of a module's parameters: ``s <- d s + (1 - d) p``."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = {n: p.detach().clone() for n, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for n, p in module.named_parameters():
            self.shadow[n].lerp_(p.detach(), 1.0 - self.decay)

    def state_dict(self) -> dict:
        return {n: t.detach().cpu().clone() for n, t in self.shadow.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for n, t in self.shadow.items():
            t.copy_(state[n])

    def merged(self, module: torch.nn.Module) -> dict:
        """``module.state_dict()`` with the parameters replaced by their averages."""
        return {k: self.shadow.get(k, v) for k, v in module.state_dict().items()}

    @contextlib.contextmanager
    def applied(self, module: torch.nn.Module):
        """Use the averaged parameters inside the ``with`` block, the trained ones after."""
        params = dict(module.named_parameters())
        backup = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self.shadow[n])
        try:
            yield module
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(backup[n])
