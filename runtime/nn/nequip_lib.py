"""NequIP (the ``nequip`` package) as a tsym backbone, registered as ``"nequip-lib"``.

(``"nequip"`` names tsym's own small NequIP-style network, :mod:`tsym.runtime.nn.nequip`, which
needs no extra package and which older checkpoints name.)

The network is built by NequIP's own :func:`nequip.model.NequIPGNNModel` with its own arguments
(``num_layers``, ``l_max``, ``parity``, ``num_features``, ``radial_mlp_depth``,
``radial_mlp_width``, ``num_bessels``, ``polynomial_cutoff_p``, ``avg_num_neighbors``, ...; the
defaults are NequIP's); ``r_max`` is tsym's ``cutoff``, ``type_names`` the chemical symbols of
``elements`` (required: NequIP keeps weights per type).  Only the embedding and convolution
modules are kept (the energy readout would get no gradient).  NequIP's last convolution writes
scalars only by construction, so the node features are the output of the layer before it (the
last with ``l >= 1``) followed by the last layer's scalars: :func:`nequip_irreps` gives them,
e.g. ``32x0e+32x1o+32x1e+32x0e`` for ``num_features=32, l_max=1``.

Install: ``pip install -c constraints.txt -e ".[nequip]"`` (nequip 0.19.1 accepts e3nn 0.6).

Edge convention: NequIP sums messages onto ``edge_index[0]`` (the centre) with
``r = pos[edge_index[1]] - pos[edge_index[0]] + shift``; tsym's rows are (neighbour j,
centre i), so NequIP gets them swapped, with tsym's own edge vectors ``r_ij`` (same direction).
NequIP's modules are e3nn's, so its features follow e3nn 0.6 conventions.

NequIP's ``set_global_state`` (required before its first model is built) seeds the global RNGs,
sets the default dtype and e3nn's and TorchScript's options; tsym calls it once and puts all of
these back, so building this backbone leaves the process as it was.
"""
from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Sequence

import numpy as np
import e3nn
import torch
from ase.data import chemical_symbols
from e3nn import o3

from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.graph import edge_vectors, node_batch
from tsym.runtime.nn.extras import ElementIndex, elements_of, missing_extra

__all__ = ["NequIPLibBackbone", "nequip_irreps", "nequip_feature_layers"]

_FEATURES = "node_features"  # nequip.data.AtomicDataDict.NODE_FEATURES_KEY


@contextlib.contextmanager
def _restored_process_state():
    """Put back what ``nequip.utils.global_state.set_global_state`` changes."""
    dtype, e3nn_opts = torch.get_default_dtype(), e3nn.get_optimization_defaults()
    np_state, py_state = np.random.get_state(), random.getstate()
    env = dict(os.environ)
    strategy = torch.multiprocessing.get_sharing_strategy()
    dynamo = {k: getattr(torch._dynamo.config, k) for k in
              ("capture_dynamic_output_shape_ops", "capture_scalar_outputs")}
    with warnings.catch_warnings():  # torch 2.13 calls torch.jit deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        fusion = torch.jit.set_fusion_strategy([("STATIC", 2), ("DYNAMIC", 10)])
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_default_dtype(dtype)
        e3nn.set_optimization_defaults(**e3nn_opts)
        np.random.set_state(np_state)
        random.setstate(py_state)
        os.environ.clear()
        os.environ.update(env)
        torch.multiprocessing.set_sharing_strategy(strategy)
        for k, v in dynamo.items():
            setattr(torch._dynamo.config, k, v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.set_fusion_strategy(fusion)


def _builder():
    try:
        from nequip.model import NequIPGNNModel
        from nequip.utils.global_state import global_state_initialized, set_global_state
    except ImportError as err:
        raise missing_extra("nequip-lib", "nequip", err) from None
    if not global_state_initialized():
        with _restored_process_state(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit, in torch 2.13
            set_global_state()
    return NequIPGNNModel


def nequip_feature_layers(model: torch.nn.Module) -> tuple[str, str]:
    """Names of the last convolution with ``l >= 1`` outputs and of the last convolution of a
    NequIP model (a ``GraphModel`` or its inner network): hook the first to read equivariant
    features, e.g. ``dict(model.named_modules())[name].register_forward_hook(...)``."""
    convs = [(name, mod) for name, mod in model.named_modules()
             if type(mod).__name__ == "ConvNetLayer"]
    if not convs:
        raise ModelConfigError(f"{type(model).__name__} has no ConvNetLayer: not a NequIP model")
    equivariant = [name for name, mod in convs
                   if o3.Irreps(mod.irreps_out[_FEATURES]).lmax >= 1]
    if not equivariant:
        raise ModelConfigError("this NequIP model has no layer with l >= 1 features "
                               "(num_layers >= 2 and l_max >= 1 give one)")
    return equivariant[-1], convs[-1][0]


def nequip_irreps(model: torch.nn.Module, name: str | None = None) -> o3.Irreps:
    """Irreps of the node features written by the convolution ``name`` of a NequIP model
    (default: the last one with ``l >= 1``, see :func:`nequip_feature_layers`)."""
    name = nequip_feature_layers(model)[0] if name is None else name
    return o3.Irreps(dict(model.named_modules())[name].irreps_out[_FEATURES])


class NequIPLibBackbone(torch.nn.Module):
    """NequIP's own network behind the backbone contract (module doc).

    ``cutoff`` is NequIP's ``r_max`` (Angstrom), ``elements`` (symbols or atomic numbers) its
    ``type_names``, and ``**nequip_kwargs`` go to :func:`nequip.model.NequIPGNNModel` (module
    doc; ``num_layers >= 2``).
    """

    def __init__(self, cutoff: float = 5.0, elements: Sequence[str | int] | None = None,
                 **nequip_kwargs):
        super().__init__()
        build = _builder()
        self.elements = elements_of(elements, "nequip-lib")
        self.cutoff = float(cutoff)
        self.max_z = max(self.elements)
        self.index = ElementIndex(self.elements, "nequip-lib")
        if int(nequip_kwargs.get("num_layers", 4)) < 2:
            raise ModelConfigError("backbone 'nequip-lib': num_layers must be >= 2 (NequIP's last "
                                   "layer writes scalars only; the features come from the one "
                                   "before it)")
        dtype = torch.get_default_dtype()
        seed = int(torch.randint(0, 2**31 - 1, ()))  # from tsym's seeded build RNG
        kwargs = dict(nequip_kwargs, do_derivatives=False)
        try:
            with _restored_process_state(), warnings.catch_warnings():
                # its energy scales and shifts: the energy readout is not kept
                warnings.filterwarnings("ignore", message=r"Found `per_type_energy_")
                model = build(seed=seed, model_dtype=str(dtype).removeprefix("torch."),
                              type_names=[chemical_symbols[z] for z in self.elements],
                              r_max=self.cutoff, **kwargs)
        except Exception as err:  # noqa: BLE001 - the library raises many kinds here
            raise ModelConfigError(f"backbone 'nequip-lib': NequIP refused the arguments "
                                   f"{sorted(nequip_kwargs)}: {type(err).__name__}: {err}"
                                   ) from None
        self.equivariant_layer, last = nequip_feature_layers(model)
        network = model.model.func  # GraphModel -> ForceStressOutput -> SequentialGraphNetwork
        kept = {}
        for name, module in network.named_children():
            kept[name] = module
            if name == last.rsplit(".", 1)[-1]:
                break
        self.layers = torch.nn.ModuleDict(kept)
        self.tap = self.equivariant_layer.rsplit(".", 1)[-1]
        self.irreps_out = (nequip_irreps(model, self.equivariant_layer)
                           + o3.Irreps(kept[last.rsplit(".", 1)[-1]].irreps_out[_FEATURES]))

    def forward(self, graph: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        positions = graph[keys.POSITIONS]  # [N, 3]
        edge_index = graph[keys.EDGE_INDEX]  # [2, E] (neighbour j, centre i)
        batch = node_batch(graph)  # [N]
        data = {"pos": positions, "atom_types": self.index(graph[keys.ATOMIC_NUMBERS]),
                "edge_index": edge_index.flip(0), "edge_vectors": edge_vectors(graph),
                "batch": batch}
        tapped = positions.new_zeros(0)
        for name, module in self.layers.items():
            data = module(data)
            if name == self.tap:
                tapped = data[_FEATURES]  # [N, equivariant irreps dim]
        graph = dict(graph)
        graph[keys.NODE_FEATURES] = torch.cat([tapped, data[_FEATURES]], dim=-1)  # [N, dim]
        graph[keys.BATCH] = batch
        return graph
