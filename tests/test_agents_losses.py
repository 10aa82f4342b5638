"""Tests of agents.losses against hand-computed numbers (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch
from handmath import close, t

from agents import losses
from agents.losses import (
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    logprobs_from_logits,
    masked_entropy,
)


def test_clipped_policy_loss_clipping_active_and_inactive() -> None:
    logprobs = t([[math.log(0.75), math.log(0.25), 0.0]]).requires_grad_(True)
    old_logprobs = t([[math.log(0.5), math.log(0.5), -9.0]])
    advantages = t([[2.0, 1.0, 100.0]])
    mask = t([[1, 1, 0]])
    loss, stats = clipped_policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2)
    # Token 0: ratio 1.5, A=2: unclipped −3.0, clipped −2·1.2 = −2.4 → max −2.4 (clip active).
    # Token 1: ratio 0.5, A=1: unclipped −0.5, clipped −0.8 → max −0.5 (clip inactive).
    # Loss = (−2.4 − 0.5) / 2 = −1.45; clipfrac = 1/2.
    assert loss.item() == pytest.approx(-1.45, abs=1e-12)
    assert float(stats["clipfrac"]) == pytest.approx(0.5, abs=1e-12)
    # k3: (r − 1) − log r: token 0: 0.5 − log 1.5; token 1: −0.5 − log 0.5.
    expected_kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    assert float(stats["approx_kl"]) == pytest.approx(expected_kl, abs=1e-12)
    loss.backward()
    # Clipped token 0 and padding get no gradient; token 1: d(−A·r)/dlogp / 2 = −1·0.5/2.
    close(logprobs.grad, [[0.0, -0.25, 0.0]])


def test_clipped_policy_loss_negative_advantage() -> None:
    logprobs = t([[math.log(0.25), math.log(0.75)]])
    old_logprobs = t([[math.log(0.5), math.log(0.5)]])
    loss, stats = clipped_policy_loss(logprobs, old_logprobs, t([[-1.0, -1.0]]), t([[1, 1]]), 0.2)
    # Token 0: ratio 0.5, A=−1: unclipped 0.5, clipped 0.8 → 0.8 (clip active).
    # Token 1: ratio 1.5, A=−1: unclipped 1.5, clipped 1.2 → 1.5 (clip inactive).
    assert loss.item() == pytest.approx((0.8 + 1.5) / 2, abs=1e-12)
    assert float(stats["clipfrac"]) == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="clip"):
        clipped_policy_loss(logprobs, old_logprobs, t([[1.0, 1.0]]), t([[1, 1]]), 0.0)
    with pytest.raises(ValueError, match="advantages"):
        clipped_policy_loss(logprobs, old_logprobs, t([[1.0]]), t([[1, 1]]), 0.2)


def test_clipped_value_loss() -> None:
    values = t([[1.5, 0.5, 50.0]]).requires_grad_(True)
    old_values = t([[1.0, 1.0, 0.0]])
    returns = t([[2.0, 1.0, 0.0]])
    loss, stats = clipped_value_loss(values, old_values, returns, t([[1, 1, 0]]), clip=0.2)
    # Token 0: unclipped (1.5 − 2)² = 0.25; v_clip = 1.2 → (1.2 − 2)² = 0.64 → 0.64 (active).
    # Token 1: unclipped (0.5 − 1)² = 0.25; v_clip = 0.8 → (0.8 − 1)² = 0.04 → 0.25 (inactive).
    # Loss = 0.5 · (0.64 + 0.25) / 2 = 0.2225; clipfrac = 1/2.
    assert loss.item() == pytest.approx(0.2225, abs=1e-12)
    assert float(stats["clipfrac"]) == pytest.approx(0.5, abs=1e-12)
    loss.backward()
    # Token 0's loss uses the clipped value (no gradient); token 1: 0.5·2·(0.5 − 1)/2 = −0.25.
    close(values.grad, [[0.0, -0.25, 0.0]])


def test_masked_entropy() -> None:
    inf = float("inf")
    logits = t([[[0.0, 0.0, 0.0, 0.0], [0.0, -inf, -inf, -inf], [3.0, 1.0, 0.0, 0.0]]])
    logits = torch.cat([logits, t([[[5.0, 5.0, -inf, -inf], [0, 0, 0, 0], [0, 0, 0, 0]]])])
    logits.requires_grad_(True)
    mask = t([[1, 1, 0], [1, 0, 0]])
    # Entropies: uniform over 4 → log 4; one-hot → 0; uniform over 2 → log 2. Mean over 3.
    ent = masked_entropy(logits, mask)
    assert ent.item() == pytest.approx((math.log(4.0) + 0.0 + math.log(2.0)) / 3, abs=1e-12)
    ent.backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        masked_entropy(logits[0], mask)


def test_logprobs_from_logits() -> None:
    # softmax([0, log 3]) = [1/4, 3/4].
    logits = t([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    close(logprobs_from_logits(logits, torch.tensor([[1, 0]])), [[math.log(0.75), math.log(0.25)]])
    half = logprobs_from_logits(logits.to(torch.bfloat16), torch.tensor([[1, 0]]))
    assert half.dtype == torch.float32
    with pytest.raises(TypeError, match="integer"):
        logprobs_from_logits(logits, t([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="must be"):
        logprobs_from_logits(logits, torch.tensor([[1]]))


def _reference_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The plain formula: a full log-softmax, then the taken token."""
    return torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None]).squeeze(-1)


def _reference_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("chunk", [1 << 22, 64, 7], ids=["one-chunk", "rows", "columns"])
def test_fused_logprobs_and_entropy_equal_the_plain_formulas(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #9: the chunked log-prob (own backward) and entropy give the values and gradients
    of log_softmax + gather and of −Σ p log p, whatever the chunking, on a strided slice."""
    monkeypatch.setattr(losses, "_CHUNK_ELEMENTS", chunk)
    gen = torch.Generator().manual_seed(0)
    full = (3 * torch.randn(3, 6, 11, generator=gen)).requires_grad_(True)
    logits = full[:, 1:-1]  # (3, 4, 11), not contiguous (as the policy's slice of its logits)
    tokens = torch.randint(0, 11, (3, 4), generator=gen)
    weights = torch.randn(3, 4, generator=gen)
    lp = logprobs_from_logits(logits, tokens)
    (grad,) = torch.autograd.grad((lp * weights).sum(), full)
    ref = _reference_logprobs(logits, tokens)
    (ref_grad,) = torch.autograd.grad((ref * weights).sum(), full)
    torch.testing.assert_close(lp, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-5)
    ent = entropy_from_logits(logits)
    (egrad,) = torch.autograd.grad((ent * weights).sum(), full)
    ref_ent = _reference_entropy(logits)
    (ref_egrad,) = torch.autograd.grad((ref_ent * weights).sum(), full)
    torch.testing.assert_close(ent, ref_ent, rtol=0, atol=1e-5)
    torch.testing.assert_close(egrad, ref_egrad, rtol=0, atol=1e-5)


def test_fused_logprobs_in_bf16_and_float64() -> None:
    """bf16 logits: float32 log-probs and a bf16 gradient; float64 stays float64."""
    logits = t([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]]).requires_grad_(True)
    lp = logprobs_from_logits(logits, torch.tensor([[1, 0]]))
    assert lp.dtype == torch.float64
    lp.sum().backward()  # d/dx log p_k = onehot_k − p: row 0 [−1/4, 1/4], row 1 [3/4, −3/4]
    close(logits.grad, [[[-0.25, 0.25], [0.75, -0.75]]])
    half = logits.detach().to(torch.bfloat16).requires_grad_(True)
    lp = logprobs_from_logits(half, torch.tensor([[1, 0]]))
    lp.sum().backward()
    assert lp.dtype == torch.float32 and half.grad is not None
    assert half.grad.dtype == torch.bfloat16


def test_logprobs_of_a_tiny_model_equal_log_softmax_and_gather() -> None:
    """On a tiny random LM: the fused log-prob and its parameter gradients equal the plain
    formula's within 1e-5 (issue #9)."""
    from textgen_env.models import tiny_causal_lm

    model = tiny_causal_lm(13, seed=2).eval()
    ids = torch.randint(0, 13, (4, 9), generator=torch.Generator().manual_seed(1))

    def grads(fn: object) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits[:, :-1]  # (4, 8, 13)
        lp = fn(logits, ids[:, 1:])  # type: ignore[operator]
        lp.sum().backward()
        return lp.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    lp, g = grads(logprobs_from_logits)
    ref, ref_g = grads(_reference_logprobs)
    torch.testing.assert_close(lp, ref, rtol=0, atol=1e-5)
    for a, b in zip(g, ref_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
