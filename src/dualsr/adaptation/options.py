"""The adaptation recipe: every option of ``dualsr adapt`` that shapes the result.

The options are stored in the adapted checkpoint's metadata (``adapt.recipe``) and in the
resumable state file, so a resumed run continues with the recipe it started with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError

#: Schemes: ``paper`` keeps the paired data as they are (MATLAB bicubic LR), the paper's
#: semi-supervised DRN-Adapt; ``estimate`` (the default) synthesises the paired LR with the
#: degradation estimated from the user's LR images (or given with ``degradation``); when the
#: estimate is clean bicubic there is nothing to adapt to and the model is kept unchanged
#: (adapting cost 0.02-0.07 dB on clean images, self-pairs alone 0.3 dB).
SCHEMES = ("paper", "estimate")


@dataclass
class AdaptOptions:
    """What the adaptation does (not where its files are).

    Attributes:
        steps: optimisation steps (the budget; ``minutes`` may end it earlier).
        minutes: wall-clock budget (18 by default, so that a run ends within 20 minutes on a
            loaded 2-core CPU); None = steps only.
        batch: samples a step, unpaired and paired together.
        unpaired_ratio: share of the batch drawn from the user's LR images (the paper's rho).
        crop: LR crop side of a sample (smaller images give smaller crops).
        dual_weight: lambda of the dual (closed-loop) loss.
        lr: Adam learning rate of the primal model; ``dual_lr`` that of the duals.
        scheme: ``paper`` or ``estimate`` (see :data:`SCHEMES`).
        degradation: the paired data's degradation spec, or ``auto`` (estimated; ``estimate``
            scheme only).
        dual_fit_steps: steps fitting new duals (primal frozen) when the model has none.
        save_every: steps between saves of the resumable state.
        seed: the random crops and batches.
        precision: ``auto`` (bf16 where native), ``fp32`` or ``bf16``.
    """

    steps: int = 300
    minutes: float | None = 18.0
    batch: int = 16
    unpaired_ratio: float = 0.3
    crop: int = 32
    dual_weight: float = 0.1
    lr: float = 1e-4
    dual_lr: float = 1e-4
    scheme: str = "estimate"
    degradation: str = "auto"
    dual_fit_steps: int = 100
    save_every: int = 50
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """ConfigError naming the first bad option."""
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError(f"minutes must be > 0, got {self.minutes}")
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}")
        if not 0.0 <= self.unpaired_ratio <= 1.0:
            raise ConfigError(f"unpaired_ratio must be in [0, 1], got {self.unpaired_ratio}")
        if self.crop < 8:
            raise ConfigError(f"crop must be >= 8 LR pixels, got {self.crop}")
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.dual_weight < 0 or self.lr <= 0 or self.dual_lr <= 0:
            raise ConfigError("dual_weight must be >= 0 and the learning rates > 0")

    @property
    def n_unpaired(self) -> int:
        """Unpaired samples a step: round(ratio x batch)."""
        return int(round(self.unpaired_ratio * self.batch))

    @property
    def n_paired(self) -> int:
        """Paired samples a step."""
        return self.batch - self.n_unpaired

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly options."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptOptions:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
