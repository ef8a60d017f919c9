"""Stage 1 of dual regression compression (DRC): channel number search.

Guo et al., "Towards Lightweight Super-Resolution with Dual Regression Learning", TPAMI 2024.

Every searched layer (:func:`dualsr.compression.layers.searched_layers`, official order) gets a
small set of candidate widths (:func:`~dualsr.compression.search.space.candidate_widths`) and one
logit vector ``alpha``. Its units are ranked by the L1 norm of the consumer convolution's input
slice (the weights that read each unit, summed over output channels and kernel taps; for the
upsampler the 1x1 conv's input channel ``j``, i.e. PixelShuffle group ``j``), and unit ``j`` is
multiplied by the soft mask

    m_j = sum_k softmax(alpha)_k * [rank(j) < c_k]

(:func:`~dualsr.compression.search.space.soft_width_mask`), applied through
:class:`~dualsr.compression.layers.ChannelMasks`. The ranking is recomputed from the current
weights at the start of every search step and held fixed within the step.

The search is bilevel, as in DARTS (Liu et al., ICLR 2019): the network weights (primal and
duals) minimise the dual regression loss on one half of the training images, the logits the same
loss on the other half. The logit gradient is either the second-order ("unrolled") one,

    grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+, alpha)
                                         - grad_alpha L_train(w-, alpha)) / (2 eps)
    w' = w - xi * grad_w L_train(w, alpha),  w+- = w +- eps * grad_w' L_val(w', alpha),
    eps = 0.01 / ||grad_w' L_val(w', alpha)||,

or the first-order ``grad_alpha L_val(w, alpha)``
(:func:`~dualsr.compression.search.bilevel.alpha_gradients`). The defaults
follow the released code (``DRN/channel_search/__init__.py``, ``DRN/utility.py``,
``DRN/option.py``): the logits' Adam has betas (0.9, 0.999) and its learning rate is
cosine-annealed like the weights' (to 1e-7); the weight step clips the gradient norm at 5.

The final configuration is, with ``select="argmax"`` (the paper), the most likely candidate of
every layer; with ``select="budget"`` and a :class:`Budget`, the expected widths scaled and
rounded to meet it (:func:`dualsr.compression.budget.fit_to_budget`). After every epoch the
argmax configuration can be written to a folder (``output``), and with validation images
(``val_folder``) the epoch of the best PSNR is kept, as in the release
(:func:`~dualsr.compression.search.data.validation_psnr`).

The modules, each importing only those listed before it (the options at the bottom):

* :mod:`~dualsr.compression.search.options`: the defaults and :class:`SearchOptions`, the
  options of ``dualsr search`` (a YAML file, overrides, the checks);
* :mod:`~dualsr.compression.search.space`: the candidates, the ranking and the soft masks;
* :mod:`~dualsr.compression.search.bilevel`: the logit gradients and the loss;
* :mod:`~dualsr.compression.search.data`: the two halves of the images as pyramid batches
  (:func:`make_search_data`), the model to search, the validation images;
* :mod:`~dualsr.compression.search.run`: the bookkeeping of a running search, its snapshot
  (:class:`SearchState`) and the step loop with stop signals and checkpoints;
* :mod:`~dualsr.compression.search.checkpoints`: the checkpoint files
  (:class:`SearchCheckpoints`, :func:`load_search_checkpoint`);
* :mod:`~dualsr.compression.search.result`: :class:`SearchResult` and the files it writes;
* :mod:`~dualsr.compression.search.channels`: :class:`ChannelSearch`, the search as an object
  (``step``, ``epoch``, ``run``, ``result``), and :func:`search_channels`, the one-call form.

:func:`search_channels` works on any iterables of pyramid batches; :func:`make_search_data` builds
them from image folders for ``dualsr search``. With ``checkpoints`` the search saves its state
periodically, on SIGINT/SIGTERM (then stops) and after an error; ``resume`` continues from such a
state with the same numbers as an uninterrupted run. The names below are imported on first use,
so that importing one module (e.g. the options) does not import the others.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use (see _LAZY)
    from .channels import ALPHA_INIT_STD, ChannelSearch, search_channels
    from .checkpoints import SearchCheckpoints, load_search_checkpoint
    from .data import SearchData, make_search_data
    from .options import LR_MIN, SearchOptions, load_search_options
    from .result import BEST_CONFIG, EPOCH_DIR, SearchFiles, SearchResult, write_epoch_config
    from .run import SearchState

_LAZY = {
    "ALPHA_INIT_STD": ".channels",
    "ChannelSearch": ".channels",
    "search_channels": ".channels",
    "SearchCheckpoints": ".checkpoints",
    "load_search_checkpoint": ".checkpoints",
    "SearchData": ".data",
    "make_search_data": ".data",
    "LR_MIN": ".options",
    "SearchOptions": ".options",
    "load_search_options": ".options",
    "BEST_CONFIG": ".result",
    "EPOCH_DIR": ".result",
    "SearchFiles": ".result",
    "SearchResult": ".result",
    "write_epoch_config": ".result",
    "SearchState": ".run",
}


def __getattr__(name: str) -> Any:
    """Import a public name (see ``_LAZY``) the first time it is used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ALPHA_INIT_STD",
    "BEST_CONFIG",
    "ChannelSearch",
    "EPOCH_DIR",
    "LR_MIN",
    "SearchCheckpoints",
    "SearchData",
    "SearchFiles",
    "SearchOptions",
    "SearchResult",
    "SearchState",
    "load_search_checkpoint",
    "load_search_options",
    "make_search_data",
    "search_channels",
    "write_epoch_config",
]
