"""What tests/test_agents_distributed.py runs in each process of an ``accelerate launch``.

``python tests/distributed_helper.py grad OUT``
    The gradient DDP averages over the processes, on a fixed batch split between them, against
    the gradient one process computes on the whole batch; the main process writes the largest
    differences to the JSON file OUT; after :meth:`Processes.finish`, each process r writes
    to ``after-r.json`` beside it whether a DDP wrapper is still alive.
``python tests/distributed_helper.py alol_grad OUT``
    A-LoL's step loss (:func:`agents.alol.step_loss`) for several variants on fixed global
    minibatches of toy rows (one split unevenly, one that leaves process 1 without a row):
    the gradient DDP averages against one process's on the same rows, and π_ref's log-probs
    of the data computed split among the processes against one process's; the main process
    writes the largest differences to OUT.
``python tests/distributed_helper.py zero_steps OUT`` (under a DeepSpeed ZeRO config)
    Three clipped AdamW steps through :meth:`Processes.prepare` (DeepSpeed's engine), each
    process on its half of fixed batches, against the same steps one process takes on the
    whole batches (:meth:`ActorCritic.step`); after each, π runs outside the engine a
    different number of times in each process (:meth:`Processes.whole`); the main process
    writes the largest differences of the weights, of the gathered optimizer state and of the
    gradient norms to OUT.
``python tests/distributed_helper.py fail RANK [agents.train flags]``
    ``python -m agents.train`` with those flags, where process RANK raises in its second
    iteration's collect.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from transformers import AutoModelForCausalLM, LlamaConfig

from agents import alol, trainer
from agents.alol import VARIANTS, ALoLConfig
from agents.build import build_policy, scripted_guide
from agents.distributed import Processes, join_processes
from agents.engine import Rollout
from agents.losses import logprobs_from_logits
from agents.offline_data import replay, sample_rows
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
    procs.finish()  # while `policy` is still held (a deadlock in torch's gloo: Processes.finish)
    gc.collect()
    alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    try:
        policy.train()
        released = False
    except RuntimeError:
        released = True
    after = {"ddp_alive": alive, "released": released}
    (out.parent / f"after-{procs.rank}.json").write_text(json.dumps(after))


def alol_gradient_check(out: Path) -> None:
    cfg = ALoLConfig(env_id="textgen_env/Reverse-v0", batch_size=8, kl_coef=0.5)
    procs = join_processes(cfg)
    ac, _, envs = build_policy(cfg)  # the same initial π in every process
    one = Processes(rank=0, world=1)
    # The same rows in every process: the noisy scripted guide's episodes (varied lengths).
    guide = scripted_guide(cfg.env_id, envs.unwrapped.task.vocab_size, 0.3)
    rng = np.random.default_rng(3)
    rows = sample_rows(envs, guide, list(range(8)), rng) + sample_rows(envs, guide, [0] * 8, rng)
    data = replay(envs, rows)
    with torch.no_grad():  # π moves away from π_ref, so the ratios and the KL are not trivial
        for p in ac.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(5)))
    alone = copy.deepcopy(ac)
    ref_split = alol._reference_logprobs(ac, data, 3, procs)  # split and gathered
    ref_alone = alol._reference_logprobs(alone, data, 3, one)
    policy = procs.replicate(ac)
    policy.train()
    alone.train()
    weight = torch.rand(len(data), generator=torch.Generator().manual_seed(9)) + 0.1  # (N,)
    found: dict[str, Any] = {"ref_diff": (ref_split - ref_alone).abs().max().item()}
    picks = {"uneven": torch.tensor([3, 0, 7, 12, 5, 9, 15]), "one_row": torch.tensor([6])}
    for name, pick in picks.items():
        for algo in ("alol", "alol_seq", "alol_kl", "wbc"):
            for model in (ac, alone):
                model.zero_grad(set_to_none=True)
            args = (data, ref_alone, pick, weight[pick], VARIANTS[algo], cfg)
            loss, _ = alol.step_loss(alone, alone, *args, one)
            loss.backward()
            loss, _ = alol.step_loss(policy, ac, *args, procs)
            loss.backward()
            pairs = zip(alone.trainable_parameters(), ac.trainable_parameters(), strict=True)
            diffs = [(a.grad - b.grad).abs().max().item() for a, b in pairs if a.grad is not None]
            largest = max(p.grad.abs().max().item() for p in alone.trainable_parameters()
                          if p.grad is not None)  # fmt: skip
            found[f"{name}/{algo}"] = {"max_diff": max(diffs), "largest": largest}
    every = procs.gather(found)
    if procs.main:
        out.write_text(json.dumps({"world": procs.world, "processes": every}))
    procs.finish()


def zero_steps_check(out: Path) -> None:
    # max_grad_norm 0.5 (zero2_cpu.yaml says 1.0; the run's value wins): the steps are clipped
    cfg = PPOConfig(
        env_id="textgen_env/Reverse-v0", batch_size=4, minibatch_size=4, max_grad_norm=0.5
    )
    procs = join_processes(cfg)
    ac, _, envs = build_policy(procs.share(cfg))  # the same initial π in every process
    vocab, width, gen = envs.unwrapped.task.vocab_size, 6, 5
    # transformers builds models whole here (a model it built partitioned under ZeRO-3, as
    # from_pretrained would π_ref, could not run outside DeepSpeed's engine)
    small = LlamaConfig(vocab_size=vocab, hidden_size=8, intermediate_size=16,
                        num_hidden_layers=1, num_attention_heads=2)  # fmt: skip
    built_whole = all(p.numel() > 0 for p in AutoModelForCausalLM.from_config(small).parameters())
    alone = copy.deepcopy(ac)
    alone_opt = alone.optimizer(1e-2)
    policy, optimizer = procs.prepare(ac, ac.optimizer(1e-2))
    # before any step: a new AdamW's state (no moments), in torch's layout
    fresh_equal = procs.optimizer_state(optimizer, ac) == alone_opt.state_dict()
    fixed = torch.Generator().manual_seed(7)
    rows = slice(procs.rank * 2, procs.rank * 2 + 2)  # this process's half
    norms = []
    for _ in range(3):
        ids = torch.randint(1, vocab, (4, width + gen), generator=fixed)  # the global batch
        mask = torch.ones_like(ids)
        a = alone.step(loss_of(alone, ids, mask, width), alone_opt, cfg.max_grad_norm)
        b = policy.step(loss_of(policy, ids[rows], mask[rows], width), optimizer, cfg.max_grad_norm)
        norms.append(abs(a.item() - b.item()) / a.item())
        clipped = a.item() > cfg.max_grad_norm
        with procs.whole(ac), torch.no_grad():  # π outside the engine, as often as each likes
            for _ in range(procs.rank + 1):
                ac(ids, mask, width)
    with procs.whole(ac):  # (ZeRO-3: the weights are partitioned outside this block)
        weights = max(
            (a - b).abs().max().item()
            for a, b in zip(alone.trainable_parameters(), ac.trainable_parameters(), strict=True)
        )
    gathered = procs.optimizer_state(optimizer, ac)  # every process takes part
    expected = alone_opt.state_dict()
    moments = max(
        (gathered["state"][i][k] - expected["state"][i][k]).abs().max().item()
        for i in expected["state"]
        for k in ("exp_avg", "exp_avg_sq")
    )
    if procs.main:
        out.write_text(json.dumps({
            "world": procs.world, "deepspeed": procs.deepspeed, "zero3": procs.zero3,
            "built_whole": built_whole,
            "weights": weights,
            "clipped": clipped, "fresh_equal": fresh_equal,
            "moments": moments, "grad_norms": norms,
            "steps": [float(gathered["state"][0]["step"]), float(expected["state"][0]["step"])],
            "groups_equal": gathered["param_groups"] == expected["param_groups"],
            "moved": max((a - b).abs().max().item() for a, b in zip(
                alone.trainable_parameters(), build_policy(cfg)[0].trainable_parameters(),
                strict=True)),
        }))  # fmt: skip
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
    elif sys.argv[1] == "alol_grad":
        alol_gradient_check(Path(sys.argv[2]))
    elif sys.argv[1] == "zero_steps":
        zero_steps_check(Path(sys.argv[2]))
    else:
        failing_run(int(sys.argv[2]), sys.argv[3:])
