"""The project's experiment scripts, importable as a package from the repository root.

Each module runs as a script either way: ``python experiments/paper_grid.py ...`` or
``python -m experiments.paper_grid ...`` (from the repository root); tests import them with
``from experiments import paper_grid``.
"""
