"""The searched layers of a DRN, channel masks, and physical slimming.

A *searched layer* is an inner width that compression may shrink, in the official
channel-configuration order (Guo et al., TPAMI 2024, and its released code): each down block's
inner width, then per up stage every RCAB's inner width and the upsampler's group count. For
each one we know the *producer* convolution whose output channels form that width and the *consumer*
convolution that reads them. For the upsampler, producer output channels ``4j .. 4j+3`` become
channel ``j`` after PixelShuffle(2), so a unit there is a group of 4 producer channels.

Masking channel ``j`` (zeroing the consumer's input channel) and removing it are the same
function, which :func:`slim` relies on and the tests check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..models.drn import DRN


@dataclass
class SearchedLayer:
    """One prunable inner width of a DRN."""

    index: int  # position in the channel configuration
    name: str  # e.g. "down.0", "up_blocks.1.7", "up_blocks.1.upsampler"
    kind: str  # "down", "rcab" or "upsampler"
    producer: nn.Conv2d
    consumer: nn.Conv2d
    group: int  # producer channels per unit: 1, or 4 for the upsampler

    @property
    def width(self) -> int:
        """The current number of units (channels seen by the consumer)."""
        return self.consumer.in_channels


def searched_layers(model: DRN) -> list[SearchedLayer]:
    """The searched layers of ``model`` in the official channel-configuration order."""
    layers: list[SearchedLayer] = []
    for p, down in enumerate(model.down):
        seq = down.dual_module
        layers.append(SearchedLayer(len(layers), f"down.{p}", "down", seq[0][0], seq[1], 1))
    for s, stage in enumerate(model.up_blocks):
        for b, block in enumerate(stage[:-2]):
            layers.append(
                SearchedLayer(
                    len(layers), f"up_blocks.{s}.{b}", "rcab", block.body[0], block.body[2], 1
                )
            )
        layers.append(
            SearchedLayer(
                len(layers), f"up_blocks.{s}.upsampler", "upsampler", stage[-2][0], stage[-1], 4
            )
        )
    return layers


class ChannelMasks:
    """Multiplies the consumer inputs of searched layers by per-channel masks (forward pre-hooks).

    ``masks[i]`` is a tensor of length ``layers[i].width`` (or None for no mask); it may require
    grad (soft masks for the search) or be 0/1 (hard masks). Use as a context manager or call
    :meth:`remove`.
    """

    def __init__(self, model: DRN, masks: Sequence[torch.Tensor | None]) -> None:
        self.layers = searched_layers(model)
        if len(masks) != len(self.layers):
            raise ValueError(f"{len(masks)} masks for {len(self.layers)} searched layers")
        self.masks = list(masks)
        self._handles = [
            layer.consumer.register_forward_pre_hook(self._hook(i))
            for i, layer in enumerate(self.layers)
        ]

    def _hook(self, i: int):  # noqa: ANN202
        def pre_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]):  # noqa: ANN202
            mask = self.masks[i]
            if mask is None:
                return None
            return (inputs[0] * mask.to(inputs[0].dtype).view(1, -1, 1, 1),)

        return pre_hook

    def remove(self) -> None:
        """Detach the hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> ChannelMasks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _keep_tensor(keep: Sequence[int] | torch.Tensor, width: int, name: str) -> torch.Tensor:
    idx = torch.as_tensor(list(keep) if not isinstance(keep, torch.Tensor) else keep).long()
    idx = torch.unique(idx)  # sorted, deduplicated
    if idx.numel() == 0 or idx.min() < 0 or idx.max() >= width:
        raise ValueError(f"{name}: kept channels must be a non-empty subset of 0..{width - 1}")
    return idx


def slim(model: DRN, keep: Sequence[Sequence[int] | torch.Tensor]) -> DRN:
    """Physically remove channels: a new width-configured DRN keeping ``keep[i]`` in layer ``i``.

    The result has the official layout of a pruned model (e.g. DRN-S30) and computes exactly what
    ``model`` computes with the removed channels masked to zero.
    """
    layers = searched_layers(model)
    if len(keep) != len(layers):
        raise ValueError(f"{len(keep)} keep-lists for {len(layers)} searched layers")
    idx = [_keep_tensor(k, layer.width, layer.name) for k, layer in zip(keep, layers, strict=True)]
    arch = model.arch
    new = DRN(arch.scale, arch.n_feats, arch.n_blocks, [len(i) for i in idx], arch.rgb_range)
    new_layers = searched_layers(new)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    new.load_state_dict(_slice_state(state, layers, new_layers, idx, model), strict=True)
    return new.to(next(model.parameters()).device).train(model.training)


def _slice_state(state: dict, layers: list, new_layers: list, idx: list, model: DRN) -> dict:
    names = {m: n for n, m in model.named_modules()}
    for layer, keep in zip(layers, idx, strict=True):
        pname, cname = names[layer.producer], names[layer.consumer]
        out_idx = (keep[:, None] * layer.group + torch.arange(layer.group)).flatten()
        state[f"{pname}.weight"] = state[f"{pname}.weight"][out_idx]
        if f"{pname}.bias" in state:
            state[f"{pname}.bias"] = state[f"{pname}.bias"][out_idx]
        state[f"{cname}.weight"] = state[f"{cname}.weight"][:, keep]
    return state


def hard_masks(model: DRN, keep: Sequence[Sequence[int] | torch.Tensor]) -> list[torch.Tensor]:
    """0/1 masks equivalent to ``slim(model, keep)``."""
    masks = []
    for k, layer in zip(keep, searched_layers(model), strict=True):
        m = torch.zeros(layer.width)
        m[_keep_tensor(k, layer.width, layer.name)] = 1
        masks.append(m)
    return masks
