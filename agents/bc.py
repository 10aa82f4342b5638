"""Behaviour cloning: supervised NLL on demonstrations (the warm start of "BC+X" runs).

Demonstrations are the data set's references, replayed through the env by a
:class:`~textgen_env.guides.ReferenceGuide` (so they are tokenized and truncated exactly as
the env would), or, for tasks without references (e.g. ``Positive-v0``), the guide's own
roll-outs. The loss is the mean negative log-likelihood of the demonstrated tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.common import logprobs_from_logits, masked_mean
from agents.config import TrainConfig
from agents.engine import Rollout
from agents.policy import ActorCritic
from agents.ppo import Plan

__all__ = ["BCConfig", "plan", "update"]


@dataclass
class BCConfig(TrainConfig):
    """Behaviour-cloning settings."""

    learning_rate: float = 1e-4
    """AdamW learning rate."""
    demonstrations: str = "reference"
    """"reference": the data set's references; "guide": the task's guide's roll-outs."""
    guide_epsilon: float = 0.0
    """Toy tasks, demonstrations="guide": ε-noise of the scripted guide."""
    minibatch_size: int = 16
    """Episodes per gradient step; must divide batch_size."""
    epochs: int = 1
    """Passes over each batch of demonstrations."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.demonstrations not in ("reference", "guide"):
            raise ValueError(
                f"demonstrations must be 'reference' or 'guide', got {self.demonstrations!r}"
            )
        if self.batch_size % self.minibatch_size or self.epochs < 1:
            raise ValueError("minibatch_size must divide batch_size and epochs must be >= 1")


def plan(cfg: BCConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """The demonstrator produces whole episodes (no roll-in switching)."""
    return Plan()


def update(
    ac: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    cfg: BCConfig,
    kl_ctl: object,
    p: Plan,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Minimize the NLL of the demonstrated tokens (all generated tokens of the rollout)."""
    ac.train()
    n, losses = rollout.input_ids.shape[0], []
    dev = next(ac.parameters()).device
    for _ in range(cfg.epochs):
        order = torch.from_numpy(rng.permutation(n))
        for lo in range(0, n, cfg.minibatch_size):
            idx = order[lo : lo + cfg.minibatch_size]
            logits, _ = ac(
                rollout.input_ids[idx].to(dev),
                rollout.attention_mask[idx].to(dev),
                rollout.prompt_width,
            )  # (b, G, V)
            logprobs = logprobs_from_logits(logits, rollout.tokens[idx].to(dev))  # (b, G)
            loss = -masked_mean(logprobs, rollout.gen_mask[idx].to(dev))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ac.trainable_parameters(), cfg.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
    return {
        "losses/nll": float(np.mean(losses)),
        "charts/task_reward": rollout.task_rewards.mean().item(),
    }
