"""What a channel number search returns (:class:`SearchResult`) and the files it writes: the
result files (:meth:`SearchResult.save`), the argmax configuration after every epoch
(:func:`write_epoch_config`) and the best epoch's (:data:`BEST_CONFIG`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...models.drn import DRN, DualModels
from ..budget import Budget, BudgetFit
from .space import format_channel_config

EPOCH_DIR = "epochs"  # OUT/epochs/channel_config-epoch-0001.txt: the argmax after every epoch
BEST_CONFIG = "best_channel_config.txt"  # the argmax of the epoch with the best validation PSNR


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
        from ...checkpoint import save_model
        from ...fileio import atomic_write_bytes

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


def write_epoch_config(output: str | Path, epoch: int, config: Sequence[int]) -> Path:
    """Write ``OUT/epochs/channel_config-epoch-NNNN.txt`` atomically (the release writes
    ``channel_configs_{epoch}.txt`` every epoch)."""
    from ...fileio import atomic_write_bytes

    path = Path(output) / EPOCH_DIR / f"channel_config-epoch-{epoch:04d}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, format_channel_config(config).encode())


def write_best_config(output: str | Path, config: Sequence[int]) -> Path:
    """Write ``OUT/best_channel_config.txt`` atomically (the release's
    ``channel_configs_best.txt``): the argmax configuration of the best epoch so far."""
    from ...fileio import atomic_write_bytes

    return atomic_write_bytes(Path(output) / BEST_CONFIG, format_channel_config(config).encode())


def best_epoch(history: Sequence[dict]) -> dict | None:
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
