"""What tests/test_agents_distributed.py runs in each process of an ``accelerate launch``.

``python tests/distributed_helper.py grad OUT``
    The gradient DDP averages over the processes, on a fixed batch split between them, against
    the gradient one process computes on the whole batch; the main process writes the largest
    differences to the JSON file OUT.
``python tests/distributed_helper.py fail RANK [agents.train flags]``
    ``python -m agents.train`` with those flags, where process RANK raises in its second
    iteration's collect.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from agents import trainer
from agents.build import build_policy
from agents.distributed import join_processes
from agents.engine import Rollout
from agents.losses import logprobs_from_logits
from agents.policy import ActorCritic
from agents.ppo import PPOConfig
from agents.train import main as train_main


def loss_of(policy: ActorCritic, ids: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
    """A loss on both heads, a mean over rows (each row counts the same)."""
    logits, values = policy(ids, mask, width)  # (b, G, V), (b, G, 2)
    logprobs = logprobs_from_logits(logits, ids[:, width:])  # (b, G)
    return -logprobs.mean() + values.square().mean()


def gradient_check(out: Path) -> None:
    cfg = PPOConfig(env_id="textgen_env/Reverse-v0", batch_size=4, minibatch_size=4)
    procs = join_processes(cfg)
    ac, _, envs = build_policy(procs.share(cfg))  # the same initial π in every process
    vocab, width, gen = envs.unwrapped.task.vocab_size, 6, 5
    fixed = torch.Generator().manual_seed(7)
    ids = torch.randint(1, vocab, (4, width + gen), generator=fixed)  # the global batch
    mask = torch.ones_like(ids)

    alone = copy.deepcopy(ac)  # one process, the whole batch
    loss_of(alone, ids, mask, width).backward()

    rows = slice(procs.rank * 2, procs.rank * 2 + 2)  # this process's half
    policy = procs.replicate(ac)  # (held: its DDP wrapper must outlive the backward)
    loss_of(policy, ids[rows], mask[rows], width).backward()

    diffs = [
        (a.grad - b.grad).abs().max().item()
        for a, b in zip(alone.trainable_parameters(), ac.trainable_parameters(), strict=True)
    ]
    largest = max(p.grad.abs().max().item() for p in alone.trainable_parameters())
    every = procs.gather(max(diffs))
    if procs.main:
        out.write_text(json.dumps({"world": procs.world, "max_diff": every, "largest": largest}))
    procs.finish()


def failing_run(rank: int, argv: list[str]) -> None:
    collect = trainer.collect
    calls = []

    def flaky(*args: Any, **kwargs: Any) -> Rollout:
        calls.append(1)
        if len(calls) == 2 and int(os.environ["RANK"]) == rank:
            raise RuntimeError(f"injected failure in process {rank}")
        return collect(*args, **kwargs)

    trainer.collect = flaky
    train_main(argv)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "grad":
        gradient_check(Path(sys.argv[2]))
    else:
        failing_run(int(sys.argv[2]), sys.argv[3:])
