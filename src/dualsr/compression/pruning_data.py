"""Where the pruning loop's passes get their data: fixed batches, or fresh random crops per pass.

The released DRC code iterates a training DataLoader of random crops in every pass over the
pruning data (each gradient pass, each local-SGD epoch, each feature collection), so every pass
sees new crops, and the original model's outputs (the targets of the reconstruction term) are
computed on the fly for them. A :class:`PruningData` says which batches pass ``k`` sees:

* :class:`FixedBatches` (what a plain list of pyramids becomes, :func:`as_pruning_data`): the same
  batches for every pass; the targets are then computed once per layer.
* :class:`CropSource`: aligned random crops of a :class:`~dualsr.data.dataset.PatchDataset`'s
  images (decoded once, kept by its store), cut anew for every pass when ``fresh`` (a pure
  function of ``(seed, k)``, so a run is reproducible); ``fresh=False`` gives pass 0's crops
  every time, which are exactly ``dualsr prune --crops fixed``'s batches.

Which loop steps draw a new pass is the driver's business
(:func:`dualsr.compression.prune.prune_masked`); the greedy's building blocks
(:mod:`dualsr.compression.greedy`) read a layer's passes through a :class:`LayerFeed`, which
hands out each pass's batches and the targets for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from ..data.dataset import PatchDataset, SampleKey

Pyramid = Sequence[torch.Tensor]

#: The pruning data choices of ``dualsr prune --crops``.
CROPS = ("fresh", "fixed")
#: The CLI's default: new random crops for every pass, as the released code's DataLoader.
DEFAULT_CROPS = "fresh"


@runtime_checkable
class PruningData(Protocol):
    """A source of pruning batches: the pyramids ``[LR, ..., HR]`` that pass ``k`` reads.

    ``fresh`` is False when every pass gets the same batches (the loop then loads them once and
    computes the targets once per layer); ``batches_for_pass(k)`` must be deterministic.
    """

    @property
    def fresh(self) -> bool: ...

    def batches_for_pass(self, k: int) -> Sequence[Pyramid]: ...


class FixedBatches:
    """The same batches for every pass (a plain sequence of pyramids)."""

    fresh = False

    def __init__(self, batches: Sequence[Pyramid]) -> None:
        self.batches = list(batches)

    def batches_for_pass(self, k: int) -> Sequence[Pyramid]:
        """``batches``, whatever ``k``."""
        return self.batches


class CropSource:
    """``images`` aligned random crops of a patch dataset's images, in batches of ``batch_size``.

    The images are the dataset's, taken in turn (repeated when there are fewer than
    ``images``); the crops are not augmented. With ``fresh``, pass ``k`` cuts new crops (the
    dataset's sample keys ``(image, seed, k * rounds + round, position)``, ``rounds`` the times
    each image recurs in a pass): different passes see different crops, and a pass's crops
    depend only on ``(seed, k)``. Without it every pass gets pass 0's crops (cut once); pass 0 is
    the same either way. Batches are float32 in [0, 255] on the CPU.
    """

    def __init__(
        self,
        dataset: PatchDataset,
        images: int,
        batch_size: int,
        seed: int = 0,
        fresh: bool = True,
    ) -> None:
        if images < 1 or batch_size < 1:
            raise ValueError("images and batch_size must be >= 1")
        if len(dataset) < 1:
            raise ValueError("the patch dataset has no images")
        self.dataset = dataset
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.fresh = fresh
        self._fixed: list[list[torch.Tensor]] | None = None

    @property
    def num_batches(self) -> int:
        """Batches per pass."""
        return -(-self.images // self.batch_size)

    def keys(self, k: int) -> list[SampleKey]:
        """The dataset's sample keys of pass ``k`` (pass 0's for every ``k`` when not fresh)."""
        n = len(self.dataset)
        rounds = -(-self.images // n)
        base = k * rounds if self.fresh else 0
        return [(i % n, self.seed, base + i // n, i) for i in range(self.images)]

    def batches_for_pass(self, k: int) -> list[list[torch.Tensor]]:
        """The pyramids of pass ``k``: ``num_batches`` lists of ``N x 3 x h x w`` tensors."""
        if not self.fresh and self._fixed is not None:
            return self._fixed
        from ..data.dataset import collate_pyramid

        keys = self.keys(k)
        batches = []
        for start in range(0, self.images, self.batch_size):
            batch = collate_pyramid(
                [self.dataset[key] for key in keys[start : start + self.batch_size]]
            )
            batches.append([t.float() for t in batch])
        if not self.fresh:
            self._fixed = batches
        return batches


def as_pruning_data(batches: Sequence[Pyramid] | PruningData) -> PruningData:
    """``batches`` itself when it is a :class:`PruningData`, else :class:`FixedBatches` of it."""
    if isinstance(batches, PruningData):
        return batches
    return FixedBatches(batches)


# ----------------------------------------------------------------------------------------------
# A layer's passes, as the greedy reads them
# ----------------------------------------------------------------------------------------------
Targets = Sequence[torch.Tensor | None]


@runtime_checkable
class LayerFeed(Protocol):
    """The data of one layer's passes: ``next_pass()`` returns the batches the next pass reads
    and, for each, the original consumer output (None where the pass needs no target)."""

    def next_pass(self) -> tuple[Sequence[Pyramid], Targets]: ...


class FixedFeed:
    """The same batches and targets for every pass."""

    def __init__(self, batches: Sequence[Pyramid], targets: Targets | None = None) -> None:
        self.batches = batches
        self.targets: Targets = [None] * len(batches) if targets is None else targets

    def next_pass(self) -> tuple[Sequence[Pyramid], Targets]:
        """``(batches, targets)``."""
        return self.batches, self.targets


def as_feed(batches: Sequence[Pyramid] | LayerFeed, targets: Targets | None = None) -> LayerFeed:
    """``batches`` itself when it is a :class:`LayerFeed` (then ``targets`` must be None), else a
    :class:`FixedFeed` of ``batches`` and ``targets``."""
    if isinstance(batches, LayerFeed):
        if targets is not None:
            raise ValueError("give the targets through the feed, not beside it")
        return batches
    return FixedFeed(batches, targets)


class PassData:
    """The driver's view of a :class:`PruningData`: numbered draws, checked, on ``device``.

    :meth:`draw` returns the batches of the next pass and their draw number: a new draw for
    every call when the source is fresh, the same one (number 0, loaded once) otherwise. The
    first draw can be loaded ahead (:meth:`load_first`, to check the data early) and is then the
    first one :meth:`draw` returns.
    """

    def __init__(
        self,
        source: PruningData,
        device: torch.device,
        check: Callable[[Sequence[Pyramid]], None] | None = None,
    ) -> None:
        self.source = source
        self.device = device
        self.check = check
        self.draws = 0  # batch sets loaded so far
        self._batches: list[list[torch.Tensor]] | None = None
        self._used = False

    def load_first(self) -> None:
        """Load (and check) the first draw now."""
        if self._batches is None:
            self._load()

    def _load(self) -> None:
        batches = self.source.batches_for_pass(self.draws)
        if self.check is not None:
            self.check(batches)
        self._batches = [[t.to(self.device, torch.float32) for t in p] for p in batches]
        self._used = False
        self.draws += 1

    def draw(self) -> tuple[int, list[list[torch.Tensor]]]:
        """``(draw number, batches)`` of the next pass."""
        if self._batches is None or (self.source.fresh and self._used):
            self._load()
        self._used = True
        assert self._batches is not None
        return self.draws - 1, self._batches


class LayerData:
    """A :class:`LayerFeed` over :class:`PassData` for one layer.

    ``targets(batches)`` computes the targets of a draw (e.g. a truncated pass of the original
    model, :func:`~dualsr.compression.prune.teacher_features`); they are computed once per draw
    (so once per layer for fixed batches) and counted in ``target_passes``. With ``targets``
    None the passes get no targets (SR-only objectives).
    """

    def __init__(
        self,
        data: PassData,
        targets: Callable[[Sequence[Pyramid]], list[torch.Tensor]] | None,
    ) -> None:
        self.data = data
        self.targets = targets
        self.target_passes = 0
        self._draw: int | None = None
        self._targets: list[torch.Tensor] | None = None

    def next_pass(self) -> tuple[Sequence[Pyramid], Targets]:
        """The next pass's batches and their targets."""
        number, batches = self.data.draw()
        if self.targets is None:
            return batches, [None] * len(batches)
        if number != self._draw or self._targets is None:
            self._targets = None  # free the previous draw's targets first
            self._targets = self.targets(batches)
            self._draw = number
            self.target_passes += 1
        return batches, self._targets
