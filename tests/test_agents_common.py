"""Tests of agents.common against hand-computed numbers (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from agents.common import (
    AdaptiveKLController,
    FixedKLController,
    KLController,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    logprobs_from_logits,
    masked_entropy,
    masked_mean,
    masked_var,
    masked_whiten,
    per_token_kl,
    shaped_rewards,
)

NAN = float("nan")


def t(rows: list) -> torch.Tensor:
    """A float64 tensor (exact enough to compare hand arithmetic at 1e-12)."""
    return torch.tensor(rows, dtype=torch.float64)


def close(actual: torch.Tensor, expected: list | float, atol: float = 1e-12) -> None:
    torch.testing.assert_close(actual, t(expected), atol=atol, rtol=0)


# ----------------------------------------------------------------------------- masked stats

# Valid entries 1, 3, 5, 7: mean 4; squared deviations 9, 1, 1, 9 (sum 20);
# biased var 20/4 = 5, unbiased var 20/3.
X = t([[1.0, 3.0, 100.0], [5.0, 7.0, NAN]])
M = torch.tensor([[1, 1, 0], [1, 1, 0]], dtype=torch.float32)


def test_masked_mean_var() -> None:
    close(masked_mean(X, M), 4.0)
    close(masked_mean(X, M.bool(), dim=1), [2.0, 6.0])  # (1+3)/2, (5+7)/2
    close(masked_mean(X[:, :2], M[:, :2], dim=0), [3.0, 5.0])  # (1+5)/2, (3+7)/2
    close(masked_var(X, M, unbiased=False), 5.0)
    close(masked_var(X, M), 20.0 / 3.0)


def test_masked_whiten() -> None:
    sd = math.sqrt(20.0 / 3.0)
    white = masked_whiten(X, M, eps=0.0)
    # (x - 4) / sd on valid entries; exactly 0 on padding (even the NaN).
    close(white, [[-3 / sd, -1 / sd, 0.0], [1 / sd, 3 / sd, 0.0]])
    valid = white[M.bool()]
    assert abs(valid.mean().item()) < 1e-12
    assert abs(valid.std().item() - 1.0) < 1e-12  # torch.std is unbiased
    # shift_mean=False adds the mean back: (x - 4) / sd + 4.
    close(masked_whiten(X, M, shift_mean=False, eps=0.0)[0], [-3 / sd + 4, -1 / sd + 4, 0.0])


def test_masked_stats_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        masked_mean(X, M[:, :2])
    with pytest.raises(ValueError, match="all zero"):
        masked_mean(X, torch.zeros_like(M))
    with pytest.raises(ValueError, match="dim=1"):
        masked_mean(X, t([[1, 0, 0], [0, 0, 0]]), dim=1)
    with pytest.raises(ValueError, match="0s and 1s"):
        masked_mean(X, t([[0.5, 1, 0], [1, 1, 0]]))
    with pytest.raises(ValueError, match="all zero"):
        masked_whiten(X, torch.zeros_like(M))
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(X, t([[1, 0, 0], [0, 0, 0]]))
    close(masked_var(X, t([[1, 0, 0], [0, 0, 0]]), unbiased=False), 0.0)


# ----------------------------------------------------------------------------- GAE

# Row 0: 3 valid steps, r = [0, 0, 1], V = [0.2, 0.4, 0.6].
# Row 1: 2 valid steps, r = [1, 2, (7)], V = [0.5, 1.0, (3.0)] (parentheses: padding).
# Row 2: 1 valid step, r = [4, (NaN), (NaN)], V = [1, (NaN), (NaN)].
REWARDS = t([[0.0, 0.0, 1.0], [1.0, 2.0, 7.0], [4.0, NAN, NAN]])
VALUES = t([[0.2, 0.4, 0.6], [0.5, 1.0, 3.0], [1.0, NAN, NAN]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)


def test_gae_gamma_lambda_one_is_reward_to_go_minus_value() -> None:
    adv, ret = gae(REWARDS, VALUES, MASK, gamma=1.0, lam=1.0)
    # γ=λ=1: A_t = Σ_{k≥t} r_k − V_t; returns = reward-to-go.
    # Row 0: to-go [1, 1, 1] → A = [0.8, 0.6, 0.4]. Row 1: to-go [3, 2] → A = [2.5, 1.0].
    # Row 2: to-go [4] → A = [3]. Padding: 0 (the 7 and 3.0 of row 1 must not leak).
    close(adv, [[0.8, 0.6, 0.4], [2.5, 1.0, 0.0], [3.0, 0.0, 0.0]])
    close(ret, [[1.0, 1.0, 1.0], [3.0, 2.0, 0.0], [4.0, 0.0, 0.0]])


def test_gae_discounted() -> None:
    adv, ret = gae(REWARDS, VALUES, MASK, gamma=0.9, lam=0.95)  # γλ = 0.855
    # Row 0: δ2 = 1 + 0.9·0 − 0.6 = 0.4                A2 = 0.4
    #        δ1 = 0 + 0.9·0.6 − 0.4 = 0.14             A1 = 0.14 + 0.855·0.4 = 0.482
    #        δ0 = 0 + 0.9·0.4 − 0.2 = 0.16             A0 = 0.16 + 0.855·0.482 = 0.57211
    # Row 1: δ1 = 2 + 0.9·0 − 1.0 = 1.0 (no bootstrap from the padding's 3.0)   A1 = 1.0
    #        δ0 = 1 + 0.9·1.0 − 0.5 = 1.4              A0 = 1.4 + 0.855·1.0 = 2.255
    # Row 2: δ0 = 4 − 1 = 3                            A0 = 3
    close(adv, [[0.57211, 0.482, 0.4], [2.255, 1.0, 0.0], [3.0, 0.0, 0.0]])
    # returns = A + V: [0.77211, 0.882, 1.0], [2.755, 2.0], [4.0]
    close(ret, [[0.77211, 0.882, 1.0], [2.755, 2.0, 0.0], [4.0, 0.0, 0.0]])


def test_gae_lambda_zero_is_td_error_and_gamma_zero_is_reward_minus_value() -> None:
    adv, ret = gae(REWARDS, VALUES, MASK, gamma=0.9, lam=0.0)
    # λ=0: A_t = δ_t. Row 0: [0.16, 0.14, 0.4]; row 1: δ0 = 1 + 0.9·1.0 − 0.5 = 1.4, δ1 = 1.0.
    close(adv, [[0.16, 0.14, 0.4], [1.4, 1.0, 0.0], [3.0, 0.0, 0.0]])
    close(ret, [[0.36, 0.54, 1.0], [1.9, 2.0, 0.0], [4.0, 0.0, 0.0]])
    adv, _ = gae(REWARDS, VALUES, MASK, gamma=0.0, lam=0.95)
    # γ=0: A_t = r_t − V_t. Row 0: [−0.2, −0.4, 0.4]; row 1: [0.5, 1.0]; row 2: [3].
    close(adv, [[-0.2, -0.4, 0.4], [0.5, 1.0, 0.0], [3.0, 0.0, 0.0]])


def test_gae_empty_row_detached_and_bad_input() -> None:
    values = VALUES.clone().requires_grad_(True)
    mask = MASK.clone()
    mask[2] = False  # an all-zero row gives all-zero outputs
    adv, ret = gae(REWARDS, values, mask, gamma=0.9, lam=0.95)
    close(adv[2], [0.0, 0.0, 0.0])
    close(ret[2], [0.0, 0.0, 0.0])
    assert not adv.requires_grad and not ret.requires_grad
    with pytest.raises(ValueError, match="contiguous"):
        gae(REWARDS, VALUES, t([[1, 0, 1], [1, 1, 0], [1, 0, 0]]), gamma=1.0, lam=1.0)
    with pytest.raises(ValueError, match="shape"):
        gae(REWARDS, VALUES[:, :2], MASK, gamma=1.0, lam=1.0)
    with pytest.raises(ValueError, match="gamma"):
        gae(REWARDS, VALUES, MASK, gamma=1.5, lam=1.0)
    with pytest.raises(ValueError, match="lam"):
        gae(REWARDS, VALUES, MASK, gamma=1.0, lam=-0.1)


# ----------------------------------------------------------------------------- KL, rewards


def test_per_token_kl_sign() -> None:
    # π gives the sampled token 0.8, the reference 0.2: log 0.8 − log 0.2 = log 4 > 0.
    kl = per_token_kl(t([[math.log(0.8), math.log(0.2)]]), t([[math.log(0.2), math.log(0.8)]]))
    close(kl, [[math.log(4.0), -math.log(4.0)]])
    with pytest.raises(ValueError, match="shape"):
        per_token_kl(t([[0.0, 0.0]]), t([[0.0]]))


def test_shaped_rewards_places_task_reward_and_kl_penalty() -> None:
    logprobs = t([[-1.0, -2.0, -0.5, NAN], [-3.0, -0.2, -0.7, -1.2]])
    ref_logprobs = t([[-1.5, -1.0, -0.5, NAN], [-1.0, -0.4, -0.7, -2.2]])
    mask = t([[1, 1, 1, 0], [1, 1, 1, 1]])
    kl_mask = t([[1, 0, 1, 0], [0, 1, 1, 1]])  # 0 on guide-produced tokens
    rewards = shaped_rewards(t([2.0, -1.0]), logprobs, ref_logprobs, mask, kl_mask, kl_coef=0.1)
    # Row 0: kl = [0.5, −1.0, 0.0]; penalty −0.1·kl on positions 0 and 2 only → [−0.05, 0, 0];
    #        task reward 2.0 on the last valid position 2 → [−0.05, 0, 2.0, 0].
    # Row 1: kl = [−2.0, 0.2, 0.0, 1.0]; penalty on 1..3 → [0, −0.02, 0, −0.1];
    #        task reward −1.0 on position 3 → [0, −0.02, 0, −1.1].
    close(rewards, [[-0.05, 0.0, 2.0, 0.0], [0.0, -0.02, 0.0, -1.1]])
    # kl_coef 0: only the task rewards remain.
    rewards = shaped_rewards(t([2.0, -1.0]), logprobs, ref_logprobs, mask, kl_mask, kl_coef=0.0)
    close(rewards, [[0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, -1.0]])


def test_shaped_rewards_bad_input() -> None:
    lp = t([[-1.0, -1.0], [-1.0, -1.0]])
    ones = t([[1, 1], [1, 1]])
    task = t([1.0, 1.0])
    with pytest.raises(ValueError, match="all-zero row"):
        shaped_rewards(task, lp, lp, t([[1, 1], [0, 0]]), t([[1, 1], [0, 0]]), 0.1)
    with pytest.raises(ValueError, match="kl_mask is 1"):
        shaped_rewards(task, lp, lp, t([[1, 0], [1, 1]]), ones, 0.1)
    with pytest.raises(ValueError, match="contiguous"):
        shaped_rewards(task, lp, lp, t([[0, 1], [1, 1]]), t([[0, 1], [1, 1]]), 0.1)
    with pytest.raises(ValueError, match="task_rewards"):
        shaped_rewards(t([1.0]), lp, lp, ones, ones, 0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        shaped_rewards(task, lp, lp, ones, ones, -0.1)
    with pytest.raises(ValueError, match="kl_mask"):
        shaped_rewards(task, lp, lp, ones, ones[:, :1], 0.1)


# ----------------------------------------------------------------------------- KL controllers


def test_fixed_kl_controller() -> None:
    ctl = FixedKLController(0.05)
    assert isinstance(ctl, KLController)
    ctl.update(kl=100.0, n_steps=10)
    assert ctl.value == 0.05
    other = FixedKLController(1.0)
    other.load_state_dict(ctl.state_dict())
    assert other.value == 0.05
    for bad in (-0.1, float("inf"), "0.1"):
        with pytest.raises(ValueError, match="coef"):
            FixedKLController(bad)  # type: ignore[arg-type]


def test_adaptive_kl_controller_moves_and_clips() -> None:
    def fresh() -> AdaptiveKLController:
        return AdaptiveKLController(init_coef=0.2, target=6.0, horizon=10_000)

    ctl = fresh()
    assert isinstance(ctl, KLController)
    ctl.update(kl=6.6, n_steps=1000)  # error 6.6/6 − 1 = 0.1 → 0.2·(1 + 0.1·0.1) = 0.202
    assert ctl.value == pytest.approx(0.202, abs=1e-12)
    ctl = fresh()
    ctl.update(kl=9.0, n_steps=1000)  # error 0.5, clipped to 0.2 → 0.2·(1 + 0.02) = 0.204
    assert ctl.value == pytest.approx(0.204, abs=1e-12)
    ctl = fresh()
    ctl.update(kl=5.4, n_steps=1000)  # error −0.1 → 0.2·(1 − 0.01) = 0.198
    assert ctl.value == pytest.approx(0.198, abs=1e-12)
    ctl = fresh()
    ctl.update(kl=0.0, n_steps=1000)  # error −1, clipped to −0.2 → 0.2·0.98 = 0.196
    assert ctl.value == pytest.approx(0.196, abs=1e-12)
    ctl.update(kl=6.0, n_steps=1000)  # at target: unchanged
    assert ctl.value == pytest.approx(0.196, abs=1e-12)


def test_adaptive_kl_controller_state_dict_round_trip() -> None:
    ctl = AdaptiveKLController(init_coef=0.2, target=6.0, horizon=10_000)
    ctl.update(kl=9.0, n_steps=500)
    ctl.update(kl=2.0, n_steps=300)
    restored = AdaptiveKLController(init_coef=1.0, target=1.0, horizon=1.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored.state_dict() == ctl.state_dict()
    ctl.update(kl=7.0, n_steps=100)
    restored.update(kl=7.0, n_steps=100)
    assert restored.value == ctl.value
    with pytest.raises(ValueError, match="horizon"):
        restored.load_state_dict({"value": 0.1, "target": 6.0})


def test_adaptive_kl_controller_bad_input() -> None:
    for kwargs in (
        {"init_coef": 0.0, "target": 6.0, "horizon": 1.0},
        {"init_coef": 0.1, "target": -6.0, "horizon": 1.0},
        {"init_coef": 0.1, "target": 6.0, "horizon": 0},
    ):
        with pytest.raises(ValueError, match="> 0"):
            AdaptiveKLController(**kwargs)
    ctl = AdaptiveKLController(0.1, 6.0, 100)
    with pytest.raises(ValueError, match="kl"):
        ctl.update(kl=float("nan"), n_steps=1)
    with pytest.raises(ValueError, match="n_steps"):
        ctl.update(kl=1.0, n_steps=-1)


# ----------------------------------------------------------------------------- losses


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
    assert stats["clipfrac"] == pytest.approx(0.5, abs=1e-12)
    # k3: (r − 1) − log r: token 0: 0.5 − log 1.5; token 1: −0.5 − log 0.5.
    expected_kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    assert stats["approx_kl"] == pytest.approx(expected_kl, abs=1e-12)
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
    assert stats["clipfrac"] == pytest.approx(0.5, abs=1e-12)
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
    assert stats["clipfrac"] == pytest.approx(0.5, abs=1e-12)
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
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        logprobs_from_logits(logits, torch.tensor([[2, 0]]))
    with pytest.raises(TypeError, match="integer"):
        logprobs_from_logits(logits, t([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="tokens has shape"):
        logprobs_from_logits(logits, torch.tensor([[1]]))
