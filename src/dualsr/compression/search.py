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

:func:`search_channels` works on any iterables of pyramid batches;
:func:`dualsr.compression.search_data.make_search_data` builds them from image folders for
``dualsr search``. The parts live in their own modules: the candidates, ranking and soft masks in
:mod:`~dualsr.compression.search_space`, the logit gradients and the loss in
:mod:`~dualsr.compression.bilevel`, the step loop and its checkpoint bookkeeping in
:mod:`~dualsr.compression.search_run`.
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..losses import DualRegressionLoss
from ..models.drn import DRN, DualModels
from .bilevel import EPS_SCALE, Batch, LossFn, SearchObjective, alpha_gradients
from .budget import (
    DEFAULT_INPUT_HW,
    Budget,
    BudgetFit,
    CostModel,
    check_budget,
    config_cost,
    fit_to_budget,
)
from .layers import searched_layers
from .search_config import ALPHA_BETAS, ALPHA_SCHEDULES, GRAD_CLIP, SELECTIONS
from .search_data import load_validation_pairs, validation_psnr
from .search_run import SearchRun, check_resume, run_steps
from .search_space import (
    PAPER_RATIOS,
    argmax_configuration,
    candidate_widths,
    check_rate,
    expected_widths,
    format_channel_config,
)

if TYPE_CHECKING:
    from .search_state import SearchCheckpoints, SearchState

log = logging.getLogger("dualsr.search")
ALPHA_INIT_STD = 1e-3  # logits start near uniform: 1e-3 * N(0, 1), as in the release
DARTS_ALPHA_BETAS = (0.5, 0.999)  # the DARTS convention (this package's earlier default)
LR_MIN = 1e-7  # the release's eta_min, for the weights and the logits
EPOCH_DIR = "epochs"  # OUT/epochs/channel_config-epoch-0001.txt: the argmax after every epoch
BEST_CONFIG = "best_channel_config.txt"  # the argmax of the epoch with the best validation PSNR


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
        ratios, multiple: candidate ratios ``k`` and the width multiple (Guo et al., TPAMI 2024).
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
        check_resume(resume, steps, len(layers), len(ratios))
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
        run = SearchRun(model, duals, alphas, w_opt, a_opt, sched, steps, start, a_sched)
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
            run.backup_alphas()  # from here on, an error rolls the logits back (see SearchRun)
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

        stop_reason = run_steps(run, one_step, progress, checkpoints, end_of_epoch)

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


def write_epoch_config(output: str | Path, epoch: int, config: Sequence[int]) -> Path:
    """Write ``OUT/epochs/channel_config-epoch-NNNN.txt`` atomically (the release writes
    ``channel_configs_{epoch}.txt`` every epoch)."""
    from ..fileio import atomic_write_bytes

    path = Path(output) / EPOCH_DIR / f"channel_config-epoch-{epoch:04d}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, format_channel_config(config).encode())


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
