"""DDP on CPU: two gloo processes train a tiny model for a few steps."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from dualsr.training import distributed as dist
from dualsr.training import train

from .test_training import tiny_config

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, tmp: str, port: int) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    cfg = tiny_config(Path(tmp), "train.steps=3", "run.save_every=2", "train.device=cpu")
    tdist.init_process_group("gloo")
    try:
        mean = dist.all_reduce_mean(torch.tensor([float(rank)]))
        assert mean.item() == 0.5
        assert dist.reduce_metrics({"a": float(rank)}, torch.device("cpu")) == {"a": 0.5}
        assert dist.any_rank(rank == 1, torch.device("cpu"))
        result = train(cfg)
        assert result.finished and result.step == 3
        state = {f"model.{k}": v for k, v in result.model.state_dict().items()}
        state.update({f"dual.{k}": v for k, v in result.duals.state_dict().items()})
        torch.save(state, Path(tmp) / f"rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow  # a real subprocess or end-to-end run: `make test` runs it
@pytest.mark.skipif(not tdist.is_available(), reason="torch.distributed not available")
def test_two_cpu_processes_train_identically(tmp_path: Path) -> None:
    tiny_config(tmp_path)  # writes the images once, before the processes start
    mp.spawn(_worker, args=(str(tmp_path), _free_port()), nprocs=WORLD, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert rows[0]["patches_per_s"] > 0
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == ["step-000002.safetensors", "step-000003.safetensors"]


def test_single_process_helpers_are_no_ops() -> None:
    info = dist.env_info() if "WORLD_SIZE" not in os.environ else dist.DistInfo()
    assert info.is_main and not info.distributed
    t = torch.tensor([2.0])
    assert dist.all_reduce_mean(t) is t
    assert dist.reduce_metrics({"x": 1.0}, torch.device("cpu")) == {"x": 1.0}
    assert dist.any_rank(False, torch.device("cpu")) is False
    assert dist.resolve_device("cpu", info).type == "cpu"
