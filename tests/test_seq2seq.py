"""Encoder-decoder (T5) policies: sampler, HFGuide, ActorCritic and training, on tiny models."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import ppo
from agents.algorithms import ALGORITHMS
from agents.build import build_policy, build_tokenizer_and_model
from agents.engine import Plan, collect
from agents.policy import ActorCritic, right_align
from agents.ppo import PPOConfig
from agents.ppo_pp import PPOPPConfig
from agents.saved_policy import load_policy
from agents.trainer import run
from textgen_env.generation import decoder_start_token_id, is_encoder_decoder, sample_seq2seq
from textgen_env.guides import HFGuide
from textgen_env.models import tiny_causal_lm, tiny_hf_tokenizer, tiny_seq2seq_lm
from textgen_env.oracles import roll_in, roll_out
from textgen_env.tasks.toy import (
    POSITIVE_LEXICON,
    make_positive_vector_env,
    make_reverse_vector_env,
    positive_tokenizer,
    reverse_tokenizer,
)

VOCAB = 40
EOS = 1
START = 0  # tiny T5: decoding starts from pad
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18]]


def _t5(vocab: int = VOCAB, seed: int = 0) -> torch.nn.Module:
    """A tiny T5 whose weights are rescaled so that greedy decoding does not just copy.

    A freshly initialised T5 repeats its input token (its embeddings dominate the residual
    stream); larger projection weights make the decoder depend on the encoder and its prefix.
    """
    model = tiny_seq2seq_lm(vocab, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 2.0 / p.shape[-1] ** 0.5, generator=gen)
    return model


@pytest.fixture(scope="module")
def t5() -> torch.nn.Module:
    """The shared tiny T5 of the sampler tests (read-only)."""
    return _t5()


def _pad(prompts: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    rows = [([0] * (width - len(p)) + p) if left else (p + [0] * (width - len(p))) for p in prompts]
    masks = [
        ([0] * (width - len(p)) + [1] * len(p)) if left else ([1] * len(p) + [0] * (width - len(p)))
        for p in prompts
    ]
    return torch.tensor(rows), torch.tensor(masks)


def _greedy_uncached(
    model: torch.nn.Module, prompt: list[int], prefix: list[int], n: int
) -> list[int]:
    """Reference: greedy decoding by full forward passes on one unpadded row."""
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            dec = torch.tensor([[START, *prefix, *out]])
            logits = model(input_ids=torch.tensor([prompt]), decoder_input_ids=dec).logits
            out.append(int(logits[0, -1].argmax()))
    return out


# ----------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("left", [False, True])
def test_greedy_matches_generate(t5: torch.nn.Module, left: bool) -> None:
    ids, mask = _pad(PROMPTS, left)
    ours = sample_seq2seq(t5, ids, mask, [[]] * 4, 10, eos_token_ids=[], do_sample=False)
    ref = t5.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=None
    )
    assert ref[:, 0].tolist() == [START] * 4
    assert ours == ref[:, 1:].tolist()
    assert len({tuple(r) for r in ours}) == 4  # the rows differ: the encoder input matters
    assert is_encoder_decoder(t5) and decoder_start_token_id(t5) == START


def test_budgets_and_eos_stop_and_finished_rows_are_dropped(t5: torch.nn.Module) -> None:
    ids, mask = _pad(PROMPTS, left=False)
    free = sample_seq2seq(t5, ids, mask, [[]] * 4, 10, eos_token_ids=[], do_sample=False)
    batch_sizes: list[int] = []
    hook = t5.register_forward_pre_hook(
        lambda m, a, kw: batch_sizes.append(kw["decoder_input_ids"].shape[0]), with_kwargs=True
    )
    try:
        budgets = [3, 10, 10, 0]
        out = sample_seq2seq(t5, ids, mask, [[]] * 4, budgets, eos_token_ids=[EOS], do_sample=False)
    finally:
        hook.remove()
    for row, f, b in zip(out, free, budgets, strict=True):
        want = f[:b]
        if EOS in want:
            want = want[: want.index(EOS) + 1]
        assert row == want
    assert any(EOS in row for row in out)  # the test model does stop somewhere
    assert batch_sizes[0] == 3  # the budget-0 row never runs
    assert batch_sizes == sorted(batch_sizes, reverse=True) and batch_sizes[-1] < 3


def test_prefix_restart_equals_greedy_with_the_prefix_forced(t5: torch.nn.Module) -> None:
    ids, mask = _pad(PROMPTS, left=False)
    prefixes = [[3, 4, 5], [9], [], [20, 21, 22, 23, 24]]
    out = sample_seq2seq(t5, ids, mask, prefixes, [6, 2, 5, 4], eos_token_ids=[], do_sample=False)
    for row, prompt, prefix, n in zip(out, PROMPTS, prefixes, [6, 2, 5, 4], strict=True):
        assert row == _greedy_uncached(t5, prompt, prefix, n)
    # restarting from the model's own first k tokens continues its from-scratch output
    free = sample_seq2seq(t5, ids, mask, [[]] * 4, 8, eos_token_ids=[], do_sample=False)
    ks = [1, 4, 7, 2]
    rest = sample_seq2seq(
        t5, ids, mask, [f[:k] for f, k in zip(free, ks, strict=True)], [8 - k for k in ks],
        eos_token_ids=[], do_sample=False,
    )  # fmt: skip
    assert [f[:k] + r for f, k, r in zip(free, ks, rest, strict=True)] == free


def test_seeded_sampling_is_reproducible(t5: torch.nn.Module) -> None:
    ids, mask = _pad(PROMPTS, left=False)

    def draw(seed: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        return sample_seq2seq(
            t5, ids, mask, [[2], [], [3, 3], []], 8, eos_token_ids=[EOS], top_k=20, generator=gen
        )

    a = draw(5)
    assert a == draw(5)
    assert a != draw(6)
    assert all(0 < len(r) <= 8 and EOS not in r[:-1] for r in a)
    capped = sample_seq2seq(
        t5, ids, mask, [[]] * 4, 8, eos_token_ids=[], vocab_limit=10,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert all(t < 10 for row in capped for t in row)


def test_sampler_rejects_bad_input(t5: torch.nn.Module) -> None:
    ids, mask = _pad(PROMPTS, left=False)
    with pytest.raises(ValueError, match="decoder_prefixes"):
        sample_seq2seq(t5, ids, mask, [[]] * 3, 4, eos_token_ids=[])
    with pytest.raises(ValueError, match="decoder_prefixes"):
        sample_seq2seq(t5, ids, mask, [[]] * 3 + [[-1]], 4, eos_token_ids=[])
    with pytest.raises(ValueError, match="encoder token"):
        sample_seq2seq(t5, ids, mask * 0, [[]] * 4, 4, eos_token_ids=[])
    with pytest.raises(ValueError, match="encoder_mask"):
        sample_seq2seq(t5, ids, mask[:, :2], [[]] * 4, 4, eos_token_ids=[])
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample_seq2seq(t5, ids, mask, [[]] * 4, [1, 2], eos_token_ids=[])
    assert sample_seq2seq(t5, ids, mask * 0, [[]] * 4, 0, eos_token_ids=[]) == [[]] * 4


# ------------------------------------------------------------------------------ HFGuide
def _check_contract(out: list[tuple[int, ...]], asked: list[int], vocab: int) -> None:
    assert len(out) == len(asked)
    for seq, k in zip(out, asked, strict=True):
        assert all(isinstance(t, int) and 0 <= t < vocab for t in seq)
        assert len(seq) == k or (0 < len(seq) < k and seq[-1] == EOS)
        assert EOS not in seq[:-1]


def test_hf_guide_t5_fast_path_through_the_oracles() -> None:
    envs = make_reverse_vector_env(6)
    task = envs.task
    envs.reset(seed=0)
    starts = list(envs.get_states())
    guide = HFGuide(_t5(task.vocab_size, seed=1), reverse_tokenizer(), batch_size=4)
    assert guide.seq2seq and guide.fast
    k = np.array([1, 2, 3, 0, 5, 2])
    mid = roll_in(envs, guide, starts, k, np.random.default_rng(0))
    for n, s in zip(k, mid, strict=True):  # k tokens each, fewer only when ended by EOS
        assert len(s.generated_ids) == n or s.generated_ids[-1:] == (EOS,)
    final, returns = roll_out(envs, guide, mid, np.random.default_rng(1))
    assert all(task.is_terminal(s) for s in final)
    assert returns.shape == (6,) and np.isfinite(returns).all()
    for m, f in zip(mid, final, strict=True):
        assert f.generated_ids[: len(m.generated_ids)] == m.generated_ids
    asked = [4, 0, 1, 3, 2, 6]
    out = guide.act(mid, asked, np.random.default_rng(2))
    _check_contract(out, asked, task.vocab_size)
    assert out == guide.act(mid, asked, np.random.default_rng(2))

    greedy = HFGuide(guide.model, reverse_tokenizer(), do_sample=False)
    state = mid[4]
    got = greedy.act([state], [3], np.random.default_rng(0))[0]
    want = _greedy_uncached(guide.model, list(state.prompt_ids), list(state.generated_ids), 3)
    if EOS in want:
        want = want[: want.index(EOS) + 1]
    assert got == tuple(want)


def test_hf_guide_t5_text_handoff() -> None:
    envs = make_positive_vector_env(4)
    envs.reset(seed=0)
    states = list(envs.get_states())
    guide_tok = tiny_hf_tokenizer(list(POSITIVE_LEXICON))
    guide = HFGuide(
        _t5(len(guide_tok), seed=2),
        guide_tok,
        policy_tokenizer=positive_tokenizer(),
        prompt_template="Continue this review: {prompt}",
    )
    assert guide.seq2seq and not guide.fast
    mid = roll_in(envs, guide, states, np.array([2, 1, 3, 0]), np.random.default_rng(0))
    final, returns = roll_out(envs, guide, mid, np.random.default_rng(1))
    assert all(envs.task.is_terminal(s) for s in final) and np.isfinite(returns).all()
    asked = [3, 2, 0, 4]
    out = guide.act(mid, asked, np.random.default_rng(3))
    _check_contract(out, asked, envs.task.vocab_size)
    assert out == guide.act(mid, asked, np.random.default_rng(3))


# --------------------------------------------------------------------------- ActorCritic
def _rollout_batch(model: torch.nn.Module, n: int = 6) -> tuple[torch.Tensor, torch.Tensor, int]:
    envs = make_reverse_vector_env(n)
    envs.reset(seed=0)
    rollout = collect(
        envs, HFGuide(model, reverse_tokenizer(), top_k=0), None, Plan(), np.random.default_rng(0)
    )
    return rollout.input_ids, rollout.attention_mask, rollout.prompt_width


def test_actor_critic_seq2seq_matches_direct_calls() -> None:
    model = _t5(11, seed=3)
    ac = ActorCritic(model)
    assert ac.seq2seq and ac.reference is not None and ac.reference is not model
    ids, mask, width = _rollout_batch(model)
    logits, values = ac(ids, mask, width)
    b, g = ids.shape[0], ids.shape[1] - width
    assert logits.shape == (b, g, 11) and values.shape == (b, g, 2)  # V^π and V^g
    gen_lens = mask[:, width:].sum(1).tolist()
    assert len(set(gen_lens)) > 1 and len(set(mask[:, :width].sum(1).tolist())) > 1
    with torch.no_grad():
        for r in range(b):
            prompt = ids[r, :width][mask[r, :width].bool()]
            gen = ids[r, width : width + gen_lens[r]]
            shifted = torch.cat([torch.tensor([START]), gen[:-1]])
            direct = model(input_ids=prompt[None], decoder_input_ids=shifted[None]).logits[0]
            torch.testing.assert_close(logits[r, : gen_lens[r]], direct, rtol=1e-4, atol=1e-5)
    ref = ac.reference_logits(ids, mask, width)
    torch.testing.assert_close(ref, logits.detach(), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # change the policy: the reference must not follow
        for p in model.parameters():
            p.add_(0.05)
    torch.testing.assert_close(ac.reference_logits(ids, mask, width), ref)
    assert not torch.allclose(ac(ids, mask, width)[0], logits)
    critic = ActorCritic(_t5(11, seed=3), separate_critic=True)
    assert critic(ids, mask, width)[1].shape == (b, g, 2)
    with pytest.raises(ValueError, match="encoder-decoder"):
        ActorCritic(_t5(11), reference=tiny_causal_lm(11))


def test_actor_critic_seq2seq_encodes_up_to_the_longest_prompt() -> None:
    """Issue #9: the encoder reads the right-aligned prompts up to the longest one; padding
    columns added to every row change neither the width it sees nor the logits."""
    model = _t5(11, seed=3)
    ac = ActorCritic(model)
    ids, mask, width = _rollout_batch(model)
    seen: list[int] = []
    model.get_encoder().register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    pad = torch.zeros(ids.shape[0], 3, dtype=ids.dtype)
    with torch.no_grad():
        logits, _ = ac(ids, mask, width)
        wide, _ = ac(torch.cat([pad, ids], 1), torch.cat([pad, mask], 1), width + 3)
    longest = int(mask[:, :width].sum(1).max())
    assert seen == [longest, longest]
    torch.testing.assert_close(wide, logits, rtol=1e-5, atol=1e-6)


def test_right_align() -> None:
    ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 4], [0, 3, 0, 2]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 1]])
    got_ids, got_mask = right_align(ids, mask)
    assert got_ids.tolist() == [[5, 6, 0, 0], [7, 8, 9, 4], [3, 2, 0, 0]]
    assert got_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]]


# ------------------------------------------------------------------------------ training
def _train(cfg: PPOConfig, algo: str, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, float]]:
    """Run ``algo`` (a name in ``ALGORITHMS``) and collect what each iteration logged."""
    logs: list[dict[str, float]] = []

    def update(ac: object, optimizer: object, batch: object, *args: object) -> dict[str, float]:
        logs.append(batch.stats | ppo.update(ac, optimizer, batch, *args))  # type: ignore[arg-type]
        return logs[-1]

    monkeypatch.setitem(ALGORITHMS, algo, dataclasses.replace(ALGORITHMS[algo], update=update))
    run(cfg, algo)  # the toy task's default guide: the ε = 0.3 scripted expert
    return logs


@pytest.mark.parametrize("algo", ["ppo", "ppo_pp"])
def test_training_smoke_seq2seq(tmp_path: Path, algo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    common = dict(
        seq2seq=True, total_iterations=2, batch_size=8, minibatch_size=4, update_epochs=1,
        learning_rate=1e-3, top_k=0, output_dir=str(tmp_path), checkpoint_every=2,
    )  # fmt: skip
    if algo == "ppo":
        cfg: PPOConfig = PPOConfig(**common)
        logs = _train(cfg, algo, monkeypatch)
    else:
        cfg = PPOPPConfig(beta=1.0, **common)
        logs = _train(cfg, algo, monkeypatch)
        assert all(log["charts/guided_share"] > 0.5 for log in logs)
    assert len(logs) == 2
    for log in logs:
        for key in ("losses/policy", "losses/value", "charts/kl"):
            assert math.isfinite(log[key]), key
    trained, _, config = load_policy(str(tmp_path))
    assert config["seq2seq"] is True and trained.seq2seq
    initial, _, _ = build_policy(cfg)
    before = dict(initial.named_parameters())
    changed = [n for n, p in trained.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("model.") for n in changed) and "value_head.weight" in changed


def test_build_detects_encoder_decoders_from_the_config(tmp_path: Path) -> None:
    tokenizer = tiny_hf_tokenizer(["a", "b", "c"])
    for name, model in (("t5", _t5(len(tokenizer))), ("llama", tiny_causal_lm(len(tokenizer)))):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    _, loaded = build_tokenizer_and_model(PPOConfig(model=str(tmp_path / "t5")))
    assert is_encoder_decoder(loaded)
    _, loaded = build_tokenizer_and_model(PPOConfig(model=str(tmp_path / "llama")))
    assert not is_encoder_decoder(loaded)
    with pytest.raises(ValueError, match="not an encoder-decoder"):
        build_tokenizer_and_model(PPOConfig(model=str(tmp_path / "llama"), seq2seq=True))
    with pytest.raises(ValueError, match="needs --model"):
        build_tokenizer_and_model(PPOConfig(env_id="textgen_env/IMDB-v0", seq2seq=True))
