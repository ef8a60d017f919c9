"""Cost of every preset at the three input-size conventions (what docs/profiling.md quotes).

For each preset: parameters; multiply-adds and activations at a 96x96 input (the size at which
the DRN releases' FLOP figures were counted), at a 720x1280 output (1280x720 image, the
lightweight-SR convention) and at a 256x256 input (NTIRE); and the measured peak memory of one
forward at the 720p output (RSS high-water mark in a fresh process, see dualsr.profiling).

    python benchmarks/profile_presets.py [--no-memory]

Writes benchmarks/results/profile_presets.json and .txt.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from dualsr.models.registry import PRESETS, create_model
from dualsr.profiling import (
    DEFAULT_OUTPUT_HW,
    NTIRE_INPUT_HW,
    conv_stats,
    count_parameters,
    input_for_output,
    measure_peak_memory,
)

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    """Profile every preset and write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    rows = []
    lines = [
        f"# python {shlex.join(sys.argv)}   (load average at start {os.getloadavg()})",
        f"{'preset':<12} {'params':>10} {'G MACs':>8} {'G MACs':>9} {'M act.':>8} {'G MACs':>8} "
        f"{'peak MiB':>9}",
        f"{'':<12} {'':>10} {'96x96 in':>8} {'720p out':>9} {'720p out':>8} {'256x256':>8} "
        f"{'720p out':>9}",
    ]
    for name in PRESETS:
        model = create_model(name).eval()
        hd = input_for_output(DEFAULT_OUTPUT_HW, model.scale)
        small, hd_stats = conv_stats(model, (96, 96)), conv_stats(model, hd)
        ntire = conv_stats(model, NTIRE_INPUT_HW)
        peak = None if args.no_memory else measure_peak_memory(model, hd, threads=args.threads)
        row = {
            "preset": name,
            "params": count_parameters(model),
            "macs_96x96_input": small.macs,
            "hd_input_hw": list(hd),
            "macs_720p_output": hd_stats.macs,
            "activations_720p_output": hd_stats.activations,
            "macs_256x256_input": ntire.macs,
            "peak_forward_bytes_720p_output": peak.forward_bytes if peak else None,
            "peak_method": peak.method if peak else None,
        }
        rows.append(row)
        mem = f"{peak.forward_bytes / 2**20:>9.0f}" if peak else f"{'-':>9}"
        lines.append(
            f"{name:<12} {row['params']:>10,} {small.macs / 1e9:>8.1f} {hd_stats.macs / 1e9:>9.1f} "
            f"{hd_stats.activations / 1e6:>8.0f} {ntire.macs / 1e9:>8.1f} {mem}"
        )
        print(lines[-1], flush=True)
    lines.append(
        "720p out = a 1280x720 output image: input 180x320 at x4, 90x160 at x8. Peak = RSS "
        "increase during one forward above weights and input, fresh process."
    )
    text = "\n".join(lines)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "profile_presets.txt").write_text(text + "\n")
    doc = {"command": lines[0][2:], "rows": rows}
    (RESULTS / "profile_presets.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
