"""The paper's experiments at CPU scale, with seeds: run them (resumable) and summarise them.

    python experiments/paper_grid.py run lambda --data ../shared/datasets --out ~/dualsr-runs/paper
    python experiments/paper_grid.py run dual-hr --data ../shared/datasets --out ~/dualsr-runs/paper
    python experiments/paper_grid.py run search --base BASE.safetensors --data ... --out ...
    python experiments/paper_grid.py run methods --base BASE.safetensors --data ... --out ...
    python experiments/paper_grid.py run x8 --base X8.safetensors --data ... --out ...
    python experiments/paper_grid.py summary --out ~/dualsr-runs/paper --json table.json
    python experiments/paper_grid.py summary --from-json benchmarks/results/paper_grid.json
    python experiments/paper_grid.py plot --json table.json --out docs/img/lambda_cpu.png

Families (every variant with each of ``--seeds``, default 0 1 2):

- ``lambda``: the CPU recipe (configs/cpu-drn-x4.yaml, bf16 where native) trained ``--steps``
  steps with dual weight lambda in {0 (primal only), 0.001, 0.01, 0.1, 1, 10}; Set5 + Set14.
- ``dual-hr``: the same recipe with ``loss.dual_hr: true`` (lambda 0.1); the lambda-0.1 runs of
  ``lambda`` are its dual-LR-only arm (same seeds), and the training hours of both are compared.
- ``search``: from one trained ``--base``: ``dualsr search`` (the released defaults: argmax
  selection; the logits' lr scaled so that ``--search-steps`` steps move them as far as the
  released 2,500-step search, see ``RELEASED_SEARCH_STEPS``) at 30/50/70 % then DRC pruning to
  the searched widths, against DRC pruning to the uniform widths (C - floor(C rate), "manually
  designed"); every pruned model fine-tuned ``--ft-steps`` steps with the dual regression loss.
  The entropy of each layer's width distribution at the end of the search is recorded.
- ``methods``: from ``--base`` at the uniform 50 % widths: DRC and DCP with gamma 0.1 / 1 / 10,
  ThiNet, CP and L1, each fine-tuned the same way. DRC at gamma 1 runs the same commands as the
  ``search`` family's uniform 50 % job of the same seed: whichever runs second reuses the
  other's result.
- ``x8``: from an x8 ``--base`` (the x8 CPU recipe's model): DRC and L1 at the uniform 50 %
  widths, fine-tuned with configs/cpu-drn-x8.yaml, beside the unpruned base.

A job's steps are skipped when their output exists and an interrupted training resumes, so
``run`` continues where it stopped. Several ``run`` processes of one family may share an
``--out``: each job is locked (``flock`` on the job's ``.lock``) while a process works on it, and
the others skip to the next free job, so the lanes balance themselves; a lock dies with its
process, so a stopped lane's job is taken up again by the next ``run``. Two processes with
``--threads 1`` share 2 cores about 5% more efficiently than one with 2 threads (measured on the
CPU recipe: 0.81 s per step each vs 0.43 s). ``--shard K/N`` (every N-th job from the K-th,
0-based) splits a family statically, e.g. between machines that do not share ``--out``.
Each finished job writes ``result.json`` (variant, seed, scores, parameters, hours); ``summary``
groups them into mean +- std per variant, judges the paper's claims (two-sided paired t-tests,
p from Student's t, Holm-corrected within each claim; the verdict rule is at ``ALPHA``), and for
``search`` adds where the searched widths sit among their candidates, the searched arms against
the uniform arms at equal size, and where the released DRN-S configurations sit among theirs.
``summary --from-json`` rebuilds all of it from a ``summary --json`` file alone (its variants
keep every seed's score), without the run folders.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dualsr import count_parameters, load_model
from dualsr.compression.search.checkpoints import has_search_checkpoints
from dualsr.provenance import read_metrics, training_cost
from dualsr.training.state import run_has_checkpoints

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = (0.0, 0.001, 0.01, 0.1, 1.0, 10.0)
RATES = (0.3, 0.5, 0.7)
GAMMAS = (0.1, 1.0, 10.0)
# The released search (DRN/train_test_script.sh: --epochs 100 --test_every 50 --batch_size 16):
# an epoch is test_every x batch_size = 800 samples, half of them for the weights, so 25 steps;
# 2,500 steps in all, the logits' Adam at lr 3e-4 (cosine). Adam moves a logit by at most about
# its lr per step, so that search moves each logit by at most ~0.375 (the cosine's mean lr times
# 2,500); a search of S steps here gets the lr that gives the same travel: 3e-4 x 2,500 / S.
RELEASED_SEARCH_STEPS = 2500
RECIPE_BATCH = 16  # data.batch_size of configs/cpu-drn-x4.yaml and cpu-drn-x8.yaml
RELEASED_LR_ALPHA = 3e-4


@dataclass
class Job:
    """One trained/evaluated model: ``commands`` run in order, each skipped when ``creates``
    (its output, relative to the job directory) exists."""

    family: str
    name: str
    variant: dict
    seed: int
    commands: list[tuple[list[str], str]] = field(default_factory=list)
    model: str = "model.safetensors"  # the evaluated checkpoint, relative to the job dir
    run_dir: str | None = None  # a training run (for its cost), relative to the job dir
    search_dir: str | None = None  # a search output (for its entropies)
    same_as: str | None = None  # ``family/job`` that runs the same commands: reuse its result


def dualsr() -> str:
    """The console script next to this interpreter (the project's venv), else ``dualsr``."""
    local = Path(sys.executable).with_name("dualsr")
    return str(local) if local.exists() else "dualsr"


def _overrides(args: argparse.Namespace, seed: int, every: int, extra: list[str]) -> list[str]:
    """``--set`` options shared by every training and fine-tuning run, then ``extra``."""
    sets = [
        f"data.cache_dir={args.out}/cache",
        f"val.folders=[{args.data}/Set5]",
        f"val.every={every}",
        f"train.seed={seed}",
        f"train.threads={args.threads}",
        "run.tensorboard=false",
        "run.progress=false",
        *extra,
    ]
    return [item for s in sets for item in ("--set", s)]


def _train(args: argparse.Namespace, run: str, seed: int, sets: list[str]) -> list[str]:
    data = f"data.train=[{args.data}/T91,{args.data}/BSD200]"
    return [
        dualsr(),
        "train",
        "--config",
        str(ROOT / "configs" / "cpu-drn-x4.yaml"),
        "--run-dir",
        run,
        *_overrides(args, seed, args.steps, [data, f"train.steps={args.steps}", *sets]),
    ]


def _finetune(
    args: argparse.Namespace, model: str, run: str, seed: int, recipe: str = "cpu-drn-x4.yaml"
) -> list[str]:
    return [
        dualsr(),
        "finetune",
        "--model",
        model,
        "--output",
        run,
        "--steps",
        str(args.ft_steps),
        "--config",
        str(ROOT / "configs" / recipe),
        "--data",
        f"{args.data}/T91",
        f"{args.data}/BSD200",
        *_overrides(args, seed, args.ft_steps, ["optim.lr=1e-4"]),
    ]


def _prune(
    args: argparse.Namespace, out: str, seed: int, method: str, extra: list[str], patch: int = 128
) -> list:
    return [
        dualsr(),
        "prune",
        "--model",
        str(args.base),
        "--method",
        method,
        "--data",
        f"{args.data}/T91",
        f"{args.data}/BSD200",
        "--images",
        "64",
        "--patch-size",
        str(patch),
        "--batch-size",
        "16",
        "--seed",
        str(seed),
        "-o",
        out,
        # DRC/DCP: the moments greedy (on drn-t-x4, 98.6-99.6% of the released loop's channels
        # on the same crops, 87% with fresh crops; 12-32x cheaper; docs/RESULTS.md)
        *(["--greedy", "moments"] if method in ("drc", "dcp") else []),
        *extra,
    ]


def jobs(family: str, args: argparse.Namespace) -> Iterator[Job]:
    """The jobs of ``family`` (one per variant and seed)."""
    for seed in args.seeds:
        if family == "lambda":
            for lam in LAMBDAS:
                sets = ["loss.dual=false"] if lam == 0 else [f"loss.dual_weight={lam}"]
                job = Job(family, f"lam{lam:g}-s{seed}", {"lambda": lam}, seed, run_dir="run")
                job.commands.append((_train(args, "run", seed, sets), "run/DONE"))
                job.model = "run/latest.safetensors"
                yield job
        elif family == "dual-hr":
            job = Job(family, f"dualhr-s{seed}", {"loss": "dual LR + dual HR"}, seed, run_dir="run")
            sets = ["loss.dual_weight=0.1", "loss.dual_hr=true"]
            job.commands.append((_train(args, "run", seed, sets), "run/DONE"))
            job.model = "run/latest.safetensors"
            yield job
        elif family == "search":
            for rate in RATES:
                tag = f"r{round(rate * 100)}"
                job = Job(
                    family,
                    f"searched-{tag}-s{seed}",
                    {"config": "searched", "rate": rate},
                    seed,
                    run_dir="ft",
                    search_dir="search",
                )
                job.commands.append(
                    (
                        [
                            dualsr(),
                            "search",
                            "--model",
                            str(args.base),
                            "--data",
                            f"{args.data}/T91",
                            f"{args.data}/BSD200",
                            "--rate",
                            str(rate),
                            "--select",
                            "argmax",
                            "--patch-size",
                            "96",
                            "--batch-size",
                            "8",
                            "--steps",
                            str(args.search_steps),
                            "--lr-alpha",
                            f"{search_lr_alpha(args):.6g}",
                            "--seed",
                            str(seed),
                            "--val",
                            f"{args.data}/Set5",
                            "--cache-dir",
                            f"{args.out}/cache",
                            "-o",
                            "search",
                        ],
                        "search/channel_config.txt",
                    )
                )
                extra = ["--config", "search/channel_config.txt"]
                job.commands.append(
                    (_prune(args, "pruned.safetensors", seed, "drc", extra), "pruned.safetensors")
                )
                job.commands.append((_finetune(args, "pruned.safetensors", "ft", seed), "ft/DONE"))
                job.model = "ft/latest.safetensors"
                yield job
                job = Job(
                    family,
                    f"uniform-{tag}-s{seed}",
                    {"config": "uniform", "rate": rate},
                    seed,
                    run_dir="ft",
                    same_as=f"methods/drc-g1-s{seed}" if rate == 0.5 else None,
                )
                job.commands.append(
                    (
                        _prune(args, "pruned.safetensors", seed, "drc", ["--rate", str(rate)]),
                        "pruned.safetensors",
                    )
                )
                job.commands.append((_finetune(args, "pruned.safetensors", "ft", seed), "ft/DONE"))
                job.model = "ft/latest.safetensors"
                yield job
        elif family == "methods":
            variants: list[tuple[str, str, list[str], dict]] = []
            for method in ("drc", "dcp"):
                for gamma in GAMMAS:
                    variants.append(
                        (
                            f"{method}-g{gamma:g}",
                            method,
                            ["--gamma", str(gamma)],
                            {"method": method, "gamma": gamma},
                        )
                    )
            for method in ("thinet", "cp", "l1"):
                variants.append((method, method, [], {"method": method}))
            for name, method, extra, variant in variants:
                job = Job(family, f"{name}-s{seed}", {**variant, "rate": 0.5}, seed, run_dir="ft")
                if name == "drc-g1":  # the search family's uniform 50% job, gamma 1 by default
                    job.same_as = f"search/uniform-r50-s{seed}"
                job.commands.append(
                    (
                        _prune(args, "pruned.safetensors", seed, method, ["--rate", "0.5", *extra]),
                        "pruned.safetensors",
                    )
                )
                job.commands.append((_finetune(args, "pruned.safetensors", "ft", seed), "ft/DONE"))
                job.model = "ft/latest.safetensors"
                yield job
        elif family == "x8":
            if seed == args.seeds[0]:
                job = Job(family, "unpruned", {"model": "x8 base"}, seed)
                job.model = str(args.base)
                yield job
            for method in ("drc", "l1"):
                job = Job(
                    family,
                    f"{method}-r50-s{seed}",
                    {"method": method, "rate": 0.5},
                    seed,
                    run_dir="ft",
                )
                prune = _prune(args, "pruned.safetensors", seed, method, ["--rate", "0.5"], 192)
                job.commands.append((prune, "pruned.safetensors"))
                ft = _finetune(args, "pruned.safetensors", "ft", seed, "cpu-drn-x8.yaml")
                job.commands.append((ft, "ft/DONE"))
                job.model = "ft/latest.safetensors"
                yield job
        else:
            raise SystemExit(f"unknown family {family!r}")


def search_lr_alpha(args: argparse.Namespace) -> float:
    """The logits' learning rate of a ``--search-steps`` search: ``--search-lr-alpha``, else the
    one that moves the logits as far as the released 2,500-step search."""
    if args.search_lr_alpha is not None:
        return args.search_lr_alpha
    return RELEASED_LR_ALPHA * RELEASED_SEARCH_STEPS / args.search_steps


def median_step_seconds(rows: list[dict], batch_size: int = RECIPE_BATCH) -> float | None:
    """The median seconds per training step of a run's logged rows: unlike the total hours, it
    does not move when another job shares the machine for part of the run."""
    rates = [r["patches_per_s"] for r in rows if r.get("patches_per_s")]
    return round(batch_size / statistics.median(rates), 4) if rates else None


def entropies(search_json: Path) -> list[dict]:
    """Each searched layer's width distribution at the end of a search (``search.json`` of
    ``dualsr search``): its name, entropy and the uniform distribution's (nats)."""
    layers = json.loads(search_json.read_text())["layers"]
    return [
        {
            "layer": layer["name"],
            "entropy": round(-sum(p * math.log(p) for p in layer["softmax"] if p > 0), 4),
            "uniform": round(math.log(len(layer["softmax"])), 4),
        }
        for layer in layers
    ]


def widest_share(search_json: Path, config: list[int]) -> float:
    """The share of searched layers whose width in ``config`` is the widest of their candidates
    (``search.json`` of ``dualsr search`` lists each layer's candidates)."""
    layers = json.loads(search_json.read_text())["layers"]
    if len(layers) != len(config):
        raise ValueError(
            f"{search_json}: {len(layers)} layers but a configuration of {len(config)}"
        )
    return sum(w == max(x["candidates"]) for x, w in zip(layers, config, strict=True)) / len(config)


def rising_share(search_json: Path) -> float:
    """The share of searched layers (of those with two or more distinct candidate widths) whose
    logits rise strictly with the width (a width listed twice counts with its mean logit): the
    search prefers the widest candidate there at every step of the ladder."""
    rising = counted = 0
    for layer in json.loads(search_json.read_text())["layers"]:
        pairs = list(zip(layer["candidates"], layer["alpha"], strict=True))
        widths = sorted({w for w, _ in pairs})
        if len(widths) < 2:
            continue
        means = [statistics.fmean(a for v, a in pairs if v == w) for w in widths]
        counted += 1
        rising += all(b > a for a, b in itertools.pairwise(means))
    return rising / counted if counted else float("nan")


def released_width_choices() -> list[dict]:
    """Where the released searches' DRN-S30/50/70 configurations (x4, x8; shipped as presets)
    sit among their candidates: the share of layers at the widest candidate (or wider), at the
    second widest, and the layers whose width is not a candidate at all, for comparison with
    ``widest_share`` of the searches here."""
    import torch

    from dualsr.compression.layers import searched_layers
    from dualsr.compression.search.space import candidate_widths
    from dualsr.models.registry import create_model, preset_channel_config

    rows = []
    for scale in (4, 8):
        with torch.device("meta"):
            full = [layer.width for layer in searched_layers(create_model(f"drn-s-x{scale}"))]
        for pct in (30, 50, 70):
            name = f"drn-s{pct}-x{scale}"
            config = preset_channel_config(name)
            if config is None or len(config) != len(full):
                raise ValueError(f"preset {name}: no configuration of {len(full)} layers")
            cands = [candidate_widths(c, pct / 100) for c in full]
            # a width's rank: how many distinct candidates are wider (0: the widest, or wider)
            ranks = [sum(v > w for v in set(c)) for c, w in zip(cands, config, strict=True)]
            rows.append(
                {
                    "preset": name,
                    "widest_share": round(ranks.count(0) / len(ranks), 4),
                    "second_share": round(ranks.count(1) / len(ranks), 4),
                    "off_candidates": [
                        {"layer": i, "width": w, "candidates": sorted(set(c))}
                        for i, (c, w) in enumerate(zip(cands, config, strict=True))
                        if w not in c
                    ],
                }
            )
    return rows


def _add_seconds(jdir: Path, command: str, seconds: float) -> None:
    """Add a command's wall time to the job's ``seconds.json``. A command resumed after a stop
    adds the time of its last run only: the stopped run never got to write its own."""
    path = jdir / "seconds.json"
    times = json.loads(path.read_text()) if path.exists() else {}
    times[command] = round(times.get(command, 0.0) + seconds, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(times) + "\n")
    tmp.replace(path)


def run_job(job: Job, args: argparse.Namespace) -> bool:
    """Run the job's missing steps, evaluate, and write ``result.json``.

    Returns False, doing nothing, when another process holds the job's lock (it is working on
    the job); True when the job is done.
    """
    jdir = args.out / job.family / job.name
    if (jdir / "result.json").exists():
        return True
    jdir.mkdir(parents=True, exist_ok=True)
    with open(jdir / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if not (jdir / "result.json").exists():  # not finished by the lock's last holder
            _run_locked_job(job, args, jdir)
    return True


def _run_locked_job(job: Job, args: argparse.Namespace, jdir: Path) -> None:
    twin = args.out / job.same_as / "result.json" if job.same_as else None
    if twin is not None and twin.exists():
        record = json.loads(twin.read_text())
        record.update(family=job.family, name=job.name, variant=job.variant, same_as=job.same_as)
        (jdir / "result.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"[{job.family}/{job.name}] = {job.same_as}: {record['scores']}", flush=True)
        return
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),  # prune and eval: as many threads as training
        "MALLOC_MMAP_THRESHOLD_": "33554432",
        "MALLOC_TRIM_THRESHOLD_": "1073741824",
    }
    for cmd, creates in job.commands:
        if (jdir / creates).exists():
            continue
        if cmd[1] in ("train", "finetune"):
            run = cmd[cmd.index("--run-dir" if cmd[1] == "train" else "--output") + 1]
            if run_has_checkpoints(jdir / run):  # interrupted after a checkpoint: continue it
                cmd = [dualsr(), "train", "--resume", run]
            elif (jdir / run).exists():  # interrupted before its first checkpoint: start over
                print(f"[{job.family}/{job.name}] {run}/ holds no checkpoint; starting it over")
                shutil.rmtree(jdir / run)
        elif cmd[1] == "search" and has_search_checkpoints(jdir / cmd[cmd.index("-o") + 1]):
            cmd = [dualsr(), "search", "--resume", cmd[cmd.index("-o") + 1]]  # interrupted
        print(f"[{job.family}/{job.name}] {shlex.join(cmd)}", flush=True)
        start = time.perf_counter()
        with open(jdir / "log.txt", "a") as log:
            rc = subprocess.run(
                cmd, cwd=jdir, env=env, stdout=log, stderr=subprocess.STDOUT
            ).returncode
        if rc != 0:
            raise SystemExit(f"[{job.family}/{job.name}] failed (exit {rc}); see {jdir}/log.txt")
        _add_seconds(jdir, cmd[1], time.perf_counter() - start)
        if creates.endswith("DONE"):
            (jdir / creates).write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    sets = ["Set5", "Set14"] + (["BSD100"] if args.bsd100 else [])
    ev = [
        dualsr(),
        "eval",
        "--model",
        job.model,
        "--precision",
        "fp32",
        "--data",
        *[f"{args.data}/{s}" for s in sets],
        "--out",
        "eval",
    ]
    with open(jdir / "log.txt", "a") as log:
        rc = subprocess.run(ev, cwd=jdir, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"[{job.family}/{job.name}] eval failed (exit {rc}); see {jdir}/log.txt")
    results = json.loads((jdir / "eval" / "results.json").read_text())
    record = {
        "family": job.family,
        "name": job.name,
        "variant": job.variant,
        "seed": job.seed,
        "scores": {d["dataset"]: round(d["psnr"], 4) for d in results["datasets"]},
        "params": count_parameters(load_model(jdir / job.model)),
    }

    if job.run_dir and (jdir / job.run_dir / "metrics.jsonl").exists():
        rows = read_metrics(jdir / job.run_dir / "metrics.jsonl")
        record["cost"] = training_cost(rows, batch_size=RECIPE_BATCH, threads=args.threads)
        record["cost"]["step_s_median"] = median_step_seconds(rows)
    if (jdir / "seconds.json").exists():  # wall time of each command (search, prune, ...)
        record["seconds"] = json.loads((jdir / "seconds.json").read_text())
    if job.search_dir and (jdir / job.search_dir / "search.json").exists():
        record["entropy"] = entropies(jdir / job.search_dir / "search.json")
        cfg = (jdir / job.search_dir / "channel_config.txt").read_text().split()
        record["channel_config"] = [int(c) for c in cfg]
    (jdir / "result.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"[{job.family}/{job.name}] {record['scores']}", flush=True)


def load_records(out: Path) -> list[dict]:
    """Every finished job's ``result.json`` under ``out`` (``<family>/<job>/result.json``)."""
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/*/result.json"))]


def _order(family: str, variant: str) -> tuple:
    """Sort key: family, then the variant's values (numbers by value, so 0.001 < 0.01 < 0.1)."""
    items = sorted(json.loads(variant).items())
    return family, [
        (k, (0, v, "") if isinstance(v, int | float) else (1, 0, str(v))) for k, v in items
    ]


def summary(out: Path) -> list[dict]:
    """Mean +- std (sample std over seeds) per family and variant; for searches, each layer's
    entropy, the share of layers at their widest candidate and the share whose logits rise with
    the width (the last two read from each job's ``search/search.json``)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for rec in load_records(out):
        key = (rec["family"], json.dumps(rec["variant"], sort_keys=True))
        groups.setdefault(key, []).append(rec)
    table = []
    for (family, variant), recs in sorted(groups.items(), key=lambda kv: _order(*kv[0])):
        row: dict = {"family": family, "variant": json.loads(variant), "seeds": len(recs)}
        for ds in recs[0]["scores"]:
            vals = [r["scores"][ds] for r in recs if ds in r["scores"]]
            row[ds] = {
                "mean": round(statistics.fmean(vals), 3),
                "std": round(statistics.stdev(vals), 3) if len(vals) > 1 else None,
                "values": vals,
                "seeds": [r["seed"] for r in recs if ds in r["scores"]],
            }
        hours = [r["cost"]["hours"] for r in recs if "cost" in r]
        if hours:
            row["hours"] = round(statistics.fmean(hours), 3)
        step_s = [
            r["cost"]["step_s_median"] for r in recs if r.get("cost", {}).get("step_s_median")
        ]
        if step_s:
            row["step_s"] = round(statistics.fmean(step_s), 3)
        params = [r["params"] for r in recs if r.get("params") is not None]
        if params:  # searched widths may differ by seed: their mean, and each seed's
            row["params"] = round(statistics.fmean(params))
            if len(set(params)) > 1:
                row["params_values"] = params
        ent = [r["entropy"] for r in recs if "entropy" in r]
        if ent:  # each layer's entropy, mean over seeds, beside the uniform distribution's
            row["entropy_per_layer"] = [
                {
                    "layer": layers[0]["layer"],
                    "entropy": round(statistics.fmean(x["entropy"] for x in layers), 4),
                    "uniform": layers[0]["uniform"],
                }
                for layers in zip(*ent, strict=True)
            ]
        searches = [
            (rec, sj)
            for rec in recs
            if "channel_config" in rec
            and (sj := out / rec["family"] / rec["name"] / "search" / "search.json").exists()
        ]
        if searches:
            shares = [widest_share(sj, rec["channel_config"]) for rec, sj in searches]
            row["widest_share"] = round(statistics.fmean(shares), 4)
            row["rising_share"] = round(statistics.fmean(rising_share(sj) for _, sj in searches), 4)
        table.append(row)
    return table


# The paper's claims as comparisons "A scores higher than B", each side (family, variant).
# The DRN paper (Guo et al., CVPR 2020) and its ablations: lambda 0.001 .. 0.1 improves over
# primal only, 1 and 10 hurt, 0.1 is used;
# gamma 1 is best; DRC beats DCP, ThiNet and CP at equal size; searched beats manual widths.
# The x8 claim is this grid's own check, not a comparison the paper makes (its x8 results are
# the searched and DRC-pruned DRN-S30/50/70 x8 models): the text says so.
Side = tuple[str, dict]
_DRC: Side = ("methods", {"method": "drc", "gamma": 1.0, "rate": 0.5})
CLAIMS: list[tuple[str, list[tuple[Side, Side]]]] = [
    (
        "dual regression helps: lambda 0.001, 0.01 and 0.1 each beat lambda 0 (primal only)",
        [(("lambda", {"lambda": lam}), ("lambda", {"lambda": 0.0})) for lam in (0.001, 0.01, 0.1)],
    ),
    (
        "too much dual weight hurts: lambda 0.1 beats 1 and 10",
        [(("lambda", {"lambda": 0.1}), ("lambda", {"lambda": lam})) for lam in (1.0, 10.0)],
    ),
    (
        "dual regression on HR data helps: dual LR + dual HR beats dual LR only (lambda 0.1)",
        [(("dual-hr", {"loss": "dual LR + dual HR"}), ("lambda", {"lambda": 0.1}))],
    ),
    (
        "searched widths beat uniform widths at the same rate (not the same size: see params)",
        [
            (
                ("search", {"config": "searched", "rate": r}),
                ("search", {"config": "uniform", "rate": r}),
            )
            for r in RATES
        ],
    ),
    (
        "DRC (gamma 1) beats DCP (gamma 1), ThiNet, CP and L1 at the uniform 50% widths",
        [(_DRC, ("methods", {"method": "dcp", "gamma": 1.0, "rate": 0.5}))]
        + [(_DRC, ("methods", {"method": m, "rate": 0.5})) for m in ("thinet", "cp", "l1")],
    ),
    (
        "gamma 1 is the best weight of the SR loss in DRC: it beats gamma 0.1 and 10",
        [(_DRC, ("methods", {**_DRC[1], "gamma": g})) for g in (0.1, 10.0)],
    ),
    (
        "x8, this grid's check, not the paper's x8 comparison: DRC beats L1 at the uniform 50% "
        "widths",
        [(("x8", {"method": "drc", "rate": 0.5}), ("x8", {"method": "l1", "rate": 0.5}))],
    ),
]

# The verdict rule, the one place it is defined (docs/RESULTS.md states it in words): each
# comparison "A > B" of a claim is a two-sided paired t-test over the seeds; the p-values of one
# claim's comparisons are Holm-corrected, so the claim's family-wise error rate is at most ALPHA.
# A comparison is "reproduced" when its corrected p < ALPHA and A - B > 0 (the paper's
# direction), "contradicted" when its corrected p < ALPHA and A - B < 0, "inconclusive"
# otherwise (also without a test). A claim is "reproduced" when every comparison is reproduced,
# "contradicted" when every comparison is contradicted, and "inconclusive" otherwise; the
# claim's ``counts`` tell a mixed claim's comparisons apart.
ALPHA = 0.05
VERDICTS = ("reproduced", "contradicted", "inconclusive")


def paired_t(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """A two-sided paired t-test of A - B over the seeds both have (variants of one seed share
    its data order): the seeds, the mean difference, its standard error, t, the degrees of
    freedom and the p-value from Student's t (scipy); None with fewer than 2 common seeds.
    Equal differences in every seed (standard error 0) give t None and p 0 (1 when all are 0)."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    df = len(diffs) - 1
    if se > 0:
        t: float | None = mean / se
        p = float(2 * stats.t.sf(abs(t), df))
    else:
        t, p = None, 0.0 if mean else 1.0
    return {
        "seeds": seeds,
        "diff": round(mean, 4),
        "se": round(se, 4),
        "t": None if t is None else round(t, 2),
        "df": df,
        "p": p,
    }


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down correction of ``pvalues`` (None: no test, left out and kept as None):
    the i-th smallest of m p-values times (m - i + 1), made non-decreasing in that order and
    capped at 1. Rejecting where the result is below alpha keeps the family-wise error at alpha."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def comparison_verdict(diff: float, p_corrected: float | None, alpha: float = ALPHA) -> str:
    """The verdict of one comparison from the mean difference A - B and its corrected p-value:
    "reproduced" (A > B significantly), "contradicted" (B > A significantly) or "inconclusive"
    (see ALPHA)."""
    if p_corrected is None or p_corrected >= alpha or diff == 0:
        return "inconclusive"
    return "reproduced" if diff > 0 else "contradicted"


def claim_verdict(verdicts: list[str]) -> str:
    """A claim's verdict from its comparisons' (see ALPHA): all reproduced, all contradicted,
    else inconclusive."""
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if verdicts and all(v == "contradicted" for v in verdicts):
        return "contradicted"
    return "inconclusive"


def compare(a: dict[int, float], b: dict[int, float], alpha: float = ALPHA) -> dict | None:
    """One comparison on its own (no correction): ``paired_t`` with ``verdict``."""
    test = paired_t(a, b)
    if test is not None:
        test["verdict"] = comparison_verdict(test["diff"], test["p"], alpha)
    return test


def claims(records: list[dict], dataset: str = "Set5", alpha: float = ALPHA) -> list[dict]:
    """Each paper claim's comparisons on ``dataset``, Holm-corrected within the claim, with the
    verdicts of the rule above (see ALPHA). Each comparison carries both sides' scores by seed
    and their mean parameter count, so that what is compared is stated with its size."""

    def side(s: Side) -> tuple[dict[int, float], int | None]:
        family, variant = s
        recs = [r for r in records if r["family"] == family and r["variant"] == variant]
        params = [r["params"] for r in recs if r.get("params") is not None]
        scores = {r["seed"]: r["scores"][dataset] for r in recs if dataset in r["scores"]}
        return scores, round(statistics.fmean(params)) if params else None

    out = []
    for text, comparisons in CLAIMS:
        rows = []
        for sa, sb in comparisons:
            (a, a_params), (b, b_params) = side(sa), side(sb)
            rows.append(
                {
                    "a": sa[1],
                    "b": sb[1],
                    "a_scores": a,
                    "b_scores": b,
                    "a_params": a_params,
                    "b_params": b_params,
                    "test": paired_t(a, b),
                }
            )
        corrected = holm([r["test"]["p"] if r["test"] else None for r in rows])
        verdicts = []
        for row, p in zip(rows, corrected, strict=True):
            if row["test"] is not None:
                row["test"]["p_holm"] = p
                row["test"]["verdict"] = comparison_verdict(row["test"]["diff"], p, alpha)
            verdicts.append(row["test"]["verdict"] if row["test"] else "inconclusive")
        out.append(
            {
                "claim": text,
                "dataset": dataset,
                "alpha": alpha,
                "correction": "holm",
                "verdict": claim_verdict(verdicts),
                "counts": {v: verdicts.count(v) for v in VERDICTS},
                "comparisons": rows,
            }
        )
    return out


def records_from_table(table: list[dict]) -> list[dict]:
    """Per-seed records (family, variant, seed, scores, params) rebuilt from a ``summary``
    table, whose rows keep every seed's score: what ``claims`` needs, so that the verdicts can
    be recomputed from the summary's JSON alone (``summary --from-json``)."""
    records: dict[tuple[str, str, int], dict] = {}
    for row in table:
        key = json.dumps(row["variant"], sort_keys=True)
        seeds_seen: list[int] = []
        for ds, cell in row.items():
            if not (isinstance(cell, dict) and "values" in cell and "seeds" in cell):
                continue
            for seed, value in zip(cell["seeds"], cell["values"], strict=True):
                rec = records.setdefault(
                    (row["family"], key, seed),
                    {
                        "family": row["family"],
                        "variant": row["variant"],
                        "seed": seed,
                        "scores": {},
                    },
                )
                rec["scores"][ds] = value
                if seed not in seeds_seen:
                    seeds_seen.append(seed)
        # params: one per seed in the seeds' order when they differ, else the row's
        per_seed = row.get("params_values")
        for i, seed in enumerate(seeds_seen):
            params = per_seed[i] if per_seed and len(per_seed) == len(seeds_seen) else None
            if params is None:
                params = row.get("params")
            records[(row["family"], key, seed)]["params"] = params
    return list(records.values())


def _label(variant: dict) -> str:
    return ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in variant.items()
    )


def _ms(vals: dict[int, float]) -> str:
    v = list(vals.values())
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.3f} (1 seed)"
    return f"{statistics.fmean(v):.3f} +- {statistics.stdev(v):.3f}"


def _side(variant: dict, params: int | None) -> str:
    return f"{_label(variant)} ({params:,} params)" if params else _label(variant)


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def print_claims(results: list[dict]) -> None:
    """Markdown: one row per comparison, A and B (with their parameter counts) as mean +- std,
    A - B paired (+- se), t with its degrees of freedom, p and Holm's p, the comparison's
    verdict, and the claim's verdict with its comparisons' counts (the rule: see ALPHA)."""
    ds = results[0]["dataset"] if results else "Set5"
    print(
        f"| claim | A | B | A, {ds} (dB) | B, {ds} (dB) | A - B (paired, +- se) | t (df) | p "
        "| p, Holm | comparison | claim |"
    )
    print("|---" * 11 + "|")
    for c in results:
        for i, row in enumerate(c["comparisons"]):
            t = row["test"]
            if t:
                diff = f"{t['diff']:+.3f} +- {t['se']:.3f}"
                tdf = f"{t['t']:+.2f} ({t['df']})" if t["t"] is not None else f"- ({t['df']})"
                cells = (diff, tdf, _p(t["p"]), _p(t.get("p_holm")), t["verdict"])
            else:
                cells = ("-", "-", "-", "-", "inconclusive (no test)")
            if i == 0:
                counts = ", ".join(f"{n} {v}" for v, n in c["counts"].items() if n)
                head = (c["claim"], f"**{c['verdict']}** ({counts})")
            else:
                head = ("", "")
            print(
                f"| {head[0]} | {_side(row['a'], row.get('a_params'))} "
                f"| {_side(row['b'], row.get('b_params'))} | {_ms(row['a_scores'])} "
                f"| {_ms(row['b_scores'])} | {' | '.join(cells)} | {head[1]} |"
            )


def uniform_line_gaps(table: list[dict], dataset: str = "Set5") -> list[dict]:
    """Each searched arm of the ``search`` family against the uniform arms at its own size: the
    uniform arms' mean PSNR, read off the straight line through the two uniform arms nearest in
    parameters (extrapolated past the smallest or largest), and the searched arm's gap to it.
    Searched and uniform models of one rate differ in size (the candidates' rounding), so this
    is the equal-size reading; the line assumes PSNR linear in parameters between arms."""
    arms = [r for r in table if r["family"] == "search" and "params" in r and dataset in r]
    uniform = sorted(
        ((r["params"], r[dataset]["mean"]) for r in arms if r["variant"]["config"] == "uniform"),
    )
    if len(uniform) < 2:
        return []
    gaps = []
    for row in arms:
        if row["variant"]["config"] != "searched":
            continue
        n = row["params"]
        i = min(max(sum(p < n for p, _ in uniform), 1), len(uniform) - 1)
        (p0, y0), (p1, y1) = uniform[i - 1], uniform[i]
        line = y0 + (y1 - y0) * (n - p0) / (p1 - p0)
        gaps.append(
            {
                "rate": row["variant"]["rate"],
                "params": n,
                dataset: row[dataset]["mean"],
                "uniform_line": round(line, 3),
                "gap": round(row[dataset]["mean"] - line, 3),
                "between": [p0, p1],
                "extrapolated": not p0 <= n <= p1,
            }
        )
    return gaps


def print_summary(table: list[dict]) -> None:
    """Markdown: family, variant, seeds, mean +- std per data set, parameters, training hours and
    median seconds per step (then, for searches, the entropy of the width distributions)."""
    sets = [ds for ds in ("Set5", "Set14", "BSD100") if any(ds in row for row in table)]
    print(f"| family | variant | seeds | {' | '.join(sets)} | params | hours | s/step |")
    print("|---" * (len(sets) + 6) + "|")
    for row in table:
        variant = _label(row["variant"])
        cells = []
        for ds in sets:
            m, s = (row[ds]["mean"], row[ds]["std"]) if ds in row else (None, None)
            cells.append(
                "-" if m is None else f"{m:.3f} +- {s:.3f}" if s is not None else f"{m:.3f}"
            )
        params = f"{row['params']:,}" if "params" in row else ""
        hours = f"{row['hours']:.2f}" if "hours" in row else ""
        step_s = f"{row['step_s']:.2f}" if "step_s" in row else ""
        print(
            f"| {row['family']} | {variant} | {row['seeds']} | {' | '.join(cells)} | {params} "
            f"| {hours} | {step_s} |"
        )
    searched = [row for row in table if "entropy_per_layer" in row]
    if searched:
        print("\nwidth distributions at the end of each search (nats, mean over seeds):\n")
        print(
            "| variant | mean entropy over layers | lowest layer | uniform | at widest candidate "
            "| logits rise with width |"
        )
        print("|---|---|---|---|---|---|")
    for row in searched:
        layers = row["entropy_per_layer"]
        low = min(layers, key=lambda x: x["entropy"])
        mean = statistics.fmean(x["entropy"] for x in layers)
        uniform = statistics.fmean(x["uniform"] for x in layers)
        share = f"{100 * row['widest_share']:.0f}% of layers" if "widest_share" in row else "-"
        rising = f"{100 * row['rising_share']:.0f}% of layers" if "rising_share" in row else "-"
        print(
            f"| {_label(row['variant'])} | {mean:.4f} | {low['entropy']:.4f} ({low['layer']}) "
            f"| {uniform:.4f} | {share} | {rising} |"
        )


def report(table: list[dict], records: list[dict], dataset: str, json_path: Path | None) -> None:
    """Print the summary (variants, the searched arms against the uniform line, the claims on
    ``dataset``, the released configurations) and, with ``json_path``, write it as JSON: the
    claims and uniform-line gaps also for every other data set the records have."""
    print_summary(table)
    gaps = uniform_line_gaps(table, dataset)
    if gaps:
        print(f"\nsearched against the uniform arms at equal size ({dataset}):\n")
        print("| rate | searched params | searched | uniform line there | gap | line through |")
        print("|---|---|---|---|---|---|")
        for g in gaps:
            through = f"{g['between'][0]:,} and {g['between'][1]:,}"
            through += " (extrapolated)" if g["extrapolated"] else ""
            print(
                f"| {g['rate']:g} | {g['params']:,} | {g[dataset]:.3f} "
                f"| {g['uniform_line']:.3f} | {g['gap']:+.3f} | {through} |"
            )
    print()
    verdicts = claims(records, dataset)
    print_claims(verdicts)
    released = released_width_choices()
    print("\nthe released searches' configurations among their candidates:\n")
    print("| preset | at widest candidate | at second widest | not a candidate |")
    print("|---|---|---|---|")
    for row in released:
        off = ", ".join(
            f"layer {x['layer']}: {x['width']} (candidates {x['candidates']})"
            for x in row["off_candidates"]
        )
        print(
            f"| {row['preset']} | {100 * row['widest_share']:.0f}% of layers "
            f"| {100 * row['second_share']:.0f}% | {off or '-'} |"
        )
    if json_path is None:
        return
    sets = [ds for ds in ("Set5", "Set14", "BSD100") if any(ds in r["scores"] for r in records)]
    doc = {
        "variants": table,
        "verdict_rule": {
            "alpha": ALPHA,
            "correction": "holm, within each claim",
            "test": "two-sided paired t-test over seeds, p from Student's t (scipy)",
        },
        "claims": verdicts,
        "uniform_line_gaps": gaps,
        "claims_by_dataset": {ds: claims(records, ds) for ds in sets},
        "uniform_line_gaps_by_dataset": {ds: uniform_line_gaps(table, ds) for ds in sets},
        "released_width_choices": released,
    }
    json_path.write_text(json.dumps(doc, indent=2) + "\n")


def plot_lambda(doc: dict, path: Path) -> None:
    """The paper's lambda figure at CPU scale: Set5 and Set14 PSNR (mean +- std over seeds)
    against the dual weight, from a ``summary --json`` document."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(
        (r for r in doc["variants"] if r["family"] == "lambda"),
        key=lambda r: r["variant"]["lambda"],
    )
    if not rows:
        raise SystemExit("no lambda results in the summary: run the lambda family first")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    x = list(range(len(rows)))
    for ax, ds in zip(axes, ("Set5", "Set14"), strict=True):
        mean = [r[ds]["mean"] for r in rows]
        std = [r[ds]["std"] or 0.0 for r in rows]
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=4)
        ax.set_xticks(x, [f"{r['variant']['lambda']:g}" for r in rows])
        ax.set_xlabel("lambda (dual weight; 0 = primal only)")
        ax.set_ylabel(f"{ds} PSNR-Y (dB)")
        n = sorted({r["seeds"] for r in rows})
        seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"
        ax.set_title(f"{ds}, mean +- std over {seeds} seeds")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _shard(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes K/N, e.g. 0/2, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def main(argv: list[str] | None = None) -> None:
    """``run FAMILY``, ``summary`` or ``plot``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("family", choices=["lambda", "dual-hr", "search", "methods", "x8"])
    r.add_argument("--data", type=Path, required=True, help="folder with T91, BSD200, Set5, Set14")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--base", type=Path, help="trained x4 checkpoint (search, methods)")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--steps", type=int, default=1500, help="training steps (lambda, dual-hr)")
    r.add_argument("--ft-steps", type=int, default=500, help="fine-tuning steps after pruning")
    r.add_argument("--search-steps", type=int, default=600)
    r.add_argument(
        "--search-lr-alpha",
        type=float,
        default=None,
        help="the logits' lr (default: 3e-4 x 2500 / --search-steps, the released search's "
        "logit travel)",
    )
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--bsd100", action="store_true", help="also evaluate on BSD100")
    r.add_argument("--only", nargs="*", default=None, help="job names to run (default: all)")
    r.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        metavar="K/N",
        help="run jobs K, K+N, ... only (lanes on one --out need no shards: jobs are locked)",
    )
    s = sub.add_parser("summary")
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--out", type=Path, help="the runs' folder (every job's result.json)")
    source.add_argument(
        "--from-json",
        type=Path,
        help="a `summary --json` file: rebuild the tables and verdicts from its variants alone",
    )
    s.add_argument("--json", type=Path, default=None)
    s.add_argument("--dataset", default="Set5", help="the data set the claims are judged on")
    pl = sub.add_parser("plot", help="the lambda figure from a summary --json document")
    pl.add_argument("--json", type=Path, required=True)
    pl.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "lambda_cpu.png")
    args = parser.parse_args(argv)
    if args.cmd == "summary":
        if args.from_json is not None:
            path = args.from_json.expanduser()
            if not path.is_file():
                raise SystemExit(f"--from-json: {path} not found; give a `summary --json` file")
            table = json.loads(path.read_text())["variants"]
            records = records_from_table(table)
        else:
            out = args.out.expanduser()
            table, records = summary(out), load_records(out)
        report(table, records, args.dataset, args.json)
        return
    if args.cmd == "plot":
        plot_lambda(json.loads(args.json.read_text()), args.out)
        return
    args.out = args.out.expanduser().resolve()
    args.data = args.data.expanduser().resolve()
    if args.family in ("search", "methods", "x8"):
        if args.base is None:
            raise SystemExit(f"{args.family} needs --base (a trained x4 checkpoint)")
        args.base = args.base.expanduser().resolve()
    shard, shards = args.shard
    failed, elsewhere = [], []
    for i, job in enumerate(jobs(args.family, args)):
        if i % shards == shard and (args.only is None or job.name in args.only):
            try:
                if not run_job(job, args):
                    elsewhere.append(job.name)
            except SystemExit as exc:  # one job's failure does not stop the others
                print(exc, flush=True)
                failed.append(job.name)
    if elsewhere:
        print(
            f"{args.family}: {len(elsewhere)} job(s) left to the process working on them: "
            f"{', '.join(elsewhere)}",
            flush=True,
        )
    if failed:
        raise SystemExit(f"{len(failed)} {args.family} job(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
