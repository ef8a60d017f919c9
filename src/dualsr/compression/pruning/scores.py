"""Unit scores from a consumer-weight gradient, and the top-scored units.

The gradient criteria (``drc``, ``dcp``) score a unit ``j`` from the slice ``g = grad[:, j]``
(``O x kh x kw``) of the accumulated gradient by one of :data:`GRADIENT_SCORES`: ``official``
(the default; the released DRC code, ``channel_selection.py``): ``sum_o sqrt(sum_k g[o, k]^2)``,
the sum over output channels of the per-filter gradient norms; ``dcp-paper`` (the DCP paper's
Frobenius norm): ``sqrt(sum_o sum_k g[o, k]^2)``. :func:`top_units` turns any scores into the
kept units.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...errors import ConfigError


def top_units(scores: torch.Tensor, n_keep: int) -> list[int]:
    """The ``n_keep`` highest-scoring units, sorted by index; ties go to the lower index."""
    order = torch.sort(-scores.detach().double().cpu(), stable=True).indices
    return sorted(int(i) for i in order[:n_keep])


def gradient_norm_scores(grad: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each input slice ``grad[:, j]`` of a consumer-weight gradient.

    The DCP paper's score (``dcp-paper``): ``sqrt(sum_{o, k} grad[o, j, k]^2)``.
    """
    return grad.detach().double().pow(2).sum(dim=(0, 2, 3)).sqrt()


def summed_gradient_norm_scores(grad: torch.Tensor) -> torch.Tensor:
    """Sum over output channels of the gradient norm of each filter slice ``grad[o, j]``.

    The released DRC code's score (``official``; ``channel_selection.py``,
    ``find_most_violated``): ``sum_o sqrt(sum_k grad[o, j, k]^2)``. It is at least the Frobenius
    norm of the slice and at most ``sqrt(O)`` times it.
    """
    return grad.detach().double().pow(2).sum(dim=(2, 3)).sqrt().sum(0)


#: The scores of a unit from its consumer-weight gradient slice, by name (``--score``).
GRADIENT_SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "official": summed_gradient_norm_scores,
    "dcp-paper": gradient_norm_scores,
}
DEFAULT_SCORE = "official"


def check_score(score: str) -> str:
    """``score`` if it names a gradient score, else ConfigError listing the valid names."""
    if score not in GRADIENT_SCORES:
        raise ConfigError(
            f"unknown gradient score {score!r}; choose from: {', '.join(GRADIENT_SCORES)}"
        )
    return score


def gradient_scores(grad: torch.Tensor, score: str = DEFAULT_SCORE) -> torch.Tensor:
    """One score per input unit of a consumer-weight gradient, by the rule ``score``.

    ``official`` (default): :func:`summed_gradient_norm_scores`; ``dcp-paper``:
    :func:`gradient_norm_scores`. Float64.
    """
    return GRADIENT_SCORES[check_score(score)](grad)
