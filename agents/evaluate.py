"""``python -m agents.evaluate --checkpoint DIR``: sample from a policy and score it.

Runs the policy on a task split (or any JSONL prompt file with the task's fields) through
the env, so rewards are the env's, then the task's metric suite
(:func:`textgen_env.metrics.compute_metrics`). Prints a table and writes JSON with every
generation. A "no training" checkpoint (``agents.train --total-iterations 0``) gives the
zero-shot row.

Everything that can be refused is checked before the policy is built and the episodes run:
the counts, the env id (a toy task's policy runs only on its own task, whose vocabulary it
speaks; a real task's policy on any real task, since they share the tokenizer), the prompt
file (each line a JSON object with the task's fields), the checkpoint, the device
(``--device`` replaces the run's) and, on the command line, the ``--output`` location.
:func:`evaluate` raises ``ValueError``/``OSError`` subclasses for these; the command line
prints each as one line (``--debug``: the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from datasets.exceptions import DatasetGenerationError

from agents.build import RunSetupError, build_learner, check_setup, is_toy
from agents.cli_common import (
    add_debug_flag,
    check_writable,
    default_mode,
    one_line,
    read_checkpoint,
    reported_errors,
    restore_policy,
)
from textgen_env.metrics import compute_metrics
from textgen_env.oracles import roll_out
from textgen_env.tasks import task_module
from textgen_env.tasks.data import SPLITS

__all__ = [
    "METRICS",
    "check_env_ids",
    "check_output_file",
    "check_prompt_file",
    "evaluate",
    "main",
]

# env id -> metric-suite options (the reward is always reported as task_reward).
METRICS: dict[str, dict[str, Any]] = {
    "textgen_env/Reverse-v0": {"cider": False, "meteor": False},
    "textgen_env/Positive-v0": {"cider": False, "meteor": False},
    "textgen_env/Twist-v0": {"cider": False, "meteor": False},
    "textgen_env/IMDB-v0": {"sentiment": True, "perplexity": True, "cider": False, "meteor": False},
    "textgen_env/CommonGen-v0": {"cider": True, "meteor": True, "bertscore": True},
    "textgen_env/TLDR-v0": {"cider": False, "meteor": True, "bertscore": True},
}


def _check_known(env_id: str) -> None:
    if env_id not in METRICS:
        raise ValueError(f"unknown env id {env_id!r}; choose from {', '.join(sorted(METRICS))}")


def check_env_ids(trained_on: str, env_id: str) -> None:
    """Raise ``ValueError`` unless a policy trained on ``trained_on`` can run on ``env_id``.

    Each toy task has its own small vocabulary, so a toy task's policy runs only on that task
    and a real task's policy not on a toy task; the real tasks share the SmolLM2 tokenizer
    (and a run's own model brings its tokenizer to any real task).
    """
    _check_known(env_id)
    if env_id != trained_on and (is_toy(env_id) or is_toy(trained_on)):
        raise ValueError(
            f"the policy was trained on {trained_on} and cannot be evaluated on {env_id}: each "
            "toy task has its own vocabulary, so a toy task's policy runs only on its own task "
            "and a real task's policy only on the real tasks"
        )


def _kind(value: object) -> str:
    """What a JSON value is, for messages."""
    kinds = {list: "an array", str: "a string", bool: "true/false", type(None): "null"}
    if isinstance(value, bool):
        return kinds[bool]
    return "a number" if isinstance(value, int | float) else kinds.get(type(value), "a value")


def _json_rows(text: str, path: str | os.PathLike[str]) -> tuple[list[dict], list[str]]:
    """The rows of a JSONL text (or of one JSON array) and where each is ("line 3")."""
    stripped = text.strip()
    if stripped.startswith("["):  # one JSON array of objects, as ``datasets`` also reads
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError:
            items = None
        if isinstance(items, list):
            for i, item in enumerate(items, 1):
                if not isinstance(item, dict):
                    raise ValueError(
                        f"prompt file {path} item {i} is {_kind(item)}, not a JSON object"
                    )
            return items, [f"item {i}" for i in range(1, len(items) + 1)]
    rows, where = [], []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines: JSON allows U+2028
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"prompt file {path} line {n} is not valid JSON ({err.msg} at column {err.colno})"
            ) from err
        if not isinstance(row, dict):
            raise ValueError(
                f"prompt file {path} line {n} is {_kind(row)}, not a JSON object with the "
                "task's fields"
            )
        rows.append(row)
        where.append(f"line {n}")
    return rows, where


def check_prompt_file(path: str | os.PathLike[str], env_id: str) -> int:
    """Check that ``path`` holds prompts of ``env_id``'s task; return how many rows it has.

    The file is JSON Lines (or one JSON array) of objects with the task's fields, as the
    task's ``records_to_prompts`` reads them (IMDB: ``text``; CommonGen: ``concepts`` and
    ``references``; TL;DR: ``subreddit``, ``title``, ``post``, ``summary``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Naming the file, the line and the problem: not a file, not UTF-8, a line
            that is not JSON or not an object, a missing or mistyped field, no rows.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    if not file.is_file():
        raise ValueError(f"prompt file {path} is not a file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"prompt file {path} is not UTF-8 text ({err.reason} at byte {err.start})"
        ) from err
    rows, where = _json_rows(text, path)
    if not rows:
        raise ValueError(f"prompt file {path} holds no prompts")
    try:
        task_module(env_id).records_to_prompts(rows)
    except (TypeError, ValueError) as err:
        message = str(err)
        row = re.match(r"\S+ row (\d+)(?=[\s:])", message)  # "IMDB row 3 has no field ..."
        if row is None or int(row.group(1)) >= len(where):
            raise ValueError(f"prompt file {path}: {message}") from err
        raise ValueError(
            f"prompt file {path} {where[int(row.group(1))]}{message[row.end() :]}"
        ) from err
    return len(rows)


def _check_counts(num_samples: int | None, batch_size: int, seed: int) -> None:
    for name, flag, value, least in (
        ("num_samples", "--num-samples", num_samples, 1),
        ("batch_size", "--batch-size", batch_size, 1),
        ("seed", "--seed", seed, 0),
    ):
        if value is None and name == "num_samples":
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(f"{name} ({flag}) must be an integer >= {least}, got {value!r}")


def evaluate(
    checkpoint: str,
    *,
    env_id: str | None = None,
    split: str = "test",
    prompts: str | None = None,
    num_samples: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Generate once per prompt (in order) and return ``{"metrics": ..., "samples": [...]}``.

    ``device`` replaces the run's torch device (a run trained on "cuda" evaluates on a machine
    without one with ``device="cpu"``).

    Raises:
        ValueError: A count below 1 (``seed`` below 0); an unknown env id or one the policy
            cannot run on (:func:`check_env_ids`); ``prompts`` for a toy task or a prompt
            file with a bad line (:func:`check_prompt_file`); an unknown split; a device
            that is not available here (:class:`~agents.build.RunSetupError`).
        FileNotFoundError: No checkpoint or prompt file at the path.
        CheckpointError: Every checkpoint there is damaged, or it does not fit its config.
    """
    _check_counts(num_samples, batch_size, seed)
    if env_id is not None:
        _check_known(env_id)  # before reading the checkpoint
    policy_state, config, cfg = read_checkpoint(checkpoint)
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    try:
        check_setup(cfg)
    except RunSetupError as err:
        hint = "" if device else " (the run's device; --device cpu evaluates on the CPU)"
        raise RunSetupError(f"{err}{hint}") from err
    env_id = env_id or cfg.env_id
    check_env_ids(cfg.env_id, env_id)
    kwargs: dict[str, Any] = {"split": split}
    if prompts is not None:
        if is_toy(env_id):
            raise ValueError(f"{env_id} generates its prompts; --prompts needs a data task")
        check_prompt_file(prompts, env_id)
        kwargs["source"] = prompts
    elif not is_toy(env_id) and split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of {env_id}; use one of {', '.join(SPLITS)}")
    ac, tokenizer = restore_policy(cfg, policy_state, checkpoint)
    if not is_toy(env_id):
        kwargs["tokenizer"] = tokenizer
    try:
        envs = gym.make_vec(
            env_id, num_envs=batch_size, vectorization_mode="vector_entry_point", **kwargs
        ).unwrapped
    except DatasetGenerationError as err:  # a file our check passed but datasets cannot read
        cause = err.__cause__ or err
        raise ValueError(f"prompt file {prompts} could not be read: {one_line(cause)}") from err
    task = envs.task
    n = task.num_prompts if num_samples is None else min(num_samples, task.num_prompts)
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


def check_output_file(path: str | os.PathLike[str]) -> None:
    """Raise unless the result JSON can be written at ``path`` (checked before evaluating).

    Raises:
        IsADirectoryError: ``path`` is a directory.
        NotADirectoryError: A component above it is a file.
        PermissionError: The folder it would go into is not writable.
    """
    if Path(path).is_dir():
        raise IsADirectoryError(
            f"cannot write --output {path}: it is a directory (name a file, e.g. "
            f"{Path(path) / 'eval.json'})"
        )
    check_writable(path, "--output")


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    default_mode(tmp)  # readable like any file the user writes, not private
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)  # never a half-written result file


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, evaluate, print the table and write the JSON.

    An expected error (see the module doc) ends the program with one line on stderr,
    ``python -m agents.evaluate: error: ...``, and exit status 2; ``--debug`` shows its
    traceback instead.
    """
    parser = argparse.ArgumentParser(prog="python -m agents.evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    parser.add_argument("--env-id", help="env to evaluate on (default: the run's)")
    parser.add_argument("--split", default="test", help="data split (default: test)")
    parser.add_argument("--prompts", help="JSONL prompt file with the task's fields")
    parser.add_argument("--num-samples", type=int, help="evaluate the first N prompts")
    parser.add_argument("--batch-size", type=int, default=32, help="episodes per batch")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--device", help="torch device to evaluate on (default: the run's)")
    parser.add_argument("--output", help="write the results (with generations) to this JSON")
    add_debug_flag(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    with reported_errors(parser, debug=args.debug):
        if args.output:
            check_output_file(args.output)  # before the (possibly long) evaluation
        result = evaluate(
            args.checkpoint, env_id=args.env_id, split=args.split, prompts=args.prompts,
            num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed,
            device=args.device,
        )  # fmt: skip
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
