"""The search space of DRC's channel number search (stage 1): the candidate widths of every
searched layer, the ranking of its units, the soft width mask a logit vector gives, and the
configuration read off the logits.

A layer of full width ``C`` at pruning rate ``r`` has the candidates ``int(C (1 - r) k)`` for ``k``
in :data:`PAPER_RATIOS`, rounded to multiples of 4 (:func:`candidate_widths`). Its units are ranked
by the L1 norm of the consumer weights that read them (:func:`rank_units`), and the soft mask of
unit ``j`` is ``sum_k softmax(alpha)_k [rank(j) < c_k]`` (:func:`soft_width_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import ConfigError
from ..layers import SearchedLayer
from .options import PAPER_RATIOS, check_rate


def round_to_multiple(value: float, multiple: int, ties: str = "down") -> int:
    """The multiple of ``multiple`` nearest to ``value``.

    An exact tie (``value`` halfway between two multiples) rounds down with ``ties="down"``, as
    the released search code does for its candidate widths (:func:`candidate_widths`), and to the
    even multiple of ``multiple`` with ``ties="even"`` (Python's ``round``), as the uniform
    baselines (:func:`dualsr.compression.criteria.uniform_config`) always have. The two differ
    only on such ties (e.g. 6 -> 4 or 8 with ``multiple=4``); each caller keeps its own.
    """
    if ties == "even":
        return int(multiple * round(value / multiple))
    if ties != "down":
        raise ValueError(f"ties must be 'down' or 'even', got {ties!r}")
    remainder = value % multiple
    return int(value - remainder + multiple if 2 * remainder > multiple else value - remainder)


def candidate_widths(
    width: int, rate: float, ratios: Sequence[float] = PAPER_RATIOS, multiple: int = 4
) -> list[int]:
    """The candidate widths of a layer of full width ``width`` at pruning rate ``rate``.

    ``int(width * (1 - rate) * k)`` for each ``k`` in ``ratios``, rounded to the nearest multiple
    of ``multiple`` (ties down) and clipped to ``[multiple, width]`` (Guo et al., TPAMI 2024).
    Duplicates are kept, so every layer has ``len(ratios)`` candidates.
    """
    rate = check_rate(rate)
    if multiple < 1:
        raise ConfigError(f"multiple must be >= 1, got {multiple}")
    if not ratios or any(not 0 < k <= 1 for k in ratios):
        raise ConfigError(f"candidate ratios must be in (0, 1], got {list(ratios)}")
    return [
        min(max(round_to_multiple(int(width * (1 - rate) * k), multiple), multiple), width)
        for k in ratios
    ]


def unit_importance(layer: SearchedLayer) -> torch.Tensor:
    """L1 norm of the consumer weights reading each unit of ``layer`` (length ``layer.width``)."""
    return layer.consumer.weight.detach().abs().sum(dim=(0, 2, 3))


def rank_units(layer: SearchedLayer) -> torch.Tensor:
    """Unit indices of ``layer`` from the most to the least important (stable on ties)."""
    return torch.sort(unit_importance(layer), descending=True, stable=True).indices


def soft_width_mask(
    probs: torch.Tensor, candidates: torch.Tensor, order: torch.Tensor
) -> torch.Tensor:
    """Mask of every unit: ``m_j = sum_k probs[k] * [rank(j) < candidates[k]]``.

    Args:
        probs: ``K`` candidate weights (a softmax; differentiable).
        candidates: ``K`` widths.
        order: unit indices sorted by importance (``order[0]`` has rank 0).
    """
    width = order.numel()
    ranks = torch.arange(width, device=probs.device)
    keep = (ranks[None, :] < candidates.to(probs.device)[:, None]).to(probs.dtype)  # K x C
    by_rank = probs @ keep
    return by_rank[torch.argsort(order.to(probs.device))]


def expected_widths(probs: Sequence[torch.Tensor], candidates: Sequence[Sequence[int]]) -> list:
    """``sum_k p_k c_k`` per layer (the sum of the layer's soft mask)."""
    return [
        float((p.detach().cpu().double() * torch.tensor(c, dtype=torch.float64)).sum())
        for p, c in zip(probs, candidates, strict=True)
    ]


def argmax_configuration(
    alphas: Sequence[torch.Tensor], candidates: Sequence[Sequence[int]]
) -> list[int]:
    """The most likely candidate of every layer (the first one on ties, as ``torch.max``)."""
    return [
        int(c[int(torch.argmax(a.detach().double().cpu()))])
        for a, c in zip(alphas, candidates, strict=True)
    ]


def format_channel_config(config: Sequence[int]) -> str:
    """The official channel-configuration file text: one integer a line."""
    return "".join(f"{int(c)}\n" for c in config)
