"""What a training run reads: the plan of each head, the data splits and their batches.

The other parts around the loop have their own modules: processes
(:mod:`~tsym.runtime.training.distributed`), the learning-rate schedule
(:mod:`~tsym.runtime.training.schedule`), the weights' moving average
(:mod:`~tsym.runtime.training.ema`) and the divergence message
(:mod:`~tsym.runtime.training.messages`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from e3nn import o3

from tsym.compiler import HeadPlan, load_plans
from tsym.compiler.library import spec_kind
from tsym.runtime.training.guard import inputs_fingerprint
from tsym.runtime.model.checkpoint import write_text_atomic
from tsym.runtime.errors import ConfigError, DataError
from tsym.runtime.training.config import TrainConfig
from tsym.runtime.data.dataset import collate_records, read_dataset
from tsym.runtime.data.labels import LabelSpec
from tsym.runtime.data.split import save_split, split
from tsym.runtime.graph import batch_graphs

__all__ = ["plans_for", "SplitInfo", "load_splits", "Batcher", "truncate_metrics"]


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
    _check_parts(sets, d, len(main), {"valid": fv, "test": ft})
    cutoff = cfg.model.cutoff
    graphs = {name: [collate_records([rec], cutoff, dtype, source=ds.source) for rec in ds]
              for name, ds in sets.items()}
    meta = {"train_file": d.train, "valid_file": d.valid, "test_file": d.test,
            "split_seed": d.split_seed, "group_by": d.group_by, "fractions": [1.0 - fv - ft, fv, ft],
            "frames": {name: [rec.index for rec in ds] for name, ds in sets.items()}}
    return graphs, SplitInfo(parts, meta, inputs_fingerprint(files, sets, plans))


def _check_parts(sets: dict, d, n: int, fractions: dict[str, float]) -> None:
    """Refuse an empty training part, and an empty valid or test part that was asked for (a
    file, or a fraction > 0): its loss would be missing or stand in for another's."""
    if not len(sets["train"]):
        what = ("holds no structures" if n == 0 else
                f"holds {n} structure(s), all drawn for valid/test (valid_fraction "
                f"{fractions['valid']}, test_fraction {fractions['test']})")
        raise DataError(d.train, None, f"{what}: the training split is empty",
                        hint="give a file with structures (check the path and data.on_error)")
    for role in ("valid", "test"):
        if len(sets[role]):
            continue
        if getattr(d, role):
            raise DataError(getattr(d, role), None, f"holds no structures: the {role} split "
                            "is empty", hint=f"give a file with structures, or leave "
                            f"data.{role} out")
        if fractions[role] > 0:
            raise DataError(d.train, None, f"{n} structure(s) leave the {role} split empty "
                            f"({role}_fraction {fractions[role]} of {n} rounds to none)",
                            hint=f"give more structures, a data.{role} file, or "
                            f"{role}_fraction: 0")


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
