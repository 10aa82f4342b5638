"""Tests of agents.advantages (GAE, KL-shaped rewards) against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from handmath import NAN, close, t

from agents.advantages import gae, per_token_kl, shaped_rewards

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
    with pytest.raises(ValueError, match="shape"):
        gae(REWARDS, VALUES[:, :2], MASK, gamma=1.0, lam=1.0)
    with pytest.raises(ValueError, match="gamma"):
        gae(REWARDS, VALUES, MASK, gamma=1.5, lam=1.0)
    with pytest.raises(ValueError, match="lam"):
        gae(REWARDS, VALUES, MASK, gamma=1.0, lam=-0.1)


# ----------------------------------------------------------------------------- KL, rewards


def test_gae_per_row_lambda() -> None:
    # Row 0 with λ = 0 (its TD errors), rows 1-2 with λ = 0.95: the numbers of the tests above.
    lam = torch.tensor([0.0, 0.95, 0.95], dtype=torch.float64)
    adv, _ = gae(REWARDS, VALUES, MASK, gamma=0.9, lam=lam)
    close(adv, [[0.16, 0.14, 0.4], [2.255, 1.0, 0.0], [3.0, 0.0, 0.0]])


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
    with pytest.raises(ValueError, match="task_rewards"):
        shaped_rewards(t([1.0]), lp, lp, ones, ones, 0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        shaped_rewards(task, lp, lp, ones, ones, -0.1)
    with pytest.raises(ValueError, match="kl_mask"):
        shaped_rewards(task, lp, lp, ones, ones[:, :1], 0.1)
