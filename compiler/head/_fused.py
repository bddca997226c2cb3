"""The fused arithmetic of the self-mix head: the same function as its e3nn modules, fewer calls.

This file, like ``head.py``, is pasted verbatim into the standalone modules that
``tsym.compiler.emit`` writes, so it imports only ``math``, ``typing``, ``torch`` and ``e3nn``.

:class:`FusedSelfMix` computes ``SelfMixHead.node_irreps`` from the head's own parameters (the
weights of ``lin_u``, ``lin_v``, ``tp1``, ``norm``, ``lin_out`` and the MLP's per-node path
weights), so checkpoints keep their layout.  Everything structural is precomputed once, at
construction, as index and coefficient buffers:

- the hidden features are held per node and channel, ``[N, m, D]`` (``m = hidden_mul``, ``D`` the
  components of all irreps of one channel), so every channel-wise (``"uuu"``) product is a product
  of rows of ``[N * m, D]``;
- ``lin_u`` and ``lin_v`` become one matrix per input irrep (gathered from their flat weights, the
  shared path weights of ``tp1`` folded into the ``v`` columns): one ``matmul`` per input irrep;
- ``tp1`` (all paths at once): the pairs of components its paths multiply are gathered in one
  ``index_select`` per operand and contracted with one Clebsch-Gordan matrix (``matmul``);
- the layer norm works on the ``[N, m, D]`` layout (block mean squares by one small ``matmul``);
- ``tp2`` (one call): the pairs of components of ``h`` (``a <= b`` within a block, symmetrised
  coefficients) are gathered once; the contraction is one ``matmul`` per first-operand irrep
  (block-diagonal over those irreps; a loop over at most ``2 (lmax + 1)`` irreps, never over
  paths), then the per-node path weights multiply the path outputs and one ``matmul`` sums them;
- ``lin_out`` is one dense ``matmul`` (its matrix gathered from its flat weights).

Eager, both products run through ``_pairs.py`` (column chunks that stay in the caches, one sparse
Clebsch-Gordan matrix each); scripted, traced or compiled, on whole arrays as described above.

The coefficient matrices are kept in float64 (rounded once from ``o3.wigner_3j`` in float64 and
e3nn's path weights) and cast to the input's dtype in ``forward``.
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
from e3nn import o3

from ._pairs import block_diagonal, dense_pairs, pair_contract, sparse_matrix

_Ir = Tuple[int, int]  # (l, parity)


def _w3j(l1: int, l2: int, l3: int) -> torch.Tensor:
    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64)  # [2l1+1, 2l2+1, 2l3+1]


def _linear_offsets(lin: o3.Linear) -> Dict[Tuple[int, int], Tuple[int, int, float]]:
    """``(i_in, i_out) -> (offset in lin.weight, mul_out, path_weight)`` of an ``o3.Linear``."""
    out: Dict[Tuple[int, int], Tuple[int, int, float]] = {}
    offset = 0
    for ins in lin.instructions:
        if ins.i_in == -1:
            continue
        mul_in, mul_out = ins.path_shape
        out[(ins.i_in, ins.i_out)] = (offset, mul_out, float(ins.path_weight))
        offset += mul_in * mul_out
    return out


@torch.jit.unused
def _compiling() -> bool:
    return torch.compiler.is_compiling()


class FusedSelfMix(torch.nn.Module):
    """``SelfMixHead.node_irreps`` without the skip: ``[N, irreps_in.dim] -> [N, rows.dim]``.

    Built from a constructed ``SelfMixHead`` ``head`` (its irreps, paths and e3nn modules); holds
    no parameters: ``forward`` takes the head's weights, so the state dict is unchanged.
    """

    def __init__(self, head, hidden: List[_Ir], tp1: List[Tuple[int, int, int]], mid: List[_Ir],
                 tp2: List[Tuple[int, int, int]], targets: List[_Ir]):
        super().__init__()
        m = head.irreps_hidden[0].mul
        self.m = m
        col = self._input_linear(head, hidden, tp1, m)
        self._tp1(head, hidden, tp1, mid, col)
        self._norm(head, mid, m)
        self._tp2(head, mid, tp2, targets)
        self._sparse("tp1", self.tp1_m, self.tp1_dims, self.tp1_rows)
        self._sparse("tp2", self.tp2_m, self.g_cols, self.g_pairs)
        self._output_linear(head, targets, m)

    # ------------------------------------------------------------------ construction
    def _keep64(self, name: str, value: torch.Tensor) -> None:
        """A float64 constant, kept float64 by ``_apply``, not saved."""
        self.register_buffer(name, value.to(torch.float64).contiguous(), persistent=False)

    def _long(self, name: str, value) -> None:
        self.register_buffer(name, torch.as_tensor(value, dtype=torch.long).contiguous(),
                             persistent=False)

    def _input_linear(self, head, hidden, tp1, m: int) -> Dict[Tuple[str, int], int]:
        """Per input block: ``W [mul_in, n_blocks * m]`` gathered from ``lin_u``/``lin_v``."""
        irreps_in = head.irreps_in
        blocks: List[Tuple[str, int, _Ir]] = [("u", i, ir) for i, ir in enumerate(hidden)]
        blocks += [("v", p, hidden[j]) for p, (_, j, _) in enumerate(tp1)]
        groups = sorted({ir for _, _, ir in blocks})  # one row group per irrep (l, p)
        members = {g: [b for b in blocks if b[2] == g] for g in groups}
        # column of (block, component) in the row layout R [N, m, D_R]
        col: Dict[Tuple[str, int], int] = {}
        start = 0
        self.group_sizes: List[int] = []
        for g in groups:
            d = 2 * g[0] + 1
            for b, (kind, k, _) in enumerate(members[g]):
                col[(kind, k)] = start + b * d
            self.group_sizes.append(len(members[g]) * d)
            start += len(members[g]) * d
        self.row_dim = start
        off_u, off_v = _linear_offsets(head.lin_u), _linear_offsets(head.lin_v)
        n_u = head.lin_u.weight.numel()
        zero = n_u + head.lin_v.weight.numel()  # index of an appended zero
        idx: List[int] = []
        coef: List[float] = []
        fold: List[int] = []  # 0: factor one; 1 + k: tp1.weight[k]
        self.in_start: List[int] = []
        self.in_mul: List[int] = []
        self.in_dim: List[int] = []
        self.in_group: List[int] = []
        self.in_offset: List[int] = []  # into the flat gathered weights
        self.in_rows: List[int] = []
        self.in_block: List[int] = []  # the block of irreps_in
        self.in_sizes: List[int] = [mul * ir.dim for mul, ir in irreps_in]
        for k, (mul, ir) in enumerate(irreps_in):
            key = (ir.l, ir.p)
            if key not in members or mul == 0:
                continue
            self.in_block.append(k)
            sl = irreps_in.slices()[k]
            self.in_start.append(sl.start)
            self.in_mul.append(mul)
            self.in_dim.append(ir.dim)
            self.in_group.append(groups.index(key))
            self.in_offset.append(len(idx))
            rows = m * len(members[key])
            self.in_rows.append(rows)
            for i in range(mul):  # W_k [mul_in, (block, u)]: rows the input channels
                for kind, blk, _ in members[key]:
                    for u in range(m):
                        table, base = (off_u, 0) if kind == "u" else (off_v, n_u)
                        entry = table.get((k, blk))
                        if entry is None:
                            idx.append(zero)
                            coef.append(0.0)
                            fold.append(0)
                            continue
                        off, mul_out, alpha = entry
                        idx.append(base + off + i * mul_out + u)
                        coef.append(alpha)
                        fold.append(0 if kind == "u" else 1 + blk * m + u)
        self._long("in_idx", idx)
        self._long("in_fold", fold)
        self._keep64("in_coef", torch.tensor(coef, dtype=torch.float64))
        return col

    def _tp1(self, head, hidden, tp1, mid, col) -> None:
        """Pairs ``(u_i[a], v_p[b])`` of every path, by output block ``k``; ``M1_k^T [d_k, pairs]``."""
        a_idx: List[int] = []
        b_idx: List[int] = []
        mats: List[torch.Tensor] = []
        self.tp1_rows: List[int] = []  # pairs per mid block
        self.tp1_dims: List[int] = []  # 2l+1 per mid block
        self.tp1_offset: List[int] = []
        offset = 0
        for k, out in enumerate(mid):
            paths = [(p, i, j) for p, (i, j, kk) in enumerate(tp1) if kk == k]
            cols: List[torch.Tensor] = []
            for p, i, j in paths:
                l1, l2, l3 = hidden[i][0], hidden[j][0], out[0]
                c = float(head.tp1.instructions[p].path_weight) * _w3j(l1, l2, l3)
                for a in range(2 * l1 + 1):
                    for b in range(2 * l2 + 1):
                        a_idx.append(col[("u", i)] + a)
                        b_idx.append(col[("v", p)] + b)
                        cols.append(c[a, b])  # [d_k]
            d = 2 * out[0] + 1
            mat = torch.stack(cols, dim=1) if cols else torch.zeros(d, 0, dtype=torch.float64)
            self.tp1_rows.append(mat.shape[1])
            self.tp1_dims.append(d)
            self.tp1_offset.append(offset)
            offset += mat.numel()
            mats.append(mat.reshape(-1))
        self.mid_dim = sum(self.tp1_dims)
        self._long("tp1_a", a_idx)
        self._long("tp1_b", b_idx)
        self._keep64("tp1_m", torch.cat(mats))  # the blocks' [d_k, pairs_k], flat

    def _norm(self, head, mid, m: int) -> None:
        """Block mean squares, the 0e centring mask, and gathers of the norm's weight and bias."""
        norm = head.norm
        self.eps = float(norm.eps)
        n_blocks = len(mid)
        block_of: List[int] = []
        for k, ir in enumerate(mid):
            block_of += [k] * (2 * ir[0] + 1)
        mean = torch.zeros(self.mid_dim, n_blocks, dtype=torch.float64)
        centre = torch.zeros(self.mid_dim, dtype=torch.float64)
        for c, k in enumerate(block_of):
            mean[c, k] = 1.0 / (m * (2 * mid[k][0] + 1))
            if mid[k] == (0, 1):
                centre[c] = 1.0
        self._keep64("norm_mean", mean.T)  # [n_blocks, D_mid]
        self._keep64("norm_centre", centre)  # [D_mid]
        self._long("norm_block", block_of)  # [D_mid]
        self._long("norm_widx", [[block_of[c] * m + u for c in range(self.mid_dim)]
                                 for u in range(m)])  # [m, D_mid] into norm.weight
        n_bias = norm.bias.numel()
        self._long("norm_bidx", [[u if centre[c] > 0 else n_bias for c in range(self.mid_dim)]
                                 for u in range(m)])  # [m, D_mid] into cat(bias, 0)

    def _sparse(self, name: str, flat: torch.Tensor, rows: List[int], cols: List[int]) -> None:
        """A product's block-diagonal matrix and its transpose, sparse (the eager path)."""
        (pattern, values), (pattern_t, values_t), shape = block_diagonal(flat, rows, cols)
        self._long(f"{name}_sp", pattern)
        self._keep64(f"{name}_sv", values)
        self._long(f"{name}_sp_t", pattern_t)
        self._keep64(f"{name}_sv_t", values_t)
        setattr(self, f"{name}_shape", shape)

    def _tp2(self, head, mid, tp2, targets) -> None:
        """Pairs ``(h[a], h[b])`` grouped by the first block, ``M2`` per group, path sums ``S2``."""
        mid_start = [0]
        for ir in mid:
            mid_start.append(mid_start[-1] + 2 * ir[0] + 1)
        t_start = [0]
        for ir in targets:
            t_start.append(t_start[-1] + 2 * ir[0] + 1)
        self.t_dim = t_start[-1]
        self.n_paths2 = len(tp2)
        a_idx: List[int] = []
        b_idx: List[int] = []
        mats: List[torch.Tensor] = []
        self.g_pairs: List[int] = []
        self.g_cols: List[int] = []
        self.g_offset: List[int] = []
        path_of_col: List[int] = []
        sums: List[torch.Tensor] = []
        flat_offset = 0
        for i in range(len(mid)):
            paths = [(p, ins) for p, ins in enumerate(tp2) if ins[0] == i]
            if not paths:
                continue
            seconds = sorted({j for _, (_, j, _) in paths})
            pairs: List[Tuple[int, int, int, int]] = []  # (j, a, b): h_i[a] h_j[b]
            for j in seconds:
                di, dj = 2 * mid[i][0] + 1, 2 * mid[j][0] + 1
                pairs += [(j, a, b) for a in range(di) for b in range(dj) if j != i or a <= b]
            cols = sum(2 * targets[k][0] + 1 for _, (_, _, k) in paths)
            mat = torch.zeros(len(pairs), cols, dtype=torch.float64)
            col = 0
            for p, (_, j, k) in paths:
                l1, l2, l3 = mid[i][0], mid[j][0], targets[k][0]
                c = float(head.tp2.instructions[p].path_weight) * _w3j(l1, l2, l3)
                for r, (jj, a, b) in enumerate(pairs):
                    if jj != j:
                        continue
                    val = c[a, b] + c[b, a] if (j == i and a < b) else c[a, b]
                    mat[r, col:col + 2 * l3 + 1] = val
                for q in range(2 * l3 + 1):
                    path_of_col.append(p)
                    s = torch.zeros(self.t_dim, dtype=torch.float64)
                    s[t_start[k] + q] = 1.0
                    sums.append(s)
                col += 2 * l3 + 1
            for jj, a, b in pairs:
                a_idx.append(mid_start[i] + a)
                b_idx.append(mid_start[jj] + b)
            self.g_pairs.append(len(pairs))
            self.g_cols.append(cols)
            self.g_offset.append(flat_offset)
            flat_offset += len(pairs) * cols
            mats.append(mat.T.reshape(-1))  # [cols, pairs]
        self._long("tp2_a", a_idx)
        self._long("tp2_b", b_idx)
        self._keep64("tp2_m", torch.cat(mats))  # the groups' [cols, pairs] matrices, flat
        self._long("tp2_path", path_of_col)  # [cols]
        self._keep64("tp2_sum", torch.stack(sums, dim=1))  # [D_t, cols]

    def _output_linear(self, head, targets, m: int) -> None:
        """``Wout [m * D_t, rows.dim]`` gathered from ``lin_out.weight`` (rows in (u, comp))."""
        lin = head.lin_out
        offsets = _linear_offsets(lin)
        out_irreps = lin.irreps_out
        zero = lin.weight.numel()
        t_start = [0]
        for ir in targets:
            t_start.append(t_start[-1] + 2 * ir[0] + 1)
        idx = torch.full((m * self.t_dim, out_irreps.dim), zero, dtype=torch.long)
        coef = torch.zeros(m * self.t_dim, out_irreps.dim, dtype=torch.float64)
        for (i_in, i_out), (off, mul_out, alpha) in offsets.items():
            d = 2 * targets[i_in][0] + 1
            start = out_irreps.slices()[i_out].start
            for u in range(m):
                for v in range(mul_out):
                    for q in range(d):
                        r = u * self.t_dim + t_start[i_in] + q
                        c = start + v * d + q
                        idx[r, c] = off + u * mul_out + v
                        coef[r, c] = alpha
        self._long("out_idx", idx)
        self._keep64("out_coef", coef)
        self.out_dim = out_irreps.dim

    def _apply(self, fn, recurse=True):
        """``.float()``/``.double()``/``.to()``: the coefficient matrices stay float64."""
        names = ["in_coef", "tp1_m", "norm_mean", "norm_centre", "tp2_m", "tp2_sum", "out_coef",
                 "tp1_sv", "tp1_sv_t", "tp2_sv", "tp2_sv_t"]
        keep = {n: getattr(self, n) for n in names}
        super()._apply(fn, recurse)
        for n in names:
            setattr(self, n, keep[n].to(getattr(self, n).device))
        return self

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _plain() -> bool:
        """Whole arrays (scripted, traced, or compiled: inductor fuses the gathers and products
        itself), not the column chunks of ``_pairs.py`` (eager)."""
        if torch.jit.is_scripting():
            return True
        return torch.jit.is_tracing() or _compiling()

    @torch.jit.unused
    def _sparse_pairs(self, name: str, x: torch.Tensor, weights: Optional[torch.Tensor] = None,
                      summed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The product ``name`` ("tp1"/"tp2") in column chunks with its sparse matrix."""
        dt, (rows, cols) = x.dtype, getattr(self, name + "_shape")
        mat = sparse_matrix(getattr(self, name + "_sp"), getattr(self, name + "_sv").to(dt),
                            [rows, cols])
        mat_t = sparse_matrix(getattr(self, name + "_sp_t"), getattr(self, name + "_sv_t").to(dt),
                              [cols, rows])
        a, b = getattr(self, name + "_a"), getattr(self, name + "_b")
        return pair_contract(x, a, b, mat, mat_t, weights, self.tp2_path, summed)

    def forward(self, x: torch.Tensor, w_u: torch.Tensor, w_v: torch.Tensor,
                w_tp1: torch.Tensor, norm_w: torch.Tensor, norm_b: torch.Tensor,
                w_tp2: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
        """``x`` [N, irreps_in.dim], the head's weights, per-node path weights ``w_tp2``
        [N, paths * m] -> ``lin_out(tp2(h, h, w_tp2))`` [N, rows.dim] (no skip).

        Inside, features are ``[components, N * m]`` (columns (node, channel)): each channel-wise
        product is a product of rows, each Clebsch-Gordan contraction one ``matmul``."""
        n, m, dt = x.shape[0], self.m, x.dtype
        # lin_u, lin_v (tp1's weights folded in): one matmul per input irrep block
        flat = torch.cat([w_u, w_v, w_u.new_zeros(1)])
        fold = torch.cat([w_u.new_ones(1), w_tp1])
        wt = flat.index_select(0, self.in_idx) * fold.index_select(0, self.in_fold) \
            * self.in_coef.to(dt)  # [sum of the W_k sizes]
        w_ks = torch.split(wt, [r * mul for r, mul in zip(self.in_rows, self.in_mul)])
        x_ks = torch.split(x, self.in_sizes, dim=1)
        groups: List[torch.Tensor] = []
        for g in range(len(self.group_sizes)):
            parts: List[torch.Tensor] = []
            for k in range(len(self.in_start)):
                if self.in_group[k] != g:
                    continue
                mul, d, rows = self.in_mul[k], self.in_dim[k], self.in_rows[k]
                x_k = x_ks[self.in_block[k]].reshape(n, mul, d).permute(2, 0, 1)
                y = x_k.reshape(d * n, mul) @ w_ks[k].view(mul, rows)  # [(d, N), (block, m)]
                y = y.view(d, n, rows // m, m).permute(2, 0, 1, 3)  # [block, d, N, m]
                parts.append(y.reshape(rows // m * d, n * m))
            acc = parts[0]  # input blocks of the same irrep add up (usually there is one)
            for extra in parts[1:]:
                acc = acc + extra
            groups.append(acc)
        r = torch.cat(groups, dim=0)  # [D_R, N m]
        # tp1: the component pairs of all paths; one matmul per output irrep
        if self._plain():
            mats = self.tp1_m.to(dt)
            m1 = [mats[o:o + d * k].view(d, k) for d, k, o in
                  zip(self.tp1_dims, self.tp1_rows, self.tp1_offset)]  # [d_k, pairs_k] each
            h = dense_pairs(r, self.tp1_a, self.tp1_b, m1)  # [D_mid, N m]
        else:  # the same, in column chunks with a sparse matrix (_pairs.py)
            h = self._sparse_pairs("tp1", r, None, None)
        h = h.view(self.mid_dim, n, m)  # [D_mid, N, m]
        # equivariant layer norm
        h = h - self.norm_centre.to(dt)[:, None, None] * h.mean(dim=2, keepdim=True)
        ms = self.norm_mean.to(dt) @ h.pow(2).sum(dim=2)  # [n_blocks, N]
        inv = torch.rsqrt(ms + self.eps).index_select(0, self.norm_block)  # [D_mid, N]
        scale = norm_w.index_select(0, self.norm_widx.reshape(-1)).view(m, self.mid_dim)
        bias = torch.cat([norm_b, norm_w.new_zeros(1)]).index_select(
            0, self.norm_bidx.reshape(-1)).view(m, self.mid_dim)
        h = h * inv.unsqueeze(2) * scale.T.unsqueeze(1) + bias.T.unsqueeze(1)
        h = h.reshape(self.mid_dim, n * m)  # [D_mid, N m]
        # tp2: the component pairs of h once; one matmul per first-operand irrep
        w = w_tp2.reshape(n, self.n_paths2, m).permute(1, 0, 2).reshape(self.n_paths2, n * m)
        if self._plain():
            mats = self.tp2_m.to(dt)
            m2 = [mats[o:o + k * c].view(c, k) for k, c, o in
                  zip(self.g_pairs, self.g_cols, self.g_offset)]  # [cols_g, pairs_g] each
            outs = dense_pairs(h, self.tp2_a, self.tp2_b, m2)  # [cols, N m]
            z = self.tp2_sum.to(dt) @ (outs * w.index_select(0, self.tp2_path))  # [D_t, N m]
        else:  # the same, in column chunks with a sparse matrix (_pairs.py)
            z = self._sparse_pairs("tp2", h, w, self.tp2_sum.to(dt))
        # lin_out: one dense matmul from the (channel, component) layout
        z = z.view(self.t_dim, n, m).permute(1, 2, 0).reshape(n, m * self.t_dim)
        w_o = torch.cat([w_out, w_out.new_zeros(1)]).index_select(
            0, self.out_idx.reshape(-1)).view(m * self.t_dim, self.out_dim)
        return z @ (w_o * self.out_coef.to(dt))  # [N, rows.dim]
