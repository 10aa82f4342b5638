"""Tests for textgen_env/packed.py: decoding with oneDNN-prepacked linear weights."""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest
import torch
from torch import nn

from textgen_env.generation import sample
from textgen_env.models import tiny_causal_lm
from textgen_env.packed import PREPACK_ENV, _can_pack, prepacked_linears

needs_onednn = pytest.mark.skipif(not _can_pack(), reason="this torch build has no oneDNN")


def _lm() -> nn.Module:
    return tiny_causal_lm(50, hidden_size=64, num_layers=2, num_heads=4).eval()


@needs_onednn
def test_packed_layers_compute_the_same_products_and_are_restored() -> None:
    model = _lm()
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    x = torch.randn(5, 7, 64)  # (B, T, H): any leading dims
    layer = model.model.layers[0].mlp.up_proj
    before = layer(x)
    weights = [m.weight.detach().clone() for m in linears]
    with prepacked_linears(model, rows=5) as n:
        assert n == len(linears) > 0
        assert "forward" in layer.__dict__
        packed = layer(x)
    assert all("forward" not in m.__dict__ for m in linears)
    assert torch.equal(layer(x), before)  # the plain forward is back
    torch.testing.assert_close(packed, before, rtol=1e-5, atol=1e-5)  # rounding only
    assert all(torch.equal(m.weight, w) for m, w in zip(linears, weights, strict=True))


@needs_onednn
def test_packed_layers_are_restored_after_an_error() -> None:
    model = _lm()
    with pytest.raises(RuntimeError, match="boom"), prepacked_linears(model, rows=2):
        raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_nothing_is_packed_for_other_dtypes() -> None:
    model = _lm()
    with torch.autocast("cpu", dtype=torch.float16), prepacked_linears(model, rows=4) as n:
        assert n == 0  # fp16 autocast: F.linear's own casts
    with prepacked_linears(model.to(torch.bfloat16), rows=4) as n:
        assert n == 0


@needs_onednn
def test_under_bf16_autocast_packed_layers_compute_what_autocast_computes() -> None:
    model = _lm()
    layer = model.model.layers[0].mlp.up_proj
    layer.bias = nn.Parameter(torch.randn(layer.out_features))  # the bias is cast too
    x = torch.randn(5, 7, 64)  # (B, T, H) fp32, cast to bf16 by both
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = layer(x)
        with prepacked_linears(model, rows=5) as n:
            assert n > 0
            packed = layer(x)
    assert packed.dtype == before.dtype == torch.bfloat16
    torch.testing.assert_close(packed, before, rtol=1e-2, atol=1e-2)  # bf16 rounding at most
    assert layer.weight.dtype == torch.float32  # π's own weights untouched


@needs_onednn
def test_the_environment_variable_turns_packing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _lm()
    monkeypatch.setenv(PREPACK_ENV, "0")
    with prepacked_linears(model, rows=4) as n:
        assert n == 0
        assert not any("forward" in m.__dict__ for m in model.modules())
    monkeypatch.setenv(PREPACK_ENV, "1")
    with prepacked_linears(model, rows=4) as n:
        assert n > 0


def test_a_bad_environment_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PREPACK_ENV, "off")
    message = "TEXTGEN_ENV_PREPACK must be 0 or 1, got 'off'"
    with pytest.raises(ValueError, match=message), prepacked_linears(_lm(), rows=4):
        pass


def test_a_replaced_forward_is_left_alone() -> None:
    model = _lm()
    layer = model.model.layers[0].mlp.up_proj
    own = layer.forward  # e.g. a hook library that wraps forward per instance
    layer.forward = own
    with prepacked_linears(model, rows=2):
        assert layer.__dict__["forward"] is own
    assert layer.__dict__["forward"] is own


def test_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rows must be >= 1"), prepacked_linears(_lm(), rows=0):
        pass


@needs_onednn
def test_sampling_matches_the_unpacked_logits() -> None:
    """Greedy decoding under the sampler (packed) equals a step-by-step greedy loop over the
    plain model's full forward passes, up to ties broken by rounding (none here)."""
    model = _lm()
    torch.manual_seed(0)
    ids = torch.randint(2, 50, (3, 6))  # (B, T)
    got = sample(model, ids, torch.ones_like(ids), 8, eos_token_ids=[], do_sample=False)
    seq = ids
    with torch.no_grad():
        for _ in range(8):
            logits = model(input_ids=seq).logits[:, -1]  # (B, V)
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    assert got == seq[:, 6:].tolist()


@pytest.mark.parametrize(("budget", "packs"), [(1, False), (3, True)])
def test_the_sampler_packs_only_when_it_decodes_past_the_first_pass(
    budget: int, packs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One new token is the prefill's alone: packing the weights for it would only cost."""
    import textgen_env.generation as generation

    calls: list[int] = []

    def recording(model: nn.Module, rows: int) -> AbstractContextManager[int]:
        calls.append(rows)
        return prepacked_linears(model, rows)

    monkeypatch.setattr(generation, "prepacked_linears", recording)
    ids = torch.randint(2, 50, (2, 4))  # (B, T)
    out = sample(_lm(), ids, torch.ones_like(ids), budget, eos_token_ids=[], do_sample=False)
    assert [len(o) for o in out] == [budget, budget]
    assert calls == ([2] if packs else [])
