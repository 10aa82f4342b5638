"""``python -m agents.make_data --env-id ID --source SOURCE --out FILE``: write an offline data
file (:mod:`agents.offline_data`) for the offline algorithms.

Sources:

* ``references``: every reference of every train prompt (CommonGen-v0, TLDR-v0), scored by
  the env;
* ``guide``: the task's guide writes ``--samples-per-prompt`` episodes per train prompt
  through the env (the prompted instruct LM on real tasks, the ε-noisy scripted expert on the
  toy tasks): IMDB-v0's default data, since it ships no reference continuations;
* ``policy``: the initial policy (or ``--checkpoint``'s) does the same.

Sampling is seeded and resumable: episodes are written in chunks of ``--batch-size``, chunk
``c`` sampled with the seed ``(--seed, c)``, so rerunning the same command continues after the
last complete chunk and gives the file one uninterrupted run would have written. A file that
holds rows of another command is refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import tyro

from agents.build import (
    build_envs,
    build_learner,
    build_policy,
    check_setup,
    is_toy,
    scripted_guide,
)
from agents.config import TrainConfig
from agents.offline_data import Row, reference_rows, write_rows, write_samples
from agents.saved_policy import load_policy
from textgen_env.tasks import default_guide

__all__ = ["MakeDataConfig", "main", "make_data"]


@dataclass
class MakeDataConfig:
    """Write an offline data file for a task (see the module doc)."""

    env_id: str
    """Registered environment id (``textgen_env/...``); rows use its train split."""
    out: str
    """The JSONL file to write (continued if it holds an earlier run of this command)."""
    source: Literal["references", "guide", "policy"] = "guide"
    """Who writes the responses."""
    samples_per_prompt: int = 4
    """Episodes per train prompt (guide and policy sources)."""
    max_prompts: int = 0
    """Use only the first this many train prompts (0 = all)."""
    seed: int = 0
    """Seed of the sampling (chunk c uses the seed (seed, c))."""
    batch_size: int = 16
    """Episodes sampled at once (vector sub-envs)."""
    checkpoint: str | None = None
    """``policy`` source: a checkpoint or run directory (default: the initial policy)."""
    model: str | None = None
    """``policy`` source: the policy LM when no checkpoint is given (as ``agents.train``)."""
    guide_epsilon: float = 0.3
    """Toy tasks, ``guide`` source: ε-noise of the scripted expert."""
    top_k: int = 50
    """Top-k sampling of the guide or policy."""

    def __post_init__(self) -> None:
        for name in ("samples_per_prompt", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_prompts < 0:
            raise ValueError(f"max_prompts must be >= 0, got {self.max_prompts}")
        if self.checkpoint is not None and self.source != "policy":
            raise ValueError("--checkpoint is for --source policy")


def make_data(cfg: MakeDataConfig, *, progress: bool = True) -> list[Row]:
    """Write ``cfg.out`` (see :class:`MakeDataConfig`); return its rows."""
    run_cfg = TrainConfig(
        env_id=cfg.env_id, model=cfg.model, seed=cfg.seed, batch_size=cfg.batch_size,
        top_k=cfg.top_k, guide_epsilon=cfg.guide_epsilon,
    )  # fmt: skip
    check_setup(run_cfg)
    meta: dict[str, Any] = {"source": cfg.source}
    if cfg.source == "policy":
        if cfg.checkpoint is not None:
            ac, tokenizer, _ = load_policy(cfg.checkpoint)
            envs = build_envs(run_cfg, tokenizer)
            meta["policy"] = str(cfg.checkpoint)
        else:
            ac, tokenizer, envs = build_policy(run_cfg)
            meta["policy"] = cfg.model or "initial"
        actor = build_learner(ac, tokenizer or envs.unwrapped.task.tokenizer, run_cfg)
    else:
        envs = build_envs(run_cfg)
        task = envs.unwrapped.task
        if cfg.source == "references":
            rows = reference_rows(envs)
            write_rows(cfg.out, rows)
            return rows
        if is_toy(cfg.env_id):
            actor = scripted_guide(cfg.env_id, task.vocab_size, cfg.guide_epsilon)
        else:
            actor = default_guide(cfg.env_id, task.tokenizer, top_k=cfg.top_k)
    task = envs.unwrapped.task
    n = task.num_prompts if cfg.max_prompts == 0 else min(cfg.max_prompts, task.num_prompts)
    return write_samples(
        cfg.out, envs, actor, range(n), cfg.samples_per_prompt, cfg.seed, meta, progress=progress
    )


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and write the file; expected errors are one line, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        cfg = tyro.cli(MakeDataConfig, args=argv, prog="python -m agents.make_data")
        rows = make_data(cfg)
    except (ValueError, OSError) as err:  # DataFileError, RunSetupError are ValueErrors
        if debug:
            raise
        print(f"python -m agents.make_data: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    rewards = np.array([r.reward for r in rows])
    print(f"{cfg.out}: {len(rows)} rows, reward mean {rewards.mean():.3f} ± {rewards.std():.3f}")


if __name__ == "__main__":
    main()
