"""Exceptions raised by textgen_env (besides ``TypeError``/``ValueError`` for bad arguments)."""

from __future__ import annotations

__all__ = ["GuideError", "GuideTimeoutError", "InvalidStateError"]


class InvalidStateError(ValueError):
    """A :class:`~textgen_env.state.TextState` does not fit the env (task, vocabulary, length)."""


class GuideError(RuntimeError):
    """A guide policy raised or returned malformed output; no env state was changed."""


class GuideTimeoutError(GuideError, TimeoutError):
    """A guide policy did not answer within its timeout (after all retries)."""
