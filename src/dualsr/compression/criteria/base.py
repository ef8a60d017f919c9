"""The criterion interface: what the pruning loop calls to choose one layer's units.

A criterion is a dataclass subclass of :class:`Criterion`: its options are its fields, and the
pruning loop (:func:`dualsr.compression.prune.prune_masked`) calls one method,
:meth:`Criterion.select`, with a :class:`LayerContext` (the network being pruned, the layer, the
original model, the pruning data and settings) and the number of units to keep. What differs
between criteria and matters to the loop is a class attribute or a method, never the name:
:attr:`~Criterion.needs` (``weights``: no pruning data is loaded), :attr:`~Criterion.dual` (the
loss has the dual regression term: the dual models are required while ``gamma > 0``),
:meth:`~Criterion.uses_duals` (the loop hands the dual models over) and
:attr:`~Criterion.configure` (a criterion that makes its own configuration from a rate).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import ClassVar, Literal, Protocol

import torch

from ...errors import ConfigError
from ...models.drn import DRN, DualModels
from ..greedy import GreedyOptions
from ..layers import SearchedLayer
from ..pruning.objective import teacher_features
from ..pruning_data import LayerData, PassData

Needs = Literal["weights", "gradients", "features"]


def check_choice(option: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else ConfigError naming ``option``."""
    if value not in choices:
        raise ConfigError(f"{option} must be one of: {', '.join(choices)} (got {value!r})")
    return value


class PruneSettings(GreedyOptions, Protocol):
    """The loop's settings a criterion may read
    (:class:`~dualsr.compression.prune.PruneOptions` has them)."""

    @property
    def feature_samples(self) -> int: ...


@dataclass
class LayerContext:
    """Everything a criterion may use to choose the units of one searched layer.

    ``model`` is the network being pruned (earlier layers already pruned, later ones full) and
    ``layer`` its searched layer; ``teacher`` / ``teacher_layer`` the original model and its
    layer. ``duals`` are the dual models (on the device, or None when the criterion does not use
    them, :meth:`Criterion.uses_duals`); ``data`` the pruning data (None for criteria that need
    none); ``generator`` the seeded generator of any sampling. A criterion records what it cost
    in the counters (full passes: ``gradient_passes``, ``local_passes``; truncated ones of the
    network being pruned: ``feature_passes``) and its final reconstruction MSE in ``loss``;
    target passes of the feeds from :meth:`feed` are counted by the context itself.
    """

    model: DRN
    layer: SearchedLayer
    teacher: DRN
    teacher_layer: SearchedLayer
    duals: DualModels | None
    data: PassData | None
    options: PruneSettings
    generator: torch.Generator
    gradient_passes: int = 0
    local_passes: int = 0
    feature_passes: int = 0
    loss: float | None = None
    _feeds: list[tuple[bool, LayerData]] = field(default_factory=list, repr=False)

    @property
    def pretrained(self) -> torch.Tensor:
        """The original weight of the layer's consumer conv."""
        return self.teacher_layer.consumer.weight.detach()

    def feed(self, targets: Literal["original", "pruned"] | None = "original") -> LayerData:
        """The layer's passes over the pruning data, with targets for each draw.

        ``original``: the original model's consumer output of the layer; ``pruned``: the network
        being pruned's own (all the layer's units still present); None: no targets (SR-only
        objectives). Targets are computed when a pass first reads a draw.
        """
        if self.data is None:
            raise ValueError(
                f"{self.layer.name}: no pruning data was loaded; a criterion that reads it must "
                "not declare needs='weights'"
            )
        if targets is None:
            return LayerData(self.data, None)
        own = targets == "pruned"
        source = self.model if own else self.teacher
        layer = self.layer if own else self.teacher_layer
        feed = LayerData(self.data, partial(teacher_features, source, layer))
        self._feeds.append((own, feed))
        return feed

    @property
    def teacher_passes(self) -> int:
        """Truncated passes of the original model (targets of ``original`` feeds)."""
        return sum(feed.target_passes for own, feed in self._feeds if not own)

    @property
    def own_target_passes(self) -> int:
        """Truncated passes of the network being pruned for the targets of ``pruned`` feeds."""
        return sum(feed.target_passes for own, feed in self._feeds if own)


@dataclass
class Criterion(ABC):
    """A pruning criterion: chooses which units of a searched layer survive.

    Subclass it as a ``@dataclass`` (options are fields, validated in ``__post_init__``), set
    the class attributes and implement :meth:`select`; register the class with
    :func:`~dualsr.compression.criteria.register_criterion` to make it a ``--method``.

    Class attributes:
        name: the ``--method`` value (lower case).
        description: one line for ``--help`` and the docs.
        needs: ``weights`` (no pruning data), ``gradients`` or ``features`` (pruning data).
        dual: the criterion's loss has the dual regression term (then the dual models are
            required while ``gamma > 0``).
        configure: widths, rate -> channel config, for a criterion that makes its own
            configuration (``uniform``); None otherwise.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    needs: ClassVar[Needs]
    dual: ClassVar[bool] = False
    configure: ClassVar[Callable[[Sequence[int], float], list[int]] | None] = None

    @property
    def needs_data(self) -> bool:
        """Whether :meth:`select` reads pruning data."""
        return self.needs != "weights"

    def uses_duals(self, options: PruneSettings) -> bool:
        """Whether :meth:`select` uses the dual models under ``options`` (default:
        :attr:`dual`)."""
        return self.dual

    @classmethod
    def from_options(cls, options: object) -> Criterion:
        """The criterion with each option (field) taken from the attribute of ``options`` of
        the same name where it has one (e.g. ``PruneOptions.score``), the default otherwise."""
        kwargs = {f.name: getattr(options, f.name) for f in fields(cls) if hasattr(options, f.name)}
        return cls(**kwargs)

    @abstractmethod
    def select(self, context: LayerContext, n_keep: int) -> list[int]:
        """The ``n_keep`` kept units of ``context.layer`` (ascending).

        May change the layer's consumer conv of ``context.model`` (re-fitted or tuned kept
        slices, bias); the loop zeroes the removed slices afterwards.
        """
