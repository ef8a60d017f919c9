"""Exponential moving average of model weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``module``, a frozen copy of a model whose weights follow
    ``ema = decay * ema + (1 - decay) * weights`` after every optimizer step.

    Non-floating buffers are copied. ``module`` is what validation runs and what
    ``best.safetensors`` holds when EMA is on.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        for ema_v, v in zip(
            self.module.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if ema_v.is_floating_point():
                ema_v.lerp_(v.detach().to(ema_v.dtype), 1.0 - self.decay)
            else:
                ema_v.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (the model's own key names)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the averaged weights (strict)."""
        self.module.load_state_dict(state, strict=True)
