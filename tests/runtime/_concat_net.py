"""A small equivariant network whose node features are a concatenation over "layers", as MACE
writes them: ``16x0e+16x1o+16x2e+16x0e`` (the last scalars are norms of the vector channels).

Declared in that order the layout is right; declared sorted (``32x0e+16x1o+16x2e``, the same
dim 160) the scalars of the last block are read as the first block and the vectors as scalars:
wrong physics of the right size, which ``check_equivariance`` must report.
"""
from __future__ import annotations

import torch
from e3nn import o3

from tsym.runtime import keys
from tsym.runtime.graph import edge_vectors

LAYOUT = "16x0e+16x1o+16x2e+16x0e"
SORTED = "32x0e+16x1o+16x2e"  # o3.Irreps(LAYOUT).sort().irreps.simplify()


class ConcatNet(torch.nn.Module):
    """graph (``keys.BACKBONE_INPUTS``) -> node features ``[N, 160]`` laid out as :data:`LAYOUT`."""

    def __init__(self, mul: int = 16, n_basis: int = 6, max_z: int = 20):
        super().__init__()
        self.mul = mul
        self.embed = torch.nn.Embedding(max_z + 1, mul)
        self.radial = torch.nn.Linear(n_basis, 3 * mul)
        self.register_buffer("centres", torch.linspace(0.5, 4.0, n_basis))

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        src, dst = graph[keys.EDGE_INDEX]  # [E] each
        vec = edge_vectors(graph)  # [E, 3]
        length = vec.norm(dim=1, keepdim=True)  # [E, 1]
        basis = torch.exp(-((length - self.centres) ** 2))  # [E, B]
        weights = self.radial(basis) * self.embed(graph[keys.ATOMIC_NUMBERS][src]).repeat(1, 3)
        w0, w1, w2 = weights.split(self.mul, dim=1)  # [E, mul] each
        sh = o3.spherical_harmonics([1, 2], vec, normalize=True)  # [E, 3 + 5]
        msg = torch.cat([w0, (w1[:, :, None] * sh[:, None, :3]).flatten(1),
                         (w2[:, :, None] * sh[:, None, 3:]).flatten(1)], dim=1)  # [E, 144]
        n = graph[keys.POSITIONS].shape[0]
        out = torch.zeros(n, msg.shape[1], dtype=msg.dtype).index_add(0, dst, msg)  # [N, 144]
        vectors = out[:, self.mul:4 * self.mul].reshape(n, self.mul, 3)  # [N, mul, 3]
        norms = vectors.pow(2).sum(-1)  # [N, mul] invariants of the vector channels
        return torch.cat([out, norms], dim=1)  # [N, 160] = LAYOUT
