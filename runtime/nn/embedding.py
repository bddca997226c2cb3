"""Node and edge embeddings of the XPaiNN backbone, and the irreps checks its modules share.

Node side: :class:`ElementEmbedding`, an atomic number -> ``num_scalars`` scalars map, either a
learned one-hot table (``"onehot"``) or the XPaiNN quantum-chemistry embedding (``"qc"``): a fixed
per-element vector (STO-3G orbitals projected onto 16s/8p/4d even-tempered Gaussians, see
``scripts/make_qc_embedding.py``; :func:`load_qc_table`) followed by a learned linear map.

Edge side: :class:`EdgeEmbedding`, an edge vector r_ij -> real spherical harmonics (e3nn 0.6, x, y, z
order, ``component`` normalisation), a Bessel radial basis with trainable frequencies and a smooth
cutoff envelope.

Every module carries ``irreps_in`` / ``irreps_out`` dicts (field name -> ``e3nn.o3.Irreps``), checked
when it is built; a mismatch raises :class:`IrrepsMismatchError` naming the field and both irreps.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
from e3nn import o3

from tsym.runtime import keys
from tsym.runtime.errors import BackboneConfigError, IrrepsMismatchError, UnknownElementError

__all__ = [
    "check_irreps", "QCTable", "load_qc_table", "ElementEmbedding", "BesselBasis", "CutoffEnvelope",
    "EdgeEmbedding", "sh_irreps_for",
]

QC_TABLE_FILE = "xpainn_qc_embedding.npz"
EMBEDDINGS = ("qc", "onehot")
CUTOFF_FNS = ("cosine", "polynomial")


def check_irreps(owner: str, field: str, expected: o3.Irreps | str, got: o3.Irreps | str) -> None:
    """Raise :class:`IrrepsMismatchError` unless ``got == expected`` for ``field`` of ``owner``."""
    expected, got = o3.Irreps(expected), o3.Irreps(got)
    if got != expected:
        raise IrrepsMismatchError(
            f"{owner}: field '{field}' expects irreps '{expected}' but got '{got}'")


def sh_irreps_for(irreps: o3.Irreps | str) -> o3.Irreps:
    """The spherical harmonics irreps, one ``1x{l}{(-1)^l}`` per degree l present in ``irreps``.

    >>> str(sh_irreps_for("16x0e+8x1o+4x2e"))
    '1x0e+1x1o+1x2e'
    """
    ls = sorted({ir.l for _, ir in o3.Irreps(irreps)})
    return o3.Irreps([(1, (l, (-1) ** l)) for l in ls])


# --------------------------------------------------------------------------- element embedding

@dataclass(frozen=True)
class QCTable:
    """The shipped quantum-chemistry element table (read-only arrays).

    Attributes
    ----------
    table : np.ndarray
        [max_z + 1, 28] float64; row Z is element Z's vector, row 0 is zeros.
    aux_l, aux_exponents : np.ndarray
        [28] angular momentum and exponent (bohr^-2) of each auxiliary shell (16 s, 8 p, 4 d).
    basis : str
        The minimal basis the orbitals come from (``"sto-3g"``).
    """

    table: np.ndarray
    aux_l: np.ndarray
    aux_exponents: np.ndarray
    basis: str

    @property
    def max_z(self) -> int:
        return self.table.shape[0] - 1


@functools.lru_cache(maxsize=1)
def load_qc_table() -> QCTable:
    """Load the shipped table (cached); no PySCF needed.

    >>> t = load_qc_table()
    >>> t.table.shape, t.basis
    ((54, 28), 'sto-3g')
    """
    raw = resources.files(__package__).joinpath("assets", QC_TABLE_FILE).read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        arrays = {k: np.array(npz[k]) for k in ("table", "aux_l", "aux_exponents")}
        basis = str(npz["basis"])
    for a in arrays.values():
        a.setflags(write=False)
    return QCTable(basis=basis, **arrays)


class ElementEmbedding(torch.nn.Module):
    """Atomic numbers [N] -> scalars [N, num_scalars] (irreps ``{num_scalars}x0e``).

    Parameters
    ----------
    num_scalars : int
        Output width.
    kind : {"qc", "onehot"}
        ``"qc"``: fixed STO-3G projection vector (28 values) then a learned ``Linear(28, num_scalars)``;
        ``"onehot"``: a learned table ``Embedding(max_z + 1, num_scalars)``.
    max_z : int, optional
        Largest atomic number accepted; default and upper bound for ``"qc"``: 53 (I).
    """

    def __init__(self, num_scalars: int, kind: str = "qc", max_z: int | None = None):
        super().__init__()
        if kind not in EMBEDDINGS:
            raise BackboneConfigError(
                f"ElementEmbedding: unknown embedding '{kind}'; choose one of {', '.join(EMBEDDINGS)}")
        table_max_z = load_qc_table().max_z
        max_z = table_max_z if max_z is None else int(max_z)
        if max_z < 1 or (kind == "qc" and max_z > table_max_z):
            raise BackboneConfigError(
                f"ElementEmbedding: max_z={max_z} is outside 1..{table_max_z if kind == 'qc' else 'inf'}"
                f" for embedding '{kind}'")
        self.kind, self.max_z, self.num_scalars = kind, max_z, int(num_scalars)
        self.irreps_out = {keys.SCALARS: o3.Irreps(f"{self.num_scalars}x0e")}
        if kind == "qc":
            table = torch.tensor(load_qc_table().table[: max_z + 1], dtype=torch.get_default_dtype())
            self.register_buffer("qc_table", table)  # [max_z + 1, 28]
            self.linear = torch.nn.Linear(table.shape[1], self.num_scalars)
            torch.nn.init.zeros_(self.linear.bias)
        else:
            self.table = torch.nn.Embedding(max_z + 1, self.num_scalars)

    def forward(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        if atomic_numbers.numel() and (
                int(atomic_numbers.min()) < 1 or int(atomic_numbers.max()) > self.max_z):
            bad = atomic_numbers[(atomic_numbers < 1) | (atomic_numbers > self.max_z)]
            raise UnknownElementError(
                f"ElementEmbedding('{self.kind}'): atomic number {int(bad[0])} is outside 1..{self.max_z}")
        if self.kind == "qc":
            return self.linear(self.qc_table[atomic_numbers])  # [N, num_scalars]
        return self.table(atomic_numbers)  # [N, num_scalars]


# --------------------------------------------------------------------------- edge embedding

class BesselBasis(torch.nn.Module):
    """``sqrt(2 / c) * sin(w_n r) / r`` with trainable ``w_n``, initially ``n pi / c``, n = 1..num_basis.

    Input [E] lengths, output [E, num_basis]; finite at r = 0 (value ``sqrt(2/c) w_n``).
    """

    def __init__(self, num_basis: int = 20, cutoff: float = 5.0):
        super().__init__()
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff
        self.freqs = torch.nn.Parameter(freqs)  # [num_basis]
        self.prefactor = math.sqrt(2.0 / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        wr = r.unsqueeze(-1) * self.freqs  # [E, num_basis]
        return self.prefactor * self.freqs * torch.sinc(wr / math.pi)  # sin(wr)/r, [E, num_basis]


class CutoffEnvelope(torch.nn.Module):
    """Smooth envelope [E] -> [E, 1], 1 at r = 0 and exactly 0 for r >= cutoff.

    ``"cosine"``: ``(1 + cos(pi r / c)) / 2`` (value and slope vanish at c).
    ``"polynomial"``: the p = 6 polynomial of DimeNet (value, first and second derivatives vanish at c).
    """

    def __init__(self, cutoff: float = 5.0, kind: str = "cosine", p: int = 6):
        super().__init__()
        if kind not in CUTOFF_FNS:
            raise BackboneConfigError(
                f"CutoffEnvelope: unknown cutoff_fn '{kind}'; choose one of {', '.join(CUTOFF_FNS)}")
        if not cutoff > 0:
            raise BackboneConfigError(f"CutoffEnvelope: cutoff must be > 0, got {cutoff}")
        self.cutoff, self.kind, self.p = float(cutoff), kind, p

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = (r / self.cutoff).clamp(max=1.0)  # [E]
        if self.kind == "cosine":
            env = 0.5 * (torch.cos(math.pi * x) + 1.0)
        else:
            p = self.p
            env = (1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1)
                   - p * (p + 1) / 2 * x ** (p + 2))
        return torch.where(r < self.cutoff, env, torch.zeros_like(env)).unsqueeze(-1)  # [E, 1]


class EdgeEmbedding(torch.nn.Module):
    """Edge vectors [E, 3] -> (sh [E, sh_irreps.dim], radial [E, num_basis], envelope [E, 1]).

    ``sh`` holds ``o3.spherical_harmonics`` (normalize=True, normalization='component') of the
    degrees present in ``irreps``; ``irreps_out`` = ``{"edge_sh": sh_irreps, "edge_radial":
    "{num_basis}x0e", "edge_envelope": "1x0e"}``.
    """

    def __init__(self, irreps: o3.Irreps | str, num_basis: int = 20, cutoff: float = 5.0,
                 cutoff_fn: str = "cosine"):
        super().__init__()
        if num_basis < 1:
            raise BackboneConfigError(f"EdgeEmbedding: num_basis must be >= 1, got {num_basis}")
        self.sh_irreps = sh_irreps_for(irreps)
        self.envelope = CutoffEnvelope(cutoff, cutoff_fn)
        self.radial = BesselBasis(num_basis, cutoff)
        self.irreps_out = {keys.EDGE_SH: self.sh_irreps,
                           keys.EDGE_RADIAL: o3.Irreps(f"{num_basis}x0e"),
                           keys.EDGE_ENVELOPE: o3.Irreps("1x0e")}

    def forward(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = torch.linalg.vector_norm(vectors, dim=-1)  # [E]
        sh = o3.spherical_harmonics(self.sh_irreps, vectors, normalize=True,
                                    normalization="component")  # [E, sh_irreps.dim]
        return sh, self.radial(r), self.envelope(r)
