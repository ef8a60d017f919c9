"""dualsr: Dual Regression Networks (DRN) and dual regression compression for super-resolution.

The public API::

    import dualsr
    model = dualsr.create_model("drn-s-x4")          # a preset, fresh weights
    model = dualsr.load_model("DRNS4x.pt")            # official .pt or dualsr .safetensors
    outputs = model(lr)                               # [LR, 2x, ..., SR] in [0, 255]
    lr = dualsr.imresize(hr, 1 / 4)                   # MATLAB-compatible bicubic
    print(dualsr.psnr(sr, hr, crop_border=4), dualsr.ssim(sr, hr, crop_border=4))
"""

from .checkpoint import Checkpoint, load_checkpoint, load_model, save_model
from .data.imresize import imresize, imresize_torch
from .errors import CheckpointError, ConfigError, DualSRError, ImageError
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

__all__ = [
    "DRN",
    "PRESETS",
    "BicubicUpscaler",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DualModels",
    "DualRegressionLoss",
    "DualSRError",
    "ImageError",
    "LossTerms",
    "TorchUpscaler",
    "__version__",
    "count_parameters",
    "create_duals",
    "create_model",
    "imresize",
    "imresize_torch",
    "load_checkpoint",
    "load_model",
    "psnr",
    "read_channel_config",
    "rgb_to_y",
    "save_model",
    "self_ensemble",
    "ssim",
]
