"""Task reward of the unprompted SmolLM2 policy vs. the prompted SmolLM2 guide, per task.

For IMDB, CommonGen and TL;DR (shipped test splits, the first ``--max-prompts`` prompts of
each), two samplers complete every prompt from its start state with :func:`roll_out`:

* **policy**: SmolLM2-135M-Instruct as the policy starts out (it sees only the env prompt;
  ``HFGuide(model, tokenizer)`` fast path, top-k 50);
* **guide**: the same model told the task (:func:`textgen_env.tasks.default_guide`: the
  task's ``GUIDE_TEMPLATE`` in the chat template, top-k 50).

Both use the same seeds (one ``numpy`` generator per seed, seeding the torch sampler). The
figure is the task's default reward: VADER compound in [-1, 1] (IMDB), CIDEr-D in [0, 10]
(CommonGen), ROUGE-L F in [0, 1] (TL;DR); mean ± std over all episodes (prompts × seeds).
Prints a table and writes ``benchmarks/results/policy_vs_guide.json``.
Run: ``.venv/bin/python benchmarks/policy_vs_guide.py [--max-prompts 40] [--seeds 3]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import textgen_env  # noqa: F401  (registers ids)
from textgen_env.guides.base import GuidePolicy
from textgen_env.guides.hf import HFGuide
from textgen_env.models import DEFAULT_HUB_ID, load_causal_lm
from textgen_env.oracles import roll_out
from textgen_env.tasks import commongen, default_guide, imdb, tldr
from textgen_env.vector import TextGenVectorEnv

OUT = Path(__file__).parent / "results" / "policy_vs_guide.json"
TASKS = {
    "textgen_env/IMDB-v0": (imdb.make_imdb_vector_env, "VADER compound [-1, 1]"),
    "textgen_env/CommonGen-v0": (commongen.make_commongen_vector_env, "CIDEr-D [0, 10]"),
    "textgen_env/TLDR-v0": (tldr.make_tldr_vector_env, "ROUGE-L F [0, 1]"),
}


def evaluate(
    envs: TextGenVectorEnv, sampler: GuidePolicy, num_prompts: int, seeds: list[int]
) -> dict[str, Any]:
    """Complete prompts ``0..num_prompts-1`` once per seed; returns, lengths and timing."""
    task = envs.task
    starts = [task.initial_state(i) for i in range(num_prompts)]
    returns, lengths, examples = [], [], []
    begin = time.perf_counter()
    for seed in seeds:
        final, values = roll_out(envs, sampler, starts, np.random.default_rng(seed))
        returns += values.tolist()
        lengths += [len(s.generated_ids) for s in final]
        if seed == seeds[0]:
            examples = task.decode([s.generated_ids for s in final[:3]])
    values = np.array(returns)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "per_seed_mean": [float(chunk.mean()) for chunk in np.split(values, len(seeds))],
        "mean_new_tokens": float(np.mean(lengths)),
        "episodes": len(returns),
        "seconds": time.perf_counter() - begin,
        "examples": examples,
    }


def main() -> None:
    """Run both samplers on each task and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-prompts", type=int, default=40, help="prompts per task (cap)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1, shared by both")
    args = parser.parse_args()
    if args.max_prompts < 1 or args.seeds < 1:
        parser.error("--max-prompts and --seeds must be positive")
    seeds = list(range(args.seeds))

    model, tokenizer = load_causal_lm()
    policy = HFGuide(model, tokenizer, top_k=50)
    results: dict[str, Any] = {}
    for env_id, (make, metric) in TASKS.items():
        probe = make(1, "test", tokenizer=tokenizer)
        n = min(probe.task.num_prompts, args.max_prompts)
        envs = make(n, "test", tokenizer=tokenizer)
        guide = default_guide(env_id, tokenizer, model, tokenizer)
        row = {
            "metric": metric,
            "prompts": n,
            "split_size": probe.task.num_prompts,
            "max_new_tokens": envs.task.max_new_tokens,
            "policy": evaluate(envs, policy, n, seeds),
            "guide": evaluate(envs, guide, n, seeds),
        }
        results[env_id] = row
        print(f"{env_id}: done in {row['policy']['seconds'] + row['guide']['seconds']:.0f} s")

    print(
        f"\nSmolLM2-135M-Instruct on the shipped test splits, first <= {args.max_prompts} "
        f"prompts per task, seeds {seeds}, top-k 50; mean ± std over prompts × seeds\n"
    )
    header = f"{'task':<26}{'metric':<24}{'prompts':>9}  {'policy (unprompted)':>20}  {'guide':>16}"
    print(header)
    print("-" * len(header))
    for env_id, row in results.items():
        p, g = row["policy"], row["guide"]
        n = f"{row['prompts']}/{row['split_size']}x{len(seeds)}"
        print(
            f"{env_id:<26}{row['metric']:<24}{n:>9}  "
            f"{p['mean']:>11.3f} ± {p['std']:<6.3f}  {g['mean']:>7.3f} ± {g['std']:<6.3f}"
        )
    payload = {
        "model": DEFAULT_HUB_ID + " (offline Q4_1 GGUF, dequantized)",
        "split": "test",
        "max_prompts": args.max_prompts,
        "seeds": seeds,
        "top_k": 50,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "results": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
