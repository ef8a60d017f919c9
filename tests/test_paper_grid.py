"""experiments/paper_grid.py: the job lists, the shards and the claims' statistics (no training)."""

from __future__ import annotations

import importlib
import json
import math
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def grid() -> ModuleType:
    return importlib.import_module("experiments.paper_grid")


def _args(grid: ModuleType, tmp_path: Path, *extra: str):
    import argparse

    ns = argparse.Namespace(
        out=tmp_path / "out",
        data=tmp_path / "data",
        base=tmp_path / "base.safetensors",
        seeds=[0, 1, 2],
        steps=1500,
        ft_steps=500,
        search_steps=600,
        search_lr_alpha=None,
        threads=1,
    )
    for item in extra:
        key, value = item.split("=")
        setattr(ns, key, type(getattr(ns, key))(value))
    return ns


def test_lambda_jobs_are_seed_major_and_primal_only_has_no_dual(grid, tmp_path) -> None:
    jobs = list(grid.jobs("lambda", _args(grid, tmp_path)))
    assert len(jobs) == 18
    assert [j.name for j in jobs[:6]] == [f"lam{lam:g}-s0" for lam in grid.LAMBDAS]
    assert {j.seed for j in jobs[6:12]} == {1}
    primal_only = " ".join(jobs[0].commands[0][0])
    assert "loss.dual=false" in primal_only and "train.steps=1500" in primal_only
    assert "loss.dual_weight=0.1" in " ".join(jobs[3].commands[0][0])


def test_shards_split_every_family_without_overlap(grid, tmp_path) -> None:
    args = _args(grid, tmp_path)
    for family in ("lambda", "dual-hr", "search", "methods", "x8"):
        names = [j.name for j in grid.jobs(family, args)]
        assert len(names) == len(set(names))
        lanes = [names[k::2] for k in range(2)]
        assert sorted(lanes[0] + lanes[1]) == sorted(names)
    # three rates x (searched, uniform) x three seeds; 9 methods x three seeds
    assert len(list(grid.jobs("search", args))) == 18
    assert len(list(grid.jobs("methods", args))) == 27
    assert len(list(grid.jobs("x8", args))) == 7  # the unpruned base once


def test_search_logits_travel_as_far_as_the_released_search(grid, tmp_path) -> None:
    args = _args(grid, tmp_path)
    assert grid.search_lr_alpha(args) == pytest.approx(1.25e-3)
    search = next(grid.jobs("search", args)).commands[0][0]
    assert search[search.index("--lr-alpha") + 1] == "0.00125"
    assert search[search.index("--select") + 1] == "argmax"
    args.search_lr_alpha = 3e-4
    assert grid.search_lr_alpha(args) == 3e-4


def _two_sided_p_df2(t: float) -> float:
    """Student's t with 2 degrees of freedom in closed form: P(|T| > |t|) = 1 - |t| / sqrt(2 +
    t^2)."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def test_paired_t_matches_hand_computed_t_and_the_closed_form_p(grid) -> None:
    from scipy import stats

    # differences 1.0, 1.1, 0.9: mean 1, sd 0.1, se 0.1 / sqrt(3), t = 10 sqrt(3) = 17.32
    a = {0: 31.0, 1: 30.6, 2: 30.9}
    b = {0: 30.0, 1: 29.5, 2: 30.0}
    res = grid.paired_t(a, b)
    assert res["seeds"] == [0, 1, 2] and res["df"] == 2 and res["diff"] == pytest.approx(1.0)
    assert res["se"] == pytest.approx(0.1 / 3**0.5, abs=1e-4)
    assert res["t"] == pytest.approx(10 * 3**0.5, abs=0.01)
    assert res["p"] == pytest.approx(_two_sided_p_df2(10 * 3**0.5), rel=1e-6)  # 0.00332
    assert res["p"] == pytest.approx(2 * stats.t.sf(10 * 3**0.5, 2), rel=1e-9)
    # the grid's lambda 0.001 against 0 on Set5 (benchmarks/results/paper_grid.json): t -5.63,
    # p 0.030, two-sided
    lam = grid.paired_t({0: 30.3431, 1: 30.4005, 2: 30.3435}, {0: 30.3563, 1: 30.4148, 2: 30.3661})
    assert lam["t"] == pytest.approx(-5.63, abs=0.005)
    assert lam["p"] == pytest.approx(_two_sided_p_df2(-5.6325), abs=2e-4)
    assert lam["p"] == pytest.approx(0.0301, abs=5e-4)
    # equal differences: se 0, no t, p 0 (1 when they are all 0); fewer than 2 seeds: no test
    same = grid.paired_t({0: 1.0, 1: 2.0}, {0: 0.0, 1: 1.0})
    assert same["t"] is None and same["p"] == 0.0 and json.dumps(same)
    assert grid.paired_t({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})["p"] == 1.0
    assert grid.paired_t({0: 1.0}, {0: 0.0}) is None
    assert grid.paired_t({0: 1.0, 5: 2.0}, {0: 0.0, 1: 0.0}) is None  # one common seed


def test_p_values_past_8_degrees_of_freedom_are_students_not_normal(grid) -> None:
    from scipy import stats

    # 10 seeds (9 df) with t 2.18: past 1.96 (the old table's fallback) but below Student's
    # 2.262, so not significant
    diffs = [0.3, 0.1, 0.2, 0.4, -0.1, 0.1, 0.3, 0.0, 0.2, -0.2]
    res = grid.compare({i: 30 + d for i, d in enumerate(diffs)}, dict.fromkeys(range(10), 30.0))
    assert res["df"] == 9 and 1.96 < res["t"] < 2.262
    assert res["p"] == pytest.approx(2 * stats.t.sf(abs(res["t"]), 9), rel=1e-2)
    assert 0.05 < res["p"] < 0.1 and res["verdict"] == "inconclusive"


def test_holm_correction_against_hand_computed_values(grid) -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> made
    # non-decreasing: 0.02, 0.03, 0.06, 0.06
    assert grid.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # a missing test is left out of m and kept as None; results are capped at 1
    assert grid.holm([None, 0.02, 0.5]) == [None, pytest.approx(0.04), pytest.approx(0.5)]
    assert grid.holm([0.6, 0.7]) == [1.0, 1.0]
    assert grid.holm([0.03]) == [0.03] and grid.holm([]) == []


def test_the_verdict_rule_is_symmetric(grid) -> None:
    assert grid.comparison_verdict(+0.1, 0.01) == "reproduced"
    assert grid.comparison_verdict(-0.1, 0.01) == "contradicted"
    assert grid.comparison_verdict(+0.1, 0.05) == "inconclusive"  # p must be below alpha
    assert grid.comparison_verdict(-0.1, None) == "inconclusive"
    assert grid.claim_verdict(["reproduced", "reproduced"]) == "reproduced"
    assert grid.claim_verdict(["contradicted", "contradicted"]) == "contradicted"
    assert grid.claim_verdict(["contradicted", "inconclusive"]) == "inconclusive"
    assert grid.claim_verdict(["reproduced", "inconclusive"]) == "inconclusive"
    assert grid.claim_verdict([]) == "inconclusive"
    # compare: one comparison, uncorrected
    a, b = {0: 31.0, 1: 30.6, 2: 30.9}, {0: 30.0, 1: 29.5, 2: 30.0}
    assert grid.compare(a, b)["verdict"] == "reproduced"
    assert grid.compare(b, a)["verdict"] == "contradicted"
    # a consistent offset hidden by seed noise is found by pairing; a noisy one is not
    assert grid.compare({0: 30.5, 1: 29.0, 2: 30.6}, b)["verdict"] == "inconclusive"


def _record(family: str, variant: dict, seed: int, set5: float) -> dict:
    return {
        "family": family,
        "name": "x",
        "variant": variant,
        "seed": seed,
        "scores": {"Set5": set5, "Set14": set5 - 2},
    }


def test_claims_verdicts_are_holm_corrected_within_a_claim(grid) -> None:
    recs = []
    for seed, noise in enumerate((0.0, 0.05, -0.04)):
        for lam, gain in zip(grid.LAMBDAS, (0.0, 0.1, 0.2, 0.3, 0.2, -0.5), strict=True):
            recs.append(_record("lambda", {"lambda": lam}, seed, 30 + noise + gain + 0.01 * seed))
        # dual HR: worse, consistently
        recs.append(_record("dual-hr", {"loss": "dual LR + dual HR"}, seed, 30.1 + noise))
    results = {c["claim"]: c for c in grid.claims(recs)}
    helps = results[grid.CLAIMS[0][0]]
    assert helps["verdict"] == "reproduced" and helps["correction"] == "holm"
    assert [r["test"]["verdict"] for r in helps["comparisons"]] == ["reproduced"] * 3
    assert helps["counts"] == {"reproduced": 3, "contradicted": 0, "inconclusive": 0}
    # lambda 1 (0.2) is below 0.1 (0.3) by 0.1 in every seed: significant; 10 is far below
    assert results[grid.CLAIMS[1][0]]["verdict"] == "reproduced"
    hr = results[grid.CLAIMS[2][0]]
    assert hr["verdict"] == "contradicted" and hr["comparisons"][0]["test"]["diff"] < 0
    # no result for the compression claims yet
    x8 = results[grid.CLAIMS[-1][0]]
    assert x8["verdict"] == "inconclusive" and x8["comparisons"][0]["test"] is None
    assert x8["counts"]["inconclusive"] == 1 and "not the paper's" in x8["claim"]


def test_a_claim_resting_on_one_uncorrected_p_of_0_03_is_inconclusive(grid) -> None:
    # the grid's lambda runs on Set5: lambda 0.001 is below 0 in every seed (p 0.030 alone),
    # 0.01 and 0.1 are not; Holm over the claim's three comparisons gives 0.090
    set5 = {
        0.0: (30.3563, 30.4148, 30.3661),
        0.001: (30.3431, 30.4005, 30.3435),
        0.01: (30.3896, 30.3546, 30.3355),
        0.1: (30.376, 30.4037, 30.3172),
    }
    recs = [
        _record("lambda", {"lambda": lam}, seed, v)
        for lam, vals in set5.items()
        for seed, v in enumerate(vals)
    ]
    helps = grid.claims(recs)[0]
    first = helps["comparisons"][0]["test"]
    assert first["p"] == pytest.approx(0.0301, abs=5e-4)
    assert first["p_holm"] == pytest.approx(3 * first["p"]) and first["verdict"] == "inconclusive"
    assert helps["verdict"] == "inconclusive"
    assert grid.compare(*[dict(enumerate(set5[k])) for k in (0.001, 0.0)])["verdict"] == (
        "contradicted"  # the same comparison alone, uncorrected
    )


def test_summary_command_writes_variants_and_claims(grid, tmp_path, capsys) -> None:
    out = tmp_path / "paper"
    for seed in (0, 1):
        for lam in (0.0, 0.1):
            job = out / "lambda" / f"lam{lam:g}-s{seed}"
            job.mkdir(parents=True)
            rec = _record("lambda", {"lambda": lam}, seed, 30 + lam + 0.1 * seed)
            (job / "result.json").write_text(json.dumps(rec))
    table = tmp_path / "table.json"
    grid.main(["summary", "--out", str(out), "--json", str(table)])
    printed = capsys.readouterr().out
    assert "| family | variant | seeds | Set5 | Set14 | params | hours | s/step |" in printed
    assert "| lambda | lambda 0.1 | 2 | 30.150 +- 0.071 | 28.150 +- 0.071 |" in printed
    # variants sort by value, not by their JSON text (where 0.001 < 0.0)
    variants = [json.dumps({"lambda": v}) for v in (10.0, 0.01, 0.0, 0.001)]
    ordered = sorted(variants, key=lambda v: grid._order("lambda", v))
    assert [json.loads(v)["lambda"] for v in ordered] == [0.0, 0.001, 0.01, 10.0]
    assert "| claim | A | B |" in printed
    doc = json.loads(table.read_text())
    assert {row["variant"]["lambda"] for row in doc["variants"]} == {0.0, 0.1}
    first = doc["claims"][0]["comparisons"][2]  # lambda 0.1 against 0
    assert first["test"]["diff"] == pytest.approx(0.1) and first["test"]["seeds"] == [0, 1]
    assert [r["preset"] for r in doc["released_width_choices"]][:3] == [
        "drn-s30-x4",
        "drn-s50-x4",
        "drn-s70-x4",
    ]
    assert "| drn-s50-x4 | " in printed


def test_summary_from_json_rebuilds_the_same_verdicts_without_the_runs(
    grid, tmp_path, capsys
) -> None:
    out = tmp_path / "paper"
    for seed in (0, 1, 2):
        for lam, gain in ((0.0, 0.0), (0.001, 0.05), (0.01, 0.1), (0.1, 0.2), (1.0, -0.1)):
            job = out / "lambda" / f"lam{lam:g}-s{seed}"
            job.mkdir(parents=True)
            rec = _record("lambda", {"lambda": lam}, seed, 30 + gain + 0.03 * seed * (lam > 0))
            rec["params"] = 1000
            (job / "result.json").write_text(json.dumps(rec))
        for config, params in (("searched", 900 + seed), ("uniform", 1000)):
            job = out / "search" / f"{config}-r30-s{seed}"
            job.mkdir(parents=True)
            rec = _record("search", {"config": config, "rate": 0.3}, seed, 30 + 0.01 * seed)
            rec["params"] = params
            (job / "result.json").write_text(json.dumps(rec))
    first = tmp_path / "first.json"
    grid.main(["summary", "--out", str(out), "--json", str(first)])
    from_runs = capsys.readouterr().out
    records = grid.load_records(out)
    rebuilt = grid.records_from_table(json.loads(first.read_text())["variants"])

    def rows(recs: list[dict]) -> list[str]:
        fields = ("family", "variant", "seed", "scores", "params")
        return sorted(json.dumps([r[f] for f in fields], sort_keys=True) for r in recs)

    assert rows(records) == rows(rebuilt) and len(rebuilt) == 21
    shutil.rmtree(out)  # the runs are gone: the JSON alone gives the same report
    second = tmp_path / "second.json"
    grid.main(["summary", "--from-json", str(first), "--json", str(second)])
    assert capsys.readouterr().out == from_runs
    doc = json.loads(second.read_text())
    assert doc["claims"] == json.loads(first.read_text())["claims"]
    searched = doc["claims"][3]["comparisons"][0]
    assert searched["a_params"] == 901 and searched["b_params"] == 1000  # sizes are stated
    assert set(doc["claims_by_dataset"]) == {"Set5", "Set14"}
    assert doc["verdict_rule"]["alpha"] == 0.05
    with pytest.raises(SystemExit, match="--from-json: .* not found"):
        grid.main(["summary", "--from-json", str(tmp_path / "missing.json")])


def test_searched_arms_are_read_against_the_uniform_line(grid) -> None:
    def row(config: str, rate: float, params: int, psnr: float) -> dict:
        return {
            "family": "search",
            "variant": {"config": config, "rate": rate},
            "params": params,
            "Set5": {"mean": psnr},
        }

    table = [
        row("uniform", 0.3, 300, 31.0),
        row("uniform", 0.5, 200, 30.5),
        row("uniform", 0.7, 100, 30.0),
        row("searched", 0.3, 250, 30.70),  # between 200 and 300: the line gives 30.75
        row("searched", 0.7, 50, 29.80),  # below 100: extrapolated, 29.75
        {"family": "methods", "variant": {"method": "l1"}, "params": 200, "Set5": {"mean": 1}},
    ]
    gaps = grid.uniform_line_gaps(table)
    assert [(g["rate"], g["uniform_line"], g["gap"], g["extrapolated"]) for g in gaps] == [
        (0.3, 30.75, -0.05, False),
        (0.7, 29.75, 0.05, True),
    ]
    assert gaps[0]["between"] == [200, 300] and gaps[1]["between"] == [100, 200]
    assert grid.uniform_line_gaps(table[2:]) == []  # one uniform arm: no line


def test_released_configurations_are_ranked_among_their_candidates(grid) -> None:
    rows = {r["preset"]: r for r in grid.released_width_choices()}
    assert set(rows) == {f"drn-s{p}-x{s}" for p in (30, 50, 70) for s in (4, 8)}
    for row in rows.values():
        assert row["widest_share"] > 0 and row["widest_share"] + row["second_share"] <= 1
    # every released x4 width is one of its layer's candidates; DRN-S70 x8's first down
    # layers are wider than any of theirs (16 wide at 70%: every candidate rounds to 4)
    assert all(not rows[f"drn-s{p}-x4"]["off_candidates"] for p in (30, 50, 70))
    off = rows["drn-s70-x8"]["off_candidates"]
    assert off[0] == {"layer": 1, "width": 8, "candidates": [4]}


def test_methods_drc_gamma1_and_the_uniform_search_job_reuse_each_other(grid, tmp_path) -> None:
    args = _args(grid, tmp_path)
    job = next(j for j in grid.jobs("methods", args) if j.name == "drc-g1-s1")
    twin = next(j for j in grid.jobs("search", args) if j.name == "uniform-r50-s1")
    assert job.same_as == "search/uniform-r50-s1" and twin.same_as == "methods/drc-g1-s1"
    # the same prune and fine-tune commands (gamma 1 is prune's default), outputs and all
    strip = lambda cmd: [c for c in cmd if c not in ("--gamma", "1.0")]  # noqa: E731
    assert [strip(c) for c, _ in job.commands] == [c for c, _ in twin.commands]
    src = args.out / "search" / "uniform-r50-s1"
    src.mkdir(parents=True)
    rec = _record("search", {"config": "uniform", "rate": 0.5}, 1, 30.0)
    (src / "result.json").write_text(json.dumps(rec))
    grid.run_job(job, args)  # no command runs: the twin's result is copied
    got = json.loads((args.out / "methods" / "drc-g1-s1" / "result.json").read_text())
    assert got["family"] == "methods" and got["variant"] == job.variant
    assert got["scores"] == rec["scores"] and got["same_as"] == "search/uniform-r50-s1"


def test_plot_draws_the_lambda_figure(grid, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "paper"
    for seed in (0, 1):
        for lam in grid.LAMBDAS:
            job = out / "lambda" / f"lam{lam:g}-s{seed}"
            job.mkdir(parents=True)
            rec = _record("lambda", {"lambda": lam}, seed, 30 + 0.1 * seed - abs(lam - 0.1))
            (job / "result.json").write_text(json.dumps(rec))
    table = tmp_path / "table.json"
    grid.main(["summary", "--out", str(out), "--json", str(table)])
    png = tmp_path / "img" / "lambda.png"
    grid.main(["plot", "--json", str(table), "--out", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no lambda results"):
        grid.plot_lambda({"variants": []}, png)


def test_search_entropies_read_what_dualsr_search_writes(
    grid, tmp_path, train_folder, capsys
) -> None:
    """The search family's entropies come from a real ``dualsr search`` output (tiny model)."""
    import dualsr
    from dualsr.cli import main

    from .conftest import tiny_model

    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model(), dualsr.DualModels(4, 4))
    out = tmp_path / "search"
    args = ["search", "--model", str(ckpt), "--data", str(train_folder), "--rate", "0.3"]
    args += ["--patch-size", "16", "--batch-size", "2", "--steps", "2", "--cache", "memory"]
    assert main([*args, "-o", str(out)]) == 0
    layers = grid.entropies(out / "search.json")
    report = json.loads((out / "search.json").read_text())
    assert [x["layer"] for x in layers] == [x["name"] for x in report["layers"]]
    for x, layer in zip(layers, report["layers"], strict=True):
        k = len(layer["candidates"])
        assert x["uniform"] == pytest.approx(math.log(k), abs=1e-4)
        assert 0 < x["entropy"] <= x["uniform"] + 1e-4
    # the summary averages each layer over seeds and prints the entropy table
    paper = tmp_path / "paper"
    for seed, shift in ((0, 0.0), (1, 0.2)):
        job = paper / "search" / f"searched-r30-s{seed}"
        job.mkdir(parents=True)
        rec = _record("search", {"config": "searched", "rate": 0.3}, seed, 30.0)
        rec["name"], rec["params"] = job.name, 1000 + seed
        rec["entropy"] = [{**x, "entropy": x["entropy"] - shift} for x in layers]
        # seed 0 keeps every layer at its widest candidate, seed 1 narrows one layer
        widest = [max(x["candidates"]) for x in report["layers"]]
        i = next(i for i, x in enumerate(report["layers"]) if len(set(x["candidates"])) > 1)
        narrowed = list(widest)
        narrowed[i] = min(report["layers"][i]["candidates"])
        rec["channel_config"] = widest if seed == 0 else narrowed
        (job / "search").mkdir()
        shutil.copy(out / "search.json", job / "search" / "search.json")
        (job / "result.json").write_text(json.dumps(rec))
    capsys.readouterr()
    (row,) = grid.summary(paper)
    assert row["params"] == 1000 and row["params_values"] == [1000, 1001]
    assert row["entropy_per_layer"][0]["entropy"] == pytest.approx(layers[0]["entropy"] - 0.1)
    n = len(layers)
    assert row["widest_share"] == pytest.approx((1 + (n - 1) / n) / 2, abs=1e-4)
    with pytest.raises(ValueError, match="layers but a configuration"):
        grid.widest_share(out / "search.json", widest[1:])
    assert row["rising_share"] == pytest.approx(grid.rising_share(out / "search.json"), abs=1e-4)
    grid.print_summary([row])
    printed = capsys.readouterr().out
    assert "| config searched, rate 0.3 |" in printed
    assert f"| {100 * row['widest_share']:.0f}% of layers |" in printed


def test_rising_share_counts_layers_whose_logits_grow_with_width(grid, tmp_path) -> None:
    layers = [
        {"candidates": [4, 8, 8, 12], "alpha": [0.0, 0.1, 0.3, 0.5]},  # 8's mean 0.2: rising
        {"candidates": [4, 8, 12], "alpha": [0.0, 0.2, 0.1]},  # 12 below 8: not rising
        {"candidates": [4, 4, 4], "alpha": [0.3, 0.1, 0.0]},  # one width: not counted
        {"candidates": [4, 8], "alpha": [0.1, 0.1]},  # a tie is not a rise
    ]
    path = tmp_path / "search.json"
    path.write_text(json.dumps({"layers": layers}))
    assert grid.rising_share(path) == pytest.approx(1 / 3)
    path.write_text(json.dumps({"layers": layers[2:3]}))
    assert math.isnan(grid.rising_share(path))


def test_step_time_is_the_median_of_the_logged_rates(grid, tmp_path) -> None:
    # a stretch shared with another job (8 patches/s) does not move the median
    rows = [{"step": 10 * i, "patches_per_s": p} for i, p in enumerate((16.0, 8.0, 16.0, 32.0))]
    rows.append({"step": 40, "val": {"Set5": {"psnr": 30.0}}})
    assert grid.median_step_seconds(rows) == pytest.approx(1.0)
    assert grid.median_step_seconds([{"step": 1}]) is None
    out = tmp_path / "paper"
    for seed, step_s in ((0, 1.0), (1, 2.0)):
        job = out / "dual-hr" / f"dualhr-s{seed}"
        job.mkdir(parents=True)
        rec = _record("dual-hr", {"loss": "dual LR + dual HR"}, seed, 30.0)
        rec["cost"] = {"hours": 0.5, "step_s_median": step_s}
        (job / "result.json").write_text(json.dumps(rec))
    (row,) = grid.summary(out)
    assert row["step_s"] == pytest.approx(1.5) and row["hours"] == pytest.approx(0.5)


def _eval_setup(grid: ModuleType, tmp_path: Path):
    """Run arguments with a one-image Set5 and Set14, and a tiny model's checkpoint."""
    import dualsr
    from dualsr.data.image_io import write_image

    from .conftest import random_image, tiny_model

    args = _args(grid, tmp_path)
    args.bsd100 = False
    for name in ("Set5", "Set14"):
        (args.data / name).mkdir(parents=True)
        write_image(args.data / name / "a.png", random_image(32, 32, seed=1))
    return args, dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model())


@pytest.mark.slow  # a real subprocess or end-to-end run: `make test` runs it
def test_run_job_runs_missing_commands_evaluates_and_records_their_time(grid, tmp_path) -> None:
    args, ckpt = _eval_setup(grid, tmp_path)
    copy = "import shutil, sys; shutil.copy(sys.argv[1], 'model.safetensors')"
    job = grid.Job("x8", "unit", {"model": "tiny"}, 0)
    job.commands.append(([sys.executable, "-c", copy, str(ckpt)], "model.safetensors"))
    grid.run_job(job, args)
    rec = json.loads((args.out / "x8" / "unit" / "result.json").read_text())
    assert set(rec["scores"]) == {"Set5", "Set14"} and rec["params"] > 0
    assert set(rec["seconds"]) == {"-c"} and rec["seconds"]["-c"] >= 0
    # a finished job is not run again; a missing result reuses the outputs already there
    (args.out / "x8" / "unit" / "result.json").unlink()
    job.commands[0] = ([sys.executable, "-c", "raise SystemExit(3)"], "model.safetensors")
    grid.run_job(job, args)  # the command's output exists: skipped, only the evaluation runs
    assert json.loads((args.out / "x8" / "unit" / "result.json").read_text())["scores"]
    (args.out / "x8" / "unit" / "model.safetensors").unlink()
    (args.out / "x8" / "unit" / "result.json").unlink()
    with pytest.raises(SystemExit, match="failed \\(exit 3\\)"):
        grid.run_job(job, args)


@pytest.mark.slow  # a real subprocess or end-to-end run: `make test` runs it
def test_interrupted_training_resumes_only_from_a_checkpoint(grid, tmp_path, monkeypatch) -> None:
    """A run stopped before its first checkpoint starts over; one with a checkpoint resumes, and
    so does a search."""
    args, ckpt = _eval_setup(grid, tmp_path)
    real = grid.dualsr()
    fake = tmp_path / "fake-dualsr"  # `dualsr train` / `search`: logs its arguments, writes a model
    fake.write_text(
        f"#!{sys.executable}\nimport os, shutil, sys\n"
        "if sys.argv[1] not in ('train', 'search'):\n"
        f"    os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n"
        "open('calls.txt', 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"shutil.copy({str(ckpt)!r}, 'model.safetensors')\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(grid, "dualsr", lambda: str(fake))
    job = grid.Job("x8", "unit", {"model": "tiny"}, 0)
    job.commands.append(([str(fake), "train", "--run-dir", "ft"], "model.safetensors"))
    jdir = args.out / "x8" / "unit"
    (jdir / "ft").mkdir(parents=True)
    (jdir / "ft" / "config.yaml").write_text("stale: true\n")  # stopped before step 250
    grid.run_job(job, args)
    assert (jdir / "calls.txt").read_text().splitlines() == ["train --run-dir ft"]
    assert not (jdir / "ft").exists()  # the stale run directory was cleared for the new run

    for name in ("result.json", "model.safetensors", "calls.txt"):
        (jdir / name).unlink()
    (jdir / "ft" / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, jdir / "ft" / "latest.safetensors")
    grid.run_job(job, args)
    assert (jdir / "calls.txt").read_text().splitlines() == ["train --resume ft"]

    # an interrupted search (its checkpoints saved on SIGTERM) is resumed too
    for name in ("result.json", "model.safetensors", "calls.txt"):
        (jdir / name).unlink()
    job.commands[0] = ([str(fake), "search", "--steps", "9", "-o", "search"], "model.safetensors")
    (jdir / "search" / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, jdir / "search" / "checkpoints" / "search-step-000004.safetensors")
    grid.run_job(job, args)
    assert (jdir / "calls.txt").read_text().splitlines() == ["search --resume search"]


def test_a_failed_job_does_not_stop_the_rest_of_the_lane(grid, tmp_path, monkeypatch) -> None:
    ran = []

    def fake_run_job(job, args) -> None:
        ran.append(job.name)
        if len(ran) == 1:
            raise SystemExit(f"[{job.family}/{job.name}] failed (exit 1)")

    monkeypatch.setattr(grid, "run_job", fake_run_job)
    argv = ["run", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "lambda"]
    with pytest.raises(SystemExit, match="1 lambda job\\(s\\) failed"):
        grid.main(argv)
    assert len(ran) == 18  # every job was tried


def test_a_job_another_lane_holds_is_skipped_and_taken_up_once_free(grid, tmp_path) -> None:
    import fcntl

    args = _args(grid, tmp_path)
    job = grid.Job("x8", "unit", {"model": "tiny"}, 0)
    job.commands.append(([sys.executable, "-c", "raise SystemExit(3)"], "model.safetensors"))
    jdir = args.out / "x8" / "unit"
    jdir.mkdir(parents=True)
    with open(jdir / ".lock", "a") as other_lane:
        fcntl.flock(other_lane, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert grid.run_job(job, args) is False  # skipped: nothing ran
        assert not (jdir / "log.txt").exists()
    # the lane holding it stopped (its lock died with it): the job is taken up again
    with pytest.raises(SystemExit, match="failed \\(exit 3\\)"):
        grid.run_job(job, args)
    (jdir / "result.json").write_text("{}")
    assert grid.run_job(job, args) is True  # done: nothing to do
