"""The processes of a training run: one, or several under ``torchrun`` (DDP)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from tsym.runtime.errors import ConfigError

__all__ = ["Dist", "setup_dist"]


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) run."""

    world: int
    rank: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce sum over processes (``t`` itself when alone)."""
        if self.world == 1:
            return t
        t = t.clone()
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            tdist.barrier()

    def close(self) -> None:
        if self.owns_group and tdist.is_initialized():
            tdist.destroy_process_group()


def setup_dist(device: str) -> Dist:
    """Read ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (set by torchrun); join the process group.

    ``device``: ``"cpu"``, ``"cuda"``/``"cuda:N"``, or ``"auto"`` (a GPU when there is one).
    With several processes each uses ``cuda:LOCAL_RANK`` (nccl) or the CPU (gloo).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise ConfigError(f"training.device is {device!r}, but no GPU is available")
    if cuda:
        dev = torch.device(f"cuda:{local}" if world > 1 or device in ("auto", "cuda") else device)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    owns = False
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if cuda else "gloo")
        owns = True
    return Dist(world, rank, local, dev, owns)
