"""Package a trained checkpoint as shipped weights: model + duals + provenance, no training state.

Evaluates the model on the benchmark folders with the papers' protocol and stores the measured
PSNR/SSIM, the recipe and the data in the safetensors metadata.

    python experiments/package_weights.py RUN_DIR/latest.safetensors \
        src/dualsr/weights/drn-t-x4.safetensors --data ../shared/datasets \
        --note "CPU recipe configs/cpu-drn-x4.yaml, 2000 steps"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import dualsr
from dualsr.evaluation import evaluate_folder
from dualsr.inference import TorchUpscaler


def main() -> None:
    """Evaluate, then write the weights with provenance; prints the JSON provenance."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="folder holding Set5/Set14/BSD100")
    parser.add_argument("--note", default="", help="recipe / how it was made")
    parser.add_argument("--run-dir", type=Path, default=None, help="training run (for config)")
    args = parser.parse_args()
    ckpt = dualsr.load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    up = TorchUpscaler(model, backend="eager")
    scores = {}
    for name in ("Set5", "Set14", "BSD100"):
        res = evaluate_folder(up, args.data / name, name=name)
        scores[name] = {"psnr": round(res.psnr, 3), "ssim": round(res.ssim, 4)}
    run_dir = args.run_dir or args.checkpoint.parent
    config = run_dir / "config.yaml"
    provenance = {
        "source": str(args.checkpoint),
        "note": args.note,
        "training": ckpt.metadata,
        "recipe": config.read_text() if config.is_file() else None,
        "data": "T91 + BSD200 (291 HR images), LR by MATLAB-style bicubic (dualsr.imresize)",
        "eval_protocol": "Y channel (BT.601), border = scale, uint8 SR, MATLAB bicubic LR",
        "eval": scores,
        "params": dualsr.count_parameters(model),
    }
    dualsr.save_model(args.output, model, ckpt.duals, metadata=provenance)
    print(json.dumps({k: v for k, v in provenance.items() if k != "recipe"}, indent=2))


if __name__ == "__main__":
    main()
