"""What a shipped model records about how it was made: a portable recipe, the training cost and
the PSNR-vs-cost curve of its run.

Shipped weights carry their provenance in the safetensors metadata (``dualsr models`` prints it).
It must describe data sets and recipes, not the machine that trained them: :func:`portable_recipe`
replaces folders by their data-set names and drops run and cache directories. The cost and the
curve come from the run's ``metrics.jsonl`` (:func:`training_cost`, :func:`psnr_curve`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

__all__ = ["portable_recipe", "psnr_curve", "read_metrics", "training_cost"]

#: Keys (dotted) of a training config that name only where things were on the training machine.
MACHINE_KEYS = ("data.cache_dir", "run.dir")


def _name(path: object) -> object:
    """The last component of a path string (``/a/b/T91`` -> ``T91``); other values unchanged."""
    if isinstance(path, str) and path:
        return PurePath(path.rstrip("/\\")).name or path
    return path


def _looks_like_path(value: str) -> bool:
    return " " not in value and ("/" in value or "\\" in value or value.startswith("~"))


def _strip_paths(value: Any) -> Any:
    """Every path-like string in a nested structure replaced by its last component."""
    if isinstance(value, dict):
        return {k: _strip_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_paths(v) for v in value]
    if isinstance(value, str) and _looks_like_path(value):
        return _name(value)
    return value


def portable_recipe(config: Mapping[str, Any]) -> dict[str, Any]:
    """A training config (as a dict) without local paths.

    Training and validation folders become their data-set names (``/data/T91`` -> ``T91``),
    any other path (``model.init``, a distillation teacher) its file name, and the run and cache
    directories are removed. Everything else (model, loss, optimiser, steps, precision) is kept
    as it was.
    """
    recipe = copy.deepcopy(dict(config))
    data = recipe.get("data")
    if isinstance(data, dict):
        train = data.get("train")
        if isinstance(train, list):
            data["train"] = [
                {k: _name(v) for k, v in item.items()} if isinstance(item, dict) else _name(item)
                for item in train
            ]
    val = recipe.get("val")
    if isinstance(val, dict) and isinstance(val.get("folders"), list):
        val["folders"] = [_name(f) for f in val["folders"]]
    model = recipe.get("model")
    if isinstance(model, dict) and model.get("init"):
        model["init"] = _name(model["init"])
    for dotted in MACHINE_KEYS:
        section, key = dotted.split(".")
        if isinstance(recipe.get(section), dict):
            recipe[section].pop(key, None)
    return _strip_paths(recipe)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl``; after a resume, the last row written for a step
    (and kind: training or validation) replaces the earlier ones."""
    rows: dict[tuple[int, bool], dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interruption
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows[(row["step"], "val" in row)] = row
    return [rows[k] for k in sorted(rows)]


def _step_seconds(rows: Iterable[Mapping[str, Any]], batch_size: int) -> dict[int, float]:
    """Seconds of training steps up to each logged step, from each row's ``patches_per_s``."""
    total, prev, out = 0.0, 0, {}
    for row in rows:
        if "val" in row:
            continue
        step, rate = row["step"], row.get("patches_per_s")
        if isinstance(rate, int | float) and rate > 0 and step > prev:
            total += (step - prev) * batch_size / rate
        prev = step
        out[step] = total
    return out


def training_cost(
    rows: list[Mapping[str, Any]], batch_size: int, threads: int
) -> dict[str, float | int]:
    """Steps and compute of a run: ``steps``, ``hours`` (wall-clock time of the training steps,
    validation and pauses excluded) and ``cpu_hours`` (``hours`` x ``threads``, core-hours)."""
    seconds = _step_seconds(rows, batch_size)
    steps = max((r["step"] for r in rows), default=0)
    hours = (max(seconds.values()) if seconds else 0.0) / 3600
    return {
        "steps": steps,
        "threads": threads,
        "hours": round(hours, 3),
        "cpu_hours": round(hours * threads, 3),
    }


def psnr_curve(
    rows: list[Mapping[str, Any]], batch_size: int, threads: int
) -> list[dict[str, float | int]]:
    """Validation PSNR against cost: one point per validation row, with ``step``,
    ``cpu_hours`` (core-hours of training so far) and the PSNR of each validation set."""
    seconds = _step_seconds(rows, batch_size)
    logged = sorted(seconds)
    points = []
    for row in rows:
        if "val" not in row or not isinstance(row["val"], dict):
            continue
        before = [s for s in logged if s <= row["step"]]
        spent = seconds[before[-1]] if before else 0.0
        point: dict[str, float | int] = {
            "step": row["step"],
            "cpu_hours": round(spent * threads / 3600, 3),
        }
        for name, scores in row["val"].items():
            if isinstance(scores, dict) and "psnr" in scores:
                point[name] = round(float(scores["psnr"]), 3)
        points.append(point)
    return points
