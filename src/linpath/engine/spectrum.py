"""Extreme eigenvalues and the trace of a symmetric operator known only by its products A·v.

The Hessian of a network's loss is never formed: curvature.py gives its products with vectors
(one forward-over-reverse pass over the data each), and this module asks for as few as it can.

  lanczos   the k largest eigenvalues by the Lanczos iteration with full reorthogonalization
            (every new vector is orthogonalized twice against all earlier ones, so the Ritz
            values do not repeat, as they do in plain Lanczos). Each Ritz value θ_i comes with
            its residual norm r_i = ‖A·y_i − θ_i·y_i‖ = β_m·|s_mi| (y_i the Ritz vector, s_i its
            eigenvector of the tridiagonal matrix): some eigenvalue of A lies within r_i of θ_i,
            so r_i is the estimate's error bound (0 once the Krylov space is invariant).
  hutchpp   the trace by Hutch++ (Meyer, Musco, Musco & Woodruff 2021): a third of the products
            find the dominant subspace Q (exact part tr(QᵀAQ)), a third compute it, a third
            estimate the rest by Hutchinson with Rademacher vectors projected off Q. Its standard
            error is that of the Hutchinson part (the sample standard deviation over √(its
            vectors)), given Q. `sketch=0` is plain Hutchinson.

Vectors are 1-D float64 tensors; everything is seeded, so the same call gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from linpath.errors import LinpathError

MatVec = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_STEPS = 40  # Lanczos steps: ample for a handful of extreme eigenvalues
DEFAULT_MATVECS = 60  # Hutch++ products: 20 for the sketch, 20 for its part, 20 for the rest


@dataclass
class Spectrum:
    """The k largest Ritz values (descending), each with its residual norm (error bound)."""

    eigenvalues: list[float]
    residuals: list[float]
    steps: int  # Lanczos steps taken (products with A)


@dataclass
class TraceEstimate:
    trace: float
    se: float  # standard error of the estimate (0 when the sketch captured everything)
    matvecs: int
    method: str  # "hutch++" or "hutchinson"


def _rademacher(dim: int, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (dim, count), generator=generator, dtype=torch.int8).double().mul_(2).sub_(1)


def lanczos(matvec: MatVec, dim: int, k: int = 5, steps: int | None = None, seed: int = 0) -> Spectrum:
    """The k largest eigenvalues of the symmetric operator `matvec` on R^dim (module docstring)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise LinpathError(f"the number of eigenvalues must be a positive integer, got {k!r}")
    steps = min(dim, DEFAULT_STEPS if steps is None else steps)
    if steps < k:
        raise LinpathError(f"{k} eigenvalues need at least {k} Lanczos steps, got {steps} (dimension {dim})")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g, dtype=torch.float64)
    basis = [q / q.norm()]
    alphas, betas = [], []
    for j in range(steps):
        w = matvec(basis[j]).double()
        alphas.append(float(basis[j] @ w))
        Q = torch.stack(basis, 1)
        for _ in range(2):  # full reorthogonalization, twice ("twice is enough")
            w = w - Q @ (Q.T @ w)
        beta = float(w.norm())
        betas.append(beta)
        if beta <= 1e-12 * max(1.0, max(abs(a) for a in alphas)) or j + 1 == steps:
            break
        basis.append(w / beta)
    m = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if m > 1:
        off = torch.tensor(betas[: m - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    theta, S = torch.linalg.eigh(T)
    order = torch.argsort(theta, descending=True)[:k]
    residuals = (betas[-1] * S[-1, order].abs()).tolist()
    return Spectrum(theta[order].tolist(), residuals, m)


def hutchpp(matvec: MatVec, dim: int, matvecs: int = DEFAULT_MATVECS, seed: int = 0, sketch: bool = True):
    """The trace of `matvec` by Hutch++ (or Hutchinson with sketch=False) with its standard error."""
    if isinstance(matvecs, bool) or not isinstance(matvecs, int) or matvecs < (3 if sketch else 2):
        raise LinpathError(f"the trace needs at least {3 if sketch else 2} products, got {matvecs!r}")
    g = torch.Generator().manual_seed(seed)
    apply = lambda V: torch.stack([matvec(V[:, i]).double() for i in range(V.shape[1])], 1)  # noqa: E731
    if not sketch:
        G = _rademacher(dim, matvecs, g)
        samples = (G * apply(G)).sum(0)
        return TraceEstimate(float(samples.mean()), _se(samples), matvecs, "hutchinson")
    third = matvecs // 3
    rest = matvecs - 2 * third
    Q, _ = torch.linalg.qr(apply(_rademacher(dim, third, g)))
    exact = float(torch.trace(Q.T @ apply(Q)))
    G = _rademacher(dim, rest, g)
    G = G - Q @ (Q.T @ G)
    samples = (G * apply(G)).sum(0)
    return TraceEstimate(exact + float(samples.mean()), _se(samples), 2 * third + rest, "hutch++")


def _se(samples: torch.Tensor) -> float:
    n = len(samples)
    return float(samples.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.nan
