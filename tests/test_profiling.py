"""Cost counting: MACs, activations and peak memory, checked by hand, against an independent
FLOP counter and against the published figures; the ``dualsr profile`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import dualsr
from dualsr.cli import main
from dualsr.profiling import (
    conv_stats,
    count_activations,
    count_macs,
    input_for_output,
    measure_peak_memory,
    parse_hw,
    profile_model,
)


def test_macs_of_a_single_conv_by_hand() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, (10, 12)) == 10 * 12 * 8 * 3 * 9
    strided = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    assert count_macs(strided, (10, 12), in_channels=4) == 5 * 6 * 6 * 2 * 9


def test_drn_s_x4_matches_the_published_figure() -> None:
    # the release quotes 109.9 G for DRN-S x4, which equals MACs at a 96 x 96 LR input
    macs = count_macs(dualsr.create_model("drn-s-x4"), (96, 96))
    assert abs(macs / 1e9 - 109.9) / 109.9 < 0.01


def test_counting_does_not_touch_the_model() -> None:
    model = dualsr.DRN(4, 4, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (8, 8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"


def test_activations_of_a_single_conv_by_hand() -> None:
    assert count_activations(nn.Conv2d(3, 8, 3, padding=1), (10, 12)) == 8 * 10 * 12
    strided = nn.Conv2d(3, 6, 3, stride=2, padding=1)
    assert count_activations(strided, (10, 12)) == 6 * 5 * 6


@pytest.mark.parametrize(
    ("model", "hw"),
    [(dualsr.DRN(4, 4, 1), (12, 16)), (dualsr.DRN(8, 4, 2), (6, 5)), ("drn-s-x4", (8, 8))],
)
def test_macs_agree_with_torch_flop_counter(model: nn.Module | str, hw: tuple[int, int]) -> None:
    # an independent count from a real forward: torch's FLOP counter (2 FLOPs per multiply-add)
    model = dualsr.create_model(model) if isinstance(model, str) else model
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, *hw) * 255)
    flops = counter.get_total_flops()
    assert flops > 0
    assert abs(flops - 2 * count_macs(model, hw)) / flops < 0.01


def test_drn_s_x4_at_a_720p_output_is_about_688_g() -> None:
    model = dualsr.create_model("drn-s-x4")
    assert input_for_output((720, 1280), 4) == (180, 320)
    macs = count_macs(model, (180, 320))
    assert abs(macs / 1e9 - 688) / 688 < 0.01
    # MACs grow with the number of pixels: 180x320 has 6.25x the pixels of 96x96
    assert 6.2 < macs / count_macs(model, (96, 96)) < 6.3


def test_peak_memory_is_measured_from_a_real_forward() -> None:
    model = dualsr.DRN(4, 4, 1).eval()
    hw = (96, 96)
    largest: list[int] = []  # the largest conv output must fit in the measured peak
    hooks = [
        m.register_forward_hook(lambda mod, i, o: largest.append(o.numel() * o.element_size()))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.rand(1, 3, *hw))
    for h in hooks:
        h.remove()
    peak = measure_peak_memory(model, hw, threads=1)
    assert peak.forward_bytes >= max(largest)
    assert peak.peak_rss_bytes > peak.forward_bytes
    assert peak.method in ("VmHWM after clear_refs", "ru_maxrss")


def test_profile_reports_every_figure_with_the_input_size() -> None:
    model = dualsr.DRN(4, 4, 1)
    prof = profile_model(model, (10, 12), memory=False)
    stats = conv_stats(model, (10, 12))
    assert prof.output_hw == (40, 48)
    assert (prof.macs, prof.activations, prof.convs) == (stats.macs, stats.activations, stats.convs)
    assert prof.params == dualsr.count_parameters(model)
    text = prof.format()
    assert "10x12" in text and "40x48" in text
    lines = [ln for ln in text.splitlines() if ln.startswith(("multiply-adds", "activations"))]
    assert len(lines) == 2 and all("input 10x12" in ln for ln in lines)


def test_size_parsing() -> None:
    assert parse_hw("180x320") == (180, 320)
    for bad in ("180", "axb", "0x5", "1x2x3"):
        with pytest.raises(ValueError):
            parse_hw(bad)
    with pytest.raises(ValueError, match="divisible"):
        input_for_output((721, 1280), 4)


def test_profile_command(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "p.json"
    assert main(["profile", str(tiny_checkpoint), "--no-memory", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "180x320" in text and "720x1280" in text  # default: a 1280x720 output
    doc = json.loads(out.read_text())
    assert doc["input_hw"] == [180, 320]
    assert doc["macs"] == count_macs(dualsr.load_model(tiny_checkpoint), (180, 320))
    assert (
        main(["profile", str(tiny_checkpoint), "--ntire", "--no-memory", "--json", str(out)]) == 0
    )
    doc = json.loads(out.read_text())
    assert doc["input_hw"] == [256, 256] and doc["memory"] is None
    assert main(["profile", str(tiny_checkpoint), "--output", "64x48", "--no-memory"]) == 0
    assert "16x12 (HxW) -> output 64x48" in capsys.readouterr().out


def test_profile_command_on_a_width_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = tmp_path / "widths.txt"
    full = dualsr.create_model("drn-s-x4").channel_widths()
    cfg.write_text("\n".join(str(max(4, w // 2)) for w in full))
    out = tmp_path / "p.json"
    args = ["profile", "drn-s-x4", "--input", "8x8", "--no-memory", "--json", str(out)]
    assert main([*args, "--channel-config", str(cfg)]) == 0
    half = json.loads(out.read_text())["macs"]
    assert half < 0.6 * count_macs(dualsr.create_model("drn-s-x4"), (8, 8))
