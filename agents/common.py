"""Small pure helpers shared by the RL agents (PPO, PPO++, AggreVaTeD, LOLS, D2LOLS).

Conventions: a batch holds ``B`` episodes of at most ``T`` generated-token positions. A
``mask`` is a ``(B, T)`` bool or float tensor holding only 0s and 1s, 1 on valid positions.
Where a function says so, the valid positions of a row must be contiguous from position 0
(the generated tokens), with padding after them. Values on masked-out positions are never
read: they may be anything, NaN included.

Advantage, return and reward helpers (:func:`gae`, :func:`shaped_rewards`) detach their
inputs: they produce training targets, not differentiable quantities. The losses keep the
gradient of their first argument only.
"""

from __future__ import annotations

import math
from typing import Protocol, TypeAlias, runtime_checkable

import torch

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "KLController",
    "KLState",
    "clipped_policy_loss",
    "clipped_value_loss",
    "gae",
    "logprobs_from_logits",
    "masked_entropy",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "per_token_kl",
    "shaped_rewards",
]


# ----------------------------------------------------------------------------- validation


def _bool_mask(mask: torch.Tensor, shape: torch.Size, name: str = "mask") -> torch.Tensor:
    """Check that ``mask`` has ``shape`` and only 0/1 values; return it as a bool tensor."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != shape:
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(shape)}")
    if mask.dtype == torch.bool:
        return mask
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name} must hold only 0s and 1s")
    return mask != 0


def _check_same_shape(reference_name: str, reference: torch.Tensor, **others: torch.Tensor) -> None:
    """Raise ValueError unless every tensor in ``others`` has the shape of ``reference``."""
    for name, tensor in others.items():
        if tensor.shape != reference.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, expected {tuple(reference.shape)} "
                f"(the shape of {reference_name})"
            )


def _check_2d(name: str, tensor: torch.Tensor) -> None:
    """Raise ValueError unless ``tensor`` is a ``(B, T)`` tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape (B, T), got {tuple(tensor.shape)}")


def _check_contiguous(mask: torch.Tensor, name: str = "mask") -> None:
    """Raise ValueError unless each row of a bool ``(B, T)`` mask is 1s followed by 0s."""
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError(f"{name}: valid positions of each row must be contiguous from position 0")


def _check_unit_interval(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` is a real number in [0, 1]."""
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_positive(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` is a finite real number > 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


# ----------------------------------------------------------------------------- masked stats


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1.

    Args:
        x: Values, any shape.
        mask: 0/1 tensor (bool or float) of the same shape as ``x``.
        dim: Reduce only along this dimension; ``None`` reduces over every entry.

    Returns:
        A scalar (``dim=None``) or ``x`` reduced along ``dim``.

    Raises:
        ValueError: On a shape mismatch, a non-0/1 mask, or when the mask selects nothing
            (overall, or in some slice along ``dim``).
    """
    keep = _bool_mask(mask, x.shape)
    total = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if dim is None:
        count = keep.sum()
        if int(count) == 0:
            raise ValueError("mask is all zero: the mean over no entries is undefined")
        return total.sum() / count
    count = keep.sum(dim=dim)
    if bool((count == 0).any()):
        raise ValueError(f"mask selects no entry in some slice along dim={dim}")
    return total.sum(dim=dim) / count


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over the positions where ``mask`` is 1 (a scalar).

    Args:
        x: Values, any shape.
        mask: 0/1 tensor of the same shape as ``x``.
        unbiased: Divide by ``n - 1`` (Bessel's correction) rather than ``n``.

    Raises:
        ValueError: As :func:`masked_mean`, or when ``unbiased`` and only one entry is valid.
    """
    centered = x - masked_mean(x, mask)
    var = masked_mean(centered * centered, mask)
    if unbiased:
        n = int(_bool_mask(mask, x.shape).sum())
        if n < 2:
            raise ValueError("unbiased variance needs at least 2 valid entries, got 1")
        var = var * (n / (n - 1))
    return var


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise the valid entries of ``x`` to mean 0 and (unbiased) standard deviation 1.

    Args:
        x: Values, any shape (typically advantages, ``(B, T)``).
        mask: 0/1 tensor of the same shape as ``x``.
        shift_mean: If False, add the mean back: only the scale is normalised.
        eps: Added to the variance before the square root.

    Returns:
        A tensor shaped like ``x``, 0 on masked-out positions.

    Raises:
        ValueError: As :func:`masked_var` (fewer than 2 valid entries included).
    """
    keep = _bool_mask(mask, x.shape)
    mean = masked_mean(x, keep)
    var = masked_var(x, keep, unbiased=True)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(keep, out, torch.zeros((), dtype=out.dtype, device=out.device))


# ----------------------------------------------------------------------------- advantages


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous
    Control Using Generalized Advantage Estimation", eq. 16) over each row's valid steps.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``,
    where ``V_{t+1}`` and ``A_{t+1}`` are 0 after a row's last valid step: the episode ended
    there (the horizon is part of the task), so nothing is bootstrapped past it.

    Args:
        rewards: ``(B, T)`` per-step rewards.
        values: ``(B, T)`` value estimates ``V(s_t)``.
        mask: ``(B, T)`` 0/1 mask; each row's valid steps contiguous from 0. All-zero rows
            are allowed (their outputs are all 0).
        gamma: Discount in [0, 1].
        lam: GAE lambda in [0, 1].

    Returns:
        ``(advantages, returns)``, both ``(B, T)``, detached, 0 on invalid positions;
        ``returns = advantages + values`` on valid ones.
    """
    _check_2d("rewards", rewards)
    _check_same_shape("rewards", rewards, values=values)
    keep = _bool_mask(mask, rewards.shape)
    _check_contiguous(keep)
    _check_unit_interval("gamma", gamma)
    _check_unit_interval("lam", lam)

    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    rewards = torch.where(keep, rewards.detach(), zero)  # (B, T), padding cleared (may be NaN)
    values = torch.where(keep, values.detach().to(rewards.dtype), zero)  # (B, T)
    n_rows, n_steps = rewards.shape
    advantages = torch.zeros_like(rewards)  # (B, T)
    next_value = torch.zeros(n_rows, dtype=rewards.dtype, device=rewards.device)  # (B,)
    next_advantage = torch.zeros_like(next_value)  # (B,)
    for t in reversed(range(n_steps)):
        # On a row's last valid step, next_value/next_advantage are still 0 (padding cleared).
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        advantage = torch.where(keep[:, t], delta + gamma * lam * next_advantage, zero)  # (B,)
        advantages[:, t] = advantage
        next_value, next_advantage = values[:, t], advantage
    returns = torch.where(keep, advantages + values, zero)  # (B, T)
    return advantages, returns


# ----------------------------------------------------------------------------- KL and rewards


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate ``log pi(y_t) - log pi_ref(y_t)`` of the sampled tokens (k1).

    The "k1" estimator (Schulman 2020, "Approximating KL Divergence"): its expectation under
    ``pi`` is ``KL(pi || pi_ref)``. Sign: positive when the policy puts more mass on the
    sampled token than the reference does, negative when less.

    Args:
        logprobs: ``(B, T)`` log-probabilities of the sampled tokens under the policy.
        ref_logprobs: ``(B, T)`` log-probabilities of the same tokens under the reference.

    Returns:
        ``(B, T)`` tensor ``logprobs - ref_logprobs``.
    """
    _check_same_shape("logprobs", logprobs, ref_logprobs=ref_logprobs)
    return logprobs - ref_logprobs


def shaped_rewards(
    task_rewards: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_mask: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """Per-token rewards: a KL penalty on the learner's tokens plus the task reward at the end.

    The KL-shaped reward of Ziegler et al. 2019 ("Fine-Tuning Language Models from Human
    Preferences", §2.2): ``r_t = -kl_coef * (log pi(y_t) - log pi_ref(y_t))`` on positions
    where ``kl_mask`` is 1, plus the episode's task reward on its last valid position.

    Args:
        task_rewards: ``(B,)`` one task reward per finished episode.
        logprobs: ``(B, T)`` policy log-probabilities of the generated tokens.
        ref_logprobs: ``(B, T)`` reference log-probabilities of the same tokens.
        mask: ``(B, T)`` 0/1 mask of the generated tokens; contiguous from 0, ≥ 1 per row.
        kl_mask: ``(B, T)`` 0/1 mask of the tokens the learner produced (not the guide's);
            must be 0 wherever ``mask`` is 0.
        kl_coef: KL penalty coefficient, ≥ 0.

    Returns:
        ``(B, T)`` detached rewards, 0 on positions that are neither penalised nor final.

    Raises:
        ValueError: On shape mismatches, a non-contiguous ``mask``, an empty row, ``kl_mask``
            outside ``mask``, or a negative/non-finite ``kl_coef``.
    """
    _check_2d("logprobs", logprobs)
    _check_same_shape("logprobs", logprobs, ref_logprobs=ref_logprobs)
    keep = _bool_mask(mask, logprobs.shape)
    penalised = _bool_mask(kl_mask, logprobs.shape, name="kl_mask")
    if task_rewards.shape != logprobs.shape[:1]:
        raise ValueError(
            f"task_rewards has shape {tuple(task_rewards.shape)}, expected ({logprobs.shape[0]},)"
        )
    _check_contiguous(keep)
    lengths = keep.sum(dim=1)  # (B,)
    if bool((lengths == 0).any()):
        raise ValueError("mask has an all-zero row: a finished episode has at least one token")
    if bool((penalised & ~keep).any()):
        raise ValueError("kl_mask is 1 on a position where mask is 0")
    if not (isinstance(kl_coef, (int, float)) and math.isfinite(kl_coef) and kl_coef >= 0):
        raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef!r}")

    kl = per_token_kl(logprobs.detach(), ref_logprobs.detach())  # (B, T)
    zero = torch.zeros((), dtype=kl.dtype, device=kl.device)
    rewards = torch.where(penalised, -kl_coef * kl, zero)  # (B, T)
    rows = torch.arange(rewards.shape[0], device=rewards.device)  # (B,)
    rewards[rows, lengths - 1] += task_rewards.detach().to(rewards.dtype)
    return rewards


# ----------------------------------------------------------------------------- KL controllers

# What a KL controller's state_dict() returns and load_state_dict() accepts: plain floats,
# so it can go into a torch checkpoint or a JSON file alongside the model's state.
KLState: TypeAlias = dict[str, float]


@runtime_checkable
class KLController(Protocol):
    """Holds the KL penalty coefficient ``beta`` and adapts it from the observed KL."""

    @property
    def value(self) -> float:
        """The current coefficient."""
        ...

    def update(self, kl: float, n_steps: int) -> None:
        """Record that the policy's mean KL to the reference was ``kl`` over ``n_steps``."""
        ...

    def state_dict(self) -> KLState:
        """The controller's state, for checkpoints."""
        ...

    def load_state_dict(self, state: KLState) -> None:
        """Restore a state returned by :meth:`state_dict`."""
        ...


# A controller is any object with the members above, e.g. a schedule decaying beta with time:
#   class DecayingKL:  value = 0.1;  def update(self, kl, n_steps): self.value *= 0.99;  ...


def _check_update_args(kl: float, n_steps: int) -> None:
    """Validate the arguments of a KL controller's ``update``."""
    if not (isinstance(kl, (int, float)) and math.isfinite(kl)):
        raise ValueError(f"kl must be a finite number, got {kl!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be an int >= 0, got {n_steps!r}")


def _state_float(state: KLState, key: str) -> float:
    """Read ``state[key]`` as a float, raising a clear error when it is missing."""
    if key not in state:
        raise ValueError(f"KL controller state lacks {key!r}; got keys {sorted(state)}")
    return float(state[key])


class FixedKLController:
    """A constant KL coefficient (Ziegler et al. 2019, §2.2, before adaptation).

    Args:
        coef: The coefficient, ≥ 0 (0 disables the KL penalty).
    """

    def __init__(self, coef: float) -> None:
        if not (isinstance(coef, (int, float)) and math.isfinite(coef) and coef >= 0):
            raise ValueError(f"coef must be a finite number >= 0, got {coef!r}")
        self._value = float(coef)

    @property
    def value(self) -> float:
        """The coefficient."""
        return self._value

    def update(self, kl: float, n_steps: int) -> None:
        """Validate the arguments and keep the coefficient unchanged."""
        _check_update_args(kl, n_steps)

    def state_dict(self) -> KLState:
        """``{"value": coef}``."""
        return {"value": self._value}

    def load_state_dict(self, state: KLState) -> None:
        """Restore the coefficient from :meth:`state_dict`'s output."""
        value = _state_float(state, "value")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"state 'value' must be a finite number >= 0, got {value!r}")
        self._value = value


class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019, §2.2).

    After observing mean KL ``kl`` over ``n_steps`` steps:
    ``error = clip(kl / target - 1, -0.2, 0.2)`` and ``coef *= 1 + error * n_steps / horizon``,
    so the coefficient grows when the KL exceeds ``target`` and shrinks when below it.

    Args:
        init_coef: Initial coefficient, > 0.
        target: Target KL (nats per episode or per token: as the caller measures it), > 0.
        horizon: Steps over which a persistent error changes the coefficient by ~20%, > 0.
    """

    def __init__(self, init_coef: float, target: float, horizon: float) -> None:
        _check_positive("init_coef", init_coef)
        _check_positive("target", target)
        _check_positive("horizon", horizon)
        self._value = float(init_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    @property
    def value(self) -> float:
        """The current coefficient."""
        return self._value

    def update(self, kl: float, n_steps: int) -> None:
        """Move the coefficient towards keeping ``kl`` at ``target``."""
        _check_update_args(kl, n_steps)
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self._value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> KLState:
        """``{"value", "target", "horizon"}`` as floats."""
        return {"value": self._value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: KLState) -> None:
        """Restore coefficient, target and horizon from :meth:`state_dict`'s output."""
        value, target, horizon = (_state_float(state, k) for k in ("value", "target", "horizon"))
        for name, number in (("value", value), ("target", target), ("horizon", horizon)):
            _check_positive(f"state {name!r}", number)
        self._value, self.target, self.horizon = value, target, horizon


# ----------------------------------------------------------------------------- losses


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate loss (Schulman et al. 2017, "Proximal Policy Optimization
    Algorithms", eq. 7), negated for minimisation and averaged over valid tokens.

    ``ratio = exp(logprobs - old_logprobs)``; per token the loss is
    ``max(-A * ratio, -A * clamp(ratio, 1 - clip, 1 + clip))``.

    Args:
        logprobs: ``(B, T)`` log-probabilities under the current policy (differentiable).
        old_logprobs: ``(B, T)`` log-probabilities under the policy that sampled (detached).
        advantages: ``(B, T)`` advantage estimates (detached).
        mask: ``(B, T)`` 0/1 mask of the tokens to train on.
        clip: Clip range ``epsilon`` > 0.

    Returns:
        ``(loss, stats)``: a scalar loss and ``{"clipfrac": share of valid tokens where the
        clipped term is the active (larger) one, "approx_kl": mean of (ratio - 1) - log ratio,
        the k3 estimate of KL(old || new)}``.
    """
    _check_same_shape("logprobs", logprobs, old_logprobs=old_logprobs, advantages=advantages)
    _check_positive("clip", clip)
    keep = _bool_mask(mask, logprobs.shape)
    log_ratio = logprobs - old_logprobs.detach()  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    advantages = advantages.detach()
    unclipped = -advantages * ratio  # (B, T)
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)  # (B, T)
    loss = masked_mean(torch.maximum(unclipped, clipped), keep)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).to(ratio.dtype), keep)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, keep)
    return loss, {"clipfrac": float(clipfrac), "approx_kl": float(approx_kl)}


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss of PPO's reference implementation (as in Ziegler et al. 2019).

    ``v_clip = old_values + clamp(values - old_values, -clip, clip)``; per token the loss is
    ``0.5 * max((values - returns)^2, (v_clip - returns)^2)``, averaged over valid tokens.

    Args:
        values: ``(B, T)`` current value predictions (differentiable).
        old_values: ``(B, T)`` value predictions at sampling time (detached).
        returns: ``(B, T)`` regression targets (detached).
        mask: ``(B, T)`` 0/1 mask of the tokens to train on.
        clip: Clip range > 0, in value units.

    Returns:
        ``(loss, stats)``: a scalar loss and ``{"clipfrac": share of valid tokens where the
        clipped error is the larger one}``.
    """
    _check_same_shape("values", values, old_values=old_values, returns=returns)
    _check_positive("clip", clip)
    keep = _bool_mask(mask, values.shape)
    old_values, returns = old_values.detach(), returns.detach()
    values_clipped = old_values + torch.clamp(values - old_values, -clip, clip)  # (B, T)
    error = (values - returns) ** 2  # (B, T)
    error_clipped = (values_clipped - returns) ** 2  # (B, T)
    loss = 0.5 * masked_mean(torch.maximum(error, error_clipped), keep)
    with torch.no_grad():
        clipfrac = masked_mean((error_clipped > error).to(error.dtype), keep)
    return loss, {"clipfrac": float(clipfrac)}


def masked_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of ``softmax(logits)`` over valid positions (a scalar).

    Handles ``-inf`` logits (masked-out tokens contribute 0, with finite gradients).

    Args:
        logits: ``(B, T, V)`` unnormalised scores.
        mask: ``(B, T)`` 0/1 mask of the positions to average over.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, T, V)
    probs = log_probs.exp()  # (B, T, V)
    # Zero the log-prob where p == 0 so that 0 * -inf gives 0, not NaN (forward and backward).
    safe_log_probs = torch.where(probs > 0, log_probs, torch.zeros_like(log_probs))
    entropy = -(probs * safe_log_probs).sum(dim=-1)  # (B, T)
    return masked_mean(entropy, mask)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of ``tokens`` under ``softmax(logits)`` (log-softmax, gathered).

    Computed in at least float32 (half-precision logits are upcast).

    Args:
        logits: ``(B, T, V)`` unnormalised scores; ``logits[b, t]`` scores ``tokens[b, t]``.
        tokens: ``(B, T)`` integer token ids in ``[0, V)``.

    Returns:
        ``(B, T)`` log-probabilities.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    if tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"tokens has shape {tuple(tokens.shape)}, expected {tuple(logits.shape[:2])}"
        )
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be an integer tensor, got {tokens.dtype}")
    if tokens.numel() and bool(((tokens < 0) | (tokens >= logits.shape[-1])).any()):
        raise ValueError(f"tokens must be ids in [0, {logits.shape[-1]})")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    picked = logits.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(logits, dim=-1)  # (B, T)
