"""Training configurations: YAML sections that map one to one onto frozen dataclasses.

A config file has up to seven sections; each is the keyword arguments of one dataclass below, and
every key is checked up front (an unknown key, a wrong type or a value out of range raises
:class:`ConfigError` naming the file, the section and the key)::

    model:                          # ModelConfig
      backbone: xpainn
      backbone_kwargs: {num_scalars: 16, irreps: "8x0e+4x1o+2x2e", num_blocks: 1}
      head_kwargs: {hidden_mul: 4, mlp_hidden: 8}
      cutoff: 4.0
      dtype: float32                # or float64
      compile: false                # torch.compile backbone and heads (faster; C++ compiler)
      finetune: full                # full | frozen (features cached) | N (last N blocks train)
    heads:                          # tensor name -> HeadConfig
      alpha:
        spec: polarizability        # a library name, a .tsym file (relative to the config) or spec text
        key: polarizability         # label key in the data (default: the tensor name)
        format: flat                # flat | voigt
        unit: bohr^3                # unit after scaling (documentation)
        scale: 1.0                  # labels are multiplied by this when read
        weight: 1.0                 # weight of this head in the total loss
        loss_space: cartesian       # cartesian (default) | irreps (each l scaled to unit RMS)
        # l_weights: {0: 1.0, 2: 1.0}  # per l; implies loss_space: irreps
    data:                           # DataConfig
      train: data/train.extxyz
      valid_fraction: 0.1           # used when no valid file is given
      split_seed: 0
      group_by: name                # optional: records sharing atoms.info["name"] share a split
    optimiser: {lr: 1.0e-3, weight_decay: 0.05}                # OptimiserConfig (AdamW; backbone_lr)
    schedule: {kind: cosine, warmup_steps: 10}                 # ScheduleConfig
    training: {epochs: 100, batch_size: 8, grad_clip: 10.0, ema_decay: 0.99, seed: 0}
    refine: {iterations: 0}         # RefineConfig: full-batch L-BFGS after training (0: off)

>>> cfg = TrainConfig.from_dict({"heads": {"alpha": {"spec": "tensor alpha { indices ij }"}},
...                              "data": {"train": "train.extxyz"}})
>>> cfg.training.batch_size, cfg.heads[0].data_key, cfg.model.dtype
(8, 'alpha', 'float32')
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tsym.compiler.library import resolve_spec
from tsym.runtime.errors import ConfigError
from tsym.runtime.training._checks import (_build, _choice, _is_number, _nonneg, _plain,
                                           _positive, _resolve, _seed, _StrictLoader, _unknown)

__all__ = ["ModelConfig", "HeadConfig", "DataConfig", "OptimiserConfig",
           "ScheduleConfig", "TrainingConfig", "RefineConfig", "TrainConfig", "load_config",
           "config_changes"]


@dataclass(frozen=True)
class ModelConfig:
    """The network: a registered backbone, its kwargs, the heads' kwargs, cutoff, float dtype."""

    backbone: str = "xpainn"
    backbone_kwargs: dict = field(default_factory=dict)
    head_kwargs: dict = field(default_factory=dict)
    cutoff: float = 5.0
    dtype: str = "float32"
    compile: bool = False
    finetune: str | int = "full"  # full | frozen (features cached) | N: the last N blocks train

    def check(self, where: str) -> None:
        _choice(where, "dtype", self.dtype, ("float32", "float64"))
        _positive(where, "cutoff", self.cutoff)
        if not (self.finetune in ("full", "frozen") or (
                isinstance(self.finetune, int) and self.finetune >= 0)):
            raise ConfigError(f"{where}: 'finetune' must be full, frozen or the number of last "
                              f"backbone blocks to train (an integer >= 0), got "
                              f"{self.finetune!r}")


@dataclass(frozen=True)
class HeadConfig:
    """One output head: the tensor ``name`` of ``spec``, where its labels are, how it is trained.

    ``key``, ``format``, ``unit``, ``scale`` are those of
    :class:`tsym.runtime.data.LabelSpec` (the level and order come from the spec).

    ``loss_space`` (:class:`~tsym.runtime.training.losses.HeadLoss`): ``cartesian`` by default
    (``irreps`` when ``l_weights`` are given): the squared error of the Cartesian entries, the
    figure every published tensor model reports.  Against ``irreps`` (each l scaled to unit RMS)
    it cut the test error of 7 of 8 heads on the shared sets by 10-25 % and raised one
    (nmr_si_matten: its small antisymmetric ``1e`` part; benchmarks/README.md, "Against published
    models").  ``irreps`` gives a small l (an antisymmetric or a traceless part) the weight of a
    large one.
    """

    name: str
    spec: str
    key: str | None = None
    format: str = "flat"
    unit: str | None = None
    scale: float = 1.0
    weight: float = 1.0
    loss_space: str | None = None  # None: "irreps" with l_weights, else "cartesian"
    l_weights: dict | None = None

    def __post_init__(self):
        if self.loss_space is None:
            object.__setattr__(self, "loss_space",
                               "irreps" if self.l_weights is not None else "cartesian")

    def check(self, where: str) -> None:
        _choice(where, "format", self.format, ("flat", "voigt"))
        _choice(where, "loss_space", self.loss_space, ("irreps", "cartesian"))
        if not (math.isfinite(self.scale) and self.scale != 0):
            raise ConfigError(f"{where}: 'scale' must be a finite nonzero number, got "
                              f"{self.scale!r}")
        if not self.weight >= 0:
            raise ConfigError(f"{where}: 'weight' must be >= 0, got {self.weight!r}")
        if self.l_weights is not None:
            if self.loss_space != "irreps":
                raise ConfigError(f"{where}: 'l_weights' needs loss_space: irreps")
            for l, w in self.l_weights.items():
                if not (isinstance(l, int) and not isinstance(l, bool) and l >= 0):
                    raise ConfigError(f"{where}: 'l_weights' keys are l = 0, 1, 2, ...; got {l!r}")
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
                    raise ConfigError(f"{where}: 'l_weights' values must be numbers >= 0, "
                                      f"got {w!r} for l={l}")

    @property
    def data_key(self) -> str:
        return self.key if self.key is not None else self.name


@dataclass(frozen=True)
class DataConfig:
    """Data files (extended XYZ); without a ``valid``/``test`` file, that split is drawn from
    ``train`` with :func:`tsym.runtime.data.split` (``split_seed``); ``group_by``, a key of
    ``atoms.info`` (a molecule's name, a trajectory id), keeps the records that share its value in
    one split, so copies of a training structure never score the model.  ``on_error``: ``fail``
    on the first bad record, or ``skip`` bad records (counted in the report)."""

    train: str
    valid: str | None = None
    test: str | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.0
    split_seed: int = 0
    group_by: str | None = None
    on_error: str = "fail"

    def check(self, where: str) -> None:
        _choice(where, "on_error", self.on_error, ("fail", "skip"))
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{where}: '{name}' must be in [0, 1), got "
                                  f"{getattr(self, name)!r}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ConfigError(f"{where}: valid_fraction + test_fraction must be < 1")
        _seed(where, "split_seed", self.split_seed)
        if self.group_by is not None and not (isinstance(self.group_by, str) and self.group_by):
            raise ConfigError(f"{where}: 'group_by' must be a key of atoms.info (a string), "
                              f"got {self.group_by!r}")


@dataclass(frozen=True)
class OptimiserConfig:
    """AdamW.  ``weight_decay`` 0.05 by default: on the published splits it cut the test error of
    water_gamma_tensoap (1.3-1.55x) and becs_epsilon_e3nn (Born-charge MAE 0.122 -> 0.116 +- 0.013
    over 3 seeds; dielectric 0.76 -> 0.55) and left water_apt unchanged (benchmarks/README.md,
    "Against published models")."""

    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    backbone_lr: float | None = None  # the backbone's parameters (a pretrained one); null: lr

    def check(self, where: str) -> None:
        _positive(where, "lr", self.lr)
        if self.backbone_lr is not None:
            _positive(where, "backbone_lr", self.backbone_lr)
        _positive(where, "eps", self.eps)
        if not self.weight_decay >= 0:
            raise ConfigError(f"{where}: 'weight_decay' must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{where}: 'betas' must be two numbers in [0, 1), got "
                              f"{list(self.betas)!r}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning rate: linear warm-up, then cosine decay to ``min_lr_ratio * lr`` over the run
    (``cosine``), a constant (``constant``), or ReduceLROnPlateau on the validation loss
    (``plateau``, with ``factor`` and ``patience`` in evaluations)."""

    kind: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    factor: float = 0.5
    patience: int = 10

    def check(self, where: str) -> None:
        _choice(where, "kind", self.kind, ("cosine", "plateau", "constant"))
        _nonneg(where, "warmup_steps", self.warmup_steps)
        _nonneg(where, "patience", self.patience)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"{where}: 'min_lr_ratio' must be in [0, 1]")
        if not 0.0 < self.factor < 1.0:
            raise ConfigError(f"{where}: 'factor' must be in (0, 1), got {self.factor!r}")


@dataclass(frozen=True)
class TrainingConfig:
    """The loop.  ``batch_size`` is the global batch (split over the processes of a DDP run);
    training stops after ``epochs`` or ``max_steps`` optimiser steps, whichever comes first;
    ``eval_every`` counts epochs; ``checkpoint_every`` counts steps (0: at each evaluation);
    ``log_every`` counts steps between step records in ``metrics.jsonl`` (0: none);
    ``progress``: a progress bar on stderr when it is a terminal (never in a log file)."""

    epochs: int | None = 100
    max_steps: int | None = None
    batch_size: int = 8
    grad_clip: float | None = 10.0
    ema_decay: float | None = 0.99
    seed: int = 0
    eval_every: int = 1
    checkpoint_every: int = 0
    log_every: int = 10
    num_workers: int = 0
    device: str = "auto"
    progress: bool = True

    def check(self, where: str) -> None:
        if self.epochs is None and self.max_steps is None:
            raise ConfigError(f"{where}: give 'epochs' or 'max_steps'")
        for name in ("epochs", "max_steps", "batch_size", "eval_every"):
            if getattr(self, name) is not None:
                _positive(where, name, getattr(self, name))
        for name in ("checkpoint_every", "log_every", "num_workers"):
            _nonneg(where, name, getattr(self, name))
        _seed(where, "seed", self.seed)
        if self.grad_clip is not None:
            _positive(where, "grad_clip", self.grad_clip)
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"{where}: 'ema_decay' must be in [0, 1), got {self.ema_decay!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"{where}: 'device' must be auto, cpu or cuda[:N], got "
                              f"{self.device!r}")


@dataclass(frozen=True)
class RefineConfig:
    """After the AdamW steps: full-batch L-BFGS (strong-Wolfe line search) from ``best.pt``
    (:mod:`tsym.runtime.training.refine`).  Each of ``iterations`` runs up to ``evaluations``
    passes over the whole training split (``chunk`` structures a forward pass; a pass is one
    epoch's compute), with ``history`` past gradients; after each, the validation loss decides
    whether ``best.pt`` takes the new weights, so refining never makes the chosen model worse on
    the validation split.  ``iterations: 0`` (the default) turns it off.  Full-batch steps reach
    a precision that minibatch AdamW's noise hides: 150 iterations took water_gamma_tensoap's
    test error from 3.20 +- 0.75 to 0.85 +- 0.13 a.u. over 3 seeds (benchmarks/README.md,
    "Against published models"); it pays where AdamW's training and validation losses are close,
    not where a model overfits.  Meant for training sets of up to a few thousand structures: one
    iteration costs up to ``evaluations`` epochs.  After ``patience`` iterations in a row that do
    not lower the training loss, L-BFGS restarts without its history; when that does not help
    either, refinement ends early (``patience: 0``: never).  Resuming may change these keys
    (e.g. refine a finished run)."""

    iterations: int = 0
    evaluations: int = 20
    history: int = 50
    chunk: int = 256
    patience: int = 5

    def check(self, where: str) -> None:
        _nonneg(where, "iterations", self.iterations)
        _nonneg(where, "patience", self.patience)
        for name in ("evaluations", "history", "chunk"):
            _positive(where, name, getattr(self, name))


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "optimiser": OptimiserConfig,
             "schedule": ScheduleConfig, "training": TrainingConfig,
             "refine": RefineConfig}


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run: :meth:`from_dict` validates, :meth:`to_dict` gives it back."""

    model: ModelConfig
    heads: tuple
    data: DataConfig
    optimiser: OptimiserConfig = OptimiserConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    training: TrainingConfig = TrainingConfig()
    refine: RefineConfig = RefineConfig()
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, raw: dict, source: str = "<dict>", base_dir: str | os.PathLike | None = None
                  ) -> TrainConfig:
        """Validate ``raw`` (the parsed YAML) and build the config.

        Relative data and spec paths are resolved against ``base_dir`` (the config's folder).
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: a config must be a mapping of sections, got "
                              f"{type(raw).__name__}")
        allowed = ("model", "heads", "data", "optimiser", "schedule", "training", "refine")
        _unknown(source, "the top level", raw, allowed)
        for need in ("heads", "data"):
            if need not in raw:
                raise ConfigError(f"{source}: missing section '{need}'")
        base = Path(base_dir) if base_dir is not None else None
        sections = {name: _build(typ, raw.get(name) or {}, f"{source}: section '{name}'")
                    for name, typ in _SECTIONS.items() if name != "data"}
        data = _build(DataConfig, raw["data"], f"{source}: section 'data'")
        data = dataclasses.replace(data, **{k: _resolve(getattr(data, k), base)
                                            for k in ("train", "valid", "test")})
        heads_raw = raw["heads"]
        if not isinstance(heads_raw, dict) or not heads_raw:
            raise ConfigError(f"{source}: section 'heads' must map tensor names to head settings")
        heads = []
        for name, item in heads_raw.items():
            where = f"{source}: section 'heads', head '{name}'"
            if not isinstance(item, dict):
                raise ConfigError(f"{where}: expected a mapping, got {type(item).__name__}")
            if "name" in item:
                raise ConfigError(f"{where}: unknown key 'name' (the head's name is its key)")
            head = _build(HeadConfig, {"name": str(name), **item}, where)
            head = dataclasses.replace(head, spec=resolve_spec(head.spec, base))
            heads.append(head)
        return cls(heads=tuple(heads), data=data, source=source, **sections)

    def to_dict(self) -> dict:
        """Plain nested dict (what ``config.yaml`` in a run directory holds, paths resolved)."""
        out = {}
        for name in ("model", "data", "optimiser", "schedule", "training", "refine"):
            out[name] = _plain(dataclasses.asdict(getattr(self, name)))
        out["heads"] = {h.name: {k: v for k, v in _plain(dataclasses.asdict(h)).items()
                                 if k != "name"} for h in self.heads}
        return out


def load_config(config: str | os.PathLike | dict | TrainConfig) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML path, a dict (as parsed YAML), or a config itself."""
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    path = Path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a YAML text file (byte {err.start} is not UTF-8)") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}:" if mark else f"{path}:"
        raise ConfigError(f"{where} not valid YAML ({getattr(err, 'problem', err)})") from None
    return TrainConfig.from_dict(raw if raw is not None else {}, str(path), path.parent)


def config_changes(old: dict, new: dict) -> list[tuple[str, object, object]]:
    """``(section.key, old value, new value)`` for each key whose value differs (resolved dicts;
    nested mappings such as a head's settings are compared key by key).

    >>> config_changes({"training": {"epochs": 1}}, {"training": {"epochs": 2}})
    [('training.epochs', 1, 2)]
    >>> config_changes({"heads": {"a": {"scale": 1.0}}}, {"heads": {"a": {"scale": 2.0}}})
    [('heads.a.scale', 1.0, 2.0)]
    """
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and a and b:
            out += [(f"{key}.{k}", x, y) for k, x, y in config_changes(a, b)]
        elif a != b and not (a in (None, {}) and b in (None, {})):
            out.append((str(key), a, b))
    return out
