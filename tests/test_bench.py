"""The benchmark engine and ``dualsr bench``: statistics, ceiling, failures, JSON (no timing
assertions: the numbers depend on the machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dualsr.cli import main
from dualsr.deploy import bench
from dualsr.deploy.bench import BackendResult, measure_ceiling, run_benchmark
from dualsr.profiling import count_macs

from .conftest import tiny_model

SMALL_CEILING = (8, 8, 16, 16)


def test_statistics_of_a_result() -> None:
    r = BackendResult("m", "eager", (4, 4), macs=1000, executed_macs=1000, setup_s=0.0)
    r.times_s = [0.4, 0.1, 0.2, 0.3, 0.5]
    r.finish(ceiling_macs_per_s=10_000.0)
    assert (r.median_s, r.min_s, r.max_s) == (0.3, 0.1, 0.5)
    assert r.macs_per_s == pytest.approx(1000 / 0.3)
    assert r.ceiling_fraction == pytest.approx(1000 / 0.3 / 10_000)
    assert r.spread == pytest.approx((0.4 - 0.2) / 0.3)  # interquartile range over the median


def test_ceiling_times_both_layouts() -> None:
    ceiling = measure_ceiling(SMALL_CEILING, runs=2)
    assert ceiling.macs == 8 * 8 * 9 * 16 * 16
    assert set(ceiling.layouts) == {"nchw", "channels_last"}
    assert ceiling.macs_per_s == max(ceiling.layouts.values()) > 0
    assert ceiling.layout in ceiling.layouts and len(ceiling.times_s) == 2


@pytest.mark.slow  # a real subprocess or end-to-end run: `make test` runs it
def test_benchmark_runs_every_backend_and_reports_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(model, example):  # noqa: ANN001, ANN202
        raise RuntimeError("no compiler here")

    monkeypatch.setitem(bench.BUILDERS, "compile", broken)
    model = tiny_model()
    backends = ["eager", "channels_last", "fused", "compile"]
    if _has_onnxruntime():
        backends.append("onnxruntime")
    report = run_benchmark(
        {"tiny": model},
        (8, 8),
        backends,
        threads=1,
        warmup=1,
        rounds=3,
        ceiling_shape=SMALL_CEILING,
    )
    assert report.threads == 1 and torch.get_num_threads() == 1
    by_backend = {r.backend: r for r in report.results}
    assert set(by_backend) == set(backends)
    assert by_backend["compile"].error == "RuntimeError: no compiler here"
    assert by_backend["compile"].times_s == []
    for name, r in by_backend.items():
        if name == "compile":
            continue
        assert len(r.times_s) == 3 and r.min_s <= r.median_s <= r.max_s
        assert r.macs == count_macs(model, (8, 8))
        assert r.max_abs_diff is not None and r.max_abs_diff <= 1e-3
        assert r.speedup_vs_eager is not None and r.ceiling_fraction > 0
    assert by_backend["eager"].speedup_vs_eager == 1.0
    assert by_backend["fused"].executed_macs < by_backend["fused"].macs  # folded upsamplers
    assert len(report.ceiling.times_s) == 3
    table = report.table()
    assert "load average" in table and "failed: RuntimeError" in table
    json.dumps(report.to_dict())  # serialisable
    with pytest.raises(ValueError, match="unknown backend"):
        run_benchmark({"tiny": model}, (8, 8), ["warp-drive"])


def test_bench_command_writes_json(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", str(tiny_checkpoint), "--input", "8x12", "--backends", "eager,fused"]
    args += ["--rounds", "2", "--warmup", "0", "--threads", "1", "--json", str(out)]
    assert main([*args, "--ceiling-shape", "8x8x16x16"]) == 0
    text = capsys.readouterr().out
    assert "ceiling fp32: 3x3 conv 8->8" in text and "fused" in text
    assert "ceiling bf16" not in text  # no bf16 backend timed
    doc = json.loads(out.read_text())
    assert [r["backend"] for r in doc["results"]] == ["eager", "fused"]
    assert doc["results"][0]["input_hw"] == [8, 12] and doc["threads"] == 1
    assert len(doc["loadavg_start"]) == 3 and doc["machine"]["cpu_count"] >= 1
    assert main([*args, "--ceiling-shape", "8x8"]) == 1
    assert main(["bench", str(tiny_checkpoint), "--backends", "eager,turbo"]) == 1


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def test_isolated_eager_matches_the_model_and_times_itself() -> None:
    model = tiny_model().eval()
    x = torch.rand(1, 3, 8, 8) * 255
    runner = bench.IsolatedEager(model, threads=1)
    try:
        out = runner(x)  # first call: the output comes back for the parity check
        with torch.inference_mode():
            assert torch.allclose(out, model(x)[-1], atol=1e-4)
        assert runner(x) is None and runner.inner_seconds is not None
        assert runner.inner_seconds > 0
    finally:
        runner.close()


def test_without_malloc_tuning_eager_runs_in_process() -> None:
    report = run_benchmark(
        {"tiny": tiny_model()},
        (8, 8),
        ["eager"],
        threads=1,
        warmup=0,
        rounds=1,
        ceiling_shape=SMALL_CEILING,
        tune_malloc=False,
    )
    assert report.machine["eager_process"] == "same process"
    assert report.machine["malloc_tuning"] is None
    assert "eager baseline: same process" in report.table()
