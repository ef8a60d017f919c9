"""The cost of a channel configuration, and fitting a configuration to a parameter/MAC budget.

The parameters and multiply-adds (MACs) of a DRN are an *affine* function of its channel
configuration: every searched width ``w_i`` only changes its producer's output channels and its
consumer's input channels (see :mod:`dualsr.compression.layers`), so

    cost(config) = base + sum_i w_i * unit_i

with one ``unit_i`` per searched layer (params, or MACs at a stated input size). :class:`CostModel`
holds these numbers, measured once from a full model built on PyTorch's "meta" device;
:func:`config_cost` is the exact (slower) count of a built model and the reference the tests check
the affine model against.

:func:`fit_to_budget` turns per-layer preferred widths (for the search: the expected widths under
the architecture softmax) into a configuration that meets a budget within a tolerance (2% by
default): a single global scale of the preferred widths is found by bisection so that the
*continuous* cost equals the budget, then each width is rounded to a multiple of ``multiple`` by a
cost-aware largest-remainder rule (all rounded down, then rounded up in order of their fractional
remainder, stopping at the prefix whose cost is closest to the budget). The remaining error is at
most half the cost of one ``multiple``-channel step of one layer; a budget that cannot be met
(outside the reachable range, or a step too coarse for the tolerance) is a ConfigError.
See docs/compression-search.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..models.drn import DRN, DRNArch, full_widths
from ..profiling import count_macs, count_parameters
from .layers import searched_layers

DEFAULT_TOLERANCE = 0.02
# The published FLOPs figures of DRN (Guo et al., CVPR 2020 "Closed-loop Matters: Dual Regression
# Networks for Single Image Super-Resolution"; TPAMI 2024) equal the MACs at a 96 x 96 LR input.
DEFAULT_INPUT_HW = (96, 96)


@dataclass(frozen=True)
class Budget:
    """A cost target for the final channel configuration: parameters *or* multiply-adds.

    Args:
        params: target number of parameters of the primal network.
        macs: target multiply-adds of one forward pass at ``input_hw`` (LR input size).
        input_hw: ``(H, W)`` of the LR input for ``macs`` (required with ``macs``).
        tolerance: accepted relative error ``|cost - target| / target`` (0.02 = 2%).
    """

    params: int | None = None
    macs: int | None = None
    input_hw: tuple[int, int] | None = None
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        if (self.params is None) == (self.macs is None):
            raise ConfigError("a budget needs exactly one of params or macs")
        if self.target <= 0:
            raise ConfigError(f"the {self.kind} budget must be positive, got {self.target}")
        if self.macs is not None and self.input_hw is None:
            raise ConfigError("a multiply-add budget needs the input size (input_hw, e.g. 96x96)")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"budget tolerance must be in (0, 1), got {self.tolerance}")

    @property
    def kind(self) -> str:
        """``"params"`` or ``"macs"``."""
        return "params" if self.params is not None else "macs"

    @property
    def target(self) -> int:
        """The target value."""
        return int(self.params if self.params is not None else self.macs)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {
            "kind": self.kind,
            "target": self.target,
            "input_hw": list(self.input_hw) if self.input_hw else None,
            "tolerance": self.tolerance,
        }


# ----------------------------------------------------------------------------------------------
# Exact counting
# ----------------------------------------------------------------------------------------------
def _arch_of(arch: DRNArch | DRN) -> DRNArch:
    return arch.arch if isinstance(arch, DRN) else arch


def build_meta_model(arch: DRNArch | DRN, channel_config: Sequence[int] | None = None) -> DRN:
    """A DRN with ``channel_config`` on the meta device (no memory, no arithmetic)."""
    a = _arch_of(arch)
    config = None if channel_config is None else [int(c) for c in channel_config]
    with torch.device("meta"):
        return DRN(a.scale, a.n_feats, a.n_blocks, config, a.rgb_range)


def config_cost(
    arch: DRNArch | DRN,
    channel_config: Sequence[int] | None,
    input_hw: tuple[int, int] | None = DEFAULT_INPUT_HW,
) -> tuple[int, int | None]:
    """Exact ``(params, macs)`` of the primal DRN ``arch`` built with ``channel_config``.

    The model is built on the meta device and counted with :mod:`dualsr.profiling`; MACs are for
    one forward pass at LR input size ``input_hw`` (None: MACs are not counted and None is
    returned for them). ``channel_config`` None means the full widths.
    """
    model = build_meta_model(arch, channel_config)
    macs = count_macs(model, input_hw) if input_hw is not None else None
    return count_parameters(model), macs


# ----------------------------------------------------------------------------------------------
# The affine cost model
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostModel:
    """``cost(config) = base + sum_i config[i] * unit[i]`` for parameters and MACs.

    Build it with :meth:`from_arch`. ``full_widths`` are the upper bounds of the widths.
    """

    full_widths: tuple[int, ...]
    base_params: int
    unit_params: tuple[int, ...]
    input_hw: tuple[int, int] | None = None
    base_macs: int | None = None
    unit_macs: tuple[int, ...] | None = None

    @classmethod
    def from_arch(
        cls, arch: DRNArch | DRN, input_hw: tuple[int, int] | None = DEFAULT_INPUT_HW
    ) -> CostModel:
        """Measure the per-channel costs of every searched layer of ``arch``.

        The upper bounds (:attr:`full_widths`) are the widths ``arch`` is built with: the full
        widths, or its channel configuration for an already width-configured model.
        """
        a = _arch_of(arch)
        model = build_meta_model(a, a.channel_config)
        widths = tuple(a.channel_config or full_widths(a.scale, a.n_feats, a.n_blocks))
        layers = searched_layers(model)
        unit_params = []
        for layer in layers:
            prod, cons = layer.producer, layer.consumer
            per_out = prod.weight[0].numel() + (1 if prod.bias is not None else 0)
            per_in = cons.weight[:, 0].numel()
            unit_params.append(layer.group * per_out + per_in)
        total_params = count_parameters(model)
        base_params = total_params - sum(u * w for u, w in zip(unit_params, widths, strict=True))
        if input_hw is None:
            return cls(widths, base_params, tuple(unit_params))

        out_hw = _conv_output_sizes(model, input_hw)
        unit_macs = []
        for layer in layers:
            prod, cons = layer.producer, layer.consumer
            kp = prod.weight[0].numel()  # (in / groups) x kh x kw
            kc = cons.weight[:, 0].numel()  # out x kh x kw  (groups == 1)
            unit_macs.append(layer.group * out_hw[prod] * kp + out_hw[cons] * kc)
        total_macs = count_macs(model, input_hw)
        base_macs = total_macs - sum(u * w for u, w in zip(unit_macs, widths, strict=True))
        return cls(
            widths, base_params, tuple(unit_params), tuple(input_hw), base_macs, tuple(unit_macs)
        )

    def params(self, config: Sequence[float]) -> float:
        """Parameters of ``config`` (float for fractional widths, exact for integers)."""
        return self.base_params + sum(u * w for u, w in zip(self.unit_params, config, strict=True))

    def macs(self, config: Sequence[float]) -> float:
        """MACs of ``config`` at :attr:`input_hw`."""
        if self.unit_macs is None or self.base_macs is None:
            raise ConfigError("this cost model was built without an input size; MACs unknown")
        return self.base_macs + sum(u * w for u, w in zip(self.unit_macs, config, strict=True))

    def cost(self, config: Sequence[float], kind: str) -> float:
        """``params`` or ``macs`` of ``config``."""
        if kind == "params":
            return self.params(config)
        if kind == "macs":
            return self.macs(config)
        raise ValueError(f"cost kind must be 'params' or 'macs', got {kind!r}")

    def units(self, kind: str) -> tuple[int, ...]:
        """Per-channel cost of every layer for ``kind``."""
        if kind == "macs":
            if self.unit_macs is None:
                raise ConfigError("this cost model was built without an input size; MACs unknown")
            return self.unit_macs
        return self.unit_params


def _conv_output_sizes(model: nn.Module, input_hw: tuple[int, int]) -> dict[nn.Module, int]:
    """Output spatial size (H x W) of every conv of ``model`` (on meta) for an LR input."""
    sizes: dict[nn.Module, int] = {}

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        sizes[mod] = output.shape[-2] * output.shape[-1]

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        with torch.no_grad():
            model(torch.empty(1, 3, *input_hw, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return sizes


# ----------------------------------------------------------------------------------------------
# Fitting a configuration to a budget
# ----------------------------------------------------------------------------------------------
def allowed_widths(full: int, multiple: int) -> list[int]:
    """The widths a layer of full width ``full`` may take: multiples of ``multiple`` in
    ``[multiple, full]``, plus ``full`` itself (and ``full`` alone when ``full < multiple``)."""
    if multiple < 1:
        raise ConfigError(f"multiple must be >= 1, got {multiple}")
    return sorted(set(range(multiple, full + 1, multiple)) | {full})


@dataclass
class BudgetFit:
    """The result of :func:`fit_to_budget`."""

    channel_config: list[int]
    cost: int
    target: int
    kind: str
    scale: float  # the global factor applied to the preferred widths

    @property
    def relative_error(self) -> float:
        """``(cost - target) / target``."""
        return (self.cost - self.target) / self.target


def fit_to_budget(
    cost_model: CostModel,
    preferred: Sequence[float],
    budget: Budget,
    multiple: int = 4,
) -> BudgetFit:
    """A channel configuration shaped like ``preferred`` whose cost meets ``budget``.

    Args:
        cost_model: per-layer costs and full widths (:meth:`CostModel.from_arch`); for a MAC
            budget it must have been built at ``budget.input_hw``.
        preferred: one positive number per searched layer: the relative widths to keep (e.g.
            the expected widths of the architecture softmax).
        budget: the parameter or MAC target and its tolerance.
        multiple: widths are multiples of this (or a layer's full width).

    Returns:
        A :class:`BudgetFit` whose ``channel_config`` costs within ``budget.tolerance`` of the
        target.

    Raises:
        ConfigError: when the target is outside what the architecture can reach with widths in
            ``[multiple, full]``, or the rounding steps are too coarse for the tolerance.
    """
    full = list(cost_model.full_widths)
    if len(preferred) != len(full):
        raise ValueError(f"{len(preferred)} preferred widths for {len(full)} searched layers")
    pref = [float(p) for p in preferred]
    if any(not math.isfinite(p) or p <= 0 for p in pref):
        raise ValueError("preferred widths must be positive and finite")
    kind, target, tol = budget.kind, budget.target, budget.tolerance
    if kind == "macs" and cost_model.input_hw != tuple(budget.input_hw or ()):
        raise ValueError(
            f"the cost model counts MACs at {cost_model.input_hw}, the budget at "
            f"{budget.input_hw}; build it with CostModel.from_arch(arch, budget.input_hw)"
        )
    options = [allowed_widths(f, multiple) for f in full]
    lo = [o[0] for o in options]
    units = cost_model.units(kind)

    def cost(cfg: Sequence[float]) -> float:
        return cost_model.cost(cfg, kind)

    smallest, largest = cost(lo), cost(full)
    what = "parameters" if kind == "params" else f"multiply-adds at {budget.input_hw}"
    if target < smallest * (1 - tol) or target > largest * (1 + tol):
        raise ConfigError(
            f"a budget of {target:,} {what} cannot be met: with widths between {multiple} and "
            f"the full width, this architecture has {int(smallest):,} to {int(largest):,} {what}; "
            "choose a budget in that range"
        )

    # 1. continuous: the scale s with cost(clip(s * preferred, lo, full)) == target.
    def widths_at(s: float) -> list[float]:
        return [min(max(s * p, a), f) for p, a, f in zip(pref, lo, full, strict=True)]

    s_lo, s_hi = 0.0, max(f / p for f, p in zip(full, pref, strict=True))
    target_c = min(max(float(target), smallest), largest)
    for _ in range(200):
        mid = 0.5 * (s_lo + s_hi)
        if cost(widths_at(mid)) < target_c:
            s_lo = mid
        else:
            s_hi = mid
    s = 0.5 * (s_lo + s_hi)
    x = widths_at(s)

    # 2. round down to allowed widths, then round up in order of fractional remainder and keep
    #    the prefix whose cost is closest to the target.
    floor = [max(w for w in opts if w <= xi + 1e-9) for opts, xi in zip(options, x, strict=True)]
    config = list(floor)
    steps = []
    for i, (opts, xi, fi) in enumerate(zip(options, x, floor, strict=True)):
        higher = [w for w in opts if w > fi]
        if higher and xi > fi + 1e-9:
            up = higher[0]
            steps.append(((xi - fi) / (up - fi), i, up))
    steps.sort(key=lambda t: (-t[0], t[1]))
    current = cost(config)
    best_err, best_k = abs(current - target), 0
    for k, (_, i, up) in enumerate(steps, 1):
        current += (up - config[i]) * units[i]
        config[i] = up
        if abs(current - target) < best_err:
            best_err, best_k = abs(current - target), k
    config = list(floor)
    for _, i, up in steps[:best_k]:
        config[i] = up
    final = int(round(cost(config)))
    if abs(final - target) > tol * target:
        raise ConfigError(
            f"could not meet the budget of {target:,} {what} within {tol:.0%}: the closest "
            f"configuration costs {final:,}; one width step of {multiple} channels is too coarse "
            "for this target (use a smaller multiple or a larger tolerance)"
        )
    return BudgetFit([int(c) for c in config], final, target, kind, s)


def check_budget(
    arch: DRNArch | DRN, budget: Budget, multiple: int = 4, input_hw: tuple[int, int] | None = None
) -> CostModel:
    """The cost model of ``arch``; ConfigError now if ``budget`` cannot be met by any widths.

    MACs are counted at the budget's input size for a MAC budget, else at ``input_hw``
    (default 96 x 96).
    """
    hw = budget.input_hw if budget.kind == "macs" else input_hw
    cost_model = CostModel.from_arch(arch, tuple(hw or DEFAULT_INPUT_HW))  # type: ignore[arg-type]
    fit_to_budget(cost_model, cost_model.full_widths, budget, multiple)
    return cost_model
