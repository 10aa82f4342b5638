"""Per-token rewards and advantages: the KL-shaped reward, the k1 KL estimate and GAE.

Shapes: ``B`` episodes of at most ``T`` generated tokens. A row's valid positions (its
generated tokens) are contiguous from position 0, padding after them; the engine builds
masks that way (:mod:`agents.engine`). Outputs are detached training targets. Only shapes are
checked (no host syncs).
"""

from __future__ import annotations

import torch

from agents.masked import check_same_shape

__all__ = ["gae", "per_token_kl", "shaped_rewards"]


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """``log π(y_t) − log π_ref(y_t)`` of the sampled tokens, ``(B, T)``: the "k1" estimator
    (Schulman, 2020, "Approximating KL Divergence"), whose expectation under π is
    KL(π ‖ π_ref)."""
    check_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs)
    return logprobs - ref_logprobs


def shaped_rewards(
    task_rewards: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_mask: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """Per-token rewards ``(B, T)``: ``−β_KL (log π − log π_ref)`` on π's tokens plus the
    episode's task reward on its last token (Ziegler et al., 2019, §2.2).

    Args:
        task_rewards: ``(B,)`` the task reward of each finished episode.
        logprobs: ``(B, T)`` log π of the generated tokens.
        ref_logprobs: ``(B, T)`` log π_ref of the same tokens.
        mask: ``(B, T)`` 1 on generated tokens (at least one per row, from position 0).
        kl_mask: ``(B, T)`` 1 on the tokens π produced (the KL penalty applies only there).
        kl_coef: β_KL ≥ 0.
    """
    check_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs, mask=mask, kl_mask=kl_mask)
    if task_rewards.shape != logprobs.shape[:1]:
        raise ValueError(
            f"task_rewards has shape {tuple(task_rewards.shape)}, expected ({logprobs.shape[0]},)"
        )
    if not kl_coef >= 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef!r}")
    kl = per_token_kl(logprobs.detach(), ref_logprobs.detach())  # (B, T)
    rewards = torch.where(kl_mask.bool(), -kl_coef * kl, torch.zeros_like(kl))  # (B, T)
    last = (mask.bool().sum(1) - 1).clamp(min=0)  # (B,) index of each row's last token
    rows = torch.arange(rewards.shape[0], device=rewards.device)  # (B,)
    rewards[rows, last] += task_rewards.detach().to(rewards.dtype)
    return rewards


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al., 2016, eq. 16) per row.

    ``δ_t = r_t + γ V_{t+1} − V_t`` and ``A_t = δ_t + γ λ A_{t+1}``, with ``V_{t+1}`` and
    ``A_{t+1}`` taken as 0 after a row's last valid step (the episode ended; nothing is
    bootstrapped past it).

    Args:
        rewards: ``(B, T)`` per-step rewards.
        values: ``(B, T)`` value estimates ``V(s_t)``.
        mask: ``(B, T)`` 1 on valid steps, contiguous from 0 (all-zero rows give zeros).
        gamma: Discount γ in [0, 1].
        lam: GAE λ in [0, 1]: a number, or ``(B,)`` for one λ per row.

    Returns:
        ``(advantages, returns)``, both ``(B, T)``, detached, 0 on invalid positions;
        ``returns = advantages + values`` on valid ones.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (B, T), got {tuple(rewards.shape)}")
    check_same_shape(rewards=rewards, values=values, mask=mask)
    for name, value in (("gamma", gamma), ("lam", lam)):
        if not isinstance(value, torch.Tensor) and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    keep = mask.bool()
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    rewards = torch.where(keep, rewards.detach(), zero)  # (B, T) padding cleared (may be NaN)
    values = torch.where(keep, values.detach().to(rewards.dtype), zero)  # (B, T)
    # γλ in float64, then the rewards' dtype (what a Python-float product would give)
    lam = torch.as_tensor(lam, dtype=torch.float64, device=rewards.device)
    gamma_lam = (gamma * lam).to(rewards.dtype)  # () or (B,)
    n_rows, n_steps = rewards.shape
    advantages = torch.zeros_like(rewards)  # (B, T)
    next_value = torch.zeros(n_rows, dtype=rewards.dtype, device=rewards.device)  # (B,)
    next_advantage = torch.zeros_like(next_value)  # (B,)
    for t in reversed(range(n_steps)):
        # On a row's last valid step next_value/next_advantage are still 0 (padding cleared).
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        advantage = torch.where(keep[:, t], delta + gamma_lam * next_advantage, zero)  # (B,)
        advantages[:, t] = advantage
        next_value, next_advantage = values[:, t], advantage
    returns = torch.where(keep, advantages + values, zero)  # (B, T)
    return advantages, returns
