"""The parts of a training run around the loop: processes, specs, data splits, schedule, EMA.

Private to :mod:`tsym.runtime.training.loop`.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as tdist
from e3nn import o3

from tsym.compiler import HeadPlan, load_plans
from tsym.compiler.library import spec_kind
from tsym.runtime.training.guard import inputs_fingerprint
from tsym.runtime.model.checkpoint import write_text_atomic
from tsym.runtime.finite import describe
from tsym.runtime.errors import ConfigError, DataError
from tsym.runtime.training.config import ScheduleConfig, TrainConfig
from tsym.runtime.data.dataset import collate_records, read_dataset
from tsym.runtime.data.labels import LabelSpec
from tsym.runtime.data.split import save_split, split
from tsym.runtime.graph import batch_graphs

__all__ = ["Dist", "setup_dist", "plans_for", "SplitInfo", "load_splits", "Batcher", "Schedule",
           "make_scheduler", "EMA", "truncate_metrics", "divergence_message"]


# ------------------------------------------------------------------------------------ processes
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


# ---------------------------------------------------------------------------------------- specs
def plans_for(cfg: TrainConfig) -> list[HeadPlan]:
    """The plan of each head: the tensor named like the head in its spec file (or text)."""
    compiled: dict[str, list[HeadPlan]] = {}
    plans = []
    for head in cfg.heads:
        if head.spec not in compiled:
            compiled[head.spec] = load_plans(head.spec,
                                             filename=f"{cfg.source}:heads.{head.name}")
        found = [p for p in compiled[head.spec] if p.name == head.name]
        if not found and spec_kind(head.spec) == "library":  # trained under another name
            found = load_plans(head.spec, name=head.name)
        if not found:
            names = ", ".join(p.name for p in compiled[head.spec])
            raise ConfigError(f"{cfg.source}: head '{head.name}': the spec {head.spec} has no "
                              f"tensor '{head.name}' (it defines: {names})")
        plan = found[0]
        if head.unit is not None and plan.units is not None and head.unit != plan.units:
            raise ConfigError(f"{cfg.source}: head '{head.name}': unit '{head.unit}' differs "
                              f"from the spec's units '{plan.units}'")
        present = sorted({ir.l for _, ir in o3.Irreps(plan.irreps)})
        for l in (head.l_weights or {}):
            if l not in present:
                raise ConfigError(f"{cfg.source}: head '{head.name}': l_weights has l={l}, but "
                                  f"its irreps '{plan.irreps}' hold l = {present}")
        plans.append(plan)
    return plans


# ----------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class SplitInfo:
    """Which records went where (positions in the train file's dataset, and frame indices), and
    the fingerprint of the inputs (:func:`~tsym.runtime.training.guard.inputs_fingerprint`)."""

    split: dict
    meta: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        save_split(path, self.split, **self.meta)


def load_splits(cfg: TrainConfig, plans: list[HeadPlan], dtype: torch.dtype,
                verbose: bool = True, max_z: int | None = None
                ) -> tuple[dict[str, list[dict]], SplitInfo]:
    """One graph (with ``label:``/``mask:`` fields) per record for ``train``, ``valid``, ``test``.

    Missing valid/test files are drawn from the train file with
    :func:`tsym.runtime.data.split` (fractions ``valid_fraction``, ``test_fraction``).
    ``max_z``: the model's largest atomic number; a record with another element is a bad record
    (an error naming file, record and element, or skipped with ``on_error: skip``).
    """
    d = cfg.data
    by_name = {p.name: p for p in plans}
    labels = [LabelSpec(name=h.name, key=h.data_key, format=h.format, unit=h.unit,
                        scale=h.scale, level=by_name[h.name].level) for h in cfg.heads]

    def read(path):
        return read_dataset(path, labels, by_name, on_error=d.on_error, max_z=max_z,
                            verbose=verbose, max_abs=torch.finfo(dtype).max)

    files = {"train": read(d.train)}
    files.update({role: read(getattr(d, role)) for role in ("valid", "test") if getattr(d, role)})
    main = files["train"]
    fv = 0.0 if d.valid else d.valid_fraction
    ft = 0.0 if d.test else d.test_fraction
    parts = split(len(main), (1.0 - fv - ft, fv, ft), seed=d.split_seed,
                  groups=None if d.group_by is None else _groups(main, d.group_by))
    sets = {"train": main.subset(parts["train"]),
            "valid": files["valid"] if d.valid else main.subset(parts["valid"]),
            "test": files["test"] if d.test else main.subset(parts["test"])}
    cutoff = cfg.model.cutoff
    graphs = {name: [collate_records([rec], cutoff, dtype, source=ds.source) for rec in ds]
              for name, ds in sets.items()}
    meta = {"train_file": d.train, "valid_file": d.valid, "test_file": d.test,
            "split_seed": d.split_seed, "group_by": d.group_by, "fractions": [1.0 - fv - ft, fv, ft],
            "frames": {name: [rec.index for rec in ds] for name, ds in sets.items()}}
    return graphs, SplitInfo(parts, meta, inputs_fingerprint(files, sets, plans))


def _groups(dataset, key: str) -> list:
    """``atoms.info[key]`` of every record (the split's groups); a record without it is an error."""
    out = []
    for rec in dataset:
        value = rec.atoms.info.get(key)
        if value is None:
            raise DataError(dataset.source, rec.index, f"data.group_by is {key!r}, but this "
                            f"record has no info key {key!r}",
                            hint=f"its info keys: {sorted(rec.atoms.info)}; give every record "
                                 f"'{key}=...' in the extxyz comment line, or drop group_by")
        out.append(str(value))  # a number or a string; str() also makes arrays hashable
    return out


class Batcher:
    """``collate_fn`` of a DataLoader over index lists (picklable, for worker processes)."""

    def __init__(self, graphs: list):
        self.graphs = graphs

    def __call__(self, indices: list[int]) -> dict:
        return batch_graphs([self.graphs[i] for i in indices])


def truncate_metrics(path: Path, keep_upto: int) -> None:
    """Keep the records of ``metrics.jsonl`` up to step ``keep_upto`` (none when 0), no test
    records, and no line cut short by a kill."""
    lines = path.read_text().splitlines() if path.exists() and keep_upto > 0 else []
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= keep_upto and record.get("kind") != "test":
            kept.append(line)
    write_text_atomic(path, "".join(ln + "\n" for ln in kept))


# ------------------------------------------------------------------------------------- schedule
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


# ------------------------------------------------------------------------------------------ EMA
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


# ----------------------------------------------------------------------------------- divergence
def divergence_message(run_dir: str | os.PathLike, step: int, what: str, where: str,
                       losses: Mapping[str, float], params: list[str],
                       kept: Mapping[str, int]) -> str:
    """One line: where the run diverged, why (``what``: loss, gradient or parameter), the
    per-head losses, the checkpoints ``kept`` (``{file name: step}``), what to change."""
    heads = [n for n, v in losses.items() if not math.isfinite(v)]
    values = ", ".join(f"{n} {v:.4g}" for n, v in losses.items())
    if what == "loss":
        cause = (f"the {where} loss of head{'s' if len(heads) > 1 else ''} "
                 f"{', '.join(repr(h) for h in heads)} is not finite ({values})")
    elif what == "gradient":
        cause = f"the gradient norm is not finite (losses finite: {values})"
    else:
        cause = (f"parameters became non-finite after the update ({describe(params)}; "
                 f"losses {values})")
    if kept:
        files = ", ".join(f"{Path(run_dir) / n} (step {s})" for n, s in sorted(kept.items()))
        keep = f"last good checkpoint kept, not overwritten: {files}"
    else:
        keep = ("no checkpoint was written before it (training.checkpoint_every writes "
                "last.pt more often)")
    return (f"{run_dir}: training diverged at step {step}: {cause}; {keep}; lower optimiser.lr "
            "or set training.grad_clip")
