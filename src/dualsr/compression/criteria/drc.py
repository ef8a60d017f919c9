"""``drc``: dual regression channel pruning (Guo et al., TPAMI 2024), DRC's stage 2."""

from __future__ import annotations

from dataclasses import dataclass

from .dcp import DCP


@dataclass
class DRC(DCP):
    """:class:`~dualsr.compression.criteria.dcp.DCP`'s greedy on the loss with the dual
    regression term: ``MSE + gamma (primal + lambda dual)``."""

    name = "drc"
    description = (
        "dual regression channel pruning: greedy by gradient norm of MSE + gamma (primal + "
        "lambda dual)"
    )
    dual = True
