"""PPO for token-level generation: its config, plan, scoring and update.

**PPO** (Schulman et al., 2017): π rolls in and out (no guide). One iteration of the loop in
:mod:`agents.trainer` calls :func:`score`, then :func:`update`:

* :func:`score` turns a :class:`~agents.engine.Rollout` into a :class:`ScoredBatch`: the old
  log-probs of π and π_ref, the values, the per-token reward
  ``r_t = −β_KL (log π(a_t|s_t) − log π_ref(a_t|s_t))`` on π's tokens plus the task reward
  on the last token (Ziegler et al., 2019, §2.2), and GAE(γ, λ) advantages (Schulman et al.,
  2016). Every algorithm of the guided family (PPO++, AggreVaTeD, LOLS, D2LOLS) scores and
  updates with these two functions; they differ only in their :class:`~agents.engine.Plan`.
* :func:`update` runs the clipped policy and value losses (PPO eq. 7) over minibatches, on
  π's tokens only; the entropy bonus is optional, and ``target_kl`` stops the epochs early.

The value head has two outputs (:mod:`agents.policy`): V^π and the guide's V^g. A row uses
V^π unless its plan names V^g as the baseline of guided rows (AggreVaTeD). Dropout is off in
π, the critic and π_ref throughout (``eval`` mode): with it the first minibatch's ratio
would not be 1 and clipping would fire on noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from agents.advantages import gae, per_token_kl, shaped_rewards
from agents.config import TrainConfig, check_positive, check_unit
from agents.engine import Plan, Rollout
from agents.losses import (
    clipped_policy_loss,
    clipped_value_loss,
    logprobs_from_logits,
    masked_entropy,
)
from agents.masked import explained_variance, masked_mean, masked_whiten
from agents.policy import GUIDE, PI, ActorCritic

__all__ = ["PPOConfig", "ScoredBatch", "plan", "score", "select_value", "update"]


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
    target_kl: float | None = None
    """Early stopping: end the update's epochs once the mean approximate KL(old ‖ new) of an
    epoch exceeds this (as in CleanRL; with several processes, the mean over all of them, so
    they stop together); None never stops early. Not the adaptive β_KL target (that is
    adaptive_kl_target)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "update_epochs", "minibatch_size", "clip_range", "value_clip_range")
        check_unit(self, "gamma", "gae_lambda")
        if self.vf_coef < 0 or self.ent_coef < 0:
            raise ValueError("vf_coef and ent_coef must be >= 0")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"target_kl must be > 0 or None, got {self.target_kl!r}")
        if self.batch_size % self.minibatch_size:
            raise ValueError(
                f"minibatch_size {self.minibatch_size} must divide batch_size {self.batch_size}"
            )

    @property
    def num_minibatches(self) -> int:
        """Gradient steps per epoch (derived)."""
        return self.batch_size // self.minibatch_size


def plan(cfg: PPOConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """PPO: every sample is π's own episode."""
    return Plan()


@torch.no_grad()
def score(ac: ActorCritic, rollout: Rollout, cfg: PPOConfig, kl_coef: float) -> ScoredBatch:
    """Old log-probs, values, KL-shaped rewards and GAE advantages of a rollout."""
    dev = next(ac.parameters()).device
    ids, attn = rollout.input_ids.to(dev), rollout.attention_mask.to(dev)  # (B, P+G)
    width, tokens = rollout.prompt_width, rollout.tokens.to(dev)  # (B, G)
    gen_mask, learner = rollout.gen_mask.to(dev), rollout.learner_mask.to(dev)  # (B, G)
    guided = rollout.guided.to(dev)  # (B,)
    ac.eval()  # no dropout (module doc)

    # 1. log π, log π_ref and both value outputs, minibatch by minibatch. With one epoch over
    # one minibatch, π's pass keeps its graph and the update reuses it: its only forward would
    # compute the same outputs from the same weights (issue #9: one LM pass fewer).
    reuse = cfg.update_epochs == 1 and cfg.minibatch_size >= ids.shape[0]
    first_pass = None
    lps, ref_lps, vals = [], [], []
    for lo in range(0, ids.shape[0], cfg.minibatch_size):
        rows = slice(lo, lo + cfg.minibatch_size)
        with torch.set_grad_enabled(reuse):
            logits, values = ac(ids[rows], attn[rows], width)  # (b, G, V), (b, G, 2)
        if reuse:
            first_pass = (ac, logits, values)
            logits, values = logits.detach(), values.detach()
        ref_logits = ac.reference_logits(ids[rows], attn[rows], width)  # (b, G, V)
        if cfg.temperature != 1.0:
            logits, ref_logits = logits / cfg.temperature, ref_logits / cfg.temperature
        lps.append(logprobs_from_logits(logits, tokens[rows]))
        ref_lps.append(logprobs_from_logits(ref_logits, tokens[rows]))
        vals.append(values)
        del logits, ref_logits  # (b, G, V) each: not kept until the update (#9)
    logprobs, ref_logprobs = torch.cat(lps), torch.cat(ref_lps)  # (B, G) each

    # 2. each row's baseline: the plan's value output on guided rows, V^π on π's own rows
    guided_head = rollout.plan.guided_baseline
    heads = torch.where(guided, guided_head, PI)  # (B,)
    values = select_value(torch.cat(vals), heads)  # (B, G)

    # 3. per-token reward: KL penalty on π's tokens, task reward on the last token
    rewards = shaped_rewards(
        rollout.task_rewards.to(dev), logprobs, ref_logprobs, gen_mask, learner, kl_coef
    )  # (B, G)

    # 4. GAE; guided rows may use their own λ (AggreVaTeD's Q^g − V^g estimate, λ = 0)
    lam = rollout.plan.guided_gae_lambda
    lam = cfg.gae_lambda if lam is None else lam
    lambdas = torch.full(guided.shape, cfg.gae_lambda, dtype=torch.float64, device=dev)  # (B,)
    lambdas[guided] = lam
    advantages, returns = gae(rewards, values, gen_mask, cfg.gamma, lambdas)  # (B, G) each
    advantages = masked_whiten(advantages, learner)  # over π's tokens

    # 5. what the value loss trains: V^g on the guide's tokens of V^g rows, else π's tokens
    value_mask = torch.where((heads == GUIDE)[:, None], rollout.guide_mask.to(dev), learner)

    kl_tokens = per_token_kl(logprobs, ref_logprobs)  # (B, G)
    kl = masked_mean(kl_tokens, learner).item()  # per π token (issue #8: not per episode)
    stats = {
        "charts/task_reward": rollout.task_rewards.mean().item(),
        "charts/return": (rewards * gen_mask).sum(1).mean().item(),
        "charts/kl": kl,
        "charts/kl_coef": kl_coef,
        "charts/guided_share": guided.float().mean().item(),
        "charts/mean_switch_point": rollout.switch_point[rollout.guided].float().mean().item()
        if rollout.guided.any()
        else 0.0,
        "charts/learner_tokens": learner.sum().item() / learner.shape[0],
        "charts/roll_in_resampled": float(rollout.roll_in_resampled),
    }
    # CleanRL's explained variance, for each value output on the positions it trains;
    # undefined (not logged) where those returns do not vary.
    for name, head in (("pi", PI), ("guide", GUIDE)):
        trained = value_mask & (heads == head)[:, None]  # (B, G)
        ev = explained_variance(values, returns, trained).item()
        if math.isfinite(ev):
            stats[f"losses/explained_variance_{name}"] = ev
    if (~rollout.guided).any():  # π alone: the task reward of its own episodes
        stats["charts/task_reward_unguided"] = rollout.task_rewards[~rollout.guided].mean().item()
    return ScoredBatch(
        input_ids=ids,
        attention_mask=attn,
        prompt_width=width,
        tokens=tokens,
        old_logprobs=logprobs,
        old_values=values,
        value_heads=heads,
        advantages=advantages,
        returns=returns,
        policy_mask=learner,
        value_mask=value_mask,
        kl=kl,
        stats=stats,
        first_pass=first_pass,
    )


def update(
    ac: ActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: ScoredBatch,
    cfg: PPOConfig,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Clipped PPO epochs over minibatches: policy loss on π's tokens, value loss on the
    value mask. Returns the mean losses and statistics."""
    ac.eval()  # gradients flow in eval mode; dropout stays off (module doc)
    # Score's pass serves only an update through the same module: with several processes the
    # update runs π through DDP (agents.distributed), whose backward averages the gradients.
    first_pass = batch.first_pass[1:] if batch.first_pass and batch.first_pass[0] is ac else None
    batch.first_pass = None
    n = batch.input_ids.shape[0]
    # Which rows have tokens to train, known on the host once (no sync per minibatch).
    has_policy = batch.policy_mask.any(1).cpu()  # (B,)
    has_value = batch.value_mask.any(1).cpu()  # (B,)
    logs: dict[str, list[torch.Tensor]] = {}
    for _epoch in range(cfg.update_epochs):
        order = torch.from_numpy(rng.permutation(n))
        epoch_kl = []
        for lo in range(0, n, cfg.minibatch_size):
            idx = order[lo : lo + cfg.minibatch_size]
            train_policy, train_value = bool(has_policy[idx].any()), bool(has_value[idx].any())
            if not (train_policy or train_value):
                continue
            # 1. forward π and the value head on the minibatch (or take score's pass)
            if first_pass is not None:  # one epoch over one minibatch: idx is all rows
                # In their own order: the loss is a mean over the minibatch, and indexing
                # would copy the (B, G, V) logits and add a (B, G, V) scatter to the backward.
                idx = torch.arange(n)  # (B,)
                logits, values = first_pass  # (B, G, V), (B, G, 2)
                first_pass = None  # its graph is freed by this step's backward
            else:
                logits, values = ac(
                    batch.input_ids[idx], batch.attention_mask[idx], batch.prompt_width
                )  # (b, G, V), (b, G, 2)
            if cfg.temperature != 1.0:  # (a division would copy the (b, G, V) logits)
                logits = logits / cfg.temperature  # (b, G, V)
            values = select_value(values, batch.value_heads[idx])  # (b, G)
            loss = torch.zeros((), device=logits.device)
            # 2. clipped policy loss and entropy bonus on π's tokens
            if train_policy:
                pm = batch.policy_mask[idx]  # (b, G)
                logprobs = logprobs_from_logits(logits, batch.tokens[idx])  # (b, G)
                pg_loss, pg = clipped_policy_loss(
                    logprobs, batch.old_logprobs[idx], batch.advantages[idx], pm, cfg.clip_range
                )
                # Entropy only joins the graph when it is in the loss: its (b, G, V) softmax
                # copies would otherwise be kept for a backward that multiplies them by 0.
                with torch.set_grad_enabled(cfg.ent_coef > 0):
                    entropy = masked_entropy(logits, pm)
                loss = loss + pg_loss - cfg.ent_coef * entropy
                _log(logs, policy=pg_loss.detach(), entropy=entropy.detach(), **pg)
                epoch_kl.append(pg["approx_kl"])
            # 3. clipped value loss on the value mask
            if train_value:
                vm = batch.value_mask[idx]  # (b, G)
                v_loss, vs = clipped_value_loss(
                    values, batch.old_values[idx], batch.returns[idx], vm, cfg.value_clip_range
                )
                loss = loss + cfg.vf_coef * v_loss
                _log(logs, value=v_loss.detach(), value_clipfrac=vs["clipfrac"])
            # 4. gradient step (clipped to max_grad_norm; averaged over processes by DDP or ZeRO)
            _log(logs, grad_norm=ac.step(loss, optimizer, cfg.max_grad_norm))
        if cfg.target_kl is not None and _stop_on_kl(ac, epoch_kl, cfg.target_kl):
            break  # early stopping on KL (CleanRL's target_kl)
    # The gradients are not needed until the next backward: freeing them now keeps their
    # memory (one copy of the trainable weights) out of the next roll-out and forward (#9).
    optimizer.zero_grad(set_to_none=True)
    out = {f"losses/{k}": torch.stack(v).mean().item() for k, v in logs.items()}
    return out | {"losses/epochs": float(_epoch + 1)}


@dataclass
class ScoredBatch:
    """A rollout scored for the update (on the policy's device; ``(B, G)`` unless noted)."""

    input_ids: torch.Tensor  # (B, P+G)
    attention_mask: torch.Tensor  # (B, P+G)
    prompt_width: int
    tokens: torch.Tensor
    old_logprobs: torch.Tensor
    old_values: torch.Tensor
    value_heads: torch.Tensor  # (B,) PI or GUIDE: the value output each row uses
    advantages: torch.Tensor
    returns: torch.Tensor
    policy_mask: torch.Tensor  # bool: tokens whose log-prob ratio is trained (π's)
    value_mask: torch.Tensor  # bool: positions whose value is trained
    kl: float
    """Mean KL(π ‖ π_ref) per π token before the update (k1 estimate): the KL controller's
    input."""
    stats: dict[str, float]
    first_pass: tuple[ActorCritic, torch.Tensor, torch.Tensor] | None = None
    """The policy that scored and its logits ``(B, G, V)`` and values ``(B, G, 2)`` with their
    graph, when the update is one epoch over one minibatch (its only forward would recompute
    them, if it runs through that same policy); else ``None``."""


def select_value(values: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """Each row's values ``(B, G)`` from both outputs ``values`` ``(B, G, 2)``; ``heads``
    ``(B,)`` holds ``PI`` or ``GUIDE`` per row."""
    index = heads.to(values.device).view(-1, 1, 1).expand(-1, values.shape[1], 1)  # (B, G, 1)
    return values.gather(-1, index).squeeze(-1)


def _stop_on_kl(ac: ActorCritic, epoch_kl: list[torch.Tensor], target_kl: float) -> bool:
    """Whether the epoch's mean approximate KL, over its minibatches in every process, passes
    ``target_kl``. The same answer in every process, so they stop at the same epoch (#12);
    every process joins the sum, one without π tokens this epoch with a count of 0."""
    device = ac.trainable_parameters()[0].device
    kl = torch.stack(epoch_kl).sum() if epoch_kl else torch.zeros((), device=device)
    count = torch.tensor(float(len(epoch_kl)), device=kl.device)
    total, n = ac.summed_over_processes(torch.stack([kl.float(), count])).tolist()  # (2,)
    return n > 0 and total / n > target_kl


def _log(logs: dict[str, list[torch.Tensor]], **values: torch.Tensor) -> None:
    for k, v in values.items():
        logs.setdefault(k, []).append(v)
