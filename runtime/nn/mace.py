"""MACE (the ``mace-torch`` package) as a tsym backbone, registered as ``"mace"``.

The network is MACE's own :class:`mace.modules.MACE`, built with MACE's own arguments (the names
of its constructor and command line: ``hidden_irreps``, ``max_ell``, ``num_interactions``,
``correlation``, ``num_bessel``, ``num_polynomial_cutoff``, ``radial_MLP``, ``MLP_irreps``,
``interaction``, ``interaction_first``, ``gate``, ``avg_num_neighbors``); a keyword left out takes
the default of MACE's ``mace_run_train`` parser.  ``r_max`` is tsym's ``cutoff``; ``elements``
(symbols or atomic numbers) is MACE's ``z_table`` and has no default: MACE keeps weights per
element.  MACE's energy readouts are built (they are part of the model) but only its node
features are used: ``node_feats``, the concatenation over interaction layers of each layer's
output (:func:`mace_irreps`), e.g. ``16x0e+16x1o+16x2e+16x0e`` for two layers with
``hidden_irreps="16x0e+16x1o+16x2e"`` (the last layer of MACE keeps only scalars).

Foundation models: ``checkpoint=PATH`` loads a MACE model file (MACE-MP / MACE-OFF ``.model``,
the whole model pickled by ``torch.save``; read offline, and unpickled: load files you trust)
instead of building one; the features are its ``node_feats`` as above (MACE-MP-0 medium:
``128x0e+128x1o+128x0e``).

Install: ``pip install -c constraints.txt -e ".[mace]" && pip install --no-deps
mace-torch==0.3.16`` (mace-torch pins ``e3nn==0.4.4``; it runs on e3nn 0.6, which tsym needs:
the ``mace`` extra lists mace-torch's other dependencies, and ``--no-deps`` skips the pin).

Edge convention: MACE computes ``r = pos[receiver] - pos[sender] + shift`` and sums messages
onto ``receiver = edge_index[1]``; tsym's ``EDGE_INDEX`` rows are (neighbour j, centre i) too,
with ``r_ij = pos[j] - pos[i] + S @ cell``, so MACE gets tsym's edges with ``shift = -S @ cell``
(MACE's vector is ``-r_ij``, the direction MACE's own neighbour lists give).  MACE uses
``e3nn.o3`` throughout, so its features follow e3nn 0.6 conventions as the contract asks.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch
from e3nn import o3

from tsym.runtime import keys
from tsym.runtime.graph import node_batch
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.nn.extras import ElementIndex, elements_of, missing_extra
from tsym.runtime.nn.pretrained import (check_digest, checkpoint_identity, load_mace_file,
                                        register_digest)

__all__ = ["MACEBackbone", "mace_irreps"]


def _mace():
    try:
        # mace prints a note on stdout when its optional CUDA kernels are absent
        with contextlib.redirect_stdout(io.StringIO()):
            from mace import modules
            from mace.tools.arg_parser import build_default_arg_parser
    except ImportError as err:
        raise missing_extra("mace", "mace", err) from None
    return modules, build_default_arg_parser()


def mace_irreps(model: torch.nn.Module) -> o3.Irreps:
    """Irreps of a MACE model's ``node_feats`` output: its layers' outputs, concatenated.

    Works on any :class:`mace.modules.MACE` (also a loaded foundation model): layer ``i``
    writes ``model.products[i].linear.irreps_out``.
    """
    products = getattr(model, "products", None)
    if products is None:
        raise ModelConfigError(f"{type(model).__name__} has no 'products': not a MACE model")
    return o3.Irreps("+".join(str(p.linear.irreps_out) for p in products))


class MACEBackbone(torch.nn.Module):
    """A :class:`mace.modules.MACE` behind the backbone contract (module doc).

    Parameters
    ----------
    cutoff : float
        MACE's ``r_max`` (Angstrom).
    elements : sequence of str or int
        The elements the model covers (MACE's ``z_table``).
    checkpoint : str, optional
        A MACE model file (MACE-MP, MACE-OFF ``.model``; ``torch.save`` of the whole model): used
        as it is, its elements and ``r_max`` (= ``cutoff``) from the file, its sha256 kept in
        tsym's checkpoint; then no ``elements`` and no MACE arguments.
    **mace_kwargs
        MACE's own arguments (module doc); strings for irreps, a list or a string for
        ``radial_MLP``, names for ``interaction``, ``interaction_first`` and ``gate``.
    """

    def __init__(self, cutoff: float = 5.0, elements: Sequence[str | int] | None = None,
                 checkpoint: str | None = None, **mace_kwargs):
        super().__init__()
        modules, parser = _mace()
        if checkpoint is not None:
            self._from_file(cutoff, checkpoint, elements, mace_kwargs)
            return
        self.elements = elements_of(elements, "mace")
        self.cutoff = float(cutoff)
        self.max_z = max(self.elements)
        self.index = ElementIndex(self.elements, "mace")
        args = self._arguments(parser, mace_kwargs)
        try:
            interaction = modules.interaction_classes[args.pop("interaction")]
            interaction_first = modules.interaction_classes[args.pop("interaction_first")]
            gate = modules.gate_dict[args.pop("gate")]
        except KeyError as err:
            raise ModelConfigError(f"backbone 'mace': unknown name {err} (MACE knows "
                                   f"{', '.join(sorted(modules.interaction_classes))} and gates "
                                   f"{', '.join(sorted(modules.gate_dict))})") from None
        try:
            self.mace = modules.MACE(
                r_max=self.cutoff, num_elements=len(self.elements),
                atomic_numbers=list(self.elements),
                atomic_energies=np.zeros(len(self.elements)), interaction_cls=interaction,
                interaction_cls_first=interaction_first, gate=gate, **args)
        except Exception as err:  # noqa: BLE001 - the library raises many kinds here
            raise ModelConfigError(f"backbone 'mace': MACE refused the arguments "
                                   f"{sorted(mace_kwargs)}: {type(err).__name__}: {err}") from None
        self.irreps_out = mace_irreps(self.mace)

    def _from_file(self, cutoff, checkpoint, elements, mace_kwargs) -> None:
        """A foundation model (MACE-MP, MACE-OFF: a ``.model`` file) as it is (module doc)."""
        extra = sorted(mace_kwargs) + (["elements"] if elements is not None else [])
        if extra:
            raise ModelConfigError(f"backbone 'mace': checkpoint {checkpoint!r} fixes the "
                                   f"network and its elements; drop {', '.join(extra)}")
        self.mace = load_mace_file(checkpoint)
        self.elements = tuple(int(z) for z in self.mace.atomic_numbers.tolist())  # z_table order
        r_max = float(torch.as_tensor(self.mace.r_max).detach())
        if r_max != float(cutoff):
            raise ModelConfigError(f"backbone 'mace': checkpoint {checkpoint!r} has r_max {r_max} "
                                   f"Angstrom; build the model with cutoff={r_max} (given "
                                   f"{float(cutoff)})")
        self.cutoff = float(cutoff)
        self.max_z = max(self.elements)
        self.index = ElementIndex(self.elements, "mace")
        self.checkpoint_name = str(checkpoint)
        self.checkpoint_sha256 = checkpoint_identity(checkpoint)
        register_digest(self, self.checkpoint_sha256)  # buffer checkpoint_digest [32]
        self.irreps_out = mace_irreps(self.mace)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        check_digest(self, state_dict, prefix, "mace", getattr(self, "checkpoint_name", ""))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _arguments(parser, given: dict) -> dict:
        """MACE's constructor arguments: ``given``, else the ``mace_run_train`` defaults."""
        names = ("hidden_irreps", "max_ell", "num_interactions", "correlation", "MLP_irreps",
                 "radial_MLP", "avg_num_neighbors", "interaction", "interaction_first", "gate")
        renamed = {"num_bessel": "num_radial_basis", "num_polynomial_cutoff": "num_cutoff_basis"}
        args = {n: parser.get_default(n) for n in names}
        args.update({n: parser.get_default(flag) for n, flag in renamed.items()})
        args["hidden_irreps"] = "128x0e+128x1o"  # the parser's num_channels=128, max_L=1
        args.update(given)
        for name in ("hidden_irreps", "MLP_irreps"):
            try:
                args[name] = o3.Irreps(args[name])
            except (ValueError, TypeError, AssertionError):
                raise ModelConfigError(f"backbone 'mace': {name} {args[name]!r} is not an e3nn "
                                       "irreps string (write e.g. '16x0e+16x1o')") from None
        if isinstance(args["radial_MLP"], str):
            args["radial_MLP"] = [int(v) for v in args["radial_MLP"].strip("[] ").split(",")]
        args["avg_num_neighbors"] = float(args["avg_num_neighbors"])
        return args

    def forward(self, graph: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        positions = graph[keys.POSITIONS]  # [N, 3]
        edge_index = graph[keys.EDGE_INDEX]  # [2, E] (neighbour j, centre i)
        n = positions.shape[0]
        batch = node_batch(graph)  # [N]
        cell = graph.get(keys.CELL)
        num_graphs = cell.reshape(-1, 3, 3).shape[0] if cell is not None else (
            int(batch.max()) + 1 if n else 1)
        shifts = torch.zeros(edge_index.shape[1], 3, dtype=positions.dtype,
                             device=positions.device)  # [E, 3]
        if keys.EDGE_SHIFTS in graph and cell is not None:
            cell = cell.to(positions.dtype).reshape(-1, 3, 3)  # [G, 3, 3]
            s = graph[keys.EDGE_SHIFTS].to(positions.dtype)  # [E, 3]
            shifts = -torch.einsum("ek,ekc->ec", s, cell[batch[edge_index[1]]])  # [E, 3]
        else:
            cell = positions.new_zeros(num_graphs, 3, 3)
        counts = torch.bincount(batch, minlength=num_graphs)  # [G]
        ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])  # [G + 1]
        one_hot = torch.nn.functional.one_hot(self.index(graph[keys.ATOMIC_NUMBERS]),
                                              len(self.elements)).to(positions.dtype)  # [N, Z]
        data = {"positions": positions if positions.requires_grad else positions.clone(),
                "node_attrs": one_hot, "edge_index": edge_index, "shifts": shifts,
                "unit_shifts": torch.zeros_like(shifts), "cell": cell, "batch": batch,
                "ptr": ptr}
        out = self.mace(data, training=self.training, compute_force=False)
        graph = dict(graph)
        graph[keys.NODE_FEATURES] = out["node_feats"]  # [N, irreps_out.dim]
        graph[keys.BATCH] = batch
        return graph
