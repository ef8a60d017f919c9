"""Stage 1 of dual regression compression (DRC): channel number search.

Guo et al., "Towards Lightweight Super-Resolution with Dual Regression Learning", TPAMI 2024.

Every searched layer (:func:`dualsr.compression.layers.searched_layers`, official order) gets a
small set of candidate widths (:func:`candidate_widths`) and one logit vector ``alpha``. Its units
are ranked by the L1 norm of the consumer convolution's input slice (the weights that read each
unit, summed over output channels and kernel taps; for the upsampler the 1x1 conv's input
channel ``j``, i.e. PixelShuffle group ``j``), and unit ``j`` is multiplied by the soft mask

    m_j = sum_k softmax(alpha)_k * [rank(j) < c_k]

(:func:`soft_width_mask`), applied through :class:`~dualsr.compression.layers.ChannelMasks`.
The ranking is recomputed from the current weights at the start of every search step and held
fixed within the step.

The search is bilevel, as in DARTS (Liu et al., ICLR 2019): the network weights (primal and
duals) minimise the dual regression loss on one half of the training images, the logits the same
loss on the other half. The logit gradient is either the second-order ("unrolled") one,

    grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+, alpha)
                                         - grad_alpha L_train(w-, alpha)) / (2 eps)
    w' = w - xi * grad_w L_train(w, alpha),  w+- = w +- eps * grad_w' L_val(w', alpha),
    eps = 0.01 / ||grad_w' L_val(w', alpha)||,

or the first-order ``grad_alpha L_val(w, alpha)`` (:func:`alpha_gradients`). The defaults
follow the released code (``DRN/channel_search/__init__.py``, ``DRN/utility.py``,
``DRN/option.py``): the logits' Adam has betas (0.9, 0.999) and its learning rate is
cosine-annealed like the weights' (to 1e-7); the weight step clips the gradient norm at 5.

The final configuration is, with ``select="argmax"`` (the paper), the most likely candidate of
every layer; with ``select="budget"`` and a :class:`Budget`, the expected widths scaled and
rounded to meet it (:func:`dualsr.compression.budget.fit_to_budget`). After every epoch the
argmax configuration can be written to a folder (``output``), and with validation images
(``val_folder``) the epoch of the best PSNR is kept, as in the release
(:func:`validation_psnr`).

:func:`search_channels` works on any iterables of pyramid batches; :func:`make_search_data` builds
them from image folders for ``dualsr search``.
:meth:`SearchResult.save` writes the result files; the options of a run are
:class:`dualsr.compression.search_config.SearchOptions`. With ``checkpoints``
(:class:`dualsr.compression.search_state.SearchCheckpoints`) the search saves its state
periodically, on SIGINT/SIGTERM (then stops) and after an error; ``resume`` continues from such a
state with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..errors import CheckpointError, ConfigError, DualSRError
from ..losses import DualRegressionLoss, LossTerms
from ..models.drn import DRN, DualModels
from .budget import (
    DEFAULT_INPUT_HW,
    Budget,
    BudgetFit,
    CostModel,
    check_budget,
    config_cost,
    fit_to_budget,
)
from .layers import ChannelMasks, SearchedLayer, searched_layers

if TYPE_CHECKING:
    from .search_state import SearchCheckpoints, SearchState

log = logging.getLogger("dualsr.search")
PAPER_RATIOS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
ALPHA_INIT_STD = 1e-3  # logits start near uniform: 1e-3 * N(0, 1), as in the release
ALPHA_BETAS = (0.9, 0.999)  # the release's Adam of the logits (DRN/option.py beta1, beta2)
DARTS_ALPHA_BETAS = (0.5, 0.999)  # the DARTS convention (this package's earlier default)
ALPHA_SCHEDULES = ("cosine", "constant")  # the logits' learning rate
LR_MIN = 1e-7  # the release's eta_min, for the weights and the logits
GRAD_CLIP = 5.0  # the release's w_grad_clip: max gradient norm of the weight step
SELECTIONS = ("argmax", "budget")  # how the final configuration is chosen
EPOCH_DIR = "epochs"  # OUT/epochs/channel_config-epoch-0001.txt: the argmax after every epoch
BEST_CONFIG = "best_channel_config.txt"  # the argmax of the epoch with the best validation PSNR
EPS_SCALE = 0.01  # eps = EPS_SCALE / ||grad_w' L_val||, the DARTS choice

Batch = Sequence[torch.Tensor]  # a pyramid [LR, 2x, ..., HR], each N x 3 x h x w in [0, 255]
Objective = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], Any], torch.Tensor]
LossFn = Callable[..., "LossTerms | torch.Tensor"]


# ----------------------------------------------------------------------------------------------
# Candidates, ranking and soft masks
# ----------------------------------------------------------------------------------------------
def round_to_multiple(value: int, multiple: int) -> int:
    """The nearest multiple of ``multiple``; an exact tie rounds down (as the released code)."""
    remainder = value % multiple
    return value - remainder + multiple if 2 * remainder > multiple else value - remainder


def check_rate(rate: float) -> float:
    """``rate`` as a float in (0, 1); ConfigError otherwise."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ConfigError(f"the pruning rate must be a number in (0, 1), got {rate!r}") from None
    if not 0.0 < r < 1.0:
        raise ConfigError(
            f"the pruning rate must be in (0, 1) (the fraction of channels to remove, e.g. 0.3 "
            f"for DRN-S30), got {rate}"
        )
    return r


def candidate_widths(
    width: int, rate: float, ratios: Sequence[float] = PAPER_RATIOS, multiple: int = 4
) -> list[int]:
    """The candidate widths of a layer of full width ``width`` at pruning rate ``rate``.

    ``int(width * (1 - rate) * k)`` for each ``k`` in ``ratios``, rounded to the nearest multiple
    of ``multiple`` (ties down) and clipped to ``[multiple, width]`` (PAPER_FACTS.md). Duplicates
    are kept, so every layer has ``len(ratios)`` candidates.
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


# ----------------------------------------------------------------------------------------------
# Bilevel gradients (generic: any objective(weights, alphas, batch) -> scalar)
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# The DRN search objective
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """What :func:`search_channels` found.

    ``channel_config`` is the final configuration (official order): ``argmax_config`` with
    ``select="argmax"``, the budget fit with ``select="budget"``. ``best`` (with validation
    images) holds the epoch, step, validation PSNR and argmax configuration of the best epoch.
    ``params``/``macs`` are its exact costs (MACs at LR input ``input_hw``). ``model``/``duals``
    hold the weights trained during the search (full width; not serialised by :meth:`to_dict`).
    ``stop_reason`` (``"SIGINT"``, ``"SIGTERM"``, ``"callback"``) says the search stopped early,
    after ``len(history)`` of ``steps`` steps (the configuration is then that of the logits so
    far); ``checkpoint`` is the newest checkpoint the call wrote.
    """

    channel_config: list[int]
    argmax_config: list[int]
    params: int
    macs: int
    input_hw: tuple[int, int]
    full_params: int
    full_macs: int
    target_rate: float
    order: str
    steps: int
    layer_names: list[str]
    candidates: list[list[int]]
    alphas: list[list[float]]
    probabilities: list[list[float]]
    expected_widths: list[float]
    history: list[dict] = field(default_factory=list)
    budget: Budget | None = None
    budget_fit: BudgetFit | None = None
    seconds: float = 0.0
    model: DRN | None = field(default=None, repr=False)
    duals: DualModels | None = field(default=None, repr=False)
    stop_reason: str | None = None
    checkpoint: Path | None = None
    select: str = "argmax"
    best: dict | None = None

    @property
    def finished(self) -> bool:
        """True when every step ran (not stopped early)."""
        return self.stop_reason is None

    def to_dict(self) -> dict:
        """A JSON-serialisable summary (everything but the weights)."""
        return {
            "channel_config": self.channel_config,
            "argmax_config": self.argmax_config,
            "params": self.params,
            "macs": self.macs,
            "input_size": list(self.input_hw),
            "full_params": self.full_params,
            "full_macs": self.full_macs,
            "params_removed": 1 - self.params / self.full_params,
            "macs_removed": 1 - self.macs / self.full_macs,
            "target_rate": self.target_rate,
            "order": self.order,
            "steps": self.steps,
            "select": self.select,
            "best": self.best,
            "budget": self.budget.to_dict() if self.budget else None,
            "budget_fit": (
                {
                    "cost": self.budget_fit.cost,
                    "relative_error": self.budget_fit.relative_error,
                    "scale": self.budget_fit.scale,
                }
                if self.budget_fit
                else None
            ),
            "layers": [
                {
                    "name": name,
                    "candidates": cands,
                    "alpha": alpha,
                    "softmax": probs,
                    "expected_width": exp,
                    "argmax_width": am,
                    "width": width,
                }
                for name, cands, alpha, probs, exp, am, width in zip(
                    self.layer_names,
                    self.candidates,
                    self.alphas,
                    self.probabilities,
                    self.expected_widths,
                    self.argmax_config,
                    self.channel_config,
                    strict=True,
                )
            ],
            "history": self.history,
            "seconds": self.seconds,
        }

    def save(
        self,
        out_dir: str | Path,
        report: Mapping[str, Any] | None = None,
        weights: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> SearchFiles:
        """Write the result into the folder ``out_dir`` (atomically, file by file).

        * ``channel_config.txt``: the configuration, one integer a line (the official format,
          :func:`dualsr.read_channel_config`);
        * ``best_channel_config.txt``, when the search validated (``best``): the argmax
          configuration of the epoch with the best validation PSNR;
        * ``searched.safetensors``, with ``weights`` (and when the result holds them): the
          full-width weights and duals trained during the search, with ``metadata`` after
          ``stage: search``;
        * ``search.json``: ``report`` (e.g. the command, options and data of the run), then
          :meth:`to_dict` (configuration, parameters, MACs, per-layer logits, history), then
          ``files``, the paths written.
        """
        from ..checkpoint import save_model
        from ..fileio import atomic_write_bytes

        out = Path(out_dir)
        config_path = atomic_write_bytes(
            out / "channel_config.txt", format_channel_config(self.channel_config).encode()
        )
        best_path = None
        if self.best is not None:
            best_path = atomic_write_bytes(
                out / BEST_CONFIG, format_channel_config(self.best["channel_config"]).encode()
            )
        weights_path = None
        if weights and self.model is not None:
            weights_path = save_model(
                out / "searched.safetensors",
                self.model,
                self.duals,
                metadata={"stage": "search", **(metadata or {})},
            )
        doc = {
            **(report or {}),
            **self.to_dict(),
            "files": {
                "channel_config": str(config_path),
                "best_channel_config": str(best_path) if best_path else None,
                "searched_weights": str(weights_path) if weights_path else None,
            },
        }
        report_path = atomic_write_bytes(out / "search.json", json.dumps(doc, indent=2).encode())
        return SearchFiles(config_path, report_path, weights_path)


@dataclass
class SearchFiles:
    """The paths :meth:`SearchResult.save` wrote (``weights`` None when not written)."""

    channel_config: Path
    report: Path
    weights: Path | None = None


def _cycle(batches: Iterable, name: str, start: int = 0) -> Iterator:
    """Iterate ``batches`` forever, restarting it when exhausted.

    A sequence (list, tuple) starts at position ``start`` modulo its length (where a run that
    did ``start`` steps is); any other iterable must itself begin there.
    """
    if start and isinstance(batches, Sequence) and len(batches):
        yield from batches[start % len(batches) :]
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ConfigError(f"the {name} batches are empty (or a one-shot iterator ran out)")


def _to_device(batch: Batch, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    return [t.to(device=device, dtype=dtype, non_blocking=True) for t in batch]


def search_channels(
    model: DRN,
    duals: DualModels | None,
    train_batches: Iterable[Batch],
    val_batches: Iterable[Batch],
    *,
    target_rate: float,
    ratios: Sequence[float] = PAPER_RATIOS,
    multiple: int = 4,
    order: str = "second",
    steps: int | None = None,
    epochs: float | None = None,
    weight_lr: float = 1e-4,
    weight_lr_min: float = LR_MIN,
    alpha_lr: float = 3e-4,
    alpha_lr_min: float = LR_MIN,
    alpha_schedule: str = "cosine",
    alpha_weight_decay: float = 1e-3,
    alpha_betas: tuple[float, float] = ALPHA_BETAS,
    grad_clip: float | None = GRAD_CLIP,
    xi: float | None = None,
    eps_scale: float = EPS_SCALE,
    select: str = "argmax",
    budget: Budget | None = None,
    input_hw: tuple[int, int] | None = None,
    loss: LossFn | None = None,
    seed: int = 0,
    progress: Callable[[dict], bool | None] | None = None,
    checkpoints: SearchCheckpoints | None = None,
    resume: SearchState | None = None,
    steps_per_epoch: int | None = None,
    output: str | Path | None = None,
    val_folder: str | Path | None = None,
) -> SearchResult:
    """Search the width of every searched layer of ``model`` (DRC stage 1).

    Args:
        model: a trained DRN (full width, or width-configured: its widths are the maxima). It is
            not modified: the search trains a copy, returned as ``result.model``.
        duals: its dual models (None: a fresh :class:`DualModels`, trained along).
        train_batches: pyramids for the weight updates (one half of the images); each batch is
            ``[LR, 2x, ..., HR]``, float ``N x 3 x h x w`` in ``[0, 255]``. Iterated repeatedly.
        val_batches: pyramids for the logit updates (the other half).
        target_rate: pruning rate ``r`` in (0, 1) that sets the candidates.
        ratios, multiple: candidate ratios ``k`` and the width multiple (PAPER_FACTS.md).
        order: ``"second"`` (DARTS unrolled) or ``"first"``.
        steps: number of search steps (one logit update and one weight update each).
        epochs: alternatively, passes over ``train_batches`` (needs ``len(train_batches)``).
        weight_lr, weight_lr_min: Adam learning rate of the weights, cosine-annealed to the min
            over the whole search (stepped every step).
        alpha_lr, alpha_lr_min, alpha_schedule: learning rate of the logits' Adam: ``"cosine"``
            (the release) anneals it like the weights' (same length, to ``alpha_lr_min``);
            ``"constant"`` keeps ``alpha_lr``.
        alpha_weight_decay, alpha_betas: the other Adam settings of the logits (the release:
            1e-3 and (0.9, 0.999); :data:`DARTS_ALPHA_BETAS` is the DARTS choice).
        grad_clip: clip the gradient norm of the weight step (primal and duals together) at
            this value (the release: 5); 0 or None: no clipping.
        xi: virtual step of the second-order gradient (None: the current weight learning rate).
        eps_scale: finite-difference step of the second-order gradient, ``eps_scale / ||v||``.
        select: the final configuration: ``"argmax"`` (the paper: the most likely candidate of
            every layer) or ``"budget"`` (the expected widths fitted to ``budget``). A budget
            with ``"argmax"`` is a ConfigError (it would not be enforced).
        budget: the parameter or MAC target of ``select="budget"``.
        input_hw: LR input size for the reported MACs (default: the budget's, else 96 x 96).
        loss: ``loss(outputs, targets, dual_outputs)`` -> LossTerms or a scalar; default
            :class:`DualRegressionLoss` (lambda 0.1).
        seed: seeds the logit initialisation.
        progress: called after every step with that step's history record; returning True stops
            the search (after a checkpoint, with ``checkpoints``; ``result.stop_reason`` is
            ``"callback"``).
        checkpoints: where and when to save the search state
            (:class:`~dualsr.compression.search_state.SearchCheckpoints`): every ``every`` steps
            or seconds and after the last step; on the first SIGINT/SIGTERM the current step is
            finished, saved, and the search returns with ``stop_reason`` set (a second SIGINT
            raises KeyboardInterrupt at once); after an error the last completed step is saved
            and the error re-raised. None: no checkpoints, signals untouched.
        resume: a saved state (:func:`~dualsr.compression.search_state.load_search_checkpoint`)
            to continue from; ``model`` and ``duals`` are then the checkpoint's, and the other
            arguments must be those of the interrupted run. Batch lists are cycled from the
            saved step; other iterables must begin there (:func:`make_search_data` with
            ``start_step``). The result equals that of an uninterrupted run.
        steps_per_epoch: the steps of an epoch (default: ``len(train_batches)`` when it has a
            length). After every epoch (and after the last step) the argmax configuration is
            written to ``output`` and ``val_folder`` is evaluated; the history record of that
            step gets ``epoch`` (and ``val_psnr``, with ``best: True`` for a new best).
        output: a folder for the per-epoch files: ``epochs/channel_config-epoch-NNNN.txt`` (the
            argmax configuration after epoch N) and, with ``val_folder``,
            ``best_channel_config.txt``; written atomically. None: not written.
        val_folder: HR validation images (the release: Set5). After every epoch the soft-masked
            network is scored on them (:func:`validation_psnr`); the argmax configuration of
            the epoch with the highest PSNR (the later on ties) is ``result.best``.
    """
    start = time.perf_counter()
    rate = check_rate(target_rate)
    if order not in ("first", "second"):
        raise ConfigError(f"order must be 'first' or 'second', got {order!r}")
    if (steps is None) == (epochs is None):
        raise ConfigError("give exactly one of steps or epochs")
    if select not in SELECTIONS:
        raise ConfigError(f"select must be 'argmax' or 'budget', got {select!r}")
    if select == "budget" and budget is None:
        raise ConfigError(
            "select='budget' (--select budget) needs a budget (--budget-params or --budget-macs)"
        )
    if select == "argmax" and budget is not None:
        raise ConfigError(
            "a budget (--budget-params/--budget-macs) is not used by select='argmax' "
            "(--select argmax, the paper's final step); use select='budget' (--select budget) "
            "to fit the configuration to it, or drop the budget"
        )
    if alpha_schedule not in ALPHA_SCHEDULES:
        raise ConfigError(f"alpha_schedule must be 'cosine' or 'constant', got {alpha_schedule!r}")
    if grad_clip is not None and not grad_clip >= 0:
        raise ConfigError(f"grad_clip must be >= 0 (0 or None: no clipping), got {grad_clip}")
    if steps_per_epoch is None:
        with contextlib.suppress(TypeError):
            steps_per_epoch = len(train_batches) or None  # type: ignore[arg-type]
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if steps is None:
        try:
            per_epoch = len(train_batches)  # type: ignore[arg-type]
        except TypeError:
            raise ConfigError("epochs needs train_batches with a length; give steps") from None
        steps = math.ceil(float(epochs) * per_epoch)  # type: ignore[arg-type]
    if steps < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}")
    if budget is not None and budget.kind == "macs":
        input_hw = budget.input_hw
    input_hw = tuple(input_hw or DEFAULT_INPUT_HW)  # type: ignore[assignment]
    # validate the budget against the architecture before spending any time
    if budget is not None:
        cost_model = check_budget(model.arch, budget, multiple, input_hw)  # type: ignore[arg-type]
    else:
        cost_model = CostModel.from_arch(model.arch, input_hw)  # type: ignore[arg-type]

    model = copy.deepcopy(model).train()
    duals = (
        copy.deepcopy(duals) if duals is not None else DualModels(model.scale, model.arch.n_feats)
    )
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    duals = duals.to(device=device, dtype=dtype).train()
    loss_fn = loss if loss is not None else DualRegressionLoss()

    layers = searched_layers(model)
    candidates = [candidate_widths(layer.width, rate, ratios, multiple) for layer in layers]
    val_pairs = load_validation_pairs(val_folder, model.scale) if val_folder is not None else None
    if resume is None:
        gen = torch.Generator().manual_seed(seed)
        alphas = [
            (ALPHA_INIT_STD * torch.randn(len(ratios), generator=gen, dtype=torch.float64))
            .to(device=device, dtype=dtype)
            .requires_grad_(True)
            for _ in layers
        ]
    else:
        _check_resume(resume, steps, len(layers), len(ratios))
        alphas = [
            a.detach().to(device=device, dtype=dtype).clone().requires_grad_(True)
            for a in resume.alphas
        ]
    with SearchObjective(model, duals, candidates, loss_fn) as objective:
        weights = objective.weights
        w_opt = torch.optim.Adam(weights, lr=weight_lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            w_opt, T_max=max(steps, 1), eta_min=weight_lr_min
        )
        a_opt = torch.optim.Adam(
            alphas, lr=alpha_lr, betas=tuple(alpha_betas), weight_decay=alpha_weight_decay
        )
        a_sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(
                a_opt, T_max=max(steps, 1), eta_min=alpha_lr_min
            )
            if alpha_schedule == "cosine"
            else None
        )
        run = _Run(model, duals, alphas, w_opt, a_opt, sched, steps, start, a_sched)
        if resume is not None:
            run.restore(resume)
        train_it = _cycle(train_batches, "train", run.done)
        val_it = _cycle(val_batches, "validation", run.done)

        def one_step(step: int) -> dict:
            tb = _to_device(next(train_it), device, dtype)
            vb = _to_device(next(val_it), device, dtype)
            lr_now = w_opt.param_groups[0]["lr"]
            alpha_lr_now = a_opt.param_groups[0]["lr"]
            objective.rank()
            # architecture step
            g_alpha, val_loss = alpha_gradients(
                objective,
                weights,
                alphas,
                tb,
                vb,
                order=order,
                xi=lr_now if xi is None else xi,
                eps_scale=eps_scale,
            )
            run.backup_alphas()  # from here on, an error rolls the logits back (see _Run)
            a_opt.zero_grad(set_to_none=True)
            for a, g in zip(alphas, g_alpha, strict=True):
                a.grad = g.detach()
            a_opt.step()
            # weight step
            w_opt.zero_grad(set_to_none=True)
            train_loss = objective(weights, [a.detach() for a in alphas], tb)
            train_loss.backward()
            run.updating = True  # no error can be undone from here to the end of the step
            run.backup = None
            record = {
                "step": step,
                "steps": steps,
                "train_loss": float(train_loss.detach()),
                "val_loss": val_loss,
                "weight_lr": lr_now,
                "alpha_lr": alpha_lr_now,
            }
            if grad_clip:
                norm = torch.nn.utils.clip_grad_norm_(weights, grad_clip)
                record["grad_norm"] = float(norm)  # before clipping
            w_opt.step()
            sched.step()
            if a_sched is not None:
                a_sched.step()
            return record

        def end_of_epoch(step: int) -> None:
            if steps_per_epoch is None or (step % steps_per_epoch and step != steps):
                return
            if output is None and val_pairs is None:
                return
            record = run.history[-1]
            record["epoch"] = epoch = math.ceil(step / steps_per_epoch)
            record["argmax_config"] = config = argmax_configuration(alphas, candidates)
            if output is not None:
                write_epoch_config(output, epoch, config)
            if val_pairs is None:
                return
            earlier = [h["val_psnr"] for h in run.history[:-1] if "val_psnr" in h]
            record["val_psnr"] = score = validation_psnr(objective, alphas, val_pairs)
            if not earlier or score >= max(earlier):  # ties: the later epoch, as the release
                record["best"] = True
                if output is not None:
                    from ..fileio import atomic_write_bytes

                    atomic_write_bytes(
                        Path(output) / BEST_CONFIG, format_channel_config(config).encode()
                    )

        stop_reason = _run_steps(run, one_step, progress, checkpoints, end_of_epoch)

    history = run.history
    probs = [F.softmax(a.detach().double(), dim=-1).cpu() for a in alphas]
    argmax = argmax_configuration(alphas, candidates)
    exp_widths = expected_widths(probs, candidates)
    fit = None
    final = argmax
    if select == "budget" and budget is not None:
        fit = fit_to_budget(cost_model, exp_widths, budget, multiple)
        final = fit.channel_config
    params, macs = config_cost(model.arch, final, input_hw)  # type: ignore[arg-type]
    full_params, full_macs = config_cost(model.arch, model.arch.channel_config, input_hw)  # type: ignore[arg-type]
    return SearchResult(
        channel_config=list(final),
        argmax_config=argmax,
        params=params,
        macs=int(macs or 0),
        input_hw=input_hw,  # type: ignore[arg-type]
        full_params=full_params,
        full_macs=int(full_macs or 0),
        target_rate=rate,
        order=order,
        steps=steps,
        layer_names=[layer.name for layer in layers],
        candidates=candidates,
        alphas=[a.detach().double().cpu().tolist() for a in alphas],
        probabilities=[p.tolist() for p in probs],
        expected_widths=exp_widths,
        history=history,
        budget=budget,
        budget_fit=fit,
        seconds=run.seconds(),
        model=model.eval(),
        duals=duals.eval(),
        stop_reason=stop_reason,
        checkpoint=run.checkpoint,
        select=select,
        best=_best_epoch(history),
    )


def argmax_configuration(
    alphas: Sequence[torch.Tensor], candidates: Sequence[Sequence[int]]
) -> list[int]:
    """The most likely candidate of every layer (the first one on ties, as ``torch.max``)."""
    return [
        int(c[int(torch.argmax(a.detach().double().cpu()))])
        for a, c in zip(alphas, candidates, strict=True)
    ]


def write_epoch_config(output: str | Path, epoch: int, config: Sequence[int]) -> Path:
    """Write ``OUT/epochs/channel_config-epoch-NNNN.txt`` atomically (the release writes
    ``channel_configs_{epoch}.txt`` every epoch)."""
    from ..fileio import atomic_write_bytes

    path = Path(output) / EPOCH_DIR / f"channel_config-epoch-{epoch:04d}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, format_channel_config(config).encode())


def load_validation_pairs(folder: str | Path, scale: int) -> list[tuple[Any, Any]]:
    """``(HR, LR)`` uint8 pairs of the images in ``folder`` (the evaluation protocol: HR cropped
    to a multiple of the scale, MATLAB-style bicubic LR). DualSRError for a missing folder, an
    unreadable image or one too small for the release's border of ``scale + 6`` pixels."""
    from ..data.image_io import load_rgb_uint8
    from ..evaluation import benchmark_images, make_pair

    try:
        _, files = benchmark_images(folder)
    except DualSRError as exc:
        raise DualSRError(f"--val {folder}: {exc}") from None
    pairs = []
    border = scale + 6
    for path in files:
        try:
            hr, lr = make_pair(load_rgb_uint8(path), scale)
        except DualSRError as exc:
            raise DualSRError(f"--val: {path}: {exc}") from None
        if min(hr.shape[:2]) <= 2 * border:
            raise DualSRError(
                f"--val: {path} is {hr.shape[1]}x{hr.shape[0]}, too small for the validation "
                f"border of {border} pixels (scale + 6)"
            )
        pairs.append((hr, lr))
    return pairs


@torch.no_grad()
def validation_psnr(
    objective: SearchObjective,
    alphas: Sequence[torch.Tensor],
    pairs: Sequence[tuple[Any, Any]],
) -> float:
    """Mean PSNR of the soft-masked network (the search's network, current weights and logits)
    on ``pairs`` (:func:`load_validation_pairs`), measured as the release's search measures it
    (``DRN/channel_search/__init__.py`` ``validate``, ``utility.calc_psnr`` without
    ``benchmark``): outputs rounded to 8 bits, RGB, ``scale + 6`` border pixels shaved. This is
    not the benchmark PSNR (Y, border ``scale``).
    """
    from ..metrics import psnr

    model = objective.net.model
    param = next(model.parameters())
    objective.rank()  # the current weights' ranking (the next step ranks again)
    objective.masks.masks = objective.soft_masks([a.detach() for a in alphas])
    scores = []
    for hr, lr in pairs:
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].to(device=param.device, dtype=param.dtype)
        sr = model(x)[-1][0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        scores.append(psnr(sr, hr, crop_border=model.scale + 6, y_channel=False))
    return float(sum(scores) / len(scores))


def _best_epoch(history: Sequence[dict]) -> dict | None:
    """The record of the epoch with the best validation PSNR (the later on ties), or None."""
    best = None
    for record in history:
        if "val_psnr" in record and (best is None or record["val_psnr"] >= best["val_psnr"]):
            best = record
    if best is None:
        return None
    return {
        "epoch": best["epoch"],
        "step": best["step"],
        "val_psnr": best["val_psnr"],
        "channel_config": list(best["argmax_config"]),
    }


class _Run:
    """The mutable state of a search: what a checkpoint holds, and how far it is consistent.

    A step first computes the logit gradient (nothing changes), then updates the logits, then
    computes and applies the weight update. An error before the weight update is undone by
    restoring the logits and their optimizer from :attr:`backup`, so the last completed step can
    still be saved; an error during the weight update itself (``updating``) cannot be undone.
    """

    def __init__(
        self,
        model: DRN,
        duals: DualModels,
        alphas: list[torch.Tensor],
        w_opt: torch.optim.Optimizer,
        a_opt: torch.optim.Optimizer,
        sched: torch.optim.lr_scheduler.LRScheduler,
        steps: int,
        start: float,
        a_sched: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        self.model, self.duals, self.alphas = model, duals, alphas
        self.w_opt, self.a_opt, self.sched, self.a_sched = w_opt, a_opt, sched, a_sched
        self.steps = steps
        self.start = start  # perf_counter() at the start of this call
        self.seconds_before = 0.0  # spent before a resume
        self.done = 0  # steps completed
        self.history: list[dict] = []
        self.saved_step: int | None = None  # the step of the newest checkpoint
        self.checkpoint: Path | None = None  # the newest checkpoint written by this call
        self.backup: tuple[list[torch.Tensor], dict] | None = None
        self.updating = False

    def seconds(self) -> float:
        """Search time so far, over every resumed part."""
        return self.seconds_before + time.perf_counter() - self.start

    def restore(self, state: SearchState) -> None:
        """Continue from ``state``: optimizers, schedule, step, history, time and RNG states."""
        from ..training.state import restore_rng

        self.w_opt.load_state_dict(state.optimizers["weights"])
        self.a_opt.load_state_dict(state.optimizers["alphas"])
        self.sched.load_state_dict(state.schedule)
        if (self.a_sched is not None) != bool(state.alpha_schedule):
            saved = "cosine" if state.alpha_schedule else "constant"
            raise ConfigError(
                f"the saved search has a {saved} logit learning rate: resume it with "
                f"alpha_schedule={saved!r} (--alpha-schedule {saved})"
            )
        if self.a_sched is not None:
            self.a_sched.load_state_dict(state.alpha_schedule)
        self.done = self.saved_step = state.step
        self.history = [dict(h) for h in state.history]
        self.seconds_before = state.seconds
        restore_rng(state.rng)

    def state(self) -> SearchState:
        """A snapshot of the state after :attr:`done` steps."""
        from ..training.state import capture_rng
        from .search_state import SearchState

        return SearchState(
            step=self.done,
            steps=self.steps,
            alphas=[a.detach() for a in self.alphas],
            optimizers={"weights": self.w_opt.state_dict(), "alphas": self.a_opt.state_dict()},
            schedule=self.sched.state_dict(),
            alpha_schedule=self.a_sched.state_dict() if self.a_sched is not None else {},
            history=self.history,
            seconds=self.seconds(),
            rng=capture_rng(),
        )

    def save(self, checkpoints: SearchCheckpoints) -> Path:
        """Write a checkpoint of the completed steps."""
        self.checkpoint = checkpoints.save(self.model, self.duals, self.state())
        self.saved_step = self.done
        return self.checkpoint

    def backup_alphas(self) -> None:
        """Remember the logits and their optimizer before they are updated."""
        self.backup = (
            [a.detach().clone() for a in self.alphas],
            copy.deepcopy(self.a_opt.state_dict()),
        )

    def complete(self, record: dict) -> None:
        """Count a finished step."""
        self.history.append(record)
        self.done = record["step"]
        self.backup = None
        self.updating = False

    def roll_back(self) -> bool:
        """Undo a step interrupted before its weight update; False if it cannot be undone."""
        if self.updating:
            return False
        if self.backup is not None:
            values, a_state = self.backup
            with torch.no_grad():
                for a, v in zip(self.alphas, values, strict=True):
                    a.copy_(v)
            self.a_opt.load_state_dict(a_state)
            self.backup = None
        return True


def _run_steps(
    run: _Run,
    one_step: Callable[[int], dict],
    progress: Callable[[dict], bool | None] | None,
    checkpoints: SearchCheckpoints | None,
    after_step: Callable[[int], None] | None = None,
) -> str | None:
    """The steps from ``run.done`` to the end, or to a stop request (its reason is returned).

    ``after_step(step)`` runs after each completed step, before ``progress`` and the checkpoint
    (so what it adds to the step's history record is saved with it)."""
    signals: Any = None
    if checkpoints is not None:
        from ..training.loop import StopSignals

        signals = StopSignals()
    try:
        with signals if signals is not None else contextlib.nullcontext():
            for step in range(run.done + 1, run.steps + 1):
                run.complete(one_step(step))
                if after_step is not None:
                    after_step(step)
                wants_stop = progress is not None and bool(progress(run.history[-1]))
                received = signals.received if signals is not None else None
                reason = received or ("callback" if wants_stop else None)
                if step == run.steps:  # a stop request after the last step: the search is done
                    reason = None
                if checkpoints is not None and (reason or checkpoints.due(step, run.steps)):
                    run.save(checkpoints)
                if reason:
                    if checkpoints is not None:
                        log.warning(
                            "stopped at step %d of %d (%s): saved %s; continue with: %s",
                            run.done,
                            run.steps,
                            reason,
                            run.checkpoint,
                            checkpoints.resume_command,
                        )
                    return reason
    except BaseException as exc:
        if checkpoints is not None:
            _save_after_error(run, checkpoints, exc)
        raise
    return None


def _save_after_error(run: _Run, checkpoints: SearchCheckpoints, exc: BaseException) -> None:
    """After an error mid-search, save the steps completed since the last checkpoint."""
    what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"
    if not run.roll_back():
        if run.saved_step is not None:
            log.error(
                "%s during the weight update of step %d, which cannot be saved; the checkpoint "
                "of step %d is kept; continue with: %s",
                what,
                run.done + 1,
                run.saved_step,
                checkpoints.resume_command,
            )
        return
    if run.done == 0:
        return
    if run.saved_step == run.done:
        saved = f"the checkpoint of step {run.done} is kept"
    else:
        try:
            saved = f"saved {run.save(checkpoints)}"
        except Exception as save_exc:  # e.g. the disk is full: say so, and report the first error
            log.error("could not save a checkpoint after the error either: %s", save_exc)
            return
    log.error(
        "%s at step %d: %s; continue with: %s", what, run.done, saved, checkpoints.resume_command
    )


def _check_resume(state: SearchState, steps: int, layers: int, ratios: int) -> None:
    """ConfigError when ``state`` is not from a search with these steps, layers and ratios."""
    if state.steps != steps:
        raise ConfigError(
            f"the saved search runs {state.steps} steps, this one {steps}: resume with the "
            "same steps (or epochs and data)"
        )
    if not 0 <= state.step <= steps:
        raise ConfigError(f"the saved search is at step {state.step} of {steps}")
    shapes = [tuple(a.shape) for a in state.alphas]
    if shapes != [(ratios,)] * layers:
        raise ConfigError(
            f"the saved logits ({len(shapes)} layers, {shapes[0][0] if shapes else 0} "
            f"candidates) do not fit this model and ratios ({layers} layers, {ratios} "
            "candidates)"
        )


def format_channel_config(config: Sequence[int]) -> str:
    """The official channel-configuration file text: one integer a line."""
    return "".join(f"{int(c)}\n" for c in config)


# ----------------------------------------------------------------------------------------------
# Data for `dualsr search`
# ----------------------------------------------------------------------------------------------
def split_files(files: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Split deterministically into two halves: even positions train the weights, odd positions
    the architecture (interleaving keeps both halves mixed across folders)."""
    if len(files) < 2:
        raise DualSRError(
            f"the search needs at least 2 training images (one per half), found {len(files)}"
        )
    return list(files[0::2]), list(files[1::2])


@dataclass
class SearchData:
    """The two halves of the training images as endless iterables of pyramid batches."""

    train: Iterable[Batch]
    val: Iterable[Batch]
    train_files: list[Path]
    val_files: list[Path]
    steps_per_epoch: int


def make_search_data(
    folders: Sequence[str | Path],
    scale: int,
    patch_size: int,
    batch_size: int,
    seed: int = 0,
    cache_dir: Path | None = None,
    start_step: int = 0,
) -> SearchData:
    """Split the images of ``folders`` into weight/architecture halves and batch them.

    Uses the training data pipeline (:mod:`dualsr.data.dataset`): pyramids made once per image
    (kept in memory, or in ``cache_dir``), aligned random patches with flips and transpose.
    An epoch is one pass over the weight half. The batches depend only on ``(seed, step)``;
    ``start_step`` begins at that step (to resume a search).
    """
    from ..data.dataset import PatchDataset, StepBatchSampler, build_store, find_images, make_loader

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if patch_size < 1 or patch_size % scale:
        raise ConfigError(
            f"--patch-size ({patch_size}) must be a positive multiple of the scale ({scale})"
        )
    records = []
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            raise DualSRError(f"--data {path}: no such folder; give folders of HR training images")
        found = find_images(path, None, scale)
        if not found:
            raise DualSRError(
                f"--data {path}: the folder holds no images (png, jpg, bmp, webp, tif), directly "
                "or in an HR/ subfolder; give folders of HR training images"
            )
        records += found
    halves = split_files(records)
    loaders, files, per_epoch = [], [], 0
    for i, half in enumerate(halves):
        try:
            store = build_store(half, scale, patch_size=patch_size, cache_dir=cache_dir)
        except ConfigError as exc:
            raise ConfigError(
                f"--data: none of the {len(half)} images of the {('weight', 'architecture')[i]} "
                f"half is readable and at least {patch_size}x{patch_size} pixels (see the "
                "warnings above); use a smaller --patch-size or larger images"
            ) from exc
        dataset = PatchDataset(store, scale, patch_size)
        sampler = StepBatchSampler(len(store), batch_size, seed=seed + i, start_step=start_step)
        loaders.append(make_loader(dataset, sampler))
        files.append([Path(n) for n in store.names])
        per_epoch = per_epoch or sampler.steps_per_epoch
    return SearchData(loaders[0], loaders[1], files[0], files[1], per_epoch)


def load_search_model(spec: str) -> tuple[DRN, DualModels | None, str]:
    """``(model, duals, source)`` from a checkpoint path or a preset name.

    A preset without shipped weights gives a randomly initialised model, with a warning.
    """
    from ..checkpoint import load_checkpoint
    from ..models.registry import PRESETS, create_model
    from ..pretrained import shipped_weights

    path = Path(spec).expanduser()
    if path.is_file():
        ckpt = load_checkpoint(path)
        return ckpt.model, ckpt.duals, str(path)
    key = spec.lower()
    if key in PRESETS:
        weights = shipped_weights(key)
        if weights is not None:
            ckpt = load_checkpoint(weights)
            return ckpt.model, ckpt.duals, str(weights)
        warnings.warn(
            f"preset {spec!r} has no trained weights in this package: searching a RANDOMLY "
            "initialised model, so the result is meaningless. Pass a trained checkpoint.",
            stacklevel=2,
        )
        return create_model(key), None, f"preset {key} (random weights)"
    raise CheckpointError(
        f"checkpoint not found: {spec}; --model needs a trained DRN checkpoint "
        "(.safetensors or official .pt)"
    )
