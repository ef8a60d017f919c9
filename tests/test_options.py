"""The shared options converter (dualsr.options) and the options <-> command-line flag mapping
of `dualsr train`, `dualsr search` and `dualsr prune` (so that the two cannot drift apart)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pytest

from dualsr.cli import build_parser
from dualsr.errors import ConfigError
from dualsr.options import (
    OptionValueError,
    Style,
    check_fields,
    flag_of,
    from_args,
    from_mapping,
    parse_hw,
    to_dict,
)


@dataclass
class Inner:
    shorthand: ClassVar[str] = "name"

    name: str = ""
    speed: int = 1
    ratio: float = 0.5


@dataclass
class Outer:
    mode: Literal["fast", "slow"] = "fast"
    inner: Inner = field(default_factory=Inner)
    items: list[float] = field(default_factory=list)
    limit: int | None = None
    size: tuple[int, int] = (1, 2)
    where: Path = Path(".")
    flag: bool = False
    sources: list[Inner] = field(default_factory=list)
    either: int | list[int] = 0


def error(data: Any, style: Style | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        from_mapping(Outer, data, style=style) if style else from_mapping(Outer, data)
    return str(info.value)


# ----------------------------------------------------------------------------------------------
# The converter
# ----------------------------------------------------------------------------------------------
def test_converts_nested_typed_values() -> None:
    got = from_mapping(
        Outer,
        {
            "mode": "slow",
            "inner": {"speed": "1e3", "ratio": 2},  # PyYAML reads 1e3 as a string
            "items": (1, "2.5"),
            "limit": None,
            "size": [3, 4],
            "where": "a/b",
            "sources": ["x", {"name": "y", "speed": 2.0}],  # shorthand: a string is its name
            "either": [1, 2],
        },
    )
    assert got.mode == "slow" and got.inner == Inner("", 1000, 2.0)
    assert got.items == [1.0, 2.5] and got.limit is None and got.size == (3, 4)
    assert got.where == Path("a/b") and got.sources == [Inner("x"), Inner("y", 2)]
    assert got.either == [1, 2] and isinstance(got.inner.ratio, float)
    assert from_mapping(Outer, {}) == Outer()
    assert to_dict(got)["inner"] == {"name": "", "speed": 1000, "ratio": 2.0}
    assert from_mapping(Inner, {"speed": np.int64(3)}).speed == 3


def test_unknown_keys_name_the_dotted_key_and_the_closest_valid_one() -> None:
    msg = error({"inner": {"sped": 2}})
    assert msg.startswith("unknown config key 'inner.sped' (did you mean 'inner.speed'?)")
    assert "valid keys in inner: name, speed, ratio" in msg
    assert error({"bogus": 1}).startswith("unknown config key 'bogus';")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "medium"}, "mode must be one of fast, slow, got 'medium'"),
        ({"inner": {"speed": 2.5}}, "inner.speed: expected an integer, got 2.5"),
        ({"inner": {"speed": True}}, "inner.speed: expected an integer, got True"),
        ({"inner": {"ratio": "fast"}}, "inner.ratio: expected a number, got 'fast'"),
        ({"inner": {"name": 5}}, "inner.name: expected a string, got 5"),
        ({"flag": "yes"}, "flag: expected true or false, got 'yes'"),
        ({"items": 5}, "items: expected a list, got 5"),
        ({"items": [1, "x"]}, "items[1]: expected a number, got 'x'"),
        ({"sources": [{"speed": "x"}]}, "sources[0].speed: expected an integer, got 'x'"),
        ({"size": [1, 2, 3]}, "size: expected a list of 2 values, got [1, 2, 3]"),
        ({"inner": 3}, "inner: expected a mapping of keys, got int 3"),
        ({"either": "x"}, "either: expected an integer or a list of an integer, got 'x'"),
        ({"limit": "x"}, "limit: expected an integer, got 'x'"),
    ],
)
def test_bad_values_name_the_key_and_what_was_expected(data: dict, message: str) -> None:
    assert error(data) == message


def test_field_parse_and_check_metadata_and_a_command_line_style() -> None:
    def positive(value: int, key: str) -> None:
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")

    @dataclass
    class Opts:
        size: tuple[int, int] = field(default=(8, 8), metadata={"parse": parse_hw})
        count: int = field(default=1, metadata={"check": positive, "flag": "--n"})
        kind: Literal["a", "b"] = "a"

    flags = Style(name=lambda key: f"--{key}", expected="{key}: not {what}: {value!r}")
    assert from_mapping(Opts, {"size": "3x4"}).size == (3, 4)
    with pytest.raises(ConfigError, match="^--size: expected HxW such as 180x320, got '3'$"):
        from_mapping(Opts, {"size": "3"}, style=flags)
    with pytest.raises(ConfigError, match="^--count must be >= 1, got 0$"):
        from_mapping(Opts, {"count": 0}, style=flags)
    with pytest.raises(ConfigError, match="^--count: not an integer: 'x'$"):
        from_mapping(Opts, {"count": "x"}, style=flags)
    with pytest.raises(ConfigError, match="^count must be >= 1, got -1$"):
        check_fields(Opts(count=-1))
    with pytest.raises(ConfigError, match="^kind must be one of a, b, got 'c'$"):
        check_fields(Opts(kind="c"))  # type: ignore[arg-type]
    # from an argparse namespace: each field from its flag's destination
    args = argparse.Namespace(size="5x6", n=3, kind="b")
    assert from_args(Opts, args) == Opts((5, 6), 3, "b")
    assert [flag_of(f) for f in dataclasses.fields(Opts)] == ["--size", "--n", "--kind"]


def test_one_size_parser_for_profile_bench_and_search() -> None:
    from dualsr import profiling
    from dualsr.compression.search.options import SearchOptions

    assert profiling.parse_hw is parse_hw
    assert parse_hw("180x320") == parse_hw(" 180 X 320 ") == parse_hw([180, 320]) == (180, 320)
    with pytest.raises(OptionValueError, match="^--input: expected HxW"):
        parse_hw("180", "--input")  # one number only with square=True
    with pytest.raises(ValueError, match="sizes must be positive"):
        parse_hw("0x5")
    assert parse_hw("96", square=True) == (96, 96)
    assert SearchOptions.from_dict({"input_size": "96"}).input_hw == (96, 96)
    assert SearchOptions.from_dict({"input-size": "48x64"}).input_size == [48, 64]


# ----------------------------------------------------------------------------------------------
# Options <-> command-line flags
# ----------------------------------------------------------------------------------------------
def command_flags(command: str) -> dict[str, str]:
    """The long flag of every option of ``dualsr COMMAND`` -> its argparse destination."""
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {}
    for action in sub.choices[command]._actions:
        long = [s for s in action.option_strings if s.startswith("--")]
        if long and action.dest != "help":
            flags[long[0]] = action.dest
    return flags


def test_train_flags_and_config_keys() -> None:
    from dualsr.training import TrainConfig, load_config

    # every option is a config key, reachable by --set KEY=VALUE (here: its default)
    def leaves(obj: Any, where: str = "") -> list[tuple[str, Any]]:
        found = []
        for f in dataclasses.fields(obj):
            value, key = getattr(obj, f.name), f"{where}{f.name}"
            found += leaves(value, key + ".") if dataclasses.is_dataclass(value) else [(key, value)]
        return found

    keys = leaves(TrainConfig())
    assert len(keys) > 40 and ("optim.lr", 1e-4) in keys
    base = ["model.preset=drn-s-x4"]
    sets = [f"{key}={'null' if value is None else value}" for key, value in keys[1:]]
    assert load_config(None, [*base, *sets]) == load_config(None, base)
    # every option-carrying flag is a config key; the others say which recipe or run to use
    not_options = {
        "--config": "the recipe file",
        "--set": "KEY=VALUE overrides of any key",
        "--resume": "the run to continue",
        "--print-config": "print and exit",
    }
    flags = set(command_flags("train")) - set(not_options)
    assert flags == {"--run-dir"}  # = --set run.dir=DIR
    assert ("run.dir", "runs/train") in keys


def test_search_flags_are_the_option_fields() -> None:
    from dualsr.compression.search.options import SearchOptions

    flags = command_flags("search")
    not_options = {
        "--config": "the YAML file of options",
        "--resume": "the search to continue (its saved options)",
        "--data-root": "where --data and --val names are looked up",
    }
    fields = {flag_of(f): f.name for f in dataclasses.fields(SearchOptions)}
    assert set(flags) - set(not_options) == set(fields)
    # the CLI reads each option from the attribute of its field's name
    assert all(flags[flag] == name for flag, name in fields.items())


def test_prune_flags_are_the_option_fields_and_the_checkpoint_records_them(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    import dualsr
    from dualsr.cli import main
    from dualsr.compression.prune import PruneOptions

    flags = command_flags("prune")
    cli_only = {  # what to prune, into what, on which data and device: not pruning options
        "--model",
        "--duals",
        "--output",
        "--config",
        "--rate",
        "--rate-rounding",
        "--data",
        "--data-root",
        "--images",
        "--patch-size",
        "--batch-size",
        "--crops",
        "--device",
    }
    fields = {flag_of(f): f.name for f in dataclasses.fields(PruneOptions)}
    assert set(flags) - cli_only == set(fields)
    assert fields["--samples"] == "feature_samples"  # the one flag not named like its field

    defaults = build_parser("prune").parse_args(["prune", "-m", "x", "-o", "y", "--rate", "0.5"])
    assert PruneOptions.from_args(defaults) == PruneOptions()
    bad = argparse.Namespace(**{**vars(defaults), "samples": 0, "thinet_error": "cube"})
    with pytest.raises(ConfigError, match=r"^--thinet-error must be one of: abs, squared"):
        PruneOptions.from_args(bad)

    out = tmp_path / "p.safetensors"
    args = ["prune", "-m", str(tiny_checkpoint), "--rate", "0.5", "--method", "l1"]
    assert main([*args, "--samples", "64", "--seed", "3", "-o", str(out)]) == 0
    meta = dualsr.load_checkpoint(out).metadata
    recorded = {k: meta[k] for k in PruneOptions().to_dict()}
    assert recorded == PruneOptions(method="l1", feature_samples=64, seed=3).to_dict()
