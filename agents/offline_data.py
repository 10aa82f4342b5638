"""Offline data: JSONL files of (prompt, response, reward) rows, and their trip through the env.

The offline algorithms (:mod:`agents.alol`, :mod:`agents.rest`) learn from such files. One
line per row, a JSON object with

* ``prompt_index`` (int): the prompt's index in the task's **train** split;
* ``prompt`` (str): that prompt's text (checked, so a file of another task is refused);
* ``response`` (str): the continuation; non-empty, except for an episode whose writer ended
  it at once (EOS first), which has ``"response": ""`` and ``"response_ids": []``;
* ``reward`` (finite number): R(x, y), the task reward the env gave the row when it was made;
* optional ``response_ids`` (list of int): the response as the policy tokenizer's ids (exact
  when decoding and re-encoding would not round-trip), and any further keys as metadata
  (``source``, ``grow_step``, ``policy``, ...), kept but not read.

The env is the single source of rewards: :func:`sample_rows` writes rows from episodes run
through it, :func:`reference_rows` scores a task's references through it, and :func:`replay`
puts every row of a file back through it before training, which checks the tokens, lays the
row out as the policy consumes it (prompt block left-padded, response block right-padded) and
returns the env's reward beside the file's.

Writing is append-only and crash-safe: :func:`append_rows` writes whole lines and fsyncs, and
:func:`read_rows` with ``drop_partial_tail`` ignores a last line that a killed writer left
without its newline.

With several processes (:mod:`agents.distributed`), :func:`sample_chunks` gives each process
whole chunks of episodes to sample (chunk ``c`` seeded from ``c``, whoever samples it) and
every process gets every chunk's rows; :func:`write_samples` then has the main process alone
append them, so the file is the one a single process writes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from agents.distributed import Processes
from textgen_env._checks import is_int
from textgen_env.guides.base import GuidePolicy
from textgen_env.oracles import roll_out
from textgen_env.task import TextTask
from textgen_env.vector import NO_TOKEN, TextGenVectorEnv

__all__ = [
    "DataFileError",
    "Replayed",
    "Row",
    "append_rows",
    "read_rows",
    "reference_rows",
    "replay",
    "sample_chunks",
    "sample_rows",
    "write_rows",
    "write_samples",
]

REQUIRED = ("prompt_index", "prompt", "response", "reward")


class DataFileError(ValueError):
    """An offline data file (or its rows) cannot be trained on; the message names the file
    and line."""


@dataclass(frozen=True)
class Row:
    """One (prompt, response) pair with its reward."""

    prompt_index: int
    prompt: str
    response: str
    reward: float
    response_ids: tuple[int, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        """The row as one JSON line (no newline)."""
        out: dict[str, Any] = {
            "prompt_index": self.prompt_index,
            "prompt": self.prompt,
            "response": self.response,
            "reward": self.reward,
        }
        if self.response_ids is not None:
            out["response_ids"] = list(self.response_ids)
        return json.dumps(out | self.meta, ensure_ascii=False)


def read_rows(
    path: str | os.PathLike[str], task: TextTask, *, drop_partial_tail: bool = False
) -> list[Row]:
    """The rows of ``path``, each checked against ``task`` (its train split).

    Raises:
        DataFileError: naming the file and line, for a line that is not a JSON object, a
            missing or mistyped field, an empty response, a non-finite reward, a prompt index
            outside the task or a prompt text that is not the task's; or for a file with no
            rows. A last line without its newline is such an error too, unless
            ``drop_partial_tail`` (files this package appends to), when it is ignored.
        FileNotFoundError: no file at ``path``.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")  # not splitlines: JSON strings may hold U+2028
    if lines[-1] == "":
        lines.pop()
    elif drop_partial_tail:
        lines.pop()  # a killed writer's unfinished line
    rows = [_parse(line, task, f"{path} line {n}") for n, line in enumerate(lines, 1) if line]
    if not rows:
        raise DataFileError(f"{path}: no rows")
    return rows


def _parse(line: str, task: TextTask, where: str) -> Row:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFileError(f"{where}: not JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise DataFileError(f"{where}: a row must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise DataFileError(f"{where}: missing field(s) {', '.join(missing)}")
    index, prompt, response, reward = (obj.pop(k) for k in REQUIRED)
    if not is_int(index) or not 0 <= index < task.num_prompts:
        raise DataFileError(
            f"{where}: prompt_index {index!r} is not a prompt of {task.task_id} "
            f"(0..{task.num_prompts - 1})"
        )
    if prompt != task.prompts[index].text:
        raise DataFileError(
            f"{where}: prompt {str(prompt)[:60]!r} is not prompt {index} of {task.task_id}; "
            "was the file made for another task or split?"
        )
    ids = obj.pop("response_ids", None)
    if not isinstance(response, str) or (not response.strip() and ids != []):
        raise DataFileError(f"{where}: response must be a non-empty string, got {response!r:.60}")
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise DataFileError(f"{where}: reward must be a finite number, got {reward!r}")
    if ids is not None:
        v = task.vocab_size
        in_vocab = isinstance(ids, list) and all(is_int(t) and 0 <= t < v for t in ids)
        if not in_vocab:
            raise DataFileError(
                f"{where}: response_ids must be a list of token ids in [0, {task.vocab_size})"
            )
        ids = tuple(ids)
    return Row(int(index), prompt, response, float(reward), ids, obj)


def append_rows(path: str | os.PathLike[str], rows: Iterable[Row]) -> None:
    """Append ``rows`` to ``path`` as whole lines in one write, then fsync (a crash loses no
    row already written; a cut last line is dropped by ``read_rows(drop_partial_tail=True)``)."""
    data = "".join(row.to_json() + "\n" for row in rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class Replayed:
    """Rows as the env laid them out (CPU tensors), with the env's rewards."""

    input_ids: torch.Tensor  # (N, P+G) prompt block left-padded, response block right-padded
    attention_mask: torch.Tensor  # (N, P+G)
    prompt_width: int  # P
    mask: torch.Tensor  # (N, G) bool: response tokens (EOS included when it fit)
    rewards: torch.Tensor  # (N,) float32: R(x, y) from the env
    prompt_index: np.ndarray  # (N,)

    @property
    def tokens(self) -> torch.Tensor:
        """Response token ids ``(N, G)`` (padding where ``mask`` is 0)."""
        return self.input_ids[:, self.prompt_width :]

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def response_ids(task: TextTask, row: Row) -> tuple[int, ...]:
    """The row's episode tokens: its ids (or its text encoded with the task tokenizer), then
    EOS, cut at the horizon ``G`` (a cut response has no EOS, as in the env)."""
    if row.response_ids is not None:
        ids = list(row.response_ids)
    else:
        try:
            ids = [int(t) for t in task.tokenizer.encode(row.response, add_special_tokens=False)]
        except (ValueError, KeyError, TypeError) as err:  # e.g. a toy tokenizer's unknown symbol
            msg = f"the task tokenizer cannot encode {row.response!r:.60}: {err}"
            raise DataFileError(msg) from None
    if task.eos_token_id in ids:  # an explicit EOS ends the response there
        ids = ids[: ids.index(task.eos_token_id)]
    return (*ids, task.eos_token_id)[: task.max_new_tokens]


def replay(envs: TextGenVectorEnv, rows: Sequence[Row], where: str = "data") -> Replayed:
    """Put each row through the env: restart at its prompt plus all but its last token, then
    step that token, so the env checks the tokens, ends the episode and computes R(x, y).

    Runs ``num_envs`` rows at a time. Raises :class:`DataFileError` (naming ``where`` and the
    row) for a response that encodes to no token.
    """
    venv = envs.unwrapped
    task = venv.task
    n_env, width = venv.num_envs, task.max_prompt_tokens
    ids, attn, rewards = [], [], []
    for lo in range(0, len(rows), n_env):
        chunk = rows[lo : lo + n_env]
        states: list[Any] = [None] * n_env
        # Sub-envs past a short chunk restart at prompt 0 and take no token (observation()
        # needs every sub-env started).
        spare: list[Any] = [None] * len(chunk) + [0] * (n_env - len(chunk))
        tokens = np.full((n_env, 1), NO_TOKEN, dtype=np.int64)
        for r, row in enumerate(chunk):
            try:
                episode = response_ids(task, row)
            except DataFileError as err:
                raise DataFileError(f"{where} row {lo + r + 1}: {err}") from None
            if episode == (task.eos_token_id,) and row.response_ids != ():
                raise DataFileError(f"{where} row {lo + r + 1}: the response has no token")
            states[r] = task.initial_state(row.prompt_index).extend(episode[:-1])
            tokens[r, 0] = episode[-1]
        with venv.atomic():
            venv.reset(options={"state": states, "prompt_index": spare})
            got, terminated, truncated = venv.advance(tokens)
        if not (terminated | truncated)[: len(chunk)].all():
            raise RuntimeError("replay: the env did not end every replayed episode")
        obs = venv.observation()
        ids.append(torch.from_numpy(obs["input_ids"][: len(chunk)]))
        attn.append(torch.from_numpy(obs["attention_mask"][: len(chunk)]))
        rewards.append(torch.from_numpy(got[: len(chunk)].astype(np.float32)))
    input_ids, attention_mask = torch.cat(ids), torch.cat(attn)
    return Replayed(
        input_ids=input_ids,
        attention_mask=attention_mask,
        prompt_width=width,
        mask=attention_mask[:, width:].bool(),
        rewards=torch.cat(rewards),
        prompt_index=np.array([row.prompt_index for row in rows]),
    )


def sample_rows(
    envs: TextGenVectorEnv,
    actor: GuidePolicy,
    prompt_indices: Sequence[int],
    rng: np.random.Generator,
    meta: dict[str, Any] | None = None,
) -> list[Row]:
    """``actor`` writes one episode per entry of ``prompt_indices`` (at most ``num_envs``)
    through the env; the rows carry the env's rewards, the ids and ``meta``."""
    venv = envs.unwrapped
    task = venv.task
    starts = [task.initial_state(int(i)) for i in prompt_indices]
    # Start every sub-env (the oracles read them all); the spare ones at prompt 0.
    venv.reset(
        options={
            "prompt_index": [s.prompt_index for s in starts] + [0] * (venv.num_envs - len(starts))
        }
    )
    final, returns = roll_out(venv, actor, starts, rng)
    rows = []
    for state, reward in zip(final, returns, strict=True):
        gen = state.generated_ids
        body = gen[:-1] if gen and gen[-1] == task.eos_token_id else gen
        rows.append(
            Row(
                prompt_index=state.prompt_index,
                prompt=task.prompts[state.prompt_index].text,
                response=task.decode([body])[0],
                reward=float(reward),
                response_ids=tuple(body),
                meta=dict(meta or {}),
            )
        )
    return rows


def reference_rows(envs: TextGenVectorEnv, meta: dict[str, Any] | None = None) -> list[Row]:
    """Every reference of every prompt of the task as a row, scored through the env."""
    task = envs.unwrapped.task
    rows = [
        Row(i, p.text, ref, 0.0, None, {"source": "reference"} | dict(meta or {}))
        for i, p in enumerate(task.prompts)
        for ref in p.references
        if ref.strip()
    ]
    if not rows:
        raise DataFileError(f"{task.task_id} has no reference texts")
    scored = replay(envs, rows, f"{task.task_id} references")
    return [
        Row(r.prompt_index, r.prompt, r.response, float(x), r.response_ids, r.meta)
        for r, x in zip(rows, scored.rewards.tolist(), strict=True)
    ]


def sample_chunks(
    envs: TextGenVectorEnv,
    actor: Any,
    order: Sequence[int],
    first: int,
    seed: int | tuple[int, ...],
    meta: dict[str, Any],
    procs: Processes,
) -> Iterator[list[Row]]:
    """The rows of ``actor``'s episodes at the prompts ``order``, cut into chunks of
    ``envs.num_envs``, from chunk ``first`` on: yields each chunk's rows in order, in every
    process.

    Chunk ``c`` is sampled with ``np.random.default_rng((*seed, c))``. With N processes,
    process r samples chunks ``first + r``, ``first + r + N``, …, and each round's chunks are
    gathered, so the rows do not depend on N (nor on where a run stopped and resumed).
    """
    chunk = envs.unwrapped.num_envs
    count = -(-len(order) // chunk)
    for lo in range(first, count, procs.world):
        c = lo + procs.rank
        rows: list[Row] = []
        if c < count:
            rng = np.random.default_rng((*np.atleast_1d(seed).tolist(), c))
            rows = sample_rows(envs, actor, order[c * chunk : (c + 1) * chunk], rng, meta)
        for got in procs.gather(rows):  # this round's chunks, in chunk order
            if got:
                yield got


def write_samples(
    path: str | os.PathLike[str],
    envs: TextGenVectorEnv,
    actor: Any,
    prompt_indices: Sequence[int],
    samples_per_prompt: int,
    seed: int | tuple[int, ...],
    meta: dict[str, Any],
    *,
    progress: bool = True,
    procs: Processes | None = None,
) -> list[Row]:
    """Append ``samples_per_prompt`` episodes of ``actor`` per prompt to ``path`` (resuming
    after the rows already there); return all the file's rows.

    The episodes are ordered prompt by prompt and cut into chunks of ``envs.num_envs``; chunk
    ``c`` is sampled with ``np.random.default_rng((*seed, c))`` (``seed`` an int or a tuple).
    With ``procs`` (several processes), the processes sample the chunks together
    (:func:`sample_chunks`), the main process alone reads, cuts and appends to the file, and
    every process returns all its rows. Raises :class:`~agents.offline_data.DataFileError`
    (in every process) when the rows already in ``path`` are not the start of this order
    (another command's file).
    """
    procs = procs if procs is not None else Processes(rank=0, world=1)
    venv = envs.unwrapped
    task, chunk = venv.task, venv.num_envs
    order = [int(p) for p in prompt_indices for _ in range(samples_per_prompt)]
    path = Path(path)
    done = procs.first_on_main(lambda: _resumed_rows(path, task, chunk, order), (DataFileError,))
    first, count = len(done) // chunk, -(-len(order) // chunk)
    bar = tqdm(
        total=count - first, desc=f"data {path.name}", unit="chunk",
        disable=not (progress and procs.main),
    )  # fmt: skip
    for rows in sample_chunks(venv, actor, order, first, seed, meta, procs):
        if procs.main:
            append_rows(path, rows)
        done += rows
        bar.update()
    bar.close()
    return done


def _resumed_rows(path: Path, task: Any, chunk: int, order: list[int]) -> list[Row]:
    """The complete chunks already in ``path`` (none if there is no file), checked to be the
    start of ``order``; the folder made for the rest."""
    done = _complete_chunks(path, task, chunk) if path.exists() else []
    if [r.prompt_index for r in done] != order[: len(done)]:
        raise DataFileError(
            f"{path} holds {len(done)} rows that another command wrote (their prompts differ "
            "from this one's); use another --out"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return done


def _complete_chunks(path: Path, task: Any, chunk: int) -> list[Row]:
    """The rows of ``path`` in complete chunks; a partial last chunk (a killed run) is cut
    from the file (it is sampled again, identically)."""
    if path.stat().st_size == 0:
        return []
    rows = read_rows(path, task, drop_partial_tail=True)
    keep = len(rows) - len(rows) % chunk
    if keep < len(rows) or not path.read_bytes().endswith(b"\n"):
        write_rows(path, rows[:keep])
    return rows[:keep]


def write_rows(path: str | os.PathLike[str], rows: Iterable[Row]) -> None:
    """Write ``rows`` to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(row.to_json() + "\n" for row in rows), encoding="utf-8")
    os.replace(tmp, path)
