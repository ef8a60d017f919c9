"""The building blocks of channel pruning, one concept per module.

* :mod:`~dualsr.compression.pruning.objective`: the pruning loss of one layer
  (:class:`~dualsr.compression.pruning.objective.LayerObjective`), gradient passes, local SGD,
  truncated forward passes;
* :mod:`~dualsr.compression.pruning.moments`: exact reconstruction gradients from input moments
  (the moments greedy);
* :mod:`~dualsr.compression.pruning.scores`: unit scores from a gradient, the top units;
* :mod:`~dualsr.compression.pruning.features`: sampled consumer statistics (ThiNet, CP);
* :mod:`~dualsr.compression.pruning.solvers`: least squares and LASSO;
* :mod:`~dualsr.compression.pruning.widths`: how a rate becomes a channel configuration.

Imports run one way: these modules import nothing from the greedy
(:mod:`dualsr.compression.greedy`), the criteria (:mod:`dualsr.compression.criteria`) or the
pruning loop (:mod:`dualsr.compression.prune`), which build on them in that order.
"""
