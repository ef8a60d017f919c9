"""The channel number search as an object: :class:`ChannelSearch` (``step``, ``epoch``, ``run``,
``result``) and :func:`search_channels`, the one-call form built on it.

One step (:meth:`ChannelSearch.step`): rank every searched layer's units by the current weights,
compute the logit gradient (:func:`~dualsr.compression.search.bilevel.alpha_gradients`), update
the logits (Adam), then the weights (Adam on the training half, gradient norm clipped), then both
learning-rate schedules. After the last step of every epoch the argmax configuration is written
and the validation images scored (with ``output`` / ``val_folder``).
:meth:`ChannelSearch.run` does the remaining steps under stop signals and periodic checkpoints
(:func:`~dualsr.compression.search.run.run_steps`); :meth:`ChannelSearch.result` reads the
configuration off the logits (:class:`~dualsr.compression.search.result.SearchResult`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ...errors import ConfigError, DualSRError
from ...losses import DualRegressionLoss
from ...models.drn import DRN, DualModels
from ..budget import DEFAULT_INPUT_HW, Budget, CostModel, check_budget, config_cost, fit_to_budget
from ..layers import searched_layers
from .bilevel import EPS_SCALE, Batch, LossFn, SearchObjective, alpha_gradients
from .data import SearchData, load_validation_pairs, validation_psnr
from .options import (
    ALPHA_BETAS,
    ALPHA_SCHEDULES,
    GRAD_CLIP,
    LR_MIN,
    PAPER_RATIOS,
    SELECTIONS,
    SearchOptions,
    check_rate,
)
from .result import SearchResult, best_epoch, write_best_config, write_epoch_config
from .run import Checkpointer, SearchRun, SearchState, check_resume, run_steps
from .space import argmax_configuration, candidate_widths, expected_widths

ALPHA_INIT_STD = 1e-3  # logits start near uniform: 1e-3 * N(0, 1), as in the release


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


class ChannelSearch:
    """A channel number search (DRC stage 1) that the caller drives step by step.

    The arguments are those of :func:`search_channels` (which is ``ChannelSearch(...).run(
    progress, checkpoints)``) and are checked here, before any work; :meth:`from_options` builds
    one from :class:`~dualsr.compression.search.options.SearchOptions` as ``dualsr search`` does.
    ``model`` and ``duals`` are copied (the copies are trained: :attr:`model`, :attr:`duals`).

        search = ChannelSearch(model, duals, train, val, target_rate=0.3, steps=100)
        while not search.finished:
            record = search.step()  # the step's history record
        result = search.result()

    :meth:`epoch` runs the steps to the end of the current epoch, :meth:`run` the remaining
    steps with stop signals and checkpoints. :meth:`result` ends the search: it removes the soft
    masks' hooks and puts the trained copies in eval mode, so no step can follow it (as
    :meth:`close`, or leaving a ``with`` block, does without a result). The same arguments and
    batches give the same numbers whichever way the steps are run.
    """

    def __init__(
        self,
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
        resume: SearchState | None = None,
        steps_per_epoch: int | None = None,
        output: str | Path | None = None,
        val_folder: str | Path | None = None,
    ) -> None:
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
                "select='budget' (--select budget) needs a budget (--budget-params or "
                "--budget-macs)"
            )
        if select == "argmax" and budget is not None:
            raise ConfigError(
                "a budget (--budget-params/--budget-macs) is not used by select='argmax' "
                "(--select argmax, the paper's final step); use select='budget' (--select budget) "
                "to fit the configuration to it, or drop the budget"
            )
        if alpha_schedule not in ALPHA_SCHEDULES:
            raise ConfigError(
                f"alpha_schedule must be 'cosine' or 'constant', got {alpha_schedule!r}"
            )
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
            copy.deepcopy(duals)
            if duals is not None
            else DualModels(model.scale, model.arch.n_feats)
        )
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
        duals = duals.to(device=device, dtype=dtype).train()
        loss_fn = loss if loss is not None else DualRegressionLoss()

        layers = searched_layers(model)
        candidates = [candidate_widths(layer.width, rate, ratios, multiple) for layer in layers]
        val_pairs = (
            load_validation_pairs(val_folder, model.scale) if val_folder is not None else None
        )
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
        #: The soft-masked network and its loss (its hooks stay on :attr:`model` until the end).
        self.objective = SearchObjective(model, duals, candidates, loss_fn)
        try:
            weights = self.objective.weights
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
            self._run = SearchRun(model, duals, alphas, w_opt, a_opt, sched, steps, start, a_sched)
            if resume is not None:
                self._run.restore(resume)
        except BaseException:
            self.objective.close()
            raise
        self.model, self.duals, self.alphas = model, duals, alphas
        self.layers, self.candidates = layers, candidates
        self.steps, self.steps_per_epoch = steps, steps_per_epoch
        self.rate, self.order, self.select, self.budget = rate, order, select, budget
        self.input_hw: tuple[int, int] = input_hw  # type: ignore[assignment]
        self.multiple, self.cost_model = multiple, cost_model
        self.grad_clip, self.xi, self.eps_scale = grad_clip, xi, eps_scale
        self.output, self.val_pairs = output, val_pairs
        self.device, self.dtype = device, dtype
        self._train_it = _cycle(train_batches, "train", self._run.done)
        self._val_it = _cycle(val_batches, "validation", self._run.done)
        self._closed = False

    @classmethod
    def from_options(
        cls,
        model: DRN,
        duals: DualModels | None,
        data: SearchData,
        options: SearchOptions,
        *,
        resume: SearchState | None = None,
    ) -> ChannelSearch:
        """The search ``dualsr search`` runs for ``options`` on ``data``
        (:func:`~dualsr.compression.search.data.make_search_data`): its steps from ``steps`` or
        ``epochs``, its budget, the dual regression loss with ``dual_weight``, per-epoch files in
        ``options.output`` and validation on ``options.val``; ``resume``: a saved state."""
        return cls(
            model,
            duals,
            data.train,
            data.val,
            target_rate=options.rate,  # type: ignore[arg-type]
            ratios=tuple(options.ratios),
            multiple=options.multiple,
            order=options.order,
            steps=options.total_steps(data.steps_per_epoch),
            weight_lr=options.lr_weights,
            alpha_lr=options.lr_alpha,
            alpha_schedule=options.alpha_schedule,
            alpha_betas=(options.alpha_betas[0], options.alpha_betas[1]),
            alpha_weight_decay=options.alpha_weight_decay,
            grad_clip=options.grad_clip,
            select=options.select,
            budget=options.budget(),
            input_hw=options.input_hw,
            loss=DualRegressionLoss(options.dual_weight),
            seed=options.seed,
            resume=resume,
            steps_per_epoch=data.steps_per_epoch,
            output=options.output,
            val_folder=options.val,
        )

    # ------------------------------------------------------------------------------------------
    # Progress
    # ------------------------------------------------------------------------------------------
    @property
    def done(self) -> int:
        """The steps completed (over every resumed part)."""
        return self._run.done

    @property
    def finished(self) -> bool:
        """True when every step has run."""
        return self._run.done >= self.steps

    @property
    def history(self) -> list[dict]:
        """The history record of every completed step."""
        return self._run.history

    @property
    def checkpoint(self) -> Path | None:
        """The newest checkpoint :meth:`run` wrote, or None."""
        return self._run.checkpoint

    # ------------------------------------------------------------------------------------------
    # Driving the search
    # ------------------------------------------------------------------------------------------
    def step(self) -> dict:
        """Run the next step (and the end of its epoch); return its history record.

        DualSRError after the last step or after :meth:`result`/:meth:`close`.
        """
        self._check_open()
        if self.finished:
            raise DualSRError(
                f"the search has run all its {self.steps} steps; read it with result()"
            )
        step = self._run.done + 1
        self._run.complete(self._step(step))
        self._end_of_epoch(step)
        return self._run.history[-1]

    def epoch(self) -> list[dict]:
        """Run the steps to the end of the current epoch (or of the search); their records.

        ConfigError when the length of an epoch is unknown (``train_batches`` without a length
        and no ``steps_per_epoch``).
        """
        if self.steps_per_epoch is None:
            raise ConfigError(
                "epoch() needs the steps of an epoch: give train_batches with a length, or "
                "steps_per_epoch"
            )
        self._check_open()
        records = [self.step()] if not self.finished else []
        while not self.finished and self._run.done % self.steps_per_epoch:
            records.append(self.step())
        return records

    def run(
        self,
        progress: Callable[[dict], bool | None] | None = None,
        checkpoints: Checkpointer | None = None,
    ) -> SearchResult:
        """Run the remaining steps, then return :meth:`result`.

        ``progress`` and ``checkpoints`` are those of :func:`search_channels`: a callback after
        every step (True stops the search), and where and when to save the state (with stop
        signals and saving after an error). An error ends the search (its hooks are removed).
        """
        self._check_open()
        try:
            stop_reason = run_steps(
                self._run, self._step, progress, checkpoints, self._end_of_epoch
            )
        except BaseException:
            self.close()
            raise
        return self.result(stop_reason)

    def result(self, stop_reason: str | None = None) -> SearchResult:
        """The configuration read off the logits, and the trained weights; ends the search.

        ``stop_reason`` says why the search stopped early (:meth:`run` gives ``"SIGINT"``,
        ``"SIGTERM"`` or ``"callback"``); before the last step it defaults to ``"caller"``.
        """
        self.close()
        if stop_reason is None and not self.finished:
            stop_reason = "caller"
        alphas, candidates = self.alphas, self.candidates
        model, duals = self.model, self.duals
        history = self._run.history
        probs = [F.softmax(a.detach().double(), dim=-1).cpu() for a in alphas]
        argmax = argmax_configuration(alphas, candidates)
        exp_widths = expected_widths(probs, candidates)
        fit = None
        final = argmax
        if self.select == "budget" and self.budget is not None:
            fit = fit_to_budget(self.cost_model, exp_widths, self.budget, self.multiple)
            final = fit.channel_config
        params, macs = config_cost(model.arch, final, self.input_hw)
        full_params, full_macs = config_cost(model.arch, model.arch.channel_config, self.input_hw)
        return SearchResult(
            channel_config=list(final),
            argmax_config=argmax,
            params=params,
            macs=int(macs or 0),
            input_hw=self.input_hw,
            full_params=full_params,
            full_macs=int(full_macs or 0),
            target_rate=self.rate,
            order=self.order,
            steps=self.steps,
            layer_names=[layer.name for layer in self.layers],
            candidates=candidates,
            alphas=[a.detach().double().cpu().tolist() for a in alphas],
            probabilities=[p.tolist() for p in probs],
            expected_widths=exp_widths,
            history=history,
            budget=self.budget,
            budget_fit=fit,
            seconds=self._run.seconds(),
            model=model.eval(),
            duals=duals.eval(),
            stop_reason=stop_reason,
            checkpoint=self._run.checkpoint,
            select=self.select,
            best=best_epoch(history),
        )

    def close(self) -> None:
        """End the search without a result: remove the soft masks' hooks from :attr:`model`."""
        if not self._closed:
            self._closed = True
            self.objective.close()

    def __enter__(self) -> ChannelSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    # One step, the end of an epoch
    # ------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise DualSRError("the search has ended (result() or close() was called)")

    def _step(self, step: int) -> dict:
        """Step ``step``: the logit update, then the weight update; its history record."""
        run, objective, alphas = self._run, self.objective, self.alphas
        weights, w_opt, a_opt = objective.weights, run.w_opt, run.a_opt
        tb = _to_device(next(self._train_it), self.device, self.dtype)
        vb = _to_device(next(self._val_it), self.device, self.dtype)
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
            order=self.order,
            xi=lr_now if self.xi is None else self.xi,
            eps_scale=self.eps_scale,
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
            "steps": self.steps,
            "train_loss": float(train_loss.detach()),
            "val_loss": val_loss,
            "weight_lr": lr_now,
            "alpha_lr": alpha_lr_now,
        }
        if self.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(weights, self.grad_clip)
            record["grad_norm"] = float(norm)  # before clipping
        w_opt.step()
        run.sched.step()
        if run.a_sched is not None:
            run.a_sched.step()
        return record

    def _end_of_epoch(self, step: int) -> None:
        """After the last step of an epoch (or of the search): write the argmax configuration
        and score the validation images, into the step's history record."""
        per_epoch, output, val_pairs = self.steps_per_epoch, self.output, self.val_pairs
        if per_epoch is None or (step % per_epoch and step != self.steps):
            return
        if output is None and val_pairs is None:
            return
        history = self._run.history
        record = history[-1]
        record["epoch"] = epoch = math.ceil(step / per_epoch)
        record["argmax_config"] = config = argmax_configuration(self.alphas, self.candidates)
        if output is not None:
            write_epoch_config(output, epoch, config)
        if val_pairs is None:
            return
        earlier = [h["val_psnr"] for h in history[:-1] if "val_psnr" in h]
        record["val_psnr"] = score = validation_psnr(self.objective, self.alphas, val_pairs)
        if not earlier or score >= max(earlier):  # ties: the later epoch, as the release
            record["best"] = True
            if output is not None:
                write_best_config(output, config)


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
    checkpoints: Checkpointer | None = None,
    resume: SearchState | None = None,
    steps_per_epoch: int | None = None,
    output: str | Path | None = None,
    val_folder: str | Path | None = None,
) -> SearchResult:
    """Search the width of every searched layer of ``model`` (DRC stage 1).

    ``ChannelSearch(model, duals, train_batches, val_batches, ...).run(progress, checkpoints)``
    (:class:`ChannelSearch`, which also runs a search step by step).

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
            1e-3 and (0.9, 0.999); DARTS used (0.5, 0.999)).
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
            (:class:`~dualsr.compression.search.checkpoints.SearchCheckpoints`): every
            ``every`` steps or seconds and after the last step; on the first SIGINT/SIGTERM the
            current step is finished, saved, and the search returns with ``stop_reason`` set (a
            second SIGINT raises KeyboardInterrupt at once); after an error the last completed
            step is saved and the error re-raised. None: no checkpoints, signals untouched.
        resume: a saved state
            (:func:`~dualsr.compression.search.checkpoints.load_search_checkpoint`) to continue
            from; ``model`` and ``duals`` are then the checkpoint's, and the other
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
    search = ChannelSearch(
        model,
        duals,
        train_batches,
        val_batches,
        target_rate=target_rate,
        ratios=ratios,
        multiple=multiple,
        order=order,
        steps=steps,
        epochs=epochs,
        weight_lr=weight_lr,
        weight_lr_min=weight_lr_min,
        alpha_lr=alpha_lr,
        alpha_lr_min=alpha_lr_min,
        alpha_schedule=alpha_schedule,
        alpha_weight_decay=alpha_weight_decay,
        alpha_betas=alpha_betas,
        grad_clip=grad_clip,
        xi=xi,
        eps_scale=eps_scale,
        select=select,
        budget=budget,
        input_hw=input_hw,
        loss=loss,
        seed=seed,
        resume=resume,
        steps_per_epoch=steps_per_epoch,
        output=output,
        val_folder=val_folder,
    )
    return search.run(progress, checkpoints)
