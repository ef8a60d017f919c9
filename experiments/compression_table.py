"""The compression table of docs/RESULTS.md, from the runs of experiments/compress_cpu_x4.sh.

    python experiments/compression_table.py --runs runs/compress --json table.json

For every fine-tuned model ``RUNS/ft-NAME`` with an evaluation ``RUNS/eval-NAME/results.json``
(NAME = METHOD-rRATE[SUFFIX]), prints one markdown row: method, rate, parameters and their
reduction, multiply-adds at a 180x320 LR input (a 1280x720 output at x4), and PSNR / SSIM on
each evaluated dataset. Rows are grouped by rate. Nothing is typed in by hand: every number is
read from the run files or counted from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import dualsr
from dualsr.profiling import count_macs

MAC_INPUT = (180, 320)  # the LR input of a 1280x720 output at x4
NAME = re.compile(r"^(?P<method>[a-z0-9]+)-r(?P<rate>\d+)(?P<suffix>.*)$")


def scores(results_json: Path) -> dict[str, tuple[float, float]]:
    """dataset -> (PSNR, SSIM) from an eval results.json."""
    data = json.loads(results_json.read_text())
    return {d["dataset"]: (d["psnr"], d["ssim"]) for d in data["datasets"]}


def rows(runs: Path) -> list[dict]:
    """One dict per evaluated fine-tuned model under ``runs``."""
    out = []
    for ev in sorted(runs.glob("eval-*/results.json")):
        name = ev.parent.name.removeprefix("eval-")
        match = NAME.match(name)
        ckpt = runs / f"ft-{name}" / "latest.safetensors"
        if match is None or not ckpt.is_file():
            continue
        model = dualsr.load_model(ckpt)
        out.append(
            {
                "name": name,
                "method": match["method"],
                "rate": int(match["rate"]),
                "suffix": match["suffix"],
                "params": dualsr.count_parameters(model),
                "macs": count_macs(model, MAC_INPUT),
                "scores": scores(ev),
            }
        )
    return sorted(out, key=lambda r: (r["rate"], r["suffix"], r["method"]))


def markdown(table: list[dict], base: dict | None) -> str:
    """The table as markdown (``base``: the unpruned model's row, or None)."""
    sets = sorted({s for r in table for s in r["scores"]}, key=["Set5", "Set14", "BSD100"].index)
    head = "| model | rate | params | MACs (G) | " + " | ".join(sets) + " |"
    lines = [head, "|" + "---|" * (4 + len(sets))]
    full = base["params"] if base else None
    for r in ([base] if base else []) + table:
        cut = f" (-{1 - r['params'] / full:.1%})" if full and r is not base else ""
        cells = " | ".join(
            f"{r['scores'][s][0]:.2f} / {r['scores'][s][1]:.4f}" if s in r["scores"] else "-"
            for s in sets
        )
        rate = f"{r['rate']}%" if r.get("rate") is not None else "-"
        lines.append(
            f"| {r['name']} | {rate} | {r['params']:,}{cut} | {r['macs'] / 1e9:.2f} | {cells} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Print the table (and write it as JSON with --json)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=Path("runs/compress"))
    p.add_argument("--base", type=Path, default=Path("runs/compress/base.safetensors"))
    p.add_argument("--base-eval", type=Path, default=Path("runs/ablation-dual/eval"))
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args()
    base = None
    if args.base.is_file() and (args.base_eval / "results.json").is_file():
        model = dualsr.load_model(args.base)
        base = {
            "name": "unpruned",
            "rate": None,
            "params": dualsr.count_parameters(model),
            "macs": count_macs(model, MAC_INPUT),
            "scores": scores(args.base_eval / "results.json"),
        }
    table = rows(args.runs)
    print(f"MACs at a {MAC_INPUT[0]}x{MAC_INPUT[1]} LR input (1280x720 output at x4)")
    print(markdown(table, base))
    if args.json:
        args.json.write_text(json.dumps({"base": base, "rows": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
