"""The losses of the update: token log-probs, PPO's clipped policy and value losses, entropy,
the exact per-position KL to π_ref, and the offline algorithms' weighted NLL.

``(B, T)`` batches with a ``mask`` of the positions to train (see :mod:`agents.masked`). The
losses keep the gradient of their first argument only. Their statistics come back as 0-d
tensors, so the update can run minibatch after minibatch without a host sync.

The vocabulary-wide quantities (the taken token's log-prob, the entropy) are computed chunk by
chunk from the ``(B, T, V)`` logits, never through a full log-softmax copy (issue #9).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from agents.masked import check_same_shape, masked_mean

__all__ = [
    "clipped_policy_loss",
    "clipped_value_loss",
    "entropy_from_logits",
    "exact_kl",
    "logprobs_from_logits",
    "masked_entropy",
    "weighted_nll_loss",
]


_CHUNK_ELEMENTS = 1 << 22
"""Elements per chunk of the vocabulary-wide passes (16 MB of float32): their temporaries stay
small however large the batch (issue #9)."""


def _chunks(shape: torch.Size) -> list[tuple[slice, slice]]:
    """``(rows, columns)`` index pairs covering a ``(B, T, V)`` tensor in pieces of about
    ``_CHUNK_ELEMENTS`` (whole rows when a row fits, else column ranges of one row)."""
    b, t, vocab = shape
    per_row = max(1, t * vocab)
    if per_row <= _CHUNK_ELEMENTS:
        step = _CHUNK_ELEMENTS // per_row
        return [(slice(lo, lo + step), slice(None)) for lo in range(0, b, step)]
    step = max(1, _CHUNK_ELEMENTS // vocab)
    return [(slice(i, i + 1), slice(lo, lo + step)) for i in range(b) for lo in range(0, t, step)]


class _TokenLogProb(torch.autograd.Function):
    """``log softmax(logits)[tokens]`` ``(B, T)`` from ``(B, T, V)`` logits.

    Forward and backward run chunk by chunk (see ``_chunks``): the forward keeps the logits
    and the ``(B, T)`` log-normalisers; the backward writes ``g · (onehot − softmax)`` into one
    ``(B, T, V)`` gradient. Autograd's ``logsumexp`` and ``gather`` would hold several
    ``(B, T, V)`` temporaries at the start of the backward, when every activation of the
    forward is still alive (issue #9). Computed in float64 for float64 logits, else float32.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        lse = torch.empty(tokens.shape, dtype=dtype, device=logits.device)  # (B, T)
        for rows, cols in _chunks(logits.shape):
            lse[rows, cols] = torch.logsumexp(logits[rows, cols].to(dtype), dim=-1)
        picked = logits.gather(-1, tokens[..., None]).squeeze(-1).to(dtype)  # (B, T)
        ctx.save_for_backward(logits, tokens, lse)
        return picked - lse  # (B, T)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, tokens, lse = ctx.saved_tensors
        out = torch.empty_like(logits, memory_format=torch.contiguous_format)  # (B, T, V)
        for rows, cols in _chunks(logits.shape):
            shifted = logits[rows, cols].to(lse.dtype) - lse[rows, cols, None]  # (b, t, V)
            out[rows, cols] = shifted.exp_().mul_(-grad[rows, cols, None])  # −g · softmax
        out.scatter_add_(-1, tokens[..., None], grad[..., None].to(out.dtype))  # + g at token
        return out, None


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[tokens]``, ``(B, T)``, computed in at least float32.

    ``logits`` is ``(B, T, V)`` and ``logits[b, t]`` scores ``tokens[b, t]`` (integer ids).
    No ``(B, T, V)`` log-softmax is materialised: the log-normaliser is computed chunk by
    chunk, and the backward writes the one ``(B, T, V)`` gradient directly (issue #9).
    """
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and tokens {tuple(tokens.shape)} must be "
            "(B, T, V) and (B, T)"
        )
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be an integer tensor, got {tokens.dtype}")
    return _TokenLogProb.apply(logits, tokens.long())  # (B, T)


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (Schulman et al., 2017, eq. 7), negated, mean over ``mask``.

    Per token: ``max(−A·ratio, −A·clamp(ratio, 1−ε, 1+ε))`` with
    ``ratio = exp(logprobs − old_logprobs)``.

    Returns:
        ``(loss, stats)`` with stats ``clipfrac`` (share of tokens where the clipped term is
        the active one) and ``approx_kl`` (mean of ``(ratio − 1) − log ratio``, the k3
        estimate of KL(old ‖ new)).
    """
    check_same_shape(logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)
    if not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip!r}")
    log_ratio = logprobs - old_logprobs.detach()  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    advantages = advantages.detach()
    unclipped = -advantages * ratio  # (B, T)
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)  # (B, T)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).to(ratio.dtype), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return loss, {"clipfrac": clipfrac, "approx_kl": approx_kl}


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped value loss: ``0.5·max((V − R)², (V_clip − R)²)``, mean over ``mask``,
    with ``V_clip = V_old + clamp(V − V_old, −clip, clip)``.

    Returns:
        ``(loss, stats)`` with stats ``clipfrac`` (share of tokens where the clipped error is
        the larger one).
    """
    check_same_shape(values=values, old_values=old_values, returns=returns)
    if not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip!r}")
    old_values, returns = old_values.detach(), returns.detach()
    values_clipped = old_values + torch.clamp(values - old_values, -clip, clip)  # (B, T)
    error = (values - returns) ** 2  # (B, T)
    error_clipped = (values_clipped - returns) ** 2  # (B, T)
    loss = 0.5 * masked_mean(torch.maximum(error, error_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((error_clipped > error).to(error.dtype), mask)
    return loss, {"clipfrac": clipfrac}


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` per position ``(B, T)`` from ``(B, T, V)``.

    ``H = logsumexp(x) − Σ softmax(x)·x``, chunk by chunk (see ``_chunks``): no ``(B, T, V)``
    log-softmax, probabilities or products are kept beside the logits (issue #9). ``−inf``
    logits contribute 0 (with finite gradients). Computed in at least float32.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    low = torch.finfo(dtype).min
    parts = []
    for rows, cols in _chunks(logits.shape):
        # −inf → the lowest finite value: its probability is 0 and 0 · low = 0 (not NaN).
        x = logits[rows, cols].to(dtype).clamp(min=low)  # (b, t, V)
        probs = torch.softmax(x, dim=-1)  # (b, t, V)
        part = torch.logsumexp(x, dim=-1) - torch.einsum("btv,btv->bt", probs, x)  # (b, t)
        parts.append(part.reshape(-1))
    # The chunks cover the positions in row-major order.
    return torch.cat(parts).view(logits.shape[:2])  # (B, T)


def masked_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of ``softmax(logits)`` ``(B, T, V)`` over ``mask`` ``(B, T)``;
    ``−inf`` logits contribute 0 (with finite gradients). See :func:`entropy_from_logits`."""
    return masked_mean(entropy_from_logits(logits), mask)


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(logits) ‖ softmax(ref_logits))`` per position ``(B, T)`` from ``(B, T, V)``
    logits, summed over the whole vocabulary (not the sampled-token estimate)."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)  # (B, T, V)
    return (logp.exp() * (logp - ref_logp)).sum(-1)  # (B, T)


def weighted_nll_loss(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    mask: torch.Tensor,
    weight: torch.Tensor,
    ratio: str,
    clip_epsilon: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Σ_i Σ_t w_i · ρ_it · NLL_it / Σ mask`` (A-LoL's family of losses, see
    :mod:`agents.alol`) and its statistics.

    Args:
        logprobs: log π_θ(y_t | ·) ``(B, T)``, with gradient.
        ref_logprobs: log π_ref(y_t | ·) ``(B, T)`` (``None`` when ``ratio == "none"``).
        mask: ``(B, T)`` bool, the response tokens.
        weight: ``(B,)`` per-row weight (A, R or 1).
        ratio: "sequence" (ρ of the whole response), "token" (ρ per token) or "none".
        clip_epsilon: ε of the clip [1 − ε, 1 + ε].
    """
    m = mask.to(logprobs.dtype)  # (B, T)
    if ratio == "none":
        rho = torch.ones_like(logprobs)  # (B, T)
    else:
        assert ref_logprobs is not None
        log_ratio = (logprobs.detach() - ref_logprobs) * m  # (B, T)
        if ratio == "sequence":
            log_ratio = log_ratio.sum(1, keepdim=True).expand_as(logprobs)  # (B, T)
        elif ratio != "token":
            raise ValueError(f"ratio must be 'sequence', 'token' or 'none', got {ratio!r}")
        # Clip in log space: exp of a 48-token sum overflows before a clip could act.
        lo, hi = math.log(1 - clip_epsilon), math.log(1 + clip_epsilon)
        rho = log_ratio.clamp(lo, hi).exp()  # (B, T)
    tokens = m.sum().clamp(min=1)
    loss = (weight[:, None] * rho * -logprobs * m).sum() / tokens
    clipped = ((rho <= 1 - clip_epsilon + 1e-6) | (rho >= 1 + clip_epsilon - 1e-6)).to(m.dtype)
    stats = {
        "nll": (-logprobs.detach() * m).sum() / tokens,
        "ratio": (rho * m).sum() / tokens,
        "clipfrac": (clipped * m).sum() / tokens if ratio != "none" else m.new_zeros(()),
    }
    return loss, stats
