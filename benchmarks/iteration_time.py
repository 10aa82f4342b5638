"""Seconds per training iteration of ``python -m agents.train``, for one or more checkouts.

Runs the public CLI (the same job in each checkout: ``--algo ppo`` on IMDB-v0 by default,
batch 16, one PPO epoch over one minibatch of 16) as a subprocess, reads the ``time/``
scalars it logged to TensorBoard, drops the first (warm-up) iteration and reports medians of
generation, reward, update and total time. Checkouts alternate round by round so that
machine drift hits each alike. Used for issue #8's before/after figure:

    .venv/bin/python benchmarks/iteration_time.py --repo before=/tmp/before --repo after=.

Writes ``benchmarks/results/iteration_time.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

OUT = Path(__file__).parent / "results" / "iteration_time.json"
PARTS = ("generation", "reward", "update")


def one_run(repo: Path, flags: list[str], out_dir: Path) -> dict[str, list[float]]:
    """Run the CLI in ``repo`` and return its per-iteration ``time/*`` seconds."""
    cmd = [sys.executable, "-m", "agents.train", *flags, "--output-dir", str(out_dir)]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{repo}: {' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    acc = EventAccumulator(str(out_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {p: [e.value for e in acc.Scalars(f"time/{p}")] for p in PARTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", action="append", required=True, help="NAME=PATH, repeatable")
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env-id", default="textgen_env/IMDB-v0")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=4, help="per run, the first dropped")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    repos = dict(item.split("=", 1) for item in args.repo)
    flags = [
        "--algo", args.algo, "--env-id", args.env_id, "--batch-size", str(args.batch_size),
        "--minibatch-size", str(args.batch_size), "--update-epochs", "1",
        "--total-iterations", str(args.iterations), "--checkpoint-every", "1000",
    ]  # fmt: skip
    seconds: dict[str, dict[str, list[float]]] = {n: {p: [] for p in PARTS} for n in repos}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, path in repos.items():
                times = one_run(Path(path).resolve(), flags, Path(tmp) / f"{name}-{r}")
                for p in PARTS:
                    seconds[name][p] += times[p][1:]  # drop the warm-up iteration
                print(f"round {r} {name}: " + ", ".join(
                    f"{p} {statistics.median(times[p][1:]):.2f}s" for p in PARTS))  # fmt: skip
    result = {
        "command": "python -m agents.train " + " ".join(flags),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "seconds": seconds,
        "median_total": {
            n: statistics.median(map(sum, zip(*(s[p] for p in PARTS), strict=True)))
            for n, s in seconds.items()
        },
        "median": {n: {p: statistics.median(s[p]) for p in PARTS} for n, s in seconds.items()},
    }
    names = list(repos)
    if len(names) == 2:
        a, b = names
        result["ratio"] = result["median_total"][b] / result["median_total"][a]
    for n in names:
        parts = ", ".join(f"{p} {v:.2f}" for p, v in result["median"][n].items())
        print(f"{n}: {result['median_total'][n]:.2f} s/iteration ({parts})")
    if "ratio" in result:
        print(f"{names[1]} / {names[0]}: {result['ratio']:.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
