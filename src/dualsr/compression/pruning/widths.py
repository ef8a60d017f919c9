"""Width rules: how a channel rate becomes one width per searched layer.

Without a configuration file, a channel rate ``r`` gives every searched layer of width ``C`` the
width ``C - floor(C * r)`` (:func:`floor_config`, as the released code cuts ``floor(C * r)``
channels); :func:`uniform_config` (multiples of 4) is the other rounding (:func:`rate_config`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ...errors import ConfigError
from ..search.space import round_to_multiple


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"pruning rate must be in [0, 1), got {rate}")


def uniform_config(widths: Sequence[int], rate: float, multiple: int = 4) -> list[int]:
    """Every layer keeps ``(1 - rate)`` of its units, rounded to a multiple of ``multiple``.

    ``rate`` is the fraction of units removed in each searched layer; each width is rounded to a
    multiple of ``multiple`` and clipped to ``[min(multiple, width), width]``. This is the
    ``multiple4`` rounding of :func:`rate_config` (not the default: see :func:`floor_config`).
    """
    _check_rate(rate)
    return [
        min(max(round_to_multiple(w * (1 - rate), multiple, ties="even"), min(multiple, w)), w)
        for w in widths
    ]


def floor_config(widths: Sequence[int], rate: float) -> list[int]:
    """Every layer of width ``C`` keeps ``C - floor(C * rate)`` units (the released code's rule).

    The released DRC code removes ``math.floor(in_channels * pruning_rate)`` channels of a layer
    when no configuration file is given (DCP/DRC, ``channel_selection.py``), and always for ThiNet
    (``thinet_prune.py``) and LASSO/CP (``lasso_prune.py``); the same float expression is used
    here, so e.g. ``C = 10, rate = 0.3`` removes 3 and ``C = 4, rate = 0.5`` keeps 2. At least one
    unit is always kept (``floor(C * rate) < C`` for ``rate < 1``).
    """
    _check_rate(rate)
    return [int(w) - math.floor(w * rate) for w in widths]


#: How a channel rate becomes a configuration: ``floor`` (released code, the default) or
#: ``multiple4`` (:func:`uniform_config`).
RATE_ROUNDINGS: dict[str, Callable[[Sequence[int], float], list[int]]] = {
    "floor": floor_config,
    "multiple4": uniform_config,
}
DEFAULT_RATE_ROUNDING = "floor"


def rate_config(
    widths: Sequence[int], rate: float, rounding: str = DEFAULT_RATE_ROUNDING
) -> list[int]:
    """The configuration of a channel ``rate`` (the same in every layer), by ``rounding``.

    ``floor`` (default): ``C - floor(C * rate)`` per layer (:func:`floor_config`); ``multiple4``:
    ``C * (1 - rate)`` rounded to a multiple of 4 within ``[min(4, C), C]``
    (:func:`uniform_config`).
    """
    try:
        fn = RATE_ROUNDINGS[rounding]
    except KeyError:
        raise ConfigError(
            f"unknown rate rounding {rounding!r}; choose from: {', '.join(RATE_ROUNDINGS)}"
        ) from None
    return fn(widths, rate)
