"""Tests of agents.kl_control: fixed and adaptive β_KL, hand-computed updates."""

from __future__ import annotations

import pytest

from agents.kl_control import AdaptiveKLController, FixedKLController, KLController, kl_controller


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


def test_kl_controller_from_the_config() -> None:
    """Built from the config's own fields: fixed unless adaptive_kl_target > 0."""
    from agents.ppo import PPOConfig

    fixed = kl_controller(PPOConfig(kl_coef=0.07))
    assert isinstance(fixed, FixedKLController) and fixed.value == 0.07
    cfg = PPOConfig(kl_coef=0.2, adaptive_kl_target=6.0, kl_horizon=10_000)
    adaptive = kl_controller(cfg)
    assert isinstance(adaptive, AdaptiveKLController)
    assert adaptive.state_dict() == {"value": 0.2, "target": 6.0, "horizon": 10_000.0}
