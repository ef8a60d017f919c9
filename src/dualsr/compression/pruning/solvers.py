"""The least-squares and LASSO solvers of the feature criteria (ThiNet's scales, CP).

All work in float64. :func:`least_squares` is a ridge-stabilised normal-equations solve;
:func:`lasso` / :func:`lasso_moments` are FISTA on the design or on its moments;
:func:`lasso_select` / :func:`lasso_select_moments` bisect the penalty for a support of at most
``n_keep`` units (CP's channel selection).
"""

from __future__ import annotations

import math

import torch


def least_squares(a: torch.Tensor, b: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """argmin_x ||a x - b||^2 + ridge * tr(a^T a)/n * ||x||^2, solved in float64.

    ``a``: ``S x n``, ``b``: ``S`` or ``S x m``. The tiny relative ridge keeps rank-deficient
    systems (dead units, few samples) solvable without visibly biasing well-posed ones.
    """
    a64, b64 = a.double(), b.double()
    gram = a64.T @ a64
    n = gram.shape[0]
    reg = ridge * (float(gram.diagonal().mean()) if n else 0.0) + 1e-12
    rhs = a64.T @ b64
    eye = torch.eye(n, dtype=gram.dtype, device=gram.device)
    x = torch.linalg.solve(gram + reg * eye, rhs)
    return x.to(a.dtype)


def lasso(
    z: torch.Tensor, y: torch.Tensor, alpha: float, iters: int = 500, tol: float = 1e-10
) -> torch.Tensor:
    """argmin_b 1/(2S) ||y - z b||^2 + alpha ||b||_1 by FISTA (float64), ``z``: ``S x C``.

    For an orthonormal design (``z^T z / S = I``) the solution is the soft threshold
    ``sign(q) max(|q| - alpha, 0)`` with ``q = z^T y / S``.
    """
    z64, y64 = z.double(), y.double()
    s = z64.shape[0]
    return lasso_moments(z64.T @ z64 / s, z64.T @ y64 / s, alpha, iters, tol)


def lasso_moments(
    gram: torch.Tensor, q: torch.Tensor, alpha: float, iters: int = 500, tol: float = 1e-10
) -> torch.Tensor:
    """:func:`lasso` from the design's moments ``gram = z^T z / S`` and ``q = z^T y / S``.

    The objective is ``1/2 b^T gram b - q^T b + alpha ||b||_1`` (the LASSO's up to a constant),
    so ``z`` itself is never needed. FISTA in float64.
    """
    gram, q = gram.double(), q.double()
    lipschitz = float(torch.linalg.eigvalsh(gram).max()) if gram.numel() else 1.0
    step = 1.0 / max(lipschitz, 1e-30)
    b = torch.zeros_like(q)
    v, t = b.clone(), 1.0
    for _ in range(iters):
        u = v - step * (gram @ v - q)
        b_new = torch.sign(u) * torch.clamp(u.abs() - step * alpha, min=0.0)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        v = b_new + (t - 1) / t_new * (b_new - b)
        done = float((b_new - b).abs().max()) <= tol * (1 + float(b_new.abs().max()))
        b, t = b_new, t_new
        if done:
            break
    return b


def lasso_select(
    z: torch.Tensor, y: torch.Tensor, n_keep: int, search_steps: int = 30, iters: int = 500
) -> tuple[list[int], torch.Tensor]:
    """CP's channel selection: the support of the LASSO solution with at most ``n_keep`` units.

    Bisects the penalty (log scale) for the smallest one whose solution has at most ``n_keep``
    non-zeros; the kept units are that support, completed (when it is smaller) by the largest
    coefficients of the solution just below it. Returns (sorted kept units, coefficients).
    ``z``: ``S x C``, ``y``: ``S`` (:func:`lasso_select_moments` without forming them).
    """
    z64, y64 = z.double(), y.double()
    s = z64.shape[0]
    return lasso_select_moments(z64.T @ z64 / s, z64.T @ y64 / s, n_keep, search_steps, iters)


def lasso_select_moments(
    gram: torch.Tensor, q: torch.Tensor, n_keep: int, search_steps: int = 30, iters: int = 500
) -> tuple[list[int], torch.Tensor]:
    """:func:`lasso_select` from the design's moments ``gram = z^T z / n``, ``q = z^T y / n``."""
    gram, q = gram.double(), q.double()
    c = q.shape[0]
    if n_keep >= c:
        return list(range(c)), lasso_moments(gram, q, 0.0, iters)
    hi = float(q.abs().max()) + 1e-12  # at alpha >= max|q| the solution is 0
    lo = hi * 1e-6
    b_hi = torch.zeros(c, dtype=torch.float64, device=q.device)
    b_lo = lasso_moments(gram, q, lo, iters)
    if int((b_lo != 0).sum()) <= n_keep:
        b_hi = b_lo
    else:
        for _ in range(search_steps):
            mid = math.sqrt(lo * hi)
            b = lasso_moments(gram, q, mid, iters)
            nnz = int((b != 0).sum())
            if nnz <= n_keep:
                hi, b_hi = mid, b
            else:
                lo, b_lo = mid, b
            if nnz == n_keep:
                break
    # rank: support at hi first (by |b_hi|), then by |b_lo|, then by |q|
    key = torch.stack([(b_hi != 0).double(), b_hi.abs(), b_lo.abs(), q.abs()], 1)
    order = sorted(range(c), key=lambda j: tuple(-float(v) for v in key[j]) + (j,))
    return sorted(order[:n_keep]), b_hi
