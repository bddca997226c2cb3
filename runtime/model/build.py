"""The models: ``TensorModel`` (compiled heads on a backbone), ``TrainedModel``; ``build_model``.

A :class:`TensorModel` holds one backbone (any module meeting the contract of
:mod:`tsym.runtime.nn.registry`) and one :class:`~tsym.compiler.SelfMixHead` per
:class:`~tsym.compiler.HeadPlan`, keyed by the spec's name::

    graph -> backbone -> NODE_FEATURES [N, irreps_out.dim] -> head_k -> {name_k: [G|N, 3, ..., 3]}

A :class:`TrainedModel` is a trained ``TensorModel`` with the normalisation of each head
(:mod:`tsym.runtime.model.normalisation`): it answers in data units.  :meth:`TensorModel.save` writes a
model checkpoint; ``build_model(checkpoint=...)`` reads either kind (model or training, whose layouts
:mod:`tsym.runtime.model.checkpoint` keeps) and gives a ``TensorModel`` or a ``TrainedModel``.

Examples
--------
>>> import tsym
>>> from ase.build import molecule
>>> spec = "tensor alpha { indices ij; symmetry ij = ji; pool sum }"
>>> model = tsym.build_model([spec], backbone_kwargs=dict(
...     num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=1, embedding="onehot"),
...     head_kwargs=dict(hidden_mul=2, mlp_hidden=4))
>>> model.predict([molecule("H2O"), molecule("CH4")])["alpha"].shape
(2, 3, 3)
"""
from __future__ import annotations

import contextlib
import hashlib
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms

from tsym.compiler import HeadPlan, compile_text, load_plans
from tsym.runtime import keys
from tsym.runtime.model.checkpoint import DTYPES, ModelRecord, model_record, read_model, save_atomic
from tsym.runtime.model._batched import predict_batched
from tsym.runtime.errors import CheckpointError, ModelConfigError
from tsym.runtime.nn.heads import make_head
from tsym.runtime.nn.registry import (backbone_name, build_backbone, check_backbone,
                                      stored_kwargs)
from tsym.runtime.nn.wrap import check_backbone_contract
from tsym.runtime.nn.xpainn import COMPILE_DEFAULTS
from tsym.runtime.model.normalisation import Normalisation

__all__ = ["TensorModel", "TrainedModel", "build_model", "predict_batched"]

_PLAIN = (str, int, float, bool, type(None))


@contextlib.contextmanager
def _building(dtype: torch.dtype, seed: int | None):
    """Default dtype ``dtype`` (e3nn computes its constants in it) and, if given, a private RNG
    seeded with ``seed`` (the global RNG state is restored afterwards)."""
    old = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(old)


def _head_seed(seed: int, plan: HeadPlan) -> int:
    """A head's seed from the model seed and its spec, so adding a spec changes no other head."""
    digest = hashlib.sha256(f"{seed}:{plan.spec_hash}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


class TensorModel(torch.nn.Module):
    """A backbone plus one compiled head per spec.

    Parameters
    ----------
    backbone : torch.nn.Module
        Meets the contract of :mod:`tsym.runtime.nn.nequip` (``irreps_out``, ``NODE_FEATURES``).
    plans : sequence of HeadPlan
        One head per plan; names must be distinct.
    head_kwargs : dict, optional
        Extra arguments of every :class:`~tsym.compiler.SelfMixHead` (``hidden_mul``,
        ``mlp_hidden``, ``skip``); ``kind`` ``"linear"`` or ``"invariant"`` picks a baseline
        head of :mod:`tsym.runtime.nn.heads` instead.
    cutoff : float, optional
        Graph radius used by :meth:`predict`; default ``backbone.cutoff``.
    seed : int, optional
        Seed the initial weights of each head (from ``seed`` and the spec's hash).

    Raises
    ------
    ModelConfigError
        The backbone breaks the contract, a head cannot read its features, or two specs share a
        name; the message names the backbone and the head.
    """

    def __init__(self, backbone: torch.nn.Module, plans: Sequence[HeadPlan],
                 head_kwargs: Mapping | None = None, *, cutoff: float | None = None,
                 seed: int | None = None):
        super().__init__()
        self.irreps_in = check_backbone(backbone)
        bname = backbone_name(backbone)
        cutoff = getattr(backbone, "cutoff", None) if cutoff is None else cutoff
        if cutoff is None or not float(cutoff) > 0:
            raise ModelConfigError(f"backbone {bname} has no cutoff attribute: pass "
                                   f"TensorModel(..., cutoff=...) (got {cutoff!r})")
        self.cutoff = float(cutoff)
        self.backbone = backbone
        self.plans = tuple(plans)
        self.head_kwargs = dict(head_kwargs or {})
        self.heads = torch.nn.ModuleDict()
        if not self.plans:
            raise ModelConfigError(f"TensorModel needs at least one spec (backbone {bname})")
        for plan in self.plans:
            if not isinstance(plan, HeadPlan):
                raise ModelConfigError(f"expected a HeadPlan, got {type(plan).__name__}")
            if plan.name in self.heads:
                raise ModelConfigError(f"two specs are named '{plan.name}'; head names must be "
                                       "distinct")
            with _building(torch.get_default_dtype(),
                           None if seed is None else _head_seed(seed, plan)):
                head = self._make_head(plan, bname)
            try:
                self.heads[plan.name] = head
            except KeyError:
                raise ModelConfigError(f"a spec cannot be named '{plan.name}' (a torch "
                                       "ModuleDict attribute); rename the tensor") from None
        self.build_info: dict | None = None  # set by build_model: what save() writes

    def _make_head(self, plan: HeadPlan, bname: str) -> torch.nn.Module:
        try:  # head_kwargs["kind"] picks a baseline head (tsym.runtime.nn.heads)
            return make_head(self.irreps_in, plan.irreps, plan.change_of_basis, plan.level,
                             plan.pool, **self.head_kwargs, **plan.head_options())
        except (ValueError, TypeError) as err:
            raise ModelConfigError(
                f"head '{plan.name}' (irreps '{plan.irreps}') cannot be attached to backbone "
                f"{bname} (irreps_out '{self.irreps_in}'): {err}") from None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def max_z(self) -> int | None:
        """Largest atomic number the backbone covers (its ``max_z``); None if it does not say."""
        z = getattr(self.backbone, "max_z", None)
        return None if z is None else int(z)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, graph: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cartesian tensors by spec name.

        Returns
        -------
        dict of str to torch.Tensor
            ``[G, 3, ..., 3]`` for a structure-level spec, ``[N, 3, ..., 3]`` (atoms in graph
            order) for an atom-level one.
        """
        out = self.backbone(graph)
        features = out[keys.NODE_FEATURES]  # [N, irreps_in.dim]
        if features.dim() != 2 or features.shape[1] != self.irreps_in.dim:
            raise ModelConfigError(
                f"backbone {backbone_name(self.backbone)} wrote NODE_FEATURES of shape "
                f"{tuple(features.shape)}, but its irreps_out '{self.irreps_in}' has dim "
                f"{self.irreps_in.dim}")
        batch = out.get(keys.BATCH, graph.get(keys.BATCH))  # [N]
        n_graphs = graph.get(keys.NUM_GRAPHS)
        num_graphs = int(n_graphs) if n_graphs is not None else None
        return {name: head(features, batch, num_graphs) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, structures: Atoms | Sequence[Atoms], batch_size: int = 32, *,
                source: str = "<structures>") -> dict[str, np.ndarray]:
        """Predictions for ``ase.Atoms`` (graphs of the model's cutoff and dtype), in eval mode.

        Returns ``{name: array [n_structures or total atoms, 3, ..., 3]}`` of the model's dtype.
        A bad structure (or an element beyond :attr:`max_z`) raises a ``DataError`` naming
        ``source`` and the structure's place in ``structures``.
        """
        return predict_batched(self, self.plans, structures, batch_size, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TensorModel | TrainedModel:
        """The model saved at ``path`` (same as ``tsym.build_model(checkpoint=path)``)."""
        return build_model(checkpoint=path)

    def compile_for_speed(self, **kwargs) -> "TensorModel":
        """``torch.compile`` the backbone's blocks and each head's per-node part; return self.

        The backbone's :meth:`~tsym.runtime.nn.xpainn.XPaiNN.compile_blocks` when it has one
        (other backbones stay eager), and each head's ``node_irreps`` (pooling and ``y @ Q`` stay
        eager).  Defaults (:data:`COMPILE_DEFAULTS`): ``dynamic=True`` (one compilation serves
        every batch size), ``fullgraph=True`` (a region that cannot be compiled whole raises
        instead of running eager in pieces) and ``isolate_recompiles=True`` (every block and head
        keeps its own compiled entries, so several compiled blocks and models in one process do
        not share dynamo's recompile limit, and hitting it raises rather than falls back to eager
        silently).  ``kwargs`` override them (e.g. ``backend=...``).  Training configs ask for it
        with ``model: {compile: true}``.  It needs a C++ compiler; what the compilation costs
        and when it pays is measured in ``benchmarks/README.md``.  The weights, checkpoints and
        results are those of the eager model.
        """
        kwargs = {**COMPILE_DEFAULTS, **kwargs}
        if hasattr(self.backbone, "compile_blocks"):
            self.backbone.compile_blocks(**kwargs)
        for head in self.heads.values():
            if hasattr(type(head), "node_irreps"):  # the self-mix head (the baselines stay eager)
                head.node_irreps = torch.compile(type(head).node_irreps.__get__(head), **kwargs)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically (temp file in the same directory, then ``os.replace``)."""
        if self.build_info is None:
            raise ModelConfigError(
                "only a model whose backbone tsym.build_model built by name can be saved: "
                "register a factory for yours (tsym.register_backbone(name, factory), or the "
                "entry-point group 'tsym.backbones') and pass backbone=name")
        save_atomic(model_record(self), path)


class TrainedModel(torch.nn.Module):
    """A :class:`TensorModel` whose heads' outputs are normalised irreps.

    ``forward(graph)`` returns Cartesian tensors in data units (de-normalised before
    ``to_cartesian``); ``forward(graph, normalised=True)`` returns the normalised irreps
    coordinates ``{name: [G or N, irreps.dim]}`` the losses compare.
    """

    def __init__(self, model: torch.nn.Module, norms: Mapping[str, Normalisation]):
        super().__init__()
        self.model = model
        self.plans = {plan.name: plan for plan in model.plans}
        missing = sorted(set(self.plans) - set(norms))
        if missing:
            raise ValueError(f"no normalisation for heads {missing}")
        self.norms = {name: norms[name] for name in self.plans}

    @property
    def cutoff(self) -> float:
        return self.model.cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def max_z(self) -> int | None:
        return self.model.max_z

    def forward(self, graph: Mapping[str, torch.Tensor], normalised: bool = False
                ) -> dict[str, torch.Tensor]:
        raw = self.model(graph)
        out = {}
        n_atoms = graph.get(keys.NUM_ATOMS)  # [G]
        for name, plan in self.plans.items():
            y_n = plan.from_cartesian(raw[name])  # [G or N, d] (Q has orthonormal rows)
            if normalised:
                out[name] = y_n
            else:
                y = self.norms[name].denormalise(y_n, n_atoms)  # [G or N, d]
                out[name] = plan.to_cartesian(y)  # [G or N, 3, ..., 3]
        return out

    def predict(self, structures: Atoms | Sequence[Atoms], batch_size: int = 32, *,
                source: str = "<structures>") -> dict[str, np.ndarray]:
        """Predictions in data units, ``{name: [n_structures or total atoms, 3, ..., 3]}``.

        Errors name ``source`` and the structure's place in ``structures``."""
        return predict_batched(self, list(self.plans.values()), structures, batch_size,
                               source=source)


def _plain(value, what: str):
    """``value`` with e3nn Irreps turned into strings; only plain types (for weights_only)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, what) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, what) for v in value]
    if isinstance(value, _PLAIN):
        return value
    if type(value).__name__ == "Irreps":
        return str(value)
    raise ModelConfigError(f"{what} must hold plain values (str, int, float, bool, None, lists, "
                           f"dicts), got {type(value).__name__}: {value!r}")


def _plans(specs) -> list[HeadPlan]:
    if isinstance(specs, (str, os.PathLike, HeadPlan)):
        specs = [specs]
    if not isinstance(specs, Iterable):
        raise ModelConfigError(f"build_model: specs must be a library name, a .tsym path, spec "
                               f"source text, a HeadPlan or a list of them, got "
                               f"{type(specs).__name__} "
                               f"{specs!r:.40}")
    plans: list[HeadPlan] = []
    for spec in specs:
        if not isinstance(spec, (str, os.PathLike, HeadPlan)):
            raise ModelConfigError(f"a spec must be a library name, a .tsym path, spec source "
                                   f"text or a HeadPlan, got {type(spec).__name__}")
        plans += load_plans(spec)
    return plans


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _from_record(record: ModelRecord, specs, backbone, cutoff, dtype, backbone_kwargs,
                 head_kwargs) -> TensorModel | TrainedModel:
    """The model a checkpoint describes, after checking it against the arguments given."""
    path = record.path
    plans = [plan for source in record.specs for plan in compile_text(source, f"{path}:spec")]
    if [p.spec_hash for p in plans] != list(record.spec_hashes):
        raise CheckpointError(f"{path}: the stored specs no longer compile to the same canonical "
                              "source (a different tsym version?)")
    if specs is not None:
        asked = _plans(specs)
        if sorted(p.spec_hash for p in asked) != sorted(record.spec_hashes):
            raise CheckpointError(
                f"{path}: the specs given ({[p.name for p in asked]}) differ from the "
                f"checkpoint's ({[p.name for p in plans]}); pass specs=None to use the latter")
    given = {"backbone": (backbone, "xpainn", record.backbone),
             "cutoff": (cutoff, 5.0, record.cutoff),
             "dtype": (_dtype_name(dtype), "float32", _dtype_name(record.dtype)),
             "backbone_kwargs": (_plain(backbone_kwargs or {}, "backbone_kwargs"), {},
                                 record.backbone_kwargs),
             "head_kwargs": (_plain(head_kwargs or {}, "head_kwargs"), {}, record.head_kwargs)}
    for name, (value, default, stored) in given.items():
        if value != default and value != stored:
            raise CheckpointError(f"{path}: {name}={value!r} disagrees with the checkpoint's "
                                  f"{stored!r}; leave it at its default to use the checkpoint")
    model = _assemble(plans, record.backbone, record.cutoff, None, record.dtype,
                      _stored_backbone_kwargs(record), record.head_kwargs)
    try:
        model.load_state_dict(record.state_dict)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the weights do not fit the model the checkpoint "
                              f"describes: {err}") from None
    if record.normalisation is None:
        return model
    norms = {name: Normalisation.from_dict(d) for name, d in record.normalisation.items()}
    return TrainedModel(model, norms).eval()  # EMA weights; predictions in data units


def _stored_backbone_kwargs(record: ModelRecord) -> dict:
    """The record's backbone kwargs, completed by the backbone from its weights."""
    prefix = "backbone."
    weights = {k[len(prefix):]: v for k, v in record.state_dict.items() if k.startswith(prefix)}
    return stored_kwargs(record.backbone, record.backbone_kwargs, weights)


def _assemble(plans, backbone, cutoff, seed, dtype, backbone_kwargs, head_kwargs) -> TensorModel:
    if isinstance(backbone, torch.nn.Module):  # a module the user made (not saved by name)
        if backbone_kwargs:
            raise ModelConfigError(f"backbone {backbone_name(backbone)} is a module already: "
                                   "backbone_kwargs go to a backbone built by name")
        with _building(dtype, seed):
            model = TensorModel(backbone, plans, head_kwargs, cutoff=getattr(
                backbone, "cutoff", None) or cutoff, seed=seed)
        if not getattr(backbone, "contract_checked", False):
            check_backbone_contract(backbone, cutoff=model.cutoff)  # a probe molecule, once
        return model.to(dtype)
    with _building(dtype, seed):
        net = build_backbone(backbone, float(cutoff), backbone_kwargs)
        model = TensorModel(net, plans, head_kwargs, cutoff=cutoff, seed=seed)
    model.build_info = {"backbone": backbone, "backbone_kwargs": backbone_kwargs}
    return model.to(dtype)


def build_model(specs=None, backbone: str | torch.nn.Module = "xpainn", cutoff: float = 5.0,
                seed: int = 0,
                checkpoint: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32,
                backbone_kwargs: Mapping | None = None, head_kwargs: Mapping | None = None
                ) -> TensorModel | TrainedModel:
    """A :class:`TensorModel` for ``specs`` on a registered backbone (untrained, or a checkpoint).

    Parameters
    ----------
    specs : library name, path, spec source, HeadPlan, or a list of them
        Names of the spec library (``"polarizability"``, ``"elastic"``, ...; see
        ``tsym.library_names()``), ``.tsym`` files (every tensor block in them), spec texts, or
        compiled plans (:func:`tsym.compiler.load_plans` tells them apart).  May be None
        with a checkpoint (its specs are used); otherwise it must match the checkpoint's.
    backbone : str or torch.nn.Module
        A registered name (``"xpainn"``, ``"nequip"``, see :mod:`tsym.runtime.nn.nequip`;
        ``"mace"`` and ``"nequip-lib"`` with the optional extras, see
        :mod:`tsym.runtime.nn.mace` and :mod:`tsym.runtime.nn.nequip_lib`; a plugin's, see
        :mod:`tsym.runtime.nn.registry`), or a backbone module (e.g. from
        ``tsym.backbone_from_module``; its own ``cutoff`` wins; such a model trains and predicts
        in Python but cannot be saved: register a factory to save and use it from the CLI).
    cutoff : float
        Graph radius in Angstrom, passed to the backbone.
    seed : int
        Seeds the initial weights (same seed, same weights); the global RNG is left untouched.
    checkpoint : path, optional
        Load this checkpoint: backbone, kwargs, cutoff and dtype come from it; an argument that
        is not at its default and disagrees with the checkpoint raises :class:`CheckpointError`.
        A ``tsym train`` run directory or its ``best.pt``/``last.pt`` gives a
        :class:`TrainedModel` (EMA weights, predictions in data units, eval mode).
    dtype : torch.float32 or torch.float64
        Modules are built with this default dtype (e3nn constants at full precision) and cast.
    backbone_kwargs, head_kwargs : dict, optional
        Plain values (saved in checkpoints).

    Raises
    ------
    TsymError
        A bad spec (``SpecError``, ``SpecFileError``), an unknown backbone
        (``UnknownBackboneError``), a head that does not fit the backbone (``ModelConfigError``),
        a bad checkpoint (``CheckpointError``).
    """
    if dtype not in DTYPES.values():
        raise ModelConfigError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
        raise ModelConfigError(f"build_model: seed must be an integer in [0, 2**63 - 1], got "
                               f"{seed!r}")
    for name, kwargs, example in (("backbone_kwargs", backbone_kwargs, "{'num_blocks': 2}"),
                                  ("head_kwargs", head_kwargs, "{'hidden_mul': 4}")):
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise ModelConfigError(f"build_model: {name} must be a dict of keyword arguments "
                                   f"(e.g. {example}), got {type(kwargs).__name__} "
                                   f"{kwargs!r:.40}")
    if checkpoint is not None:
        return _from_record(read_model(checkpoint), specs, backbone, cutoff, dtype,
                            backbone_kwargs, head_kwargs)
    if specs is None:
        raise ModelConfigError("build_model needs specs (or a checkpoint)")
    return _assemble(_plans(specs), backbone, cutoff, seed, dtype,
                     _plain(backbone_kwargs or {}, "backbone_kwargs"),
                     _plain(head_kwargs or {}, "head_kwargs"))
