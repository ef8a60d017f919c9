"""Adapting a trained model to the user's own LR images with the dual (closed-loop) loss:
``dualsr adapt`` / :func:`dualsr.adapt` (docs/adaptation.md)."""

from .degradations import Degradation, parse_degradation
from .loop import AdaptResult, adapt, state_path
from .options import AdaptOptions

__all__ = ["AdaptOptions", "AdaptResult", "Degradation", "adapt", "parse_degradation", "state_path"]
