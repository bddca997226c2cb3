"""The self-mix head's per-node arithmetic as it was before the fusion (commit a91658c).

``reference_node_irreps(head, x)`` runs the head's own e3nn modules one after the other, exactly
as ``SelfMixHead.node_irreps`` did: ``lin_u``, ``lin_v``, ``tp1`` (e3nn ``"uuu"``), the
equivariant layer norm, ``tp2`` with the MLP's per-node path weights, ``lin_out`` and the skip.
The fused code (``compiler/_fused.py``) must give the same rows from the same weights.
"""
import torch


def reference_node_irreps(head, node_features: torch.Tensor) -> torch.Tensor:
    """``[n_nodes, irreps_in.dim]`` -> ``[n_nodes, rows.dim]`` through e3nn's modules."""
    u = head.lin_u(node_features)  # [n_nodes, hidden.dim]
    v = head.lin_v(node_features)  # [n_nodes, irreps_v.dim]  one block per tp1 path
    h = head.norm(head.tp1(u, v))  # [n_nodes, mid.dim]
    w = head.mlp(node_features[:, head.scalar_idx])  # [n_nodes, tp2.weight_numel]
    z = head.tp2(h, h, w)  # [n_nodes, mix.dim]
    y = head.lin_out(z)  # [n_nodes, rows.dim]
    if head.has_skip:
        y = y + head.skip(node_features)
    return y
