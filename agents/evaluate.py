"""``python -m agents.evaluate --checkpoint DIR``: sample from a policy and score it.

Runs the policy on a task split (or any JSONL prompt file with the task's fields) through
the env, so rewards are the env's, then the task's metric suite
(:func:`textgen_env.metrics.compute_metrics`). Prints a table and writes JSON with every
generation. A "no training" checkpoint (``agents.train --total-iterations 0``) gives the
zero-shot row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.algorithms import config_from_dict
from agents.build import build_learner, is_toy, load_policy
from textgen_env.metrics import compute_metrics
from textgen_env.oracles import roll_out

__all__ = ["METRICS", "evaluate", "main"]

# env id -> metric-suite options (the reward is always reported as task_reward).
METRICS: dict[str, dict[str, Any]] = {
    "textgen_env/Reverse-v0": {"cider": False, "meteor": False},
    "textgen_env/Positive-v0": {"cider": False, "meteor": False},
    "textgen_env/Twist-v0": {"cider": False, "meteor": False},
    "textgen_env/IMDB-v0": {"sentiment": True, "perplexity": True, "cider": False, "meteor": False},
    "textgen_env/CommonGen-v0": {"cider": True, "meteor": True, "bertscore": True},
    "textgen_env/TLDR-v0": {"cider": False, "meteor": True, "bertscore": True},
}


def evaluate(
    checkpoint: str,
    *,
    env_id: str | None = None,
    split: str = "test",
    prompts: str | None = None,
    num_samples: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Generate once per prompt (in order) and return ``{"metrics": ..., "samples": [...]}``."""
    ac, tokenizer, config = load_policy(checkpoint)
    cfg = config_from_dict(config)
    env_id = env_id or cfg.env_id
    if env_id not in METRICS:
        raise ValueError(f"unknown env id {env_id!r}; choose from {sorted(METRICS)}")
    kwargs: dict[str, Any] = {"split": split}
    if prompts is not None:
        if is_toy(env_id):
            raise ValueError(f"{env_id} generates its prompts; --prompts needs a data task")
        if not Path(prompts).is_file():
            raise FileNotFoundError(f"prompt file {prompts} does not exist")
        kwargs["source"] = prompts
    if not is_toy(env_id):
        kwargs["tokenizer"] = tokenizer
    envs = gym.make_vec(
        env_id, num_envs=batch_size, vectorization_mode="vector_entry_point", **kwargs
    ).unwrapped
    task = envs.task
    n = task.num_prompts if num_samples is None else min(num_samples, task.num_prompts)
    if n < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    learner = build_learner(ac, tokenizer, cfg)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    envs.reset(seed=seed)
    finals, rewards = [], []
    for lo in range(0, n, batch_size):
        states = [task.initial_state(i) for i in range(lo, min(lo + batch_size, n))]
        final, returns = roll_out(envs, learner, states, rng)
        finals += final
        rewards += returns.tolist()
    generations = task.decode([s.generated_ids for s in finals])
    prompt_texts = [task.prompts[s.prompt_index].text for s in finals]
    references = [list(s.references) for s in finals]
    options = dict(METRICS[env_id])
    has_refs = all(references)
    if not has_refs:
        options |= {"cider": False, "meteor": False, "bertscore": False}
    with ac.reference_model() as ref:  # perplexity under π_ref (LoRA: adapters disabled)
        if options.pop("perplexity", False) and not ref.config.is_encoder_decoder:
            options |= {"perplexity_model": ref, "perplexity_tokenizer": tokenizer}
        metrics = {
            "task_reward": float(np.mean(rewards)),
            "task_reward_std": float(np.std(rewards)),
            **compute_metrics(
                generations, references if has_refs else None, prompt_texts, **options
            ),
        }
    samples = [
        {"prompt": p, "generation": g, "references": r, "reward": w}
        for p, g, r, w in zip(prompt_texts, generations, references, rewards, strict=True)
    ]
    return {
        "checkpoint": str(checkpoint),
        "algo": config.get("algo"),
        "env_id": env_id,
        "split": split if prompts is None else prompts,
        "num_samples": n,
        "seed": seed,
        "metrics": metrics,
        "samples": samples,
    }


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)  # never a half-written result file


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, evaluate, print the table and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m agents.evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    parser.add_argument("--env-id", help="env to evaluate on (default: the run's)")
    parser.add_argument("--split", default="test", help="data split (default: test)")
    parser.add_argument("--prompts", help="JSONL prompt file with the task's fields")
    parser.add_argument("--num-samples", type=int, help="evaluate the first N prompts")
    parser.add_argument("--batch-size", type=int, default=32, help="episodes per batch")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--output", help="write the results (with generations) to this JSON")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = evaluate(
            args.checkpoint, env_id=args.env_id, split=args.split, prompts=args.prompts,
            num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    print(f"{result['env_id']} · {result['split']} · {result['num_samples']} prompts · "
          f"{result['algo']} @ {result['checkpoint']}")  # fmt: skip
    for name, value in result["metrics"].items():
        print(f"  {name:<24}{value:>12.4f}")
    for s in result["samples"][:3]:
        print(f"  ▸ {s['prompt']!r} → {s['generation']!r} (reward {s['reward']:.3f})")
    if args.output:
        _write_json(Path(args.output), result)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
