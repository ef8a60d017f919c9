"""dualsr: Dual Regression Networks (DRN) and dual regression compression for super-resolution.

The public API::

    import dualsr
    model = dualsr.create_model("drn-s-x4")          # a preset, fresh weights
    model = dualsr.load_model("DRNS4x.pt")            # official .pt or dualsr .safetensors
    outputs = model(lr)                               # [LR, 2x, ..., SR] in [0, 255]
    lr = dualsr.imresize(hr, 1 / 4)                   # MATLAB-compatible bicubic
    print(dualsr.psnr(sr, hr, crop_border=4), dualsr.ssim(sr, hr, crop_border=4))

The pipeline stages, one entry point each (imported on first use, so ``import dualsr`` stays
light)::

    result = dualsr.train(dualsr.load_config("configs/cpu-drn-x4.yaml"))   # training
    found = dualsr.search_channels(model, duals, train, val, target_rate=0.5)  # search
    pruned = dualsr.prune_model(model, duals, found.channel_config, batches).model  # prune
    dualsr.finetune(dualsr.finetune_config("pruned.safetensors", "runs/ft", ["T91"]))
    results = dualsr.evaluate(dualsr.TorchUpscaler(model), ["Set5"])     # evaluation
    print(dualsr.profile_model(model, (180, 320)))                        # deployment: profile
    fast = dualsr.fuse_for_inference(model)                               # fast CPU path
    dualsr.export_onnx(model, "model.onnx")                               # export
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, ConfigError, DualSRError, ImageError

if TYPE_CHECKING:  # the names below are imported on first use (see _LAZY)
    from .checkpoint import Checkpoint, load_checkpoint, load_model, save_model
    from .data.imresize import imresize, imresize_torch
    from .inference import BicubicUpscaler, TorchUpscaler, self_ensemble
    from .losses import DualRegressionLoss, LossTerms
    from .metrics import psnr, rgb_to_y, ssim
    from .models import (
        DRN,
        PRESETS,
        DualModels,
        count_parameters,
        create_duals,
        create_model,
        read_channel_config,
    )

__version__ = "0.1.0"

# name -> submodule, loaded on first access: nothing here imports PyTorch until a name that needs
# it is used, so `import dualsr` (and `dualsr --version`) stays fast
_LAZY = {
    "Checkpoint": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "load_model": ".checkpoint",
    "save_model": ".checkpoint",
    "imresize": ".data.imresize",
    "imresize_torch": ".data.imresize",
    "BicubicUpscaler": ".inference",
    "TorchUpscaler": ".inference",
    "self_ensemble": ".inference",
    "DualRegressionLoss": ".losses",
    "LossTerms": ".losses",
    "psnr": ".metrics",
    "rgb_to_y": ".metrics",
    "ssim": ".metrics",
    "DRN": ".models",
    "PRESETS": ".models",
    "DualModels": ".models",
    "count_parameters": ".models",
    "create_duals": ".models",
    "create_model": ".models",
    "read_channel_config": ".models",
    "load_config": ".training",
    "train": ".training",
    "TrainConfig": ".training",
    "search_channels": ".compression.search",
    "prune_model": ".compression.prune",
    "finetune": ".compression.finetune",
    "finetune_config": ".compression.finetune",
    "evaluate": ".evaluation",
    "adapt": ".adaptation",
    "AdaptOptions": ".adaptation",
    "TiledUpscaler": ".inference",
    "resolve_model": ".pretrained",
    "profile_model": ".profiling",
    "count_macs": ".profiling",
    "fuse_for_inference": ".deploy.fused",
    "export_onnx": ".deploy.onnx",
}


def __getattr__(name: str) -> Any:
    """Import a public name (see ``_LAZY``), or a submodule, the first time it is used."""
    module = _LAZY.get(name)
    if module is None:
        try:  # a submodule, e.g. dualsr.models, as an eager import used to make available
            return import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
        raise AttributeError(f"module 'dualsr' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DRN",
    "PRESETS",
    "AdaptOptions",
    "BicubicUpscaler",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DualModels",
    "DualRegressionLoss",
    "DualSRError",
    "ImageError",
    "LossTerms",
    "TiledUpscaler",
    "TorchUpscaler",
    "TrainConfig",
    "__version__",
    "adapt",
    "count_macs",
    "count_parameters",
    "create_duals",
    "create_model",
    "evaluate",
    "export_onnx",
    "finetune",
    "finetune_config",
    "fuse_for_inference",
    "imresize",
    "imresize_torch",
    "load_checkpoint",
    "load_config",
    "load_model",
    "profile_model",
    "prune_model",
    "psnr",
    "read_channel_config",
    "resolve_model",
    "rgb_to_y",
    "save_model",
    "search_channels",
    "self_ensemble",
    "ssim",
    "train",
]
