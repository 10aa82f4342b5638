"""Tests of agents.masked against hand-computed numbers (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch
from handmath import NAN, close, t

from agents.masked import explained_variance, masked_mean, masked_var, masked_whiten

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


def test_masked_stats_shapes_and_empty_masks() -> None:
    with pytest.raises(ValueError, match="shape"):
        masked_mean(X, M[:, :2])
    # No data-dependent checks (they would sync with the device): an empty mask gives 0.
    close(masked_mean(X, torch.zeros_like(M)), 0.0)
    close(masked_mean(X, t([[1, 0, 0], [0, 0, 0]]), dim=1), [1.0, 0.0])
    close(masked_whiten(X, torch.zeros_like(M)), [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # One valid entry: no Bessel correction is possible, the variance is 0.
    close(masked_var(X, t([[1, 0, 0], [0, 0, 0]])), 0.0)
    close(masked_var(X, t([[1, 0, 0], [0, 0, 0]]), unbiased=False), 0.0)


def test_explained_variance() -> None:
    returns = t([[1.0, 2.0, NAN], [3.0, 4.0, NAN]])  # valid: 1, 2, 3, 4; Var = 1.25
    close(explained_variance(returns, returns, M), 1.0)  # perfect predictions
    close(explained_variance(torch.full_like(returns, 2.5), returns, M), 0.0)  # the mean
    # Errors 1, 1, −1, −1 (predictions 0, 1, 4, 5): Var[err] = 1 → 1 − 1/1.25 = 0.2.
    predictions = t([[0.0, 1.0, 0.0], [4.0, 5.0, 0.0]])
    close(explained_variance(predictions, returns, M), 0.2)
    assert torch.isnan(explained_variance(returns, torch.ones_like(returns), M))  # undefined
