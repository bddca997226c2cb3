"""Gaussian-process algebra on covariant block kernels: exact, leave-one-out, projected process.

Every kernel here is a flat ``[G * d, G * d]`` matrix whose ``d x d`` blocks belong to pairs of
groups; labels are ``[G * d, m]`` (``m`` copies of one irrep in the target share a kernel).  The
noise (regulariser) ``lam`` is in units of the kernel; each copy has its own signal amplitude
``amp`` (its predictive covariance is ``amp * cov``).
"""
from __future__ import annotations

import torch

from tsym.runtime.errors import KernelError

__all__ = ["cholesky", "loo", "ExactGP", "SparseGP"]


def cholesky(a: torch.Tensor, what: str) -> torch.Tensor:
    """Lower Cholesky factor of the symmetric ``a`` ``[n, n]``; a few growing jitters if needed."""
    scale = float(a.diagonal().abs().mean()) if a.shape[0] else 1.0
    eye = torch.eye(a.shape[0], dtype=a.dtype)
    for jitter in (0.0, 1e-12, 1e-10, 1e-8):
        factor, info = torch.linalg.cholesky_ex(a + jitter * scale * eye)
        if int(info) == 0:
            return factor
    raise KernelError(f"{what}: the kernel matrix is not positive definite even with a jitter "
                      "of 1e-8; raise the regulariser")


def loo(k: torch.Tensor, y: torch.Tensor, lam: float, d: int
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact leave-one-group-out residuals and predictive covariances (unit amplitude).

    Parameters
    ----------
    k : ``[G * d, G * d]``; y : ``[G * d, m]``; lam : noise; d : block size.

    Returns
    -------
    residual : ``[G, d, m]``, the label minus the prediction of the GP fitted without its group.
    cov : ``[G, d, d]``, that prediction's covariance (noise included) for unit amplitude.
    """
    n = k.shape[0]
    factor = cholesky(k + lam * torch.eye(n, dtype=k.dtype), "leave-one-out")
    inv = torch.cholesky_inverse(factor)  # [n, n]
    alpha = inv @ y  # [n, m]
    g = n // d
    idx = torch.arange(g)
    blocks = inv.reshape(g, d, g, d)[idx, :, idx, :]  # [G, d, d]
    residual = torch.linalg.solve(blocks, alpha.reshape(g, d, -1))  # [G, d, m]
    return residual, torch.linalg.inv(blocks)


class ExactGP:
    """The exact GP posterior for a block kernel ``k`` ``[N, N]`` and labels ``y`` ``[N, m]``."""

    def __init__(self, k: torch.Tensor, y: torch.Tensor, lam: float):
        self.lam = float(lam)
        self.factor = cholesky(k + self.lam * torch.eye(k.shape[0], dtype=k.dtype), "exact fit")
        self.alpha = torch.cholesky_solve(y, self.factor)  # [N, m]

    @classmethod
    def from_state(cls, factor: torch.Tensor, alpha: torch.Tensor, lam: float) -> ExactGP:
        gp = cls.__new__(cls)
        gp.factor, gp.alpha, gp.lam = factor, alpha, float(lam)
        return gp

    def state(self) -> dict:
        return {"factor": self.factor, "alpha": self.alpha, "lam": self.lam}

    def mean(self, k_star: torch.Tensor) -> torch.Tensor:
        """``k_star`` ``[N*, N]`` -> ``[N*, m]``."""
        return k_star @ self.alpha

    def cov(self, k_star: torch.Tensor, k_self: torch.Tensor) -> torch.Tensor:
        """Predictive covariance blocks ``[G*, d, d]`` of noisy labels (unit amplitude);
        ``k_self`` ``[G*, d, d]`` the test groups' own kernel blocks."""
        g, d = k_self.shape[0], k_self.shape[1]
        v = torch.linalg.solve_triangular(self.factor, k_star.T, upper=False)  # [N, N*]
        v = v.reshape(-1, g, d)  # [N, G*, d]
        return k_self - torch.einsum("nga,ngb->gab", v, v) + self.lam * torch.eye(d, dtype=v.dtype)


class SparseGP:
    """Projected process (DTC, Quinonero-Candela & Rasmussen 2005) on ``M`` inducing points.

    Fitted from ``k_mm`` ``[Md, Md]`` and chunks of ``(k_mn [Md, c], y [c, m])``, so the training
    kernel is never held whole: memory ``O((Md)^2)``.  Mean ``K_*m S^-1 K_mn y`` and covariance
    ``K_** - K_*m K_mm^-1 K_m* + lam K_*m S^-1 K_m* + lam`` with ``S = K_mn K_nm + lam K_mm``.
    """

    def __init__(self, k_mm: torch.Tensor, chunks, lam: float):
        self.lam = float(lam)
        n = k_mm.shape[0]
        a = torch.zeros(n, n, dtype=k_mm.dtype)
        b = None
        for k_mn, y in chunks:
            a += k_mn @ k_mn.T  # [Md, Md]
            b = k_mn @ y if b is None else b + k_mn @ y  # [Md, m]
        self.factor_mm = cholesky(k_mm, "sparse fit (inducing kernel)")
        self.factor_s = cholesky(a + self.lam * k_mm, "sparse fit")
        self.w = torch.cholesky_solve(b, self.factor_s)  # [Md, m]

    @classmethod
    def from_state(cls, factor_mm, factor_s, w, lam) -> SparseGP:
        gp = cls.__new__(cls)
        gp.factor_mm, gp.factor_s, gp.w, gp.lam = factor_mm, factor_s, w, float(lam)
        return gp

    def state(self) -> dict:
        return {"factor_mm": self.factor_mm, "factor_s": self.factor_s, "w": self.w,
                "lam": self.lam}

    def mean(self, k_star: torch.Tensor) -> torch.Tensor:
        """``k_star`` ``[N*, Md]`` -> ``[N*, m]``."""
        return k_star @ self.w

    def cov(self, k_star: torch.Tensor, k_self: torch.Tensor) -> torch.Tensor:
        g, d = k_self.shape[0], k_self.shape[1]
        vm = torch.linalg.solve_triangular(self.factor_mm, k_star.T, upper=False).reshape(-1, g, d)
        vs = torch.linalg.solve_triangular(self.factor_s, k_star.T, upper=False).reshape(-1, g, d)
        return (k_self - torch.einsum("nga,ngb->gab", vm, vm)
                + self.lam * torch.einsum("nga,ngb->gab", vs, vs)
                + self.lam * torch.eye(d, dtype=vm.dtype))


def check_finite(t: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(torch.isfinite(t).all()):
        raise KernelError(f"{what} holds NaN or inf")
    return t
