"""PyTorch DDP in a few functions: set-up from torchrun's environment, rank helpers, reductions.

``torchrun --nproc_per_node N -m dualsr train ...`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them and joins the process group (gloo
on CPU, nccl on GPU). Without them (or with ``WORLD_SIZE=1``) everything is a no-op, so the same
code runs on one CPU. Rank 0 logs and writes files; every rank runs every collective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, which logs and saves."""
        return self.rank == 0


def env_info() -> DistInfo:
    """The rank layout torchrun (or a launcher setting the same variables) describes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank=rank, local_rank=local, world_size=world)


def resolve_device(preference: str, info: DistInfo) -> torch.device:
    """``auto`` picks CUDA when available; each DDP process gets ``cuda:LOCAL_RANK``."""
    from ..errors import ConfigError

    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but CUDA is not available; use cpu or auto")
    use_cuda = preference == "cuda" or (preference == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    return torch.device("cuda", info.local_rank if info.distributed else 0)


def setup(device: torch.device, info: DistInfo) -> None:
    """Join the process group when ``info`` describes several processes (else do nothing)."""
    if not info.distributed or dist.is_initialized():
        return
    if device.type == "cuda":  # pragma: no cover - needs GPUs
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def teardown() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if active():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over processes (returned as a new tensor; identity alone)."""
    if not active():
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def reduce_metrics(metrics: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average a dict of floats over processes (same keys on every rank)."""
    if not active() or not metrics:
        return dict(metrics)
    keys = sorted(metrics)
    values = all_reduce_mean(
        torch.tensor([metrics[k] for k in keys], device=device, dtype=torch.float64)
    )
    return {k: float(v) for k, v in zip(keys, values.tolist(), strict=True)}


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is set on any process (every process gets the same answer)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
