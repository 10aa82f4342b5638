"""Behaviour cloning: supervised NLL on demonstrations (the warm start of "BC+X" runs).

Demonstrations are the data set's references, replayed through the env by a
:class:`~textgen_env.guides.ReferenceGuide` (so they are tokenized and truncated exactly as
the env would), or, for tasks without references (e.g. ``Positive-v0``), the guide's own
roll-outs (``--demonstrations guide``). The demonstrator writes whole episodes (a plain
:class:`~agents.engine.Plan`). The loss is the mean NLL of the demonstrated tokens, plus,
when ``kl_coef > 0``, β_KL times the exact per-position KL(π ‖ π_ref) on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.config import TrainConfig, check_positive
from agents.engine import Plan, Rollout
from agents.losses import exact_kl, logprobs_from_logits
from agents.masked import masked_mean
from agents.policy import ActorCritic

__all__ = ["BCConfig", "DemoBatch", "plan", "score", "update"]


@dataclass
class BCConfig(TrainConfig):
    """Behaviour-cloning settings."""

    learning_rate: float = 1e-4
    """AdamW learning rate."""
    kl_coef: float = 0.0
    """β_KL of the KL(π ‖ π_ref) term on the demonstrated positions (0 = plain BC)."""
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
        check_positive(self, "minibatch_size", "epochs")
        if self.batch_size % self.minibatch_size:
            raise ValueError(
                f"minibatch_size {self.minibatch_size} must divide batch_size {self.batch_size}"
            )


def plan(cfg: BCConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """The demonstrator writes whole episodes (no switch)."""
    return Plan()


@torch.no_grad()
def score(ac: ActorCritic, rollout: Rollout, cfg: BCConfig, kl_coef: float) -> DemoBatch:
    """The demonstrations on the policy's device, and their KL(π ‖ π_ref) when β_KL > 0."""
    dev = next(ac.parameters()).device
    ids, attn = rollout.input_ids.to(dev), rollout.attention_mask.to(dev)  # (B, P+G)
    mask = rollout.gen_mask.to(dev)  # (B, G)
    kl = None
    if kl_coef > 0:
        ac.eval()
        kls = []
        for lo in range(0, ids.shape[0], cfg.minibatch_size):
            rows = slice(lo, lo + cfg.minibatch_size)
            kls.append(_kl_to_reference(ac, ids[rows], attn[rows], rollout.prompt_width))
        kl = masked_mean(torch.cat(kls), mask).item()
    stats = {"charts/task_reward": rollout.task_rewards.mean().item(), "charts/kl_coef": kl_coef}
    if kl is not None:
        stats["charts/kl"] = kl
    return DemoBatch(
        ids, attn, rollout.prompt_width, rollout.tokens.to(dev), mask, kl_coef, kl, stats
    )


def update(
    ac: ActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: DemoBatch,
    cfg: BCConfig,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Minimize the NLL of the demonstrated tokens (+ β_KL · KL to π_ref)."""
    ac.train()
    n, losses, kls, norms = batch.input_ids.shape[0], [], [], []
    for _ in range(cfg.epochs):
        order = torch.from_numpy(rng.permutation(n))
        for lo in range(0, n, cfg.minibatch_size):
            idx = order[lo : lo + cfg.minibatch_size]
            ids, attn, mask = batch.input_ids[idx], batch.attention_mask[idx], batch.mask[idx]
            logits, _ = ac(ids, attn, batch.prompt_width)  # (b, G, V)
            logprobs = logprobs_from_logits(logits, batch.tokens[idx])  # (b, G)
            loss = -masked_mean(logprobs, mask)
            losses.append(loss.detach())
            if batch.kl_coef > 0:
                kl = masked_mean(_kl_to_reference(ac, ids, attn, batch.prompt_width, logits), mask)
                loss = loss + batch.kl_coef * kl
                kls.append(kl.detach())
            norms.append(ac.step(loss, optimizer, cfg.max_grad_norm))
    out = {
        "losses/nll": torch.stack(losses).mean().item(),
        "losses/grad_norm": torch.stack(norms).mean().item(),
    }
    if kls:
        out["losses/kl"] = torch.stack(kls).mean().item()
    return out


@dataclass
class DemoBatch:
    """Demonstrations for the update (on the policy's device)."""

    input_ids: torch.Tensor  # (B, P+G)
    attention_mask: torch.Tensor  # (B, P+G)
    prompt_width: int
    tokens: torch.Tensor  # (B, G) demonstrated tokens
    mask: torch.Tensor  # (B, G) bool: demonstrated positions
    kl_coef: float
    kl: float | None
    """Mean KL(π ‖ π_ref) per demonstrated position before the update; None when β_KL = 0
    (not measured: nothing uses it)."""
    stats: dict[str, float]


def _kl_to_reference(
    ac: ActorCritic,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_width: int,
    logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact ``KL(π(·|s_t) ‖ π_ref(·|s_t))`` per generated position ``(b, G)``; ``logits``
    are π's when already computed (then the result carries their gradient)."""
    if logits is None:
        logits, _ = ac(input_ids, attention_mask, prompt_width)
    ref_logits = ac.reference_logits(input_ids, attention_mask, prompt_width)  # (b, G, V)
    return exact_kl(logits, ref_logits)  # (b, G)
