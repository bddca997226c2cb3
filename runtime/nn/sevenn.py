"""SevenNet (the ``sevenn`` package) as a pretrained tsym backbone, registered as ``"sevenn"``.

The network is SevenNet's own, loaded with SevenNet's own loader
(``sevenn.util.load_checkpoint``): a name the package knows (``"7net-0"``, ``"7net-l3i5"``, ...:
the checkpoints its wheel ships, read offline) or the path of a ``.pth`` checkpoint,
``backbone_kwargs: {checkpoint: ...}``.  Its node features are the output of its last
interaction block that still carries ``l >= 1`` (the last block writes scalars only for the
energy), e.g. ``3_equivariant_gate``: ``128x0e+64x1e+32x2e`` for SevenNet-0,
``128x0e+64x1e+32x2e+32x3e`` for SevenNet-l3i5.  The blocks after it and the energy readout are
dropped (they are neither run nor trained).

**No parity.**  The shipped checkpoints are ``is_parity=False``: their features are
SO(3)-equivariant only and every irrep is labelled ``e``; under an inversion all channels mix.
The backbone therefore declares ``parity = False`` and :func:`~tsym.runtime.nn.registry.
build_backbone` wraps it in :class:`~tsym.runtime.nn.parity.RestoreParity`, which makes exact
O(3) features from two passes (module doc there).  :attr:`SevenNetBackbone.irreps_out` is the
SO(3) layout, with ``e`` as SevenNet writes it.

Edge convention: SevenNet gathers messages onto ``edge_index[0]`` and reads
``edge_vec = pos[edge_index[1]] - pos[edge_index[0]] + shift``, the vector from the centre to
the neighbour: tsym's ``r_ij`` (:func:`tsym.runtime.graph.edge_vectors`) with tsym's edge rows
swapped.  SevenNet uses ``e3nn.o3`` (spherical harmonics, tensor products), so its features
follow e3nn 0.6 conventions under rotations.

Export: ``tsym export`` traces :meth:`SevenNetBackbone.for_export`, a copy whose SevenNet
modules are scripted (``e3nn.util.jit.script``, as SevenNet deploys itself): a trace of the eager
modules would keep the example's atom count as a constant, and is refused
(:class:`~tsym.runtime.errors.ExportError`).

float64: SevenNet's one-hot embedding casts to float32 (``.float()``); the adapter casts the
one-hot back to the positions' dtype, so a float64 model runs in float64 throughout.

Install: ``pip install -c constraints.txt -e ".[sevenn]"`` (sevenn 0.13.0).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections import OrderedDict

import torch
from e3nn import o3
from e3nn.util.jit import script

from tsym.runtime import keys
from tsym.runtime.errors import ExportError, ModelConfigError
from tsym.runtime.graph import edge_vectors, node_batch
from tsym.runtime.nn.extras import ElementIndex, missing_extra
from tsym.runtime.nn.pretrained import check_digest, checkpoint_identity, register_digest

__all__ = ["SevenNetBackbone"]

#: Why a trace of the eager modules is refused (it bakes in the atom count of the example).
_NO_EXPORT = ("backbone 'sevenn': a trace of its eager modules records the number of atoms of "
              "the example as a constant (SevenNet's message gathering); trace "
              "SevenNetBackbone.for_export() instead (tsym export does)")

_W3J = re.compile(r"_w3j_(\d+)_(\d+)_(\d+)")  # e3nn's TensorProduct codegen buffers


def _sevenn_util():
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            from sevenn import util
    except ImportError as err:
        raise missing_extra("sevenn", "sevenn", err) from None
    return util


def _resolve(util, checkpoint: str) -> str:
    """The file of ``checkpoint`` (a path, or a name SevenNet ships), or an error naming both."""
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise ModelConfigError(f"backbone 'sevenn': checkpoint must be a name such as '7net-0' "
                               f"or a path, got {type(checkpoint).__name__}")
    if os.path.isfile(checkpoint):
        return os.fspath(checkpoint)
    try:
        path = util.pretrained_name_to_path(str(checkpoint))
    except ValueError:
        path = None
    if path is None or not os.path.isfile(path):
        known = ", ".join(util.get_available_pretrained_models())
        raise ModelConfigError(f"backbone 'sevenn': checkpoint {checkpoint!r} is neither a file "
                               f"nor a checkpoint the sevenn package ships ({known})") from None
    return path


def _built(util, path: str):
    """SevenNet's network and config from the file ``path``.  Built anew each time (seconds of
    e3nn code generation), never copied: a ``copy.deepcopy`` of a built one runs parts of its
    tensor products at float32 precision after ``.double()`` (6e-7 equivariance errors)."""
    default = torch.get_default_dtype()
    try:  # SevenNet builds in float32 (its own default): other defaults break its layers
        torch.set_default_dtype(torch.float32)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            loaded = util.load_checkpoint(path)
            return loaded.build_model(), dict(loaded.config)
    finally:
        torch.set_default_dtype(default)


def _load(util, checkpoint, path: str):
    """The network of ``checkpoint`` (file ``path``) and its config, or a config error."""
    try:
        model, config = _built(util, path)
    except Exception as err:  # noqa: BLE001 - torch.load / sevenn raise many kinds here
        raise ModelConfigError(f"backbone 'sevenn': {checkpoint!r} ({path}) is not a "
                               f"SevenNet checkpoint: {type(err).__name__}: {err}") from None
    return model, dict(config)


def _feature_block(model) -> tuple[str, o3.Irreps]:
    """Name and irreps of the last ``*_equivariant_gate`` whose output has ``l >= 1``."""
    found = None
    for name, module in model._modules.items():
        if name.endswith("_equivariant_gate"):
            irreps = o3.Irreps(module.gate.irreps_out)
            if irreps.lmax >= 1:
                found = (name, irreps)
    if found is None:
        raise ModelConfigError("backbone 'sevenn': the checkpoint's network has no interaction "
                               "block with l >= 1 features (no '*_equivariant_gate' module)")
    return found


class SevenNetBackbone(torch.nn.Module):
    """A SevenNet checkpoint's interaction blocks behind the backbone contract (module doc).

    Parameters
    ----------
    cutoff : float
        Must equal the checkpoint's cutoff (SevenNet's radial functions end there).
    checkpoint : str
        A name the ``sevenn`` package ships (``"7net-0"``, ``"7net-l3i5"``) or a ``.pth`` path.

    Attributes
    ----------
    irreps_out : e3nn.o3.Irreps
        The SO(3) features as SevenNet writes them (every block labelled ``e``).
    parity : bool
        False: :func:`~tsym.runtime.nn.registry.build_backbone` restores O(3).
    elements : tuple of int
        The elements the checkpoint covers (another one is refused by name).
    checkpoint_name, checkpoint_sha256 : str
        What was loaded: the name is in tsym's checkpoint (``backbone_kwargs``), the sha256 too
        (buffer ``checkpoint_digest``); a reload whose file has another sha256 is refused.
    blocks : list of str
        Module-name prefixes of the interaction blocks, in order (for partial fine-tuning).
    """

    parity = False
    name = "sevenn"
    scripted = False  # True on the copy of for_export()

    def __init__(self, cutoff: float = 5.0, checkpoint: str = "7net-0"):
        super().__init__()
        util = _sevenn_util()
        path = _resolve(util, checkpoint)
        sha256 = checkpoint_identity(path)  # ~30 ms for SevenNet-0's 10 MB
        model, config = _load(util, checkpoint, path)
        if float(config["cutoff"]) != float(cutoff):
            raise ModelConfigError(
                f"backbone 'sevenn': checkpoint {checkpoint!r} was trained with a cutoff of "
                f"{float(config['cutoff'])} Angstrom; build the model with cutoff="
                f"{float(config['cutoff'])} (given {float(cutoff)})")
        self.cutoff = float(cutoff)
        self.checkpoint_name = str(checkpoint)
        self.checkpoint_sha256 = sha256
        type_map = {int(z): int(i) for z, i in config["_type_map"].items()}
        self.elements = tuple(sorted(type_map))
        self.max_z = max(self.elements)
        self.index = ElementIndex(self.elements, "sevenn")
        # saved in tsym's checkpoint; a reload checks it against the file it builds from
        register_digest(self, sha256)  # buffer checkpoint_digest [32]
        # [Z + 1]: position in elements -> SevenNet's type; the last entry (reached by the index
        # -1 of an unknown element where the check is off, in a traced export) is out of range
        # of SevenNet's one-hot, which then fails instead of embedding another element
        self.register_buffer("type_of", torch.tensor(
            [type_map[z] for z in self.elements] + [len(self.elements)]), persistent=False)
        last, self.irreps_out = _feature_block(model)
        kept = OrderedDict()
        for name, module in model._modules.items():
            kept[name] = module
            if name == last:
                break
        self.net = torch.nn.ModuleDict(kept)
        self.blocks = sorted({n.split("_")[0] for n in kept if n[0].isdigit()}, key=int)

    def for_export(self) -> SevenNetBackbone:
        """A copy whose SevenNet modules are TorchScript (``e3nn.util.jit.script``, as SevenNet's
        own deployment does): a trace of it keeps the atom count of SevenNet's message gathering
        dynamic, so ``tsym export`` traces this (a few seconds of scripting)."""
        weights = next(self.parameters())
        # built anew, not deep-copied (see _built), then given this one's weights
        twin = SevenNetBackbone(self.cutoff, self.checkpoint_name).to(weights.dtype)
        twin.load_state_dict(self.state_dict())
        twin.to(weights.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in list(twin.net):
                twin.net[name] = script(twin.net[name])
        twin.scripted = True
        return twin

    def _apply(self, fn, *args, **kwargs):
        """``.to()``/``.double()``, then e3nn's Wigner 3j buffers at the new precision: the
        checkpoint stores them in float32, which costs float64 equivariance ~1e-8."""
        super()._apply(fn, *args, **kwargs)
        for module in self.modules():
            for name, buffer in list(module._buffers.items()):
                match = _W3J.fullmatch(name)
                if match and buffer is not None and buffer.dtype == torch.float64:
                    l1, l2, l3 = (int(v) for v in match.groups())
                    module._buffers[name] = o3.wigner_3j(  # [2 l1 + 1, 2 l2 + 1, 2 l3 + 1]
                        l1, l2, l3, dtype=buffer.dtype, device=buffer.device)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        check_digest(self, state_dict, prefix, "sevenn", self.checkpoint_name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, graph: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if torch.jit.is_tracing() and not self.scripted:  # trace for_export() instead
            raise ExportError(_NO_EXPORT)
        positions = graph[keys.POSITIONS]  # [N, 3]
        edge_index = graph[keys.EDGE_INDEX]  # [2, E] (neighbour j, centre i)
        batch = node_batch(graph)  # [N]
        inputs = {k: graph[k] for k in keys.BACKBONE_INPUTS if k in graph}
        inputs[keys.BATCH] = batch
        data = {"edge_index": edge_index.flip(0),  # [2, E] (centre i, neighbour j)
                "edge_vec": edge_vectors(inputs),  # [E, 3] r_ij, centre -> neighbour
                "x": self.type_of[self.index(graph[keys.ATOMIC_NUMBERS])]}  # [N]
        for name, module in self.net.items():
            data = module(data)
            if name == "onehot_idx_to_onehot":  # SevenNet's one-hot is float32: model dtype
                data["x"] = data["x"].to(positions.dtype)  # [N, n_species]
                data["node_attr"] = data["x"]
        graph = dict(graph)
        graph[keys.NODE_FEATURES] = data["x"].clone()  # [N, irreps_out.dim]
        graph[keys.BATCH] = batch
        return graph
