"""``--backend auto``: CPU detection, the rules, the cached calibration, the CLI wiring (no
timing: the calibration's measurements are replaced by fixed numbers)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualsr.cli import main
from dualsr.data.image_io import write_image
from dualsr.deploy import autoselect
from dualsr.deploy import cpu as cpu_module
from dualsr.deploy import precision as precision_module
from dualsr.deploy.bench import run_benchmark
from dualsr.deploy.cpu import CpuInfo, cpu_kind, parse_cpuinfo, physical_limit
from dualsr.inference import TorchUpscaler, auto_tile, forward_bytes_per_lr_pixel

from .conftest import random_image, tiny_model

AVX2 = CpuInfo("Mock AVX2 CPU", ("avx2", "fma"), 4, 3.0, "cpu MHz")
AVX512 = CpuInfo("Mock AVX-512 CPU", ("avx2", "fma", "avx512f", "avx512_vnni"), 4, 2.0, "cpu MHz")
NATIVE = CpuInfo(
    "Mock bf16 CPU", ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"), 4, 2.0, "cpu MHz"
)
FUSED, ORT = ("fused", "fp32"), ("onnxruntime", "fp32")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache root."""
    path = tmp_path / "home"
    monkeypatch.setenv("DUALSR_HOME", str(path))
    return path


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Pretend to be a CPU (a CpuInfo), with or without ONNX Runtime."""

    def set_machine(info: CpuInfo, onnxruntime: bool = True) -> None:
        bf16 = tuple(f for f in cpu_module.BF16_FLAGS if info.has(f))
        monkeypatch.setattr(autoselect, "detect_cpu", lambda: info)
        monkeypatch.setattr(precision_module, "cpu_bf16_features", lambda: bf16)
        monkeypatch.setattr(autoselect, "onnxruntime_available", lambda: onnxruntime)

    return set_machine


@pytest.fixture
def timings(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Replace the calibration's measurement by fixed seconds per candidate (and, unless
    ``real_builds``, its builds by a placeholder); returns the list of measured candidates."""
    calls: list[tuple[str, str]] = []

    def set_timings(table: dict[tuple[str, str], float], real_builds: bool = False) -> list:
        def fake_measure(candidate, upscaler, image):  # noqa: ANN001, ANN202
            calls.append(candidate)
            return table[candidate]

        monkeypatch.setattr(autoselect, "measure", fake_measure)
        if not real_builds:
            monkeypatch.setattr(autoselect, "build_upscaler", lambda *a, **k: object())
        return calls

    return set_timings


def _no_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("calibration ran")

    monkeypatch.setattr(autoselect, "measure", refuse)


# ----------------------------------------------------------------------------------------------
# cpu.py
# ----------------------------------------------------------------------------------------------
def test_physical_limit_arithmetic_for_avx2_and_avx512() -> None:
    macs, how = physical_limit(AVX2, 4, "fp32")
    assert macs == pytest.approx(4 * 2 * 8 * 3.0e9)  # cores x FMA units x lanes x clock
    assert "8 fp32 lanes" in how and "nominal" in how and "3.00 GHz" in how
    assert physical_limit(AVX2, 4, "bf16").macs_per_s == pytest.approx(macs)  # emulated
    assert physical_limit(AVX2, 4, "int8").macs_per_s == pytest.approx(2 * macs)  # no VNNI
    vnni = CpuInfo("x", ("avx2", "fma", "avx_vnni"), 4, 3.0, "cpu MHz")
    assert physical_limit(vnni, 4, "int8").macs_per_s == pytest.approx(4 * macs)
    assert physical_limit(AVX2, 2, "fp32").macs_per_s == pytest.approx(macs / 2)
    assert physical_limit(AVX2, 16, "fp32").macs_per_s == pytest.approx(macs)  # 4 cpus at most

    fp32 = physical_limit(NATIVE, 4, "fp32").macs_per_s
    assert fp32 == pytest.approx(4 * 2 * 16 * 2.0e9)
    assert physical_limit(NATIVE, 4, "bf16").macs_per_s == pytest.approx(2 * fp32)
    assert physical_limit(NATIVE, 4, "int8").macs_per_s == pytest.approx(4 * fp32)
    assert physical_limit(AVX512, 4, "bf16").macs_per_s == pytest.approx(fp32)  # no avx512_bf16

    assert physical_limit(CpuInfo("arm", (), 4, 2.0), 4).macs_per_s is None
    no_clock = physical_limit(CpuInfo("x", ("avx2",), 4, None), 4)
    assert no_clock.macs_per_s is None and "clock unknown" in no_clock.assumptions
    with pytest.raises(ValueError, match="unknown precision"):
        physical_limit(AVX2, 4, "fp16")


def test_cpu_kinds_and_cpuinfo_parsing() -> None:
    assert cpu_kind(AVX2) == "avx2" and cpu_kind(AVX512) == "avx512"
    assert cpu_kind(NATIVE) == "native-bf16"
    assert cpu_kind(CpuInfo("x", ("amx_bf16",), 1)) == "native-bf16"
    assert cpu_kind(CpuInfo("x", (), 1)) == "other"
    text = (
        "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\ncpu MHz\t\t: 2100.5\n"
        "flags\t\t: fpu sse avx2 fma avx512f avx512_bf16\n\nprocessor\t: 1\n"
        "model name\t: Some CPU @ 2.0GHz\ncpu MHz\t\t: 900.0\nflags\t\t: fpu\n"
    )
    model, flags, ghz = parse_cpuinfo(text)
    assert model == "Some CPU @ 2.0GHz" and {"avx2", "avx512_bf16"} <= flags
    assert ghz == pytest.approx(2.1005)


def test_detect_cpu_without_proc_cpuinfo_uses_torch_capability(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpu_module.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(cpu_module, "torch_bf16_features", lambda: None)
    info = cpu_module.detect_cpu.__wrapped__()
    assert info.flags == ("avx2", "fma") and cpu_kind(info) == "avx2" and info.clock_ghz is None
    monkeypatch.setattr(cpu_module, "torch_bf16_features", lambda: ("avx512_bf16",))
    assert cpu_kind(cpu_module.detect_cpu.__wrapped__()) == "native-bf16"


def test_cpu_kind_agrees_with_precision_auto() -> None:
    native = precision_module.native_bf16("cpu")
    assert (cpu_kind(cpu_module.detect_cpu()) == "native-bf16") == native


# ----------------------------------------------------------------------------------------------
# the choice
# ----------------------------------------------------------------------------------------------
def test_native_bf16_picks_fused_bf16_without_calibration(
    machine, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:  # noqa: ANN001
    machine(NATIVE)
    _no_measuring(monkeypatch)
    choice = autoselect.choose_backend(tiny_model())
    assert (choice.backend, choice.precision) == ("fused", "bf16") and choice.timings is None
    assert "docs/deployment.md" in choice.reason and "avx512_bf16" in choice.reason
    up = autoselect.auto_upscaler(tiny_model())
    assert isinstance(up, TorchUpscaler) and (up.backend, up.precision) == ("fused", "bf16")
    assert not (home / "autoselect.json").exists()


def test_avx2_calibrates_once_picks_the_fastest_and_caches(
    machine,
    timings,
    home: Path,  # noqa: ANN001
) -> None:
    machine(AVX2)
    calls = timings({FUSED: 0.020, ORT: 0.012})
    model = tiny_model()
    choice = autoselect.choose_backend(model)
    assert (choice.backend, choice.precision) == ORT and not choice.cached
    assert sorted(calls) == [FUSED, ORT]
    assert choice.timings == {"fused fp32": 0.020, "onnxruntime fp32": 0.012}
    assert "avx2 CPU" in choice.reason and "int8 not considered" in choice.reason
    data = json.loads((home / "autoselect.json").read_text())
    (entry,) = data["entries"].values()
    assert entry["backend"] == "onnxruntime" and entry["machine"]["cpu"] == AVX2.model

    again = autoselect.choose_backend(model)
    assert (again.backend, again.precision) == ORT and again.cached
    assert len(calls) == 2  # no second calibration
    assert autoselect.known_choice(model) == again

    fresh = autoselect.choose_backend(model, cache=False)  # measures, writes nothing
    assert len(calls) == 4 and not fresh.cached
    assert len(json.loads((home / "autoselect.json").read_text())["entries"]) == 1


def test_the_cache_is_keyed_by_weights_request_and_threads(machine, timings, home: Path) -> None:  # noqa: ANN001
    machine(AVX2)
    calls = timings({FUSED: 0.010, ORT: 0.020})
    assert autoselect.choose_backend(tiny_model()).backend == "fused"
    assert len(calls) == 2
    assert autoselect.choose_backend(tiny_model(seed=1)).backend == "fused"  # other weights
    assert len(calls) == 4
    autoselect.choose_backend(tiny_model(), precision_request="fp32")
    assert len(calls) == 6
    autoselect.choose_backend(tiny_model(), threads=7)
    assert len(calls) == 8
    for repeat in (tiny_model(), tiny_model(seed=1)):
        assert autoselect.choose_backend(repeat).cached
    assert len(calls) == 8
    assert autoselect.model_digest(tiny_model()) == autoselect.model_digest(tiny_model())
    assert autoselect.model_digest(tiny_model()) != autoselect.model_digest(tiny_model(seed=1))


def test_a_corrupt_cache_is_ignored_with_a_warning_and_rewritten(
    machine,
    timings,
    home: Path,  # noqa: ANN001
) -> None:
    machine(AVX2)
    calls = timings({FUSED: 0.010, ORT: 0.020})
    home.mkdir(parents=True)
    (home / "autoselect.json").write_text("{ not json")
    with pytest.warns(UserWarning, match="backend cache .* unreadable.*calibrates again"):
        choice = autoselect.choose_backend(tiny_model())
    assert choice.backend == "fused" and len(calls) == 2
    data = json.loads((home / "autoselect.json").read_text())
    assert data["version"] == autoselect.CACHE_VERSION and len(data["entries"]) == 1
    (entry,) = data["entries"].values()
    entry["backend"] = "warp-drive"  # valid JSON, impossible content
    (home / "autoselect.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="unreadable"):
        assert autoselect.choose_backend(tiny_model()).backend == "fused"
    assert len(calls) == 4


def test_precision_fp32_never_picks_bf16_or_int8(
    machine, timings, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    monkeypatch.setattr(autoselect, "int8_allowed", lambda model: "measured -0.01 dB (test)")
    table = {FUSED: 0.05, ORT: 0.04, ("fused", "bf16"): 0.001, ("onnxruntime", "int8"): 0.001}
    for info in (NATIVE, AVX2):
        machine(info)
        calls = timings(table)
        found, _ = autoselect.candidates(tiny_model(), "fp32")
        assert found == [FUSED, ORT]
        choice = autoselect.choose_backend(tiny_model(), precision_request="fp32", cache=False)
        assert choice.precision == "fp32" and (choice.backend, choice.precision) == ORT
        assert set(calls) == {FUSED, ORT}
        calls.clear()
    # --precision auto on a VNNI CPU with INT8 admitted: a candidate, and the fastest wins
    machine(AVX512)
    calls = timings(table)
    choice = autoselect.choose_backend(tiny_model(), cache=False)
    assert (choice.backend, choice.precision) == ("onnxruntime", "int8")
    assert "int8 allowed: measured -0.01 dB (test)" in choice.reason
    # --precision bf16: the bf16 path only, never measured
    _no_measuring(monkeypatch)
    choice = autoselect.choose_backend(tiny_model(), precision_request="bf16")
    assert (choice.backend, choice.precision) == ("fused", "bf16")


def test_int8_is_excluded_while_int8_allowed_says_no(machine, timings) -> None:  # noqa: ANN001
    machine(AVX2)
    assert autoselect.int8_allowed(tiny_model()) is None
    found, notes = autoselect.candidates(tiny_model(), "auto")
    assert ("onnxruntime", "int8") not in found and found == [FUSED, ORT]
    assert any("int8 not considered" in n and "0.03 dB" in n for n in notes)
    calls = timings({FUSED: 0.02, ORT: 0.03})
    autoselect.choose_backend(tiny_model())
    assert ("onnxruntime", "int8") not in calls


def test_int8_is_admitted_by_a_record_of_that_exact_model(
    machine, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    machine(AVX512)  # VNNI: the kernels the records were measured with
    model, other = tiny_model(), tiny_model()
    with torch.no_grad():
        other.head.weight.add_(1e-3)  # same architecture, other weights: another digest
    record = "Set5/Set14/BSD100 -0.01/-0.01/-0.01 dB (test)"
    monkeypatch.setitem(autoselect.INT8_RECORDS, autoselect.model_digest(model), record)
    assert autoselect.int8_allowed(model) == record
    assert autoselect.int8_allowed(other) is None
    found, notes = autoselect.candidates(model, "auto")
    assert found[-1] == ("onnxruntime", "int8") and f"int8 allowed: {record}" in notes
    assert ("onnxruntime", "int8") not in autoselect.candidates(other, "auto")[0]
    machine(AVX2)  # no VNNI: the record does not hold for its kernels
    found, notes = autoselect.candidates(model, "auto")
    assert ("onnxruntime", "int8") not in found
    assert any("measured with VNNI kernels and this CPU has none" in n for n in notes)


def test_the_int8_records_name_the_shipped_drn_t_x4_only() -> None:
    from dualsr.pretrained import resolve_model

    assert "drn-t-x4" in (autoselect.int8_allowed(resolve_model("drn-t-x4")) or "")
    for name in ("drn-t50-x4", "drn-t-x8"):  # measured beyond 0.03 dB
        assert autoselect.int8_allowed(resolve_model(name)) is None
    assert autoselect.INT8_LAYERS == "rcab"  # the recipe the records were measured with


def test_without_onnxruntime_the_fused_path_is_the_only_candidate(
    machine, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    machine(AVX2, onnxruntime=False)
    _no_measuring(monkeypatch)
    choice = autoselect.choose_backend(tiny_model())
    assert (choice.backend, choice.precision) == FUSED
    assert "only candidate" in choice.reason and "onnxruntime not installed" in choice.reason


def test_a_candidate_that_fails_to_build_is_not_picked(
    machine, timings, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    machine(AVX2)
    calls = timings({FUSED: 0.05, ORT: 0.01})

    def build(model, candidate, threads=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if candidate == ORT:
            raise RuntimeError("no kernel for this op")
        return object()

    monkeypatch.setattr(autoselect, "build_upscaler", build)
    choice = autoselect.choose_backend(tiny_model())
    assert choice.backend == "fused" and calls == [FUSED]
    assert "onnxruntime fp32 failed (RuntimeError: no kernel for this op)" in choice.reason


# ----------------------------------------------------------------------------------------------
# the ONNX Runtime path: export cache, tiling, CLI
# ----------------------------------------------------------------------------------------------
def test_the_onnx_runtime_path_tiles_like_the_torch_path(
    monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = tiny_model()
    up = autoselect.build_upscaler(model, ORT, tile="auto", tile_overlap=8)
    assert up.tile == auto_tile(model, "fp32", 8) and up.backend == "onnxruntime"
    (exported,) = (home / "onnx").iterdir()
    assert exported.suffix == ".onnx"
    # a whole image that would not fit in memory is tiled first, as on the torch path
    per_px = forward_bytes_per_lr_pixel(model, "fp32")
    monkeypatch.setattr("dualsr.tiling.available_memory_bytes", lambda: per_px * 2 * 40 * 40)
    whole = autoselect.build_upscaler(model, ORT, tile=0)
    img = random_image(80, 70)
    with pytest.warns(UserWarning, match="whole would need about"):
        out = whole.upscale_within_memory(img)
    assert out.shape == (320, 280, 3) and whole.tile == 0  # the tile is put back


def test_cli_auto_with_a_cached_onnxruntime_choice_matches_backend_onnxruntime(
    tmp_path: Path,
    tiny_checkpoint: Path,
    machine,
    timings,
    caplog: pytest.LogCaptureFixture,
    home: Path,
) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    machine(AVX2)
    calls = timings({FUSED: 0.03, ORT: 0.01}, real_builds=True)
    src = tmp_path / "in.png"
    write_image(src, random_image(19, 23, seed=4))
    base = ["upscale", str(src), "-m", str(tiny_checkpoint)]
    caplog.set_level(logging.INFO, logger="dualsr.deploy.autoselect")
    assert main([*base, "-o", str(tmp_path / "auto.png")]) == 0  # calibrates, exports once
    assert len(calls) == 2 and "backend auto: onnxruntime fp32" in caplog.text
    assert len(list((home / "onnx").iterdir())) == 1

    def no_export(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("exported again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("dualsr.deploy.onnx.export_onnx", no_export)
        assert main([*base, "-o", str(tmp_path / "auto2.png")]) == 0  # cached: no export
    assert len(calls) == 2  # nor a second calibration
    assert main([*base, "-o", str(tmp_path / "ort.png"), "--backend", "onnxruntime"]) == 0
    auto = np.asarray(Image.open(tmp_path / "auto.png"))
    assert np.array_equal(auto, np.asarray(Image.open(tmp_path / "auto2.png")))
    assert np.array_equal(auto, np.asarray(Image.open(tmp_path / "ort.png")))


def test_the_int8_candidate_is_quantized_once_into_the_cache(home: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = tiny_model(n_feats=8, n_blocks=2)
    img = random_image(12, 10)
    up = autoselect.build_upscaler(model, ("onnxruntime", "int8"))
    assert up.precision == "int8" and up.backend == "onnxruntime"
    (quantized,) = (home / "onnx").iterdir()
    assert quantized.name.endswith("-int8-rcab.onnx")
    ref = TorchUpscaler(model, precision="fp32")(img, out_dtype=np.float32)
    out = up(img, out_dtype=np.float32)
    assert out.shape == ref.shape and 0 < np.abs(out - ref).mean() < 5  # lossy, but close
    assert autoselect.cached_onnx(model, "int8") == quantized  # reused, not redone


# ----------------------------------------------------------------------------------------------
# dualsr env and dualsr bench
# ----------------------------------------------------------------------------------------------
def test_env_prints_the_backend_line_and_calibrates_only_when_asked(
    machine,
    timings,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    machine(NATIVE)
    _no_measuring(monkeypatch)
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("backend auto"))
    assert "fused bf16 for drn-t-x4" in line and "docs/deployment.md" in line
    assert "limit fp32" in out and "nominal" in out

    machine(AVX2)
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("backend auto"))
    assert "not calibrated yet, runs on first upscale" in line
    assert "fused fp32, onnxruntime fp32" in line

    calls = timings({FUSED: 0.02, ORT: 0.01})
    assert main(["env", "--calibrate"]) == 0
    assert len(calls) == 2
    assert "onnxruntime fp32 for drn-t-x4" in capsys.readouterr().out
    assert main(["env"]) == 0  # now cached: shown, not measured again
    out = capsys.readouterr().out
    assert "onnxruntime fp32 for drn-t-x4" in out and "cached" in out and len(calls) == 2


def test_env_clear_cache_removes_the_choices_and_the_exports(
    machine,
    timings,
    home: Path,
    capsys: pytest.CaptureFixture,  # noqa: ANN001
) -> None:
    machine(AVX2)
    timings({FUSED: 0.02, ORT: 0.01})
    autoselect.choose_backend(tiny_model())
    (home / "onnx").mkdir()
    (home / "onnx" / "model.onnx").write_bytes(b"graph")
    (home / "weights").mkdir()  # downloaded weights are not part of it
    assert main(["env", "--clear-cache"]) == 0
    out = capsys.readouterr().out
    assert f"removed {home / 'autoselect.json'}" in out and f"removed {home / 'onnx'}" in out
    assert not (home / "autoselect.json").exists() and not (home / "onnx").exists()
    assert (home / "weights").is_dir()
    assert main(["env", "--clear-cache"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_bench_shows_the_physical_limit_and_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from dualsr.deploy import bench as bench_module

    monkeypatch.setattr(bench_module, "detect_cpu", lambda: AVX2)
    report = run_benchmark(
        {"tiny": tiny_model()},
        input_hw=(8, 8),
        backends=["fused"],
        threads=2,
        warmup=0,
        rounds=1,
        ceiling_shape=(8, 8, 16, 16),
        tune_malloc=False,
    )
    assert report.ceiling.physical_limit_macs_per_s == pytest.approx(2 * 2 * 8 * 3.0e9)
    assert "8 fp32 lanes" in report.ceiling.physical_limit_assumptions
    assert report.machine["cpu_kind"] == "avx2" and report.machine["cpu_flags"] == ["avx2", "fma"]
    text = report.table()
    assert "physical limit 96.0 G MACs/s" in text and "kind avx2; flags avx2 fma" in text
    doc = report.to_dict()
    assert doc["ceiling"]["physical_limit_macs_per_s"] == pytest.approx(96e9)
    assert "macs_per_s" in doc["ceiling"] and "cpu_count" in doc["machine"]  # kept keys
