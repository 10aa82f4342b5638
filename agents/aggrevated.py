"""AggreVaTeD (Sun et al., 2017; Chang et al., 2023, §4.2): π rolls in, the guide rolls out.

With probability β a sample is **rolled in by π** for k ~ U{1..L-1} tokens and **rolled out
by the guide**: the guide's completion tells π how good its prefix was. π is trained on its
own roll-in tokens with GAE advantages whose baseline is V^g, the value of letting the guide
finish from a state: the ``GUIDE`` output of the value head (:mod:`agents.policy`), trained
on the guide's tokens. Otherwise the sample is π's own episode (PPO on all its tokens,
baseline V^π); so is a guided sample whose roll-in π ended itself (EOS before k): the guide
wrote nothing, so V^π is its baseline and V^π learns from it. The KL penalty applies to π's
tokens only. Scoring and update are PPO's (:mod:`agents.ppo`).

**Advantage of a roll-in token** (``guided_gae_lambda``). The paper's estimate is
Q^g(s_t, a_t) − V^g(s_t): take a_t, then let the guide finish. GAE with λ = 0 on V^g gives
exactly its one-step form, ``r_t + γ V^g(s_{t+1}) − V^g(s_t)``, trusting the learned V^g.
With λ → 1 the advantage of an early roll-in token mostly reflects the tokens π wrote after
it (and then the guide's completion): a Monte Carlo return of "π until k, then the guide",
not Q^g. The default keeps PPO's λ = 0.95: with a value head that starts at zero, λ = 0 gives
π's tokens almost no signal until V^g has learned. Measured with ``benchmarks/learning_toy.py``
(``cpu-small``, final test return, mean over seeds), λ = 0.95 vs λ = 0: Twist-v0 0.72 vs
0.28 (5 seeds), Reverse-v0 0.42 vs 0.20, Positive-v0 0.69 vs 0.67 (3 seeds). Set
``--guided-gae-lambda 0`` for the paper's estimator.

Why two value outputs: one state has a high value when the guide finishes it and a low one
when an untrained π does. A single head trained on both would hand π's own samples a
baseline inflated by the guide's returns, and every token π sampled there would be pushed
down whatever its quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.config import check_unit
from agents.engine import Actor, Plan
from agents.policy import GUIDE
from agents.ppo import PPOConfig

__all__ = ["AggreVaTeDConfig", "guide_roll_out", "plan"]


@dataclass
class AggreVaTeDConfig(PPOConfig):
    """AggreVaTeD settings."""

    beta: float = 0.8
    """Probability β that a sample is rolled out by the guide (paper: 0.8)."""
    guided_gae_lambda: float = 0.95
    """GAE λ of guided rows: 0 is the paper's Q^g − V^g (one step, bootstrapped on V^g);
    near 1, a Monte Carlo return of π's remaining roll-in and the guide's completion."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unit(self, "beta", "guided_gae_lambda")


def plan(cfg: AggreVaTeDConfig, iteration: int, rng: np.random.Generator) -> Plan:
    """Every iteration: guide roll-out with probability β."""
    return guide_roll_out(cfg.beta, cfg.guided_gae_lambda)


def guide_roll_out(beta: float, guided_gae_lambda: float) -> Plan:
    """AggreVaTeD's plan: π rolls in k tokens w.p. β, the guide rolls out; baseline V^g."""
    return Plan(
        roll_in=Actor.LEARNER,
        roll_out=Actor.GUIDE,
        beta=beta,
        guided_baseline=GUIDE,
        guided_gae_lambda=guided_gae_lambda,
    )
