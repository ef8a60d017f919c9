"""The bilevel gradients of the channel number search and the loss they differentiate.

The search (:func:`dualsr.compression.search.search_channels`) trains the weights on one half of
the images and the architecture logits on the other, as DARTS (Liu et al., ICLR 2019). The logit
gradient (:func:`alpha_gradients`) is the first-order ``grad_alpha L_val(w, alpha)`` or the
second-order ("unrolled") one, whose mixed Hessian-vector product is a central difference
(:func:`finite_difference_hvp`). Both work on any ``objective(weights, alphas, batch)``; the DRN
one is :class:`SearchObjective`, the dual regression loss of the soft-masked network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ...errors import ConfigError
from ...losses import LossTerms
from ...models.drn import DRN, DualModels
from ..layers import ChannelMasks, searched_layers
from .space import rank_units, soft_width_mask

EPS_SCALE = 0.01  # eps = EPS_SCALE / ||grad_w' L_val||, the DARTS choice

Batch = Sequence[torch.Tensor]  # a pyramid [LR, 2x, ..., HR], each N x 3 x h x w in [0, 255]
Objective = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], Any], torch.Tensor]
LossFn = Callable[..., "LossTerms | torch.Tensor"]


def _grads(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(inputs), allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]


def finite_difference_hvp(
    objective: Objective,
    weights: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    batch: Any,
    vector: Sequence[torch.Tensor],
    eps: float,
) -> list[torch.Tensor]:
    """Central difference ``(grad_a L(w + eps v) - grad_a L(w - eps v)) / (2 eps)``.

    Approximates the mixed second derivative ``d^2 L / (d alpha d w) . v`` with two gradient
    evaluations (error O(eps^2) for smooth losses).
    """
    with torch.no_grad():
        w_plus = [w.detach() + eps * v for w, v in zip(weights, vector, strict=True)]
        w_minus = [w.detach() - eps * v for w, v in zip(weights, vector, strict=True)]
    g_plus = _grads(objective(w_plus, alphas, batch), alphas)
    g_minus = _grads(objective(w_minus, alphas, batch), alphas)
    return [(p - m) / (2 * eps) for p, m in zip(g_plus, g_minus, strict=True)]


def alpha_gradients(
    objective: Objective,
    weights: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    train_batch: Any,
    val_batch: Any,
    *,
    order: str = "second",
    xi: float = 1e-4,
    eps_scale: float = EPS_SCALE,
) -> tuple[list[torch.Tensor], float]:
    """The gradient of the validation loss with respect to the architecture logits.

    Args:
        objective: ``objective(weights, alphas, batch)`` -> scalar loss.
        weights: the network weights ``w`` (tensors; not modified).
        alphas: the logits (tensors with ``requires_grad``).
        train_batch, val_batch: one batch of each split.
        order: ``"first"``: ``grad_alpha L_val(w, alpha)``. ``"second"``: the DARTS unrolled
            gradient ``grad_alpha L_val(w', alpha) - xi * H v`` with ``w' = w - xi grad_w
            L_train(w, alpha)``, ``v = grad_w' L_val(w', alpha)`` and the mixed Hessian-vector
            product ``H v`` by :func:`finite_difference_hvp` at ``eps = eps_scale / ||v||``.
        xi: the virtual step size (DARTS: the weights' learning rate).

    Returns:
        The gradients (one per alpha) and the validation loss as a float.
    """
    if order == "first":
        loss_val = objective(weights, alphas, val_batch)
        return _grads(loss_val, alphas), float(loss_val.detach())
    if order != "second":
        raise ConfigError(f"order must be 'first' or 'second', got {order!r}")
    g_train = _grads(objective(weights, alphas, train_batch), weights)
    w_virtual = [
        (w.detach() - xi * g).requires_grad_(True) for w, g in zip(weights, g_train, strict=True)
    ]
    loss_val = objective(w_virtual, alphas, val_batch)
    grads = _grads(loss_val, [*alphas, *w_virtual])
    g_alpha, v = grads[: len(alphas)], grads[len(alphas) :]
    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in v)))
    if xi == 0 or norm == 0 or not math.isfinite(norm):
        return g_alpha, float(loss_val.detach())
    hvp = finite_difference_hvp(objective, weights, alphas, train_batch, v, eps_scale / norm)
    return [ga - xi * h for ga, h in zip(g_alpha, hvp, strict=True)], float(loss_val.detach())


class _PrimalDual(nn.Module):
    """Primal and duals in one module, so one functional call evaluates both."""

    def __init__(self, model: DRN, duals: DualModels | None) -> None:
        super().__init__()
        self.model = model
        self.duals = duals

    def forward(self, lr: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        outputs = self.model(lr)
        return outputs, (self.duals(outputs) if self.duals is not None else None)


class SearchObjective:
    """``L(w, alpha; batch)``: the dual regression loss of the soft-masked DRN.

    ``weights`` are given in the order of :attr:`names` (the trainable parameters of the model
    and its duals); ``alphas`` one logit vector per searched layer. Call :meth:`rank` to
    (re)compute the unit ranking from the current module weights. Use :meth:`close` (or a
    ``with`` block) to remove the mask hooks.
    """

    def __init__(
        self,
        model: DRN,
        duals: DualModels | None,
        candidates: Sequence[Sequence[int]],
        loss: LossFn,
    ) -> None:
        self.net = _PrimalDual(model, duals)
        self.names = [n for n, p in self.net.named_parameters() if p.requires_grad]
        self.weights = [p for p in self.net.parameters() if p.requires_grad]
        self.masks = ChannelMasks(model, [None] * len(searched_layers(model)))
        self.layers = self.masks.layers
        device = next(model.parameters()).device
        self.candidates = [torch.tensor(list(c), device=device) for c in candidates]
        if len(self.candidates) != len(self.layers):
            raise ValueError(f"{len(candidates)} candidate lists for {len(self.layers)} layers")
        self.loss = loss
        self.orders: list[torch.Tensor] = []
        self.rank()

    def rank(self) -> None:
        """Rank every layer's units by the current L1 norms."""
        self.orders = [rank_units(layer) for layer in self.layers]

    def soft_masks(self, alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The soft mask of every layer for ``alphas``."""
        return [
            soft_width_mask(F.softmax(a, dim=-1), c, o)
            for a, c, o in zip(alphas, self.candidates, self.orders, strict=True)
        ]

    def __call__(
        self, weights: Sequence[torch.Tensor], alphas: Sequence[torch.Tensor], batch: Batch
    ) -> torch.Tensor:
        """The loss of the network with ``weights`` and the soft masks of ``alphas``."""
        self.masks.masks = self.soft_masks(alphas)
        params = dict(zip(self.names, weights, strict=True))
        outputs, dual_outputs = functional_call(self.net, params, (batch[0],))
        terms = self.loss(outputs, list(batch), dual_outputs)
        return terms.total if isinstance(terms, LossTerms) else terms

    def close(self) -> None:
        """Remove the mask hooks."""
        self.masks.remove()

    def __enter__(self) -> SearchObjective:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
