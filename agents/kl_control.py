"""KL control: the coefficient β_KL of the per-token KL penalty, fixed or adaptive.

:func:`kl_controller` builds the run's controller from the config's own fields
(``kl_coef``, ``adaptive_kl_target``, ``kl_horizon``). The trainer feeds it the KL that
the scored batch measured, per π token, once per iteration.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from agents.config import TrainConfig

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "KLController",
    "KLState",
    "kl_controller",
]


def kl_controller(cfg: TrainConfig) -> KLController:
    """Adaptive when ``cfg.adaptive_kl_target > 0``, else a fixed ``cfg.kl_coef``."""
    if cfg.adaptive_kl_target > 0:
        return AdaptiveKLController(cfg.kl_coef, cfg.adaptive_kl_target, cfg.kl_horizon)
    return FixedKLController(cfg.kl_coef)


def _check_positive(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` is a finite real number > 0."""
    if isinstance(value, bool) or not (
        isinstance(value, Real) and math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


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
    if not (isinstance(kl, Real) and math.isfinite(kl)):
        raise ValueError(f"kl must be a finite number, got {kl!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, Integral) or n_steps < 0:
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
        if not (isinstance(coef, Real) and math.isfinite(coef) and coef >= 0):
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
        target: Target KL, > 0, in the unit the caller measures (the trainer: nats per π token).
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
