"""PPO for token-level generation, and the training loop every algorithm shares.

**PPO** (Schulman et al., 2017): roll-in = roll-out = π. Per-token reward
``r_t = -β_KL (log π(a_t|s_t) - log π_ref(a_t|s_t))`` on π's tokens plus the task reward on
the last token (Ziegler et al., 2019, eq. 2); advantages by GAE(γ, λ) (Schulman et al., 2016);
clipped policy and value losses; entropy logged. The value function is a head on π's trunk
with two outputs, V^π and the guide's V^g (:mod:`agents.policy`); PPO uses V^π only.

The guided algorithms differ only in *how data is collected* and *which tokens train what*,
which a :class:`Plan` states per iteration: ``agents.ppo_pp`` (guide roll-in),
``agents.aggrevated`` (guide roll-out), ``agents.lols`` and ``agents.d2lols`` (schedules of
the two). They all run :func:`agents.trainer.run` with their plan and this module's
:func:`update`; the same reward shaping (KL on π's tokens) applies in every algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.common import (
    KLController,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    logprobs_from_logits,
    masked_entropy,
    masked_whiten,
    per_token_kl,
    shaped_rewards,
)
from agents.config import TrainConfig, _positive, _unit
from agents.engine import RollIn, Rollout
from agents.policy import GUIDE, PI, ActorCritic

__all__ = [
    "PPOConfig", "Plan", "TrainBatch", "plan", "ppo_update", "prepare_batch", "select_value",
    "update",
]  # fmt: skip


@dataclass
class PPOConfig(TrainConfig):
    """PPO settings (defaults follow the paper's IMDB setup where it gives one)."""

    update_epochs: int = 4
    """PPO epochs over each batch."""
    minibatch_size: int = 16
    """Episodes per gradient step; must divide batch_size."""
    gamma: float = 0.99
    """Discount γ."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_range: float = 0.2
    """PPO ratio clip ε."""
    value_clip_range: float = 0.2
    """Value-loss clip around the old values."""
    vf_coef: float = 0.5
    """Value-loss coefficient."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient (entropy is always logged)."""
    kl_coef: float = 0.05
    """Initial KL-penalty coefficient β_KL."""
    target_kl: float = 0.0
    """Target KL per episode for the adaptive controller (Ziegler et al., 2019); 0 keeps
    β_KL fixed."""
    kl_horizon: int = 10_000
    """Horizon (episodes) of the adaptive KL controller."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "update_epochs", "minibatch_size", "clip_range", "value_clip_range")
        _positive(self, "kl_horizon")
        _unit(self, "gamma", "gae_lambda")
        if self.kl_coef < 0 or self.target_kl < 0 or self.vf_coef < 0 or self.ent_coef < 0:
            raise ValueError("kl_coef, target_kl, vf_coef and ent_coef must be >= 0")
        if self.batch_size % self.minibatch_size:
            raise ValueError(
                f"minibatch_size {self.minibatch_size} must divide batch_size {self.batch_size}"
            )

    @property
    def num_minibatches(self) -> int:
        """Gradient steps per epoch (derived)."""
        return self.batch_size // self.minibatch_size


@dataclass(frozen=True)
class Plan:
    """How one iteration collects data and which tokens train what."""

    roll_in_by: RollIn = RollIn.NONE
    """Who rolls in on guided samples (NONE: no guided samples)."""
    beta: float = 0.0
    """Probability β that a sample is guided."""
    value_on_guide_tokens: bool = False
    """AggreVaTeD: guided samples use the guide's value V^g (the ``GUIDE`` head), trained on
    the guide's tokens, as the baseline of π's roll-in tokens; unguided samples use V^π."""


def plan(cfg: PPOConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """PPO: every sample is a plain π episode."""
    return Plan()


@dataclass
class TrainBatch:
    """A rollout scored for the update (all ``(B, G)`` unless noted)."""

    input_ids: torch.Tensor  # (B, P+G)
    attention_mask: torch.Tensor  # (B, P+G)
    prompt_width: int
    tokens: torch.Tensor
    old_logprobs: torch.Tensor
    old_values: torch.Tensor
    value_heads: torch.Tensor  # (B,) PI or GUIDE: the value head each row uses
    advantages: torch.Tensor
    returns: torch.Tensor
    policy_mask: torch.Tensor  # tokens whose log-prob ratio is trained (π's)
    value_mask: torch.Tensor  # positions whose value is trained
    stats: dict[str, float]


@torch.no_grad()
def prepare_batch(
    ac: ActorCritic, rollout: Rollout, cfg: PPOConfig, kl_coef: float, p: Plan
) -> TrainBatch:
    """Old log-probs, values, KL-shaped rewards (Ziegler eq. 2) and GAE advantages."""
    dev = next(ac.parameters()).device
    ids, attn = rollout.input_ids.to(dev), rollout.attention_mask.to(dev)
    width, tokens = rollout.prompt_width, rollout.tokens.to(dev)
    lps, ref_lps, vals = [], [], []
    ac.eval()
    for lo in range(0, ids.shape[0], cfg.minibatch_size):
        sl = slice(lo, lo + cfg.minibatch_size)
        logits, values = ac(ids[sl], attn[sl], width)  # (b, G, V), (b, G, 2)
        lps.append(logprobs_from_logits(logits / cfg.temperature, tokens[sl]))
        ref_logits = ac.reference_logits(ids[sl], attn[sl], width)
        ref_lps.append(logprobs_from_logits(ref_logits / cfg.temperature, tokens[sl]))
        vals.append(values)
    logprobs, ref_logprobs = torch.cat(lps), torch.cat(ref_lps)  # (B, G) each
    guided = rollout.guided.to(dev)  # (B,)
    # AggreVaTeD's guided rows: V^g; everything else (π finishes the episode): V^π.
    use_guide_value = guided & p.value_on_guide_tokens  # (B,)
    heads = torch.where(use_guide_value, GUIDE, PI)  # (B,)
    values = select_value(torch.cat(vals), heads)  # (B, G)
    gen_mask = rollout.gen_mask.to(dev)  # (B, G)
    learner = rollout.learner_mask.to(dev)  # (B, G)
    rewards = shaped_rewards(
        rollout.task_rewards.to(dev), logprobs, ref_logprobs, gen_mask, learner, kl_coef
    )  # (B, G)
    advantages, returns = gae(rewards, values, gen_mask, cfg.gamma, cfg.gae_lambda)
    if learner.sum() > 1:
        advantages = masked_whiten(advantages, learner)
    # V^g learns from the guide's tokens on those rows; V^π from π's tokens elsewhere.
    value_mask = torch.where(use_guide_value[:, None], rollout.guide_mask.to(dev), learner)
    kl = (per_token_kl(logprobs, ref_logprobs) * learner).sum(1)  # (B,) KL per episode
    stats = {
        "charts/task_reward": rollout.task_rewards.mean().item(),
        "charts/return": (rewards * gen_mask).sum(1).mean().item(),
        "charts/kl": kl.mean().item(),
        "charts/kl_coef": kl_coef,
        "charts/guided_share": rollout.guided.float().mean().item(),
        "charts/mean_k": rollout.switch[rollout.guided].float().mean().item()
        if rollout.guided.any()
        else 0.0,
        "charts/learner_tokens": learner.sum().item() / learner.shape[0],
    }
    if (~rollout.guided).any():  # π alone: the task reward of its unguided samples
        unguided = rollout.task_rewards[~rollout.guided]
        stats["charts/task_reward_unguided"] = unguided.mean().item()
    return TrainBatch(
        ids, attn, width, tokens, logprobs, values, heads, advantages, returns, learner,
        value_mask, stats,
    )  # fmt: skip


def select_value(values: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """Each row's value estimate ``(B, G)`` from the two-head ``values`` ``(B, G, 2)``;
    ``heads`` ``(B,)`` holds ``PI`` or ``GUIDE`` per row."""
    index = heads.to(values.device).view(-1, 1, 1).expand(-1, values.shape[1], 1)  # (B, G, 1)
    return values.gather(-1, index).squeeze(-1)


def ppo_update(
    ac: ActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    cfg: PPOConfig,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Clipped PPO epochs over minibatches (masked to π's tokens / the value mask)."""
    ac.train()
    logs: dict[str, list[float]] = {}
    n = batch.input_ids.shape[0]
    for _ in range(cfg.update_epochs):
        order = torch.from_numpy(rng.permutation(n))
        for lo in range(0, n, cfg.minibatch_size):
            idx = order[lo : lo + cfg.minibatch_size]
            pm, vm = batch.policy_mask[idx], batch.value_mask[idx]
            logits, values = ac(batch.input_ids[idx], batch.attention_mask[idx], batch.prompt_width)
            logits = logits / cfg.temperature  # (b, G, V)
            values = select_value(values, batch.value_heads[idx])  # (b, G)
            loss = torch.zeros((), device=logits.device)
            if pm.sum() > 0:
                logprobs = logprobs_from_logits(logits, batch.tokens[idx])  # (b, G)
                pg_loss, pg = clipped_policy_loss(
                    logprobs, batch.old_logprobs[idx], batch.advantages[idx], pm, cfg.clip_range
                )
                entropy = masked_entropy(logits, pm)
                loss = loss + pg_loss - cfg.ent_coef * entropy
                _log(logs, policy=pg_loss.item(), entropy=entropy.item(), **pg)
            if vm.sum() > 0:
                v_loss, vs = clipped_value_loss(
                    values, batch.old_values[idx], batch.returns[idx], vm, cfg.value_clip_range
                )
                loss = loss + cfg.vf_coef * v_loss
                _log(logs, value=v_loss.item(), **{f"value_{k}": v for k, v in vs.items()})
            if loss.requires_grad:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(ac.trainable_parameters(), cfg.max_grad_norm)
                optimizer.step()
    return {f"losses/{k}": float(np.mean(v)) for k, v in logs.items()}


def update(
    ac: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    cfg: PPOConfig,
    kl_ctl: KLController,
    p: Plan,
    rng: np.random.Generator,
) -> dict[str, float]:
    """One PPO iteration's learning step: score the rollout, update, adapt β_KL."""
    batch = prepare_batch(ac, rollout, cfg, kl_ctl.value, p)
    losses = ppo_update(ac, optimizer, batch, cfg, rng)
    kl_ctl.update(batch.stats["charts/kl"], cfg.batch_size)
    return {**batch.stats, **losses}


def _log(logs: dict[str, list[float]], **values: Any) -> None:
    for k, v in values.items():
        logs.setdefault(k, []).append(float(v))
