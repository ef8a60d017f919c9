"""Stage 2 of dual regression compression: channel pruning to a searched configuration.

:func:`prune_model` takes a trained DRN, its dual models, a channel configuration (one width per
searched layer, official order) and a few batches of pruning data, and returns a width-configured
DRN whose state_dict has the official layout of a pruned model (DRN-S30 etc.).

The network being pruned is a copy of the full model. Layers are processed one at a time in the
official order; earlier layers are already pruned (their removed units' consumer weight slices are
zero, which computes exactly what masking or removing them computes), later ones are still full.
Finally :func:`dualsr.compression.layers.slim` removes the zeroed units physically.

How a layer's units are chosen is the method's criterion's business
(:mod:`dualsr.compression.criteria`): the loop calls its ``select(context, n_keep)`` with a
:class:`~dualsr.compression.criteria.base.LayerContext`; ``l1`` and ``uniform`` choose from the
weights alone; ``thinet`` and ``cp`` from sampled consumer inputs and target outputs
(:func:`collect_feature_stats`); ``drc`` and ``dcp`` with the gradient-based greedy loop of
:mod:`dualsr.compression.greedy` (:func:`~dualsr.compression.greedy.select_greedy`, in its
paper's-loop or moments variant). The loop itself never looks at the method's name.

Targets are the original model's consumer outputs (a forward pass truncated at that layer,
:func:`teacher_features`), computed for the batches a pass reads and kept in memory while the
layer's passes read them; except for ThiNet, whose targets are by default
(``thinet_targets="pruned"``, as the released code) the network being pruned's own consumer
output of the layer, all its units still present (the same truncated pass, on the network being
pruned).

Pruning data (:mod:`dualsr.compression.pruning_data`): a plain sequence of pyramids is read by
every pass (the targets are then computed once per layer). A
:class:`~dualsr.compression.pruning_data.PruningData` with ``fresh`` batches (e.g. a
:class:`~dualsr.compression.pruning_data.CropSource`, ``dualsr prune --crops fresh``) gives new
batches to every pass that draws, as the released code's DataLoader of random crops does, and
the targets are computed for each draw: ``drc``/``dcp`` with ``greedy="passes"`` draw for every
gradient pass and every local-SGD epoch; ``greedy="moments"`` once per layer (its moments, SR
gradients and final epochs share that draw); ``thinet`` and ``cp`` once per layer for their
statistics (and ThiNet's own targets), and ThiNet once more for each epoch of its SR-only local
SGD, which needs no targets.

ThiNet ends each layer, as the released code, with ``local_epochs`` of local SGD (Nesterov,
momentum 0.9, ``local_lr``) of the kept weight slices and (``local_bias``) the consumer's bias on
the SR loss alone (primal + ``dual_weight`` x dual when dual models are given and
``dual_weight > 0``; no reconstruction term, no ``gamma``); see
:func:`dualsr.compression.criteria.thinet.sr_local_sgd`.

The greedy's building blocks (:class:`LayerObjective`, :func:`accumulate_gradient`,
:func:`local_sgd`, :func:`batch_gradients`, :class:`LayerMoments`, :func:`collect_moments`), the
feature statistics (:func:`collect_feature_stats`, :func:`teacher_features`) and the defaults
live in :mod:`dualsr.compression.pruning` and :mod:`dualsr.compression.greedy` and are
re-exported here.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ConfigError, DualSRError
from ..models.drn import DRN, DualModels
from ..options import Style, check_fields, flag_of, from_args, to_dict
from .criteria import (
    CP_DESIGNS,
    DEFAULT_CP_DESIGN,
    DEFAULT_THINET_ERROR,
    DEFAULT_THINET_TARGETS,
    THINET_ERRORS,
    THINET_TARGETS,
    Criterion,
    LayerContext,
    check_choice,
    criterion_class,
)
from .greedy import DEFAULT_CHANNELS_PER_PASS, DEFAULT_GREEDY
from .layers import searched_layers, slim
from .pruning.features import collect_feature_stats
from .pruning.moments import LayerMoments, collect_moments
from .pruning.objective import (
    LOCAL_LR,
    LOCAL_MOMENTUM,
    LayerObjective,
    accumulate_gradient,
    batch_gradients,
    local_sgd,
    teacher_features,
    zero_unkept,
)
from .pruning.scores import DEFAULT_SCORE, check_score
from .pruning_data import (
    CropSource,
    FixedBatches,
    PassData,
    PruningData,
    Pyramid,
    as_pruning_data,
)

__all__ = [
    "DEFAULT_CHANNELS_PER_PASS",
    "DEFAULT_FEATURE_SAMPLES",
    "DEFAULT_GREEDY",
    "DEFAULT_SCORE",
    "LOCAL_LR",
    "LOCAL_MOMENTUM",
    "CropSource",
    "FixedBatches",
    "LayerMoments",
    "LayerObjective",
    "LayerReport",
    "PruneOptions",
    "PruneResult",
    "PruneStats",
    "PruningData",
    "Pyramid",
    "accumulate_gradient",
    "batch_gradients",
    "check_batches",
    "check_channel_config",
    "collect_feature_stats",
    "collect_moments",
    "local_sgd",
    "prune_masked",
    "prune_model",
    "teacher_features",
]

#: Positions sampled per layer for the feature criteria (ThiNet, CP).
DEFAULT_FEATURE_SAMPLES = 4096


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class LayerReport:
    """What pruning did to one searched layer."""

    index: int
    name: str
    width: int
    kept: int
    gradient_passes: int = 0
    local_passes: int = 0
    seconds: float = 0.0
    loss: float | None = None  # reconstruction MSE at the end (data methods)

    def line(self) -> str:
        """One human-readable progress line."""
        text = f"layer {self.index:3d} {self.name:<24} {self.width:4d} -> {self.kept:4d}"
        if self.gradient_passes or self.local_passes:
            text += f"  passes {self.gradient_passes + self.local_passes:4d}"
        if self.loss is not None:
            text += f"  mse {self.loss:.4g}"
        return text + f"  {self.seconds:.1f}s"


@dataclass
class PruneStats:
    """Cost of a pruning run.

    A *pass* is one forward/backward of the network being pruned over all pruning batches:
    ``gradient_passes`` accumulate gradients for scoring, ``local_passes`` are local SGD epochs
    (the greedy's, and ThiNet's after its selection). ``teacher_passes`` are forward passes of
    the original model (truncated at the layer; one per layer with fixed batches, one per draw
    with fresh ones) and ``feature_passes`` the truncated passes of the network being pruned
    that collect statistics (ThiNet's and CP's inputs, ThiNet's own targets, the greedy's
    moments). ``data_draws`` counts the sets of batches the passes read: 1 for fixed batches
    (0 without data), one per pass that drew new ones for fresh data.
    """

    method: str
    gradient_passes: int = 0
    local_passes: int = 0
    teacher_passes: int = 0
    feature_passes: int = 0
    data_draws: int = 0
    seconds: float = 0.0
    layers: list[LayerReport] = field(default_factory=list)

    @property
    def passes(self) -> int:
        """Full passes of the network being pruned (gradient + local)."""
        return self.gradient_passes + self.local_passes

    def to_dict(self) -> dict:
        """JSON-friendly summary (per-layer reports included)."""
        d = asdict(self)
        d["passes"] = self.passes
        return d


@dataclass
class PruneResult:
    """A pruned model, the kept units of every searched layer, and the cost.

    ``model`` is the slimmed DRN (for :func:`prune_model`) or, for :func:`prune_masked`, the
    full-width model whose removed units have zero consumer slices.
    """

    model: DRN
    keep: list[list[int]]
    stats: PruneStats

    @property
    def channel_config(self) -> list[int]:
        """The widths of the pruned model, official order."""
        return [len(k) for k in self.keep]


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------
def check_channel_config(model: DRN, config: Sequence[int]) -> list[int]:
    """Validate ``config`` against ``model``'s searched layers; ConfigError names the line."""
    layers = searched_layers(model)
    config = [int(c) for c in config]
    if len(config) != len(layers):
        arch = model.arch
        raise ConfigError(
            f"channel configuration has {len(config)} entries, but this x{arch.scale} DRN with "
            f"{arch.n_blocks} RCABs per stage has {len(layers)} searched layers (one line each)"
        )
    for i, (c, layer) in enumerate(zip(config, layers, strict=True)):
        if not 1 <= c <= layer.width:
            raise ConfigError(
                f"channel configuration line {i + 1} ({layer.name}) asks for {c} channels; the "
                f"model has {layer.width} there, so it must be in 1..{layer.width}"
            )
    return config


def check_batches(model: DRN, batches: Sequence[Pyramid]) -> None:
    """Each batch must be a pyramid ``[LR, 2x, ..., HR]`` matching the model's outputs."""
    if not batches:
        raise DualSRError("no pruning data: this method needs at least one batch of images")
    levels = model.phases + 1
    for b, pyramid in enumerate(batches):
        if len(pyramid) != levels:
            raise DualSRError(
                f"pruning batch {b} has {len(pyramid)} pyramid levels; a x{model.scale} model "
                f"needs {levels} (LR, ..., HR)"
            )
        h, w = pyramid[0].shape[-2:]
        for lvl, t in enumerate(pyramid):
            if t.dim() != 4 or t.shape[1] != 3 or tuple(t.shape[-2:]) != (h * 2**lvl, w * 2**lvl):
                raise DualSRError(
                    f"pruning batch {b}, level {lvl}: expected N x 3 x {h * 2**lvl} x "
                    f"{w * 2**lvl}, got {tuple(t.shape)}"
                )


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------------------------------------
# The pruning loop
# ----------------------------------------------------------------------------------------------
def _one_of(choices: Sequence[str]) -> dict[str, Any]:
    """Field metadata: the value must be one of ``choices``."""
    return {"check": lambda value, key: check_choice(key, value, choices)}


def _known_method(method: str | Criterion, key: str) -> None:
    if isinstance(method, str):
        criterion_class(method)  # ConfigError listing the registered names


#: How conversion errors word a bad choice (the wording of :func:`check_choice`).
FIELDS = Style(choice="{key} must be one of: {choices} (got {value!r})")


@dataclass(frozen=True)
class PruneOptions:
    """Everything :func:`prune_model` can be told besides the model, configuration and data.

    The one statement of the pruning options: ``dualsr prune`` has a flag for each field
    (``--`` + the name with dashes, or the field's ``flag``: ``feature_samples`` is
    ``--samples``) and builds them with :meth:`from_args`; a pruned checkpoint records
    :meth:`to_dict`. The options are checked when they are made (ConfigError).

    Attributes:
        method: a name in :data:`dualsr.compression.criteria.CRITERIA`, or a
            :class:`~dualsr.compression.criteria.base.Criterion` instance (then the
            criterion-specific options, ``score`` to ``cp_design``, are not used: its own fields
            are its options). A name's criterion takes its options from the fields of the same
            name.
        gamma: weight of the SR loss against the layer reconstruction MSE (gradient methods).
        dual_weight: lambda, the weight of the dual term inside the SR loss (``drc``; also
            ``thinet``'s local SGD, when dual models are given).
        greedy: how ``drc``/``dcp`` compute gradients. ``"passes"``: the paper's loop, a real
            gradient pass and a real local-SGD epoch per selection step. ``"moments"``: the
            reconstruction term's gradient exactly from per-layer input moments (one pass per
            layer), the SR term's from a real pass every ``refresh`` steps.
        channels_per_pass: units selected per step (``greedy="passes"`` and 1: the paper's loop).
        local_epochs: epochs of local SGD after each selection step (``drc``/``dcp``) or after
            the selection (``thinet``, on the SR loss alone, as the released code); 0 disables
            it.
        local_lr: its learning rate (Nesterov, momentum 0.9).
        refresh: ``"moments"`` only: selection steps between real SR-gradient passes (None: one
            pass at the start of each layer).
        final_epochs: ``"moments"`` only: real local-SGD epochs on the whole loss at the end of
            each layer.
        feature_samples: positions sampled per layer by ``thinet`` and ``cp`` (ThiNet pairs
            each with one random output channel; CP's default design uses all of them).
        seed: seed of the position sampling.
        score: ``drc``/``dcp``: how a unit is scored from its consumer-weight gradient slice
            ``g = grad[:, j]``. ``"official"`` (default, the released code):
            ``sum_o ||g[o]||``; ``"dcp-paper"``: the Frobenius norm ``||g||``
            (:data:`dualsr.compression.pruning.scores.GRADIENT_SCORES`).
        local_bias: ``drc``/``dcp``/``thinet``: the local SGD also updates the consumer's bias
            (default, as the released code does); False keeps the pretrained bias.
        thinet_error: ``thinet``'s greedy removal error, ``"abs"`` (default, the released
            code: ``sum_s |sum_{t in T+j} z[s, t]|``) or ``"squared"`` (the square; ours before).
        thinet_targets: ``thinet``'s targets: ``"pruned"`` (default, the released code: the
            network being pruned's own consumer output, all the layer's units present) or
            ``"original"`` (the original model's consumer output; ours before).
        cp_design: ``cp``'s LASSO design: ``"all"`` (default, the released code: every output
            channel at every sampled position) or ``"sampled"`` (one random output channel per
            position; ours before).
    """

    method: str | Criterion = field(default="drc", metadata={"check": _known_method})
    gamma: float = 1.0
    dual_weight: float = 0.1
    greedy: Literal["moments", "passes"] = DEFAULT_GREEDY
    channels_per_pass: int = DEFAULT_CHANNELS_PER_PASS
    local_epochs: int = 1
    local_lr: float = LOCAL_LR
    refresh: int | None = None
    final_epochs: int = 1
    feature_samples: int = field(default=DEFAULT_FEATURE_SAMPLES, metadata={"flag": "--samples"})
    seed: int = 0
    score: str = field(default=DEFAULT_SCORE, metadata={"check": lambda v, _: check_score(v)})
    local_bias: bool = True
    thinet_error: str = field(default=DEFAULT_THINET_ERROR, metadata=_one_of(THINET_ERRORS))
    thinet_targets: str = field(default=DEFAULT_THINET_TARGETS, metadata=_one_of(THINET_TARGETS))
    cp_design: str = field(default=DEFAULT_CP_DESIGN, metadata=_one_of(CP_DESIGNS))

    def __post_init__(self) -> None:
        self.check()

    @classmethod
    def from_args(cls, args: Any) -> PruneOptions:
        """The options of a ``dualsr prune`` command line (its ``argparse`` namespace), each
        from its flag; ConfigError names the flag (``--thinet-error must be one of: ...``)."""
        return from_args(cls, args, _FLAGS)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-serialisable), in field order; a criterion instance by its name."""
        d = to_dict(self)
        if isinstance(self.method, Criterion):
            d["method"] = self.method.name
        return d

    def check(self) -> None:
        """ConfigError for an out-of-range value (done when the options are made)."""
        check_fields(self, FIELDS)
        if self.channels_per_pass < 1:
            raise ConfigError(f"channels per pass must be >= 1, got {self.channels_per_pass}")
        if self.refresh is not None and self.refresh < 1:
            raise ConfigError(f"refresh must be >= 1 selection steps, got {self.refresh}")
        if min(self.local_epochs, self.final_epochs) < 0:
            raise ConfigError("local and final epochs must be >= 0")
        if self.gamma < 0 or self.dual_weight < 0 or self.local_lr < 0:
            raise ConfigError("gamma, the dual weight and the local lr must be >= 0")
        if self.feature_samples < 1:
            raise ConfigError(f"feature samples must be >= 1, got {self.feature_samples}")

    def criterion(self) -> Criterion:
        """The criterion ``method`` names (with its options from these fields), or ``method``
        itself when it is a criterion."""
        if isinstance(self.method, Criterion):
            return self.method
        return criterion_class(self.method).from_options(self)


_FLAG_NAMES = {f.name: flag_of(f) for f in fields(PruneOptions)}
#: Errors of :meth:`PruneOptions.from_args` name the command-line flags.
_FLAGS = replace(FIELDS, name=lambda key: _FLAG_NAMES.get(key, key))


def prune_masked(
    model: DRN,
    duals: DualModels | None,
    channel_config: Sequence[int],
    batches: Sequence[Pyramid] | PruningData | None,
    options: PruneOptions | None = None,
    progress: Callable[[LayerReport], None] | None = None,
) -> PruneResult:
    """Like :func:`prune_model`, but return the full-width model with removed units zeroed.

    ``result.model`` computes exactly what the slimmed model computes; :func:`prune_model`
    slims it.
    """
    opts = options or PruneOptions()  # checked when it was made
    criterion = opts.criterion()
    config = check_channel_config(model, channel_config)
    if criterion.dual and duals is None and opts.gamma > 0:
        raise DualSRError(
            f"method {criterion.name!r} needs the dual models for its dual regression term, and "
            "none were given: use a checkpoint that includes them, or method 'dcp'"
        )
    device = _device(model)
    data: PassData | None = None
    if criterion.needs_data:
        pruning_data = as_pruning_data([] if batches is None else batches)
        data = PassData(pruning_data, device, check=partial(check_batches, model))
        data.load_first()  # errors in the data now, not after the first layers

    start = time.perf_counter()
    stats = PruneStats(criterion.name)
    work = copy.deepcopy(model).eval().requires_grad_(False)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    dual_copy = None
    if duals is not None and criterion.uses_duals(opts):
        dual_copy = copy.deepcopy(duals).to(device).eval().requires_grad_(False)
    work_layers, teacher_layers = searched_layers(work), searched_layers(teacher)
    generator = torch.Generator().manual_seed(opts.seed)
    keep: list[list[int]] = []

    with torch.enable_grad():
        for layer, tlayer, n_keep in zip(work_layers, teacher_layers, config, strict=True):
            t0 = time.perf_counter()
            report = LayerReport(layer.index, layer.name, layer.width, n_keep)
            if n_keep == layer.width:
                kept = list(range(layer.width))
            else:
                context = LayerContext(
                    work, layer, teacher, tlayer, dual_copy, data, opts, generator
                )
                kept = criterion.select(context, n_keep)
                report.gradient_passes = context.gradient_passes
                report.local_passes = context.local_passes
                report.loss = context.loss
                stats.feature_passes += context.feature_passes + context.own_target_passes
                stats.teacher_passes += context.teacher_passes
                del context
            zero_unkept(layer.consumer, kept)
            keep.append(kept)
            stats.gradient_passes += report.gradient_passes
            stats.local_passes += report.local_passes
            report.seconds = time.perf_counter() - t0
            stats.layers.append(report)
            if progress is not None:
                progress(report)
    stats.data_draws = data.draws if data is not None else 0
    stats.seconds = time.perf_counter() - start
    return PruneResult(work, keep, stats)


def prune_model(
    model: DRN,
    duals: DualModels | None,
    channel_config: Sequence[int],
    batches: Sequence[Pyramid] | PruningData | None,
    options: PruneOptions | None = None,
    *,
    progress: Callable[[LayerReport], None] | None = None,
    **changes: Any,
) -> PruneResult:
    """Prune ``model`` to ``channel_config`` and return the slimmed, width-configured DRN.

    Args:
        model: the trained DRN (left unchanged).
        duals: its dual models (needed by ``drc`` when ``gamma > 0``; ignored by other methods).
        channel_config: the width of every searched layer, official order (e.g. a searched
            configuration file read with :func:`dualsr.read_channel_config`).
        batches: pruning data: a sequence of pyramids, each a list of ``log2(scale) + 1``
            float tensors ``N x 3 x h x w`` in [0, 255] (level 0 = LR input, last = HR), re-read
            by every pass; or a :class:`~dualsr.compression.pruning_data.PruningData` giving
            each pass its pyramids, e.g. a :class:`~dualsr.compression.pruning_data.CropSource`
            with fresh random crops for every pass (see the module docstring for which steps
            draw). Not needed by ``l1`` and ``uniform``.
        options: how to prune (:class:`PruneOptions`, whose fields are documented there;
            default: its defaults).
        progress: called with a :class:`LayerReport` after each layer.
        changes: fields of :class:`PruneOptions` replacing those of ``options``, e.g.
            ``method="l1"`` or ``greedy="moments"``.

    Returns:
        PruneResult with the slimmed model (same device and mode as ``model``), the kept units of
        every layer and the cost (passes, seconds).
    """
    options = replace(options or PruneOptions(), **changes)
    result = prune_masked(model, duals, channel_config, batches, options, progress)
    pruned = slim(result.model, result.keep).requires_grad_(True).train(model.training)
    return PruneResult(pruned, result.keep, result.stats)
