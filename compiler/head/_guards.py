"""Cheap checks of what a head is given: feature width and dtype, ``batch`` and ``num_graphs``.

Pasted with ``readout.py`` and ``head.py`` into the standalone modules ``emit`` writes (there the
import of ``TsymError`` becomes a local class), so it imports only ``typing`` and ``torch``.  The
checks are plain Python on shapes and dtypes (they script with ``torch.jit.script`` and trace
under ``torch.compile``); the one data-dependent check, the range of ``batch``, costs one
``torch.aminmax`` and is left out while ``torch.compile`` traces.
"""
from typing import Optional

import torch

from ..errors import TsymError

__all__ = ["HeadInputError", "check_head_inputs"]


class HeadInputError(TsymError, ValueError):
    """Node features, ``batch`` or ``num_graphs`` that do not fit the head they are given to."""


def check_head_inputs(x: torch.Tensor, batch: Optional[torch.Tensor], num_graphs: Optional[int],
                      irreps_in: str, in_dim: int, dtype: torch.dtype,
                      per_structure: bool) -> Optional[int]:
    """Raise :class:`HeadInputError` when the inputs do not fit; return ``num_graphs``.

    ``x`` [n_nodes, in_dim] node features laid out as ``irreps_in``, in the head's parameter
    dtype ``dtype``; ``batch`` [n_nodes] integer structure indices or None (one structure);
    ``per_structure``: the head groups nodes by structure (pooling, or a sum rule).  The returned
    ``num_graphs`` is ``batch.max() + 1`` when it was None and the range was checked.
    """
    if x.dim() != 2 or x.shape[1] != in_dim:
        raise HeadInputError(
            f"node_features have shape {list(x.shape)}, but the head was built for irreps_in "
            f"'{irreps_in}' of dim {in_dim}: pass features of shape [n_nodes, {in_dim}] laid out "
            f"as irreps_in, or build the head with the irreps of your features (in their order)")
    if x.dtype != dtype:
        raise HeadInputError(
            f"node_features are {x.dtype} but the head's parameters are {dtype}: call "
            f"head.to({x.dtype}) or pass node_features.to({dtype})")
    n_nodes = x.shape[0]
    if num_graphs is not None and num_graphs < 0:
        raise HeadInputError(f"num_graphs must be >= 0, got {num_graphs}")
    if batch is None:
        if per_structure and num_graphs is not None and num_graphs != 1 and (
                num_graphs > 1 or n_nodes > 0):
            raise HeadInputError(
                f"num_graphs={num_graphs} but batch is None, which makes all {n_nodes} nodes "
                f"one structure: pass batch, a [n_nodes] integer tensor with the structure "
                f"index of each node")
        return num_graphs
    if batch.dtype != torch.int64 and batch.dtype != torch.int32:
        raise HeadInputError(
            f"batch must be an integer tensor (torch.int64) of structure indices, got "
            f"{batch.dtype}: pass batch.long()")
    if batch.dim() != 1 or batch.shape[0] != n_nodes:
        raise HeadInputError(
            f"batch has shape {list(batch.shape)} but node_features have {n_nodes} rows: pass "
            f"one structure index per node, shape [{n_nodes}]")
    if not per_structure or n_nodes == 0 or torch.compiler.is_compiling():
        return num_graphs
    lo, hi = torch.aminmax(batch)  # one pass over [n_nodes]
    low, high = int(lo), int(hi)
    if low < 0:
        raise HeadInputError(f"batch holds the negative structure index {low}: structure "
                             f"indices run from 0 to num_graphs - 1")
    if num_graphs is None:
        return high + 1
    if high >= num_graphs:
        raise HeadInputError(
            f"num_graphs={num_graphs} but batch holds structure index {high} (its max): pass "
            f"num_graphs={high + 1} (batch.max() + 1), or leave num_graphs None")
    return num_graphs
