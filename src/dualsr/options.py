"""Typed options: plain data (YAML, ``--set`` overrides, command-line values) into dataclasses.

One converter for every options dataclass of the package (:class:`~dualsr.training.TrainConfig`,
:class:`~dualsr.compression.search.SearchOptions`, :class:`~dualsr.compression.prune.PruneOptions`).
:func:`from_mapping` walks a dataclass's type hints: nested dataclasses, ``Literal``,
``Optional``/unions, ``list[...]``/``tuple[...]``, ``Path`` and the scalars ``bool``, ``int``,
``float``, ``str`` (strict: ``true`` is no number, ``2.5`` no integer; a numeric string such as
``"1e-4"``, as PyYAML reads it, is a number). An unknown key or a value of the wrong type raises
:class:`~dualsr.errors.ConfigError` naming the key (``optim.lr``, or ``--patch-size`` on the
command line, see :class:`Style`).

A field may declare, in its metadata, ``parse``: ``parse(value, key)`` converts the value instead
of its type (for forms such as ``3.1M`` or ``96x96``), and ``check``: ``check(value, key)``
checks the converted value. :func:`check_fields` runs the same conversion over an existing
object, so that one declaration serves a YAML file, the command line and Python callers.

This module imports nothing heavy (no torch, no yaml): ``dualsr search --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

T = TypeVar("T")


class OptionValueError(ConfigError, ValueError):
    """A malformed option value: a ConfigError, and a ValueError for callers that catch those."""


def _unknown_config_key(unknown: Sequence[str], names: Sequence[str], where: str) -> str:
    key = unknown[0]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {_join(where, close[0])!r}?)" if close else ""
    return (
        f"unknown config key {_join(where, key)!r}{hint}; "
        f"valid keys{' in ' + where if where else ''}: {', '.join(names)}"
    )


@dataclass(frozen=True)
class Style:
    """How conversion errors name a key and word the problem.

    The default is that of a config file: ``optim.lr: expected a number, got 'fast'``,
    ``train.amp must be one of none, auto, bf16, fp16, got 'fp8'``. ``name`` shows a key (e.g. as
    its command-line flag); ``expected`` and ``choice`` are format strings with ``key``,
    ``what``/``choices`` and ``value``; ``words`` name the scalar types; ``join`` lists the
    choices of a ``Literal`` (a field's ``choices`` metadata replaces the list); ``unknown``
    words the error for unknown keys (given them, the valid names, and the section).
    """

    name: Callable[[str], str] = str
    expected: str = "{key}: expected {what}, got {value!r}"
    choice: str = "{key} must be one of {choices}, got {value!r}"
    words: Mapping[type, str] = field(
        default_factory=lambda: {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            str: "a string",
        }
    )
    join: Callable[[Sequence[str]], str] = ", ".join
    unknown: Callable[[Sequence[str], Sequence[str], str], str] = _unknown_config_key


CONFIG = Style()


# ----------------------------------------------------------------------------------------------
# The converter
# ----------------------------------------------------------------------------------------------
def from_mapping(cls: type[T], data: Any, where: str = "", style: Style = CONFIG) -> T:
    """An instance of the dataclass ``cls`` from the mapping ``data`` (missing keys: defaults).

    ``where`` is the dotted name of ``data`` (empty at the top). A dataclass with a class
    attribute ``shorthand`` (a field name) also accepts a plain string for that field alone.
    """
    shorthand = getattr(cls, "shorthand", None)
    if shorthand and isinstance(data, str):
        data = {shorthand: data}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where or 'config'}: expected a mapping of keys, got {type(data).__name__} {data!r}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [str(k) for k in data if k not in fields]
    if unknown:
        raise ConfigError(style.unknown(unknown, list(fields), where))
    hints = get_type_hints(cls)
    kwargs = {
        k: convert_field(fields[k], hints[k], v, _join(where, k), style) for k, v in data.items()
    }
    return cls(**kwargs)


def check_fields(obj: Any, style: Style = CONFIG) -> None:
    """ConfigError if a field of the dataclass instance ``obj`` breaks its declaration (type,
    ``Literal`` choices, ``parse``/``check`` metadata); for objects built in Python."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        convert_field(f, hints[f.name], getattr(obj, f.name), f.name, style)


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a plain nested dict (YAML/JSON-serialisable), in field order."""
    return dataclasses.asdict(obj)


def convert_field(f: dataclasses.Field, tp: Any, value: Any, key: str, style: Style) -> Any:
    """``value`` converted for the field ``f`` of type ``tp`` (its ``parse``, else its type),
    then checked by its ``check``; errors name ``key`` as ``style`` shows it."""
    name = style.name(key)
    parse = f.metadata.get("parse")
    if parse is None:
        value = convert(tp, value, key, style, f.metadata.get("choices"))
    elif value is not None or not _optional(tp):
        value = parse(value, name)
    check = f.metadata.get("check")
    if check is not None and value is not None:
        check(value, name)
    return value


def convert(
    tp: Any, value: Any, key: str, style: Style = CONFIG, choices: str | None = None
) -> Any:
    """``value`` as the type ``tp``; ConfigError naming ``key`` otherwise."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, value, key, style, choices)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(_expected(style, key, describe(tp), value))
    if origin is Literal:
        if value not in get_args(tp):
            text = choices or style.join([str(a) for a in get_args(tp)])
            raise ConfigError(style.choice.format(key=style.name(key), choices=text, value=value))
        return value
    if origin in (list, tuple):
        args = get_args(tp)
        fixed = origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)
        if not isinstance(value, list | tuple) or (fixed and len(value) != len(args)):
            raise ConfigError(_expected(style, key, describe(tp) if fixed else "a list", value))
        item_types = args if fixed else [args[0]] * len(value)
        items = [
            convert(t, v, f"{key}[{i}]", style)
            for i, (t, v) in enumerate(zip(item_types, value, strict=True))
        ]
        return items if origin is list else tuple(items)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_mapping(tp, value, key, style)
    return _scalar(tp, value, key, style)


def _scalar(tp: Any, value: Any, key: str, style: Style) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)  # e.g. a NumPy integer
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
    elif tp is float:
        number = _number(value)
        if number is not None:
            return float(number)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, Path):
            return str(value)
    elif tp is Path:
        if isinstance(value, str | Path):
            return Path(value)
    elif tp is Any or isinstance(value, tp):
        return value
    raise ConfigError(_expected(style, key, style.words.get(tp) or describe(tp), value))


def _number(value: Any) -> float | None:
    """int/float, or a numeric string (PyYAML reads ``1e-4`` as a string); None otherwise."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _expected(style: Style, key: str, what: str, value: Any) -> str:
    return style.expected.format(key=style.name(key), what=what, value=value)


def _optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def describe(tp: Any) -> str:
    """A type in words: ``an integer or null``, ``a list of a number``."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {describe(get_args(tp)[0])}"
    if origin is tuple:
        return f"a list of {len(get_args(tp))} values"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


# ----------------------------------------------------------------------------------------------
# Command-line flags
# ----------------------------------------------------------------------------------------------
def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of a field: its ``flag`` metadata, else ``--`` + its name with
    dashes (``patch_size``: ``--patch-size``)."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def from_args(cls: type[T], args: Any, style: Style = CONFIG) -> T:
    """An instance of ``cls`` from the ``argparse`` namespace ``args``: each field from the
    attribute of its flag (:func:`flag_of`), converted and checked by :func:`from_mapping`."""
    dests = {f.name: flag_of(f).lstrip("-").replace("-", "_") for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return from_mapping(cls, {name: getattr(args, dest) for name, dest in dests.items()}, "", style)


# ----------------------------------------------------------------------------------------------
# Shared value parsers
# ----------------------------------------------------------------------------------------------
_HW = re.compile(r"\s*(\d+)\s*(?:[x×,]\s*(\d+))?\s*", re.I)


def parse_hw(
    value: str | Sequence[int], option: str | None = None, *, square: bool = False
) -> tuple[int, int]:
    """A size ``HxW`` (``180x320``; ``×`` or ``,`` also separate) or ``[H, W]`` as ``(H, W)``.

    ``square`` also accepts one number (``96``: 96x96). ``option`` names the option in the
    error, an :class:`OptionValueError` (a ConfigError and a ValueError).
    """
    prefix = f"{option}: " if option else ""
    if isinstance(value, list | tuple) and len(value) == 2:
        h, w = value
    else:
        m = _HW.fullmatch(str(value))
        if not m or (m.group(2) is None and not square):
            raise OptionValueError(f"{prefix}expected HxW such as 180x320, got {value!r}")
        h, w = m.group(1), m.group(2) or m.group(1)
    try:
        hw = (int(h), int(w))
    except (TypeError, ValueError):
        raise OptionValueError(f"{prefix}expected HxW such as 180x320, got {value!r}") from None
    if min(hw) < 1:
        raise OptionValueError(f"{prefix}sizes must be positive, got {value!r}")
    return hw
