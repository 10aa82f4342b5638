"""Evidence for the offline algorithms (issue #10): A-LoL's family and ReST against the initial
policy and plain BC on the same data.

Per task, one data file is made once with ``agents.make_data`` (toy: the ε-noisy scripted
guide; IMDB-v0: the prompted SmolLM2 guide; CommonGen-v0: the references). Per seed, every
row trains through the public entry point (:func:`agents.trainer.run`) on that file, and
:func:`agents.evaluate.evaluate` scores π alone on the test split (top-k sampling as in
training, one sample per prompt, evaluation seed 0): task reward, and on the real tasks
perplexity under the initial model (and CIDEr-D on CommonGen). Rows named ``bc+X`` start
from the seed's ``nll`` (BC) policy, which is then also their π_ref, as in the A-LoL paper;
ReST rows grow their own data from π (``bc+rest`` from the BC policy). ``bc+nll`` continues
BC for as many steps again: the compute-matched control of the ``bc+X`` rows.

Writes ``benchmarks/results/offline_<task>.json`` (every run) and ``offline_<task>.md`` (the
table, mean ± std over seeds). Runs already in the JSON are skipped, so the script can be
stopped and rerun.

Run: ``.venv/bin/python -m benchmarks.offline --task toy|imdb|commongen [--seeds 0,1,2]
[--only nll,alol,...]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import textgen_env  # noqa: F401  (registers ids)
from agents.algorithms import ALGORITHMS
from agents.evaluate import evaluate
from agents.make_data import MakeDataConfig, make_data
from agents.trainer import run

OUT = Path(__file__).parent / "results"
RUNS = Path("runs/offline")

# Task -> env, data settings, settings every row shares, and per-family budgets.
TASKS: dict[str, dict[str, Any]] = {
    "toy": {
        "env_id": "textgen_env/Reverse-v0",
        "data": {"source": "guide", "samples_per_prompt": 4, "batch_size": 64},
        "common": {"batch_size": 64, "learning_rate": 1e-3, "top_k": 0},
        "alol": {"total_iterations": 300, "checkpoint_every": 100, "value_steps": 300},
        "rest": {"total_iterations": 12, "minibatch_size": 64, "improve_epochs": 2},  # G = 3
    },
    "imdb": {
        "env_id": "textgen_env/IMDB-v0",
        "data": {"source": "guide", "samples_per_prompt": 2, "batch_size": 16},
        "common": {"batch_size": 16, "learning_rate": 1e-5, "top_k": 50, "bf16": True},
        "alol": {"total_iterations": 60, "checkpoint_every": 30},
        "rest": {"total_iterations": 4, "samples_per_prompt": 2, "minibatch_size": 16},  # G = 1
    },
    "commongen": {
        "env_id": "textgen_env/CommonGen-v0",
        "data": {"source": "references", "batch_size": 16},
        "common": {"batch_size": 16, "learning_rate": 1e-5, "top_k": 50, "bf16": True},
        "alol": {"total_iterations": 100, "checkpoint_every": 50},
        "rest": {"total_iterations": 4, "samples_per_prompt": 2, "minibatch_size": 16},  # G = 1
    },
}
# Row -> (--algo, starts from the seed's BC policy).
ROWS: dict[str, tuple[str | None, bool]] = {
    "initial": (None, False),
    "nll (BC)": ("nll", False),
    "bc+nll": ("nll", True),  # BC for twice the steps: the compute-matched control of bc+X
    "alol": ("alol", False),
    "bc+alol": ("alol", True),
    "bc+alol_seq": ("alol_seq", True),
    "bc+alol_ref_free": ("alol_ref_free", True),
    "bc+alol_kl": ("alol_kl", True),
    "bc+wbc": ("wbc", True),
    "bc+rlol": ("rlol", True),
    "rest": ("rest", False),
    "bc+rest": ("rest", True),
}
DEFAULT_ROWS = {
    "toy": list(ROWS),
    "imdb": ["initial", "nll (BC)", "bc+nll", "bc+alol", "rest", "bc+rest"],
    "commongen": ["initial", "nll (BC)", "bc+nll", "bc+alol", "bc+alol_seq"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.offline", description=__doc__)
    parser.add_argument("--task", choices=sorted(TASKS), default="toy")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default="", help="comma-separated rows (default: the task's)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = args.only.split(",") if args.only else DEFAULT_ROWS[args.task]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    spec = TASKS[args.task]
    OUT.mkdir(parents=True, exist_ok=True)
    results_path = OUT / f"offline_{args.task}.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": []}
    done = {(r["row"], r["seed"]) for r in results["runs"]}

    data = RUNS / args.task / "data.jsonl"
    t0 = time.perf_counter()
    rows_made = make_data(MakeDataConfig(env_id=spec["env_id"], out=str(data), **spec["data"]))
    results["data"] = {
        "file": str(data),
        "rows": len(rows_made),
        "reward_mean": statistics.fmean(r.reward for r in rows_made),
        "seconds": time.perf_counter() - t0,
        **spec["data"],
    }
    for seed in seeds:
        for row in rows:
            if (row, seed) in done:
                continue
            t0 = time.perf_counter()
            checkpoint = _train(args.task, spec, row, seed, str(data))
            train_s = time.perf_counter() - t0
            ev = evaluate(checkpoint, split="test", batch_size=16, seed=0)
            metrics = {k: v for k, v in ev["metrics"].items() if isinstance(v, int | float)}
            results["runs"].append(
                {
                    "row": row, "seed": seed, "train_seconds": train_s, "metrics": metrics,
                    # what the run saw: floats round differently at another thread count, and
                    # a data file resampled then differs in every row
                    "data_reward_mean": results["data"]["reward_mean"],
                    "torch_threads": torch.get_num_threads(),
                }
            )  # fmt: skip
            results_path.write_text(json.dumps(results, indent=1))
            print(f"{row} seed {seed}: {metrics.get('task_reward'):.3f} ({train_s:.0f} s)")
            sys.stdout.flush()
    (OUT / f"offline_{args.task}.md").write_text(_table(args.task, results))
    print(_table(args.task, results))


def _train(task: str, spec: dict[str, Any], row: str, seed: int, data: str) -> str:
    """Train one row (or write the initial policy) and return its run directory."""
    algo, from_bc = ROWS[row]
    out = RUNS / task / f"{row.replace(' ', '_').replace('(', '').replace(')', '')}-s{seed}"
    init_from = str(RUNS / task / f"nll_BC-s{seed}") if from_bc else None
    if from_bc and not Path(init_from).exists():
        _train(task, spec, "nll (BC)", seed, data)
    if algo is None:  # the initial policy: a run with no training
        algo, fields = "nll", {"total_iterations": 0, "data": data}
    else:
        family = "rest" if algo == "rest" else "alol"
        fields = dict(spec[family]) | ({} if algo == "rest" else {"data": data})
    cfg = ALGORITHMS[algo].config(
        env_id=spec["env_id"], seed=seed, output_dir=str(out), **spec["common"], **fields
    )
    return str(run(cfg, algo, init_from=init_from, overwrite=True))


def _table(task: str, results: dict[str, Any]) -> str:
    by_row: dict[str, list[dict]] = {}
    for r in results["runs"]:
        by_row.setdefault(r["row"], []).append(r)
    names = ["task_reward", "perplexity", "cider"]
    present = [n for n in names if any(n in r["metrics"] for r in results["runs"])]
    data = results.get("data", {})
    lines = [
        f"# Offline algorithms on {TASKS[task]['env_id']} (test split, mean ± std over seeds)",
        "",
        f"Data: {data.get('rows')} rows from {data.get('source')}, reward mean "
        f"{_by_seeds(results['runs'], 'data_reward_mean', '{:.3f}')}; torch threads "
        f"{_by_seeds(results['runs'], 'torch_threads', '{}')}.",
        "",
        "| row | seeds | " + " | ".join(present) + " | train s |",
        "|---|---|" + "---|" * len(present) + "---|",
    ]
    for row in ROWS:
        runs = by_row.get(row)
        if not runs:
            continue
        cells = []
        for name in present:
            values = [r["metrics"][name] for r in runs if name in r["metrics"]]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.3f} ± {sd:.3f}" if values else "")
        secs = statistics.fmean(r["train_seconds"] for r in runs)
        lines.append(f"| {row} | {len(runs)} | " + " | ".join(cells) + f" | {secs:.0f} |")
    return "\n".join(lines) + "\n"


def _by_seeds(runs: list[dict[str, Any]], key: str, fmt: str) -> str:
    """Each value of ``key`` among ``runs`` with how many runs had it and of which seeds, e.g.
    ``0.415 (12 runs of seeds 0, 1), 0.418 (6 runs of seed 2)``; runs without it are "not
    recorded". A seed can appear under two values (its rows ran on different days)."""
    seeds: dict[str, list[int]] = {}
    for r in runs:
        value = fmt.format(r[key]) if key in r else "not recorded"
        seeds.setdefault(value, []).append(r["seed"])
    if len(seeds) == 1:
        return next(iter(seeds))
    parts = []
    for value, which in seeds.items():
        n, distinct = len(which), sorted(set(which))
        names = ", ".join(map(str, distinct))
        plural = "s" if len(distinct) > 1 else ""
        parts.append(f"{value} ({n} run{'s' if n > 1 else ''} of seed{plural} {names})")
    return ", ".join(parts)


if __name__ == "__main__":
    main()
