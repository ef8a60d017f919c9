"""Counting the cost of a model: parameters and multiply-adds (MACs) for a given input size.

MACs are counted per convolution as ``output elements x (in_channels / groups) x kh x kw``,
without running any arithmetic: the model is replayed on PyTorch's "meta" device. The bicubic
pre-upsampling, activations, pooling and additions are not counted (the convention of the SR
literature). Always state the input size next to a MAC figure.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_hw: tuple[int, int], in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass of ``model`` on a 1 x C x H x W input (convolutions)."""
    meta = copy.deepcopy(model).to("meta")
    total = 0

    def hook(mod: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        total += output.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            meta(torch.empty(1, in_channels, *input_hw, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total
