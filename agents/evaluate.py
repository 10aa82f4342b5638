"""``python -m agents.evaluate --checkpoint DIR``: sample from a policy and score it.

Runs the policy on a task split (or any JSONL prompt file with the task's fields) through
the env, so rewards are the env's, then the task's metric suite
(:func:`textgen_env.metrics.compute_metrics`). Prints a table and writes JSON with every
generation. A "no training" checkpoint (``agents.train --total-iterations 0``) gives the
zero-shot row.

Decoding: π samples with the run's top-k and temperature (``--top-k``/``--temperature``
replace them), one sample per prompt seeded by ``--seed``; or, with ``--num-beams N`` (N > 1),
it decodes deterministically with beam search (transformers' ``generate``, as the paper
scored CommonGen with 5 beams). Either way the tokens go through the env, which gives the
reward. :func:`evaluate_guide` scores a task's guide the same way (same prompts, seeding,
metrics and result layout), for a "guide" row beside the policies.

Everything that can be refused is checked before the policy is built and the episodes run:
the counts, the decoding (beams take no sampling option), the env id (a toy task's policy
runs only on its own task, whose vocabulary it speaks; a real task's policy on any real task,
since they share the tokenizer), the prompt file (each line a JSON object with the task's
fields), the checkpoint, the device (``--device`` replaces the run's) and, on the command
line, the ``--output`` location.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from datasets.exceptions import DatasetGenerationError
from transformers import LogitsProcessor, LogitsProcessorList

from agents.build import RunSetupError, build_learner, check_setup, is_toy, scripted_guide
from agents.checkpoint import default_mode
from agents.cli_errors import add_debug_flag, check_writable, one_line, reported_errors
from agents.config import TrainConfig
from agents.saved_policy import read_checkpoint, restore_policy
from textgen_env.generation import is_encoder_decoder
from textgen_env.guides.base import GuidePolicy
from textgen_env.metrics import compute_metrics
from textgen_env.models import load_causal_lm
from textgen_env.oracles import roll_out
from textgen_env.state import TextState
from textgen_env.tasks import default_guide, task_module
from textgen_env.tasks.data import SPLITS
from textgen_env.vector import TextGenVectorEnv

__all__ = [
    "METRICS",
    "BeamSearchPolicy",
    "check_env_ids",
    "check_output_file",
    "check_prompt_file",
    "evaluate",
    "evaluate_guide",
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


def _check_counts(num_samples: int | None, batch_size: int, seed: int, num_beams: int = 1) -> None:
    for name, flag, value, least in (
        ("num_samples", "--num-samples", num_samples, 1),
        ("batch_size", "--batch-size", batch_size, 1),
        ("seed", "--seed", seed, 0),
        ("num_beams", "--num-beams", num_beams, 1),
    ):
        if value is None and name == "num_samples":
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(f"{name} ({flag}) must be an integer >= {least}, got {value!r}")


def _check_decoding(num_beams: int, top_k: int | None, temperature: float | None) -> None:
    """Beam search is deterministic: it takes no sampling option."""
    given = [
        flag for flag, v in (("--top-k", top_k), ("--temperature", temperature)) if v is not None
    ]
    if num_beams > 1 and given:
        raise ValueError(
            f"num_beams {num_beams} (--num-beams) decodes deterministically and cannot be "
            f"combined with the sampling option(s) {', '.join(given)}; drop them, or use "
            "--num-beams 1 to sample"
        )


class _VocabLimit(LogitsProcessor):
    """No id at or beyond ``limit`` (padded embedding rows that are no token)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.limit :] = -torch.inf
        return scores


class BeamSearchPolicy:
    """π as an actor that decodes with beam search (transformers' ``model.generate`` with
    ``num_beams``, no sampling): deterministic, so the ``rng`` of :meth:`act` is not used.

    Each call runs one beam search per state for the largest budget asked, and each row is
    cut after its first EOS (the env's, the only id that ends a hypothesis) and at its own
    budget. Encoder-decoder models decode only from the start of the completion.

    Args:
        model: The policy LM (causal or encoder-decoder), e.g. ``ActorCritic.model``.
        num_beams: Beams (1 is greedy decoding).
        eos_token_id: The env's EOS id.
        pad_token_id: Pads finished hypotheses (never seen by the env: rows end at EOS).
        vocab_limit: Ids at or beyond it are never chosen; ``None`` allows every id.
        bf16: Decode under bf16 autocast.
    """

    def __init__(
        self,
        model: Any,
        *,
        num_beams: int,
        eos_token_id: int,
        pad_token_id: int,
        vocab_limit: int | None,
        bf16: bool = False,
    ) -> None:
        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
            raise ValueError(f"num_beams must be an integer >= 1, got {num_beams!r}")
        self.model = model
        self.num_beams = num_beams
        self.eos_token_id = int(eos_token_id)
        self.pad_token_id = int(pad_token_id)
        self.vocab_limit = vocab_limit
        self.bf16 = bool(bf16)
        self.seq2seq = is_encoder_decoder(model)

    @torch.no_grad()
    def act(
        self, states: Sequence[TextState], num_tokens: Sequence[int], rng: np.random.Generator
    ) -> list[tuple[int, ...]]:
        """The beam's best continuation per state: ``num_tokens[i]`` ids, fewer only if it
        ended with EOS."""
        out: list[tuple[int, ...]] = [()] * len(states)
        rows = [i for i, k in enumerate(num_tokens) if k > 0]
        if not rows:
            return out
        if self.seq2seq and any(states[i].generated_ids for i in rows):
            raise ValueError("beam search continues an encoder-decoder model only from the start")
        device = next(self.model.parameters()).device
        contexts = [
            states[i].prompt_ids + (() if self.seq2seq else states[i].generated_ids) for i in rows
        ]
        ids, mask = _left_padded(contexts, device)
        processors = LogitsProcessorList()
        if self.vocab_limit is not None:
            processors.append(_VocabLimit(self.vocab_limit))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
            generated = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                num_beams=self.num_beams,
                do_sample=False,
                max_new_tokens=max(int(num_tokens[i]) for i in rows),
                eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id,
                logits_processor=processors,
                top_k=None,
                top_p=None,
                temperature=None,
            )
        new = generated[:, 1:] if self.seq2seq else generated[:, ids.shape[1] :]  # (B, ≤ k)
        for i, tokens in zip(rows, new.tolist(), strict=True):
            if self.eos_token_id in tokens:
                tokens = tokens[: tokens.index(self.eos_token_id) + 1]
            out[i] = tuple(tokens[: int(num_tokens[i])])
        return out


def _left_padded(seqs: list[tuple[int, ...]], device: torch.device) -> tuple[torch.Tensor, ...]:
    """``(ids, mask)``, each ``(B, T)``, left-padded with masked-out zeros."""
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for r, s in enumerate(seqs):
        if s:
            ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def _make_envs(
    env_id: str, split: str, prompts: str | None, batch_size: int, tokenizer: Any
) -> TextGenVectorEnv:
    """The vector env of the evaluation: ``env_id`` on ``split`` or on the prompt file."""
    kwargs: dict[str, Any] = {"split": split}
    if prompts is not None:
        kwargs["source"] = prompts
    if not is_toy(env_id):
        kwargs["tokenizer"] = tokenizer
    try:
        return gym.make_vec(
            env_id, num_envs=batch_size, vectorization_mode="vector_entry_point", **kwargs
        ).unwrapped
    except DatasetGenerationError as err:  # a file our check passed but datasets cannot read
        cause = err.__cause__ or err
        raise ValueError(f"prompt file {prompts} could not be read: {one_line(cause)}") from err


def _check_prompts(env_id: str, split: str, prompts: str | None) -> None:
    """Refuse a prompt file for a toy task, a bad prompt file, or an unknown split."""
    if prompts is not None:
        if is_toy(env_id):
            raise ValueError(f"{env_id} generates its prompts; --prompts needs a data task")
        check_prompt_file(prompts, env_id)
    elif not is_toy(env_id) and split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of {env_id}; use one of {', '.join(SPLITS)}")


def _score(
    envs: TextGenVectorEnv,
    actor: GuidePolicy,
    env_id: str,
    *,
    num_samples: int | None,
    batch_size: int,
    seed: int,
    perplexity: tuple[Any, Any] | None,
) -> tuple[int, dict[str, float], list[dict[str, Any]]]:
    """``actor`` completes the first ``num_samples`` prompts (all: None) in order, through the
    env, seeded by ``seed``; returns how many, the metrics and one sample per prompt.
    ``perplexity`` is the ``(model, tokenizer)`` the task's perplexity is measured under."""
    task = envs.task
    n = task.num_prompts if num_samples is None else min(num_samples, task.num_prompts)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    envs.reset(seed=seed)
    finals, rewards = [], []
    for lo in range(0, n, batch_size):
        states = [task.initial_state(i) for i in range(lo, min(lo + batch_size, n))]
        final, returns = roll_out(envs, actor, states, rng)
        finals += final
        rewards += returns.tolist()
    generations = task.decode([s.generated_ids for s in finals])
    prompt_texts = [task.prompts[s.prompt_index].text for s in finals]
    references = [list(s.references) for s in finals]
    options = dict(METRICS[env_id])
    has_refs = all(references)
    if not has_refs:
        options |= {"cider": False, "meteor": False, "bertscore": False}
    if options.pop("perplexity", False) and perplexity is not None:
        options |= {"perplexity_model": perplexity[0], "perplexity_tokenizer": perplexity[1]}
    metrics = {
        "task_reward": float(np.mean(rewards)),
        "task_reward_std": float(np.std(rewards)),
        **compute_metrics(generations, references if has_refs else None, prompt_texts, **options),
    }
    samples = [
        {"prompt": p, "generation": g, "references": r, "reward": w}
        for p, g, r, w in zip(prompt_texts, generations, references, rewards, strict=True)
    ]
    return n, metrics, samples


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
    num_beams: int = 1,
    top_k: int | None = None,
    temperature: float | None = None,
    perplexity: bool = True,
) -> dict[str, Any]:
    """Generate once per prompt (in order) and return ``{"metrics": ..., "samples": [...]}``.

    ``device`` replaces the run's torch device (a run trained on "cuda" evaluates on a machine
    without one with ``device="cpu"``). π samples with the run's ``top_k`` and
    ``temperature`` unless given here; ``num_beams`` > 1 decodes with beam search instead
    (:class:`BeamSearchPolicy`), deterministically (``seed`` then changes nothing).
    ``perplexity`` False leaves out the perplexity metric of tasks that have one (a forward
    pass of π_ref over every sample: about as long as sampling them).

    Raises:
        ValueError: A count below 1 (``seed`` below 0); ``num_beams`` > 1 with ``top_k`` or
            ``temperature``, or a bad ``top_k``/``temperature``; an unknown env id or one
            the policy cannot run on (:func:`check_env_ids`); ``prompts`` for a toy task or
            a prompt file with a bad line (:func:`check_prompt_file`); an unknown split; a
            device that is not available here (:class:`~agents.build.RunSetupError`).
        FileNotFoundError: No checkpoint or prompt file at the path.
        CheckpointError: Every checkpoint there is damaged, or it does not fit its config.
    """
    _check_counts(num_samples, batch_size, seed, num_beams)
    _check_decoding(num_beams, top_k, temperature)
    if env_id is not None:
        _check_known(env_id)  # before reading the checkpoint
    policy_state, config, cfg = read_checkpoint(checkpoint)
    sampling = {"top_k": top_k, "temperature": temperature}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in sampling.items() if v is not None})
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    try:
        check_setup(cfg)
    except RunSetupError as err:
        hint = "" if device else " (the run's device; --device cpu evaluates on the CPU)"
        raise RunSetupError(f"{err}{hint}") from err
    env_id = env_id or cfg.env_id
    check_env_ids(cfg.env_id, env_id)
    _check_prompts(env_id, split, prompts)
    ac, tokenizer = restore_policy(cfg, policy_state, checkpoint)
    envs = _make_envs(env_id, split, prompts, batch_size, tokenizer)
    if num_beams > 1:
        actor: GuidePolicy = BeamSearchPolicy(
            ac.model,
            num_beams=num_beams,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=_pad_id(tokenizer),
            vocab_limit=len(tokenizer),
            bf16=cfg.bf16,
        )
        decoding: dict[str, Any] = {"num_beams": num_beams}
    else:
        actor = build_learner(ac, tokenizer, cfg)
        decoding = {"num_beams": 1, "top_k": cfg.top_k, "temperature": cfg.temperature}
    with ac.reference_model() as ref:  # perplexity under π_ref (LoRA: adapters disabled)
        measure = perplexity and not ref.config.is_encoder_decoder
        n, metrics, samples = _score(
            envs, actor, env_id, num_samples=num_samples, batch_size=batch_size, seed=seed,
            perplexity=(ref, tokenizer) if measure else None,
        )  # fmt: skip
    return {
        "checkpoint": str(checkpoint),
        "algo": config.get("algo"),
        "env_id": env_id,
        "split": split if prompts is None else prompts,
        "num_samples": n,
        "seed": seed,
        "decoding": decoding,
        "metrics": metrics,
        "samples": samples,
    }


def _pad_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(tokenizer.eos_token_id if pad is None else pad)


def evaluate_guide(
    env_id: str,
    *,
    guide: GuidePolicy | None = None,
    guide_epsilon: float | None = None,
    split: str = "test",
    prompts: str | None = None,
    num_samples: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    perplexity: bool = True,
) -> dict[str, Any]:
    """Score a task's guide as :func:`evaluate` scores a policy: the same prompts in order,
    batch size, seeding, metrics and result layout (``"algo": "guide"``; ``perplexity`` as
    there).

    ``guide`` is any :class:`~textgen_env.guides.GuidePolicy` over the task's tokens; by
    default the guide a run learns from, as :func:`agents.build.build_guide` builds it: on a
    toy task the scripted expert with ε = ``guide_epsilon`` noise (default: a run's
    ``guide_epsilon``), on a real task SmolLM2-135M-Instruct told the task (top-k 50), whose
    ε is not used. Perplexity (IMDB) is measured under SmolLM2, the policies' initial model.

    Raises:
        ValueError: ``guide`` together with ``guide_epsilon``; a count below 1 (``seed``
            below 0); an unknown env id, split or bad prompt file (as :func:`evaluate`).
        FileNotFoundError: No prompt file at the path.
        GuideError: The guide failed or broke its contract.
    """
    _check_counts(num_samples, batch_size, seed)
    _check_known(env_id)
    if guide is not None and guide_epsilon is not None:
        raise ValueError("guide_epsilon sets the default guide's noise; it cannot go with a guide")
    _check_prompts(env_id, split, prompts)
    lm = None
    if not is_toy(env_id):
        lm = load_causal_lm(None)  # the policies' initial model, and the guide's
    envs = _make_envs(env_id, split, prompts, batch_size, lm[1] if lm else None)
    task = envs.task
    if guide is None and is_toy(env_id):
        eps = TrainConfig.guide_epsilon if guide_epsilon is None else guide_epsilon
        guide = scripted_guide(env_id, task.vocab_size, eps)
    elif guide is None:
        assert lm is not None
        guide = default_guide(env_id, task.tokenizer, model=lm[0], tokenizer=lm[1])
    n, metrics, samples = _score(
        envs, guide, env_id, num_samples=num_samples, batch_size=batch_size, seed=seed,
        perplexity=lm if perplexity else None,
    )  # fmt: skip
    return {
        "checkpoint": None,
        "algo": "guide",
        "guide": type(guide).__name__,
        "env_id": env_id,
        "split": split if prompts is None else prompts,
        "num_samples": n,
        "seed": seed,
        "decoding": {"num_beams": 1},
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
    parser.add_argument(
        "--num-beams",
        type=int,
        default=1,
        help="beam search with this many beams, deterministic (default 1: sample)",
    )
    parser.add_argument("--top-k", type=int, help="top-k of the sampling (default: the run's)")
    parser.add_argument(
        "--temperature", type=float, help="sampling temperature (default: the run's)"
    )
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
            device=args.device, num_beams=args.num_beams, top_k=args.top_k,
            temperature=args.temperature,
        )  # fmt: skip
        how = ", ".join(f"{k} {v}" for k, v in result["decoding"].items())
        print(f"{result['env_id']} · {result['split']} · {result['num_samples']} prompts · "
              f"{result['algo']} @ {result['checkpoint']} · {how}")  # fmt: skip
        for name, value in result["metrics"].items():
            print(f"  {name:<24}{value:>12.4f}")
        for s in result["samples"][:3]:
            print(f"  ▸ {s['prompt']!r} → {s['generation']!r} (reward {s['reward']:.3f})")
        if args.output:
            _write_json(Path(args.output), result)
            print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
