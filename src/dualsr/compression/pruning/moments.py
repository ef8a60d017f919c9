"""Exact reconstruction gradients of one layer from the moments of its consumer inputs.

A layer's input does not depend on its own consumer weight, so the reconstruction term of
:class:`~dualsr.compression.pruning.objective.LayerObjective` is a quadratic in that weight (and
its bias): :class:`LayerMoments` (one truncated pass, :func:`collect_moments`) gives its gradient
and value for any weight without touching the data again, and :func:`moments_sgd` runs the local
SGD on them (the moments greedy, ``greedy="moments"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...models.drn import DRN
from ..layers import SearchedLayer
from ..pruning_data import Pyramid
from .objective import LOCAL_MOMENTUM, consumer_inputs


@dataclass
class LayerMoments:
    """Moments of one layer's consumer inputs, for exact re-scoring without data passes.

    With ``P_b`` the consumer's input patches of batch ``b`` (one row per output position, one
    column per weight entry, ``D = C*kh*kw``) and ``R_b`` the original outputs minus the bias
    ``bias`` the consumer had when the moments were collected: ``gram[b] = P_b^T P_b`` (D x D),
    ``cross[b] = R_b^T P_b`` (O x D), ``sq[b] = |R_b|^2``, ``scale[b] = 2 / (output elements)``,
    and the first moments ``patch_sum[b]`` (D, the column sums of ``P_b``), ``target_sum[b]``
    (O, of ``R_b``) and ``count[b]`` (rows). For a consumer weight ``W`` (``O x D``) and a bias
    ``bias + delta``, the gradients of ``MSE(pruned output, original output)`` on batch ``b`` are
    exactly ``scale (W gram - cross + delta patch_sum^T)`` (weight) and
    ``scale (W patch_sum + count delta - target_sum)`` (bias), and the MSE is
    ``scale / 2 (sq - 2 <W, cross> + <W gram, W> + count |delta|^2 + 2 delta.(W patch_sum)
    - 2 delta.target_sum)``, because the layer's input does not depend on its own parameters.
    """

    gram: list[torch.Tensor]
    cross: list[torch.Tensor]
    sq: list[float]
    scale: list[float]
    patch_sum: list[torch.Tensor] = field(default_factory=list)
    target_sum: list[torch.Tensor] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    bias: torch.Tensor | None = None

    def _delta(self, bias: torch.Tensor | None) -> torch.Tensor | None:
        """``bias`` minus the collection-time bias (float64), None when there is no change."""
        if bias is None or self.bias is None:
            return None
        return bias.detach().to(self.gram[0].dtype) - self.bias.to(self.gram[0].dtype)

    def gradient(
        self, weight: torch.Tensor, batch: int | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The exact MSE gradient for ``weight`` (O x D) and ``bias`` (default: the consumer's
        bias at collection time) on one batch, or summed over all."""
        w = weight.detach().flatten(1).to(self.gram[0].dtype)
        delta = self._delta(bias)
        parts = range(len(self.gram)) if batch is None else [batch]
        g = torch.zeros_like(w)
        for b in parts:
            gb = w @ self.gram[b] - self.cross[b]
            if delta is not None:
                gb = gb + torch.outer(delta, self.patch_sum[b])
            g += self.scale[b] * gb
        return g.to(weight.dtype).view_as(weight)

    def bias_gradient(
        self, weight: torch.Tensor, bias: torch.Tensor, batch: int | None = None
    ) -> torch.Tensor:
        """The exact MSE gradient w.r.t. the consumer's bias, on one batch or summed over all."""
        if self.bias is None:
            raise ValueError("these moments were collected for a consumer without a bias")
        w = weight.detach().flatten(1).to(self.gram[0].dtype)
        delta = self._delta(bias)
        assert delta is not None
        parts = range(len(self.gram)) if batch is None else [batch]
        g = torch.zeros_like(delta)
        for b in parts:
            residual = w @ self.patch_sum[b] + self.count[b] * delta - self.target_sum[b]
            g += self.scale[b] * residual
        return g.to(bias.dtype)

    def mse(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> float:
        """The mean (over batches) reconstruction MSE for ``weight`` and ``bias`` (default: the
        collection-time bias)."""
        w = weight.detach().flatten(1).to(self.gram[0].dtype)
        delta = self._delta(bias)
        total = 0.0
        for b in range(len(self.gram)):
            gram, cross, sq, scale = self.gram[b], self.cross[b], self.sq[b], self.scale[b]
            value = sq - 2 * float((w * cross).sum()) + float((w @ gram * w).sum())
            if delta is not None:
                value += self.count[b] * float(delta @ delta)
                value += 2 * float(delta @ (w @ self.patch_sum[b]))
                value -= 2 * float(delta @ self.target_sum[b])
            total += scale / 2 * value
        return total / len(self.gram)


def collect_moments(
    model: DRN,
    layer: SearchedLayer,
    teacher_outputs: Sequence[torch.Tensor],
    batches: Sequence[Pyramid],
) -> LayerMoments:
    """The :class:`LayerMoments` of ``layer`` in ``model`` (one forward pass, truncated there)."""
    conv = layer.consumer
    moments = LayerMoments([], [], [], [])
    if conv.bias is not None:
        moments.bias = conv.bias.detach().double().clone()
    inputs = consumer_inputs(model, conv, batches)
    with torch.no_grad():
        for x, y in zip(inputs, teacher_outputs, strict=True):
            r = y - conv.bias.view(1, -1, 1, 1) if conv.bias is not None else y
            d = conv.weight[0].numel()
            gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
            cross = torch.zeros(r.shape[1], d, dtype=torch.float64, device=x.device)
            patch_sum = torch.zeros(d, dtype=torch.float64, device=x.device)
            count = 0
            for i in range(x.shape[0]):  # one image at a time bounds the unfold's memory
                p = F.unfold(
                    x[i : i + 1], conv.kernel_size, conv.dilation, conv.padding, conv.stride
                )[0]
                gram += (p @ p.T).double()
                cross += (r[i].flatten(1) @ p.T).double()
                patch_sum += p.double().sum(1)
                count += p.shape[1]
            moments.gram.append(gram)
            moments.cross.append(cross)
            moments.sq.append(float(r.double().pow(2).sum()))
            moments.scale.append(2.0 / y.numel())
            moments.patch_sum.append(patch_sum)
            moments.target_sum.append(r.double().sum(dim=(0, 2, 3)))
            moments.count.append(count)
    return moments


def moments_sgd(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    moments: LayerMoments,
    sr_grads: Sequence[torch.Tensor] | None,
    sr_bias_grads: Sequence[torch.Tensor] | None,
    selected: torch.Tensor,
    epochs: int,
    lr: float,
) -> None:
    """:func:`~dualsr.compression.pruning.objective.local_sgd` without data
    passes: per batch, the moments' exact MSE gradient plus the
    held SR gradient (``sr_grads``, None for none), masked to the selected slices; the same for
    ``bias`` (None: not updated), unmasked, with ``sr_bias_grads``."""
    mask = selected.to(weight.dtype).view(1, -1, 1, 1)
    params = [weight] if bias is None else [weight, bias]
    opt = torch.optim.SGD(params, lr=lr, momentum=LOCAL_MOMENTUM, nesterov=True)
    for _ in range(epochs):
        for b in range(len(moments.gram)):
            g = moments.gradient(weight, b, bias)
            if sr_grads is not None:
                g = g + sr_grads[b]
            if bias is not None:
                gb = moments.bias_gradient(weight, bias, b)
                if sr_bias_grads:
                    gb = gb + sr_bias_grads[b]
                bias.grad = gb
            weight.grad = g * mask
            opt.step()
    weight.grad = None
    if bias is not None:
        bias.grad = None
