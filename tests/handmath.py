"""Helpers of the hand-computed math tests (tests/test_agents_{masked,advantages,losses}.py)."""

from __future__ import annotations

import torch

NAN = float("nan")


def t(rows: list) -> torch.Tensor:
    """A float64 tensor (exact enough to compare hand arithmetic at 1e-12)."""
    return torch.tensor(rows, dtype=torch.float64)


def close(actual: torch.Tensor, expected: list | float, atol: float = 1e-12) -> None:
    """``actual`` equals the hand-computed ``expected`` within ``atol``."""
    torch.testing.assert_close(actual, t(expected), atol=atol, rtol=0)
