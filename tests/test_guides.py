"""Tests of the guide policies (`textgen_env.guides`)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from textgen_env.errors import GuideError, GuideTimeoutError
from textgen_env.guides import (
    APIGuide,
    GuidePolicy,
    HFGuide,
    MixtureGuide,
    ReferenceGuide,
    ScriptedGuide,
    TextGuide,
)
from textgen_env.guides import hf as hf_module
from textgen_env.models import tiny_causal_lm, tiny_hf_tokenizer
from textgen_env.oracles import roll_out
from textgen_env.state import TextState
from textgen_env.tasks.toy import (
    POSITIVE_LEXICON,
    make_positive_vector_env,
    make_reverse_vector_env,
    positive_tokenizer,
    reverse_expert,
    reverse_tokenizer,
)
from textgen_env.vector import NO_TOKEN, TextGenVectorEnv

EOS = 1
REVERSE_VOCAB = 11
POSITIVE_VOCAB = len(POSITIVE_LEXICON) + 2


# --------------------------------------------------------------------------- helpers
def _states(envs: TextGenVectorEnv, steps: Sequence[int], seed: int = 0) -> list[TextState]:
    """States of ``envs`` after ``steps[i]`` expert-free tokens (drawn from 2..vocab-1)."""
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    vocab = envs.task.vocab_size
    tokens = np.full((envs.num_envs, max(steps, default=0)), NO_TOKEN)
    for i, t in enumerate(steps):
        tokens[i, :t] = rng.integers(2, vocab, size=t)  # never EOS: episodes stay open
    if tokens.shape[1]:
        envs.advance(tokens)
    return list(envs.get_states())


def _check_contract(
    out: Sequence[Sequence[int]], asked: Sequence[int], vocab: int, eos: int = EOS
) -> None:
    assert len(out) == len(asked)
    for seq, k in zip(out, asked, strict=True):
        seq = list(seq)
        assert all(isinstance(t, int) and 0 <= t < vocab for t in seq)
        assert len(seq) == k or (0 < len(seq) < k and seq[-1] == eos)
        assert eos not in seq[:-1]


def _apply(envs: TextGenVectorEnv, out: Sequence[Sequence[int]]) -> None:
    """Push guide output through the env: it must be accepted as is."""
    width = max((len(s) for s in out), default=0)
    tokens = np.full((envs.num_envs, max(width, 1)), NO_TOKEN)
    for i, seq in enumerate(out):
        tokens[i, : len(seq)] = seq
    envs.advance(tokens)


class Recorder:
    """A guide that records its calls and proposes a constant token (EOS-free)."""

    def __init__(self, token: int) -> None:
        self.token = token
        self.calls: list[tuple[list[TextState], list[int]]] = []

    def act(
        self, states: Sequence[TextState], num_tokens: Sequence[int], rng: np.random.Generator
    ) -> list[tuple[int, ...]]:
        self.calls.append((list(states), list(num_tokens)))
        return [(self.token,) * k for k in num_tokens]


def test_all_guides_satisfy_the_protocol() -> None:
    tok = positive_tokenizer()
    guides = [
        ScriptedGuide(reverse_expert, vocab_size=REVERSE_VOCAB),
        ReferenceGuide(tok),
        TextGuide(lambda texts: texts, tok),
        MixtureGuide(Recorder(2), Recorder(3), 0.5),
        HFGuide(tiny_causal_lm(REVERSE_VOCAB), reverse_tokenizer()),
    ]
    assert all(isinstance(g, GuidePolicy) for g in guides)


# ------------------------------------------------------------------------- scripted
def test_scripted_without_noise_is_the_expert() -> None:
    envs = make_reverse_vector_env(6)
    states = _states(envs, [0, 0, 0, 2, 3, 0])
    asked = [8, 3, 0, 2, 8, 1]
    out = ScriptedGuide(reverse_expert, vocab_size=REVERSE_VOCAB).act(
        states, asked, np.random.default_rng(0)
    )
    _check_contract(out, asked, REVERSE_VOCAB)
    for state, seq, k in zip(states, out, asked, strict=True):
        expected, current = [], state
        while len(expected) < k and EOS not in expected:
            expected.append(reverse_expert(current))
            current = current.extend((expected[-1],))
        assert list(seq) == expected
    reversed_prompt = list(states[0].prompt_ids[-2::-1])
    assert list(out[0]) == [*reversed_prompt, EOS][:8]  # the full optimal answer
    _apply(envs, out)


def test_scripted_full_noise_is_uniform() -> None:
    state = make_reverse_vector_env(1).task.initial_state(0)
    guide = ScriptedGuide(reverse_expert, vocab_size=REVERSE_VOCAB, epsilon=1.0)
    n = 5000
    out = guide.act([state] * n, [1] * n, np.random.default_rng(123))
    counts = np.bincount([s[0] for s in out], minlength=REVERSE_VOCAB)
    assert counts[0] == 0  # the pad id is not in the default noise
    expected = n / (REVERSE_VOCAB - 1)
    assert np.all(np.abs(counts[1:] - expected) < 0.15 * expected)


def test_scripted_noise_rate_and_custom_noise_tokens() -> None:
    task = make_reverse_vector_env(1).task
    state = next(
        s
        for s in map(task.initial_state, range(task.num_prompts))
        if reverse_expert(s) not in (9, 10)
    )
    guide = ScriptedGuide(
        reverse_expert, vocab_size=REVERSE_VOCAB, epsilon=0.3, noise_tokens=[9, 10]
    )
    n = 4000
    first = np.array([s[0] for s in guide.act([state] * n, [1] * n, np.random.default_rng(5))])
    assert set(np.unique(first).tolist()) <= {reverse_expert(state), 9, 10}
    assert abs(np.mean(first != reverse_expert(state)) - 0.3) < 0.03
    assert abs(np.mean(first == 9) - 0.15) < 0.03


def test_scripted_is_reproducible_and_stops_after_eos() -> None:
    envs = make_reverse_vector_env(8)
    states = _states(envs, [0, 1, 2, 3, 0, 1, 2, 3])
    guide = ScriptedGuide(reverse_expert, vocab_size=REVERSE_VOCAB, epsilon=0.5)
    asked = [8, 7, 6, 5, 4, 3, 2, 1]
    a = guide.act(states, asked, np.random.default_rng(9))
    b = guide.act(states, asked, np.random.default_rng(9))
    assert a == b
    _check_contract(a, asked, REVERSE_VOCAB)
    _apply(envs, a)


def test_scripted_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        ScriptedGuide(reverse_expert, vocab_size=REVERSE_VOCAB, epsilon=1.5)
    with pytest.raises(ValueError, match="noise_tokens"):
        ScriptedGuide(reverse_expert, vocab_size=REVERSE_VOCAB, noise_tokens=[11])
    state = make_reverse_vector_env(1).task.initial_state(0)
    bad = ScriptedGuide(lambda s: 99, vocab_size=REVERSE_VOCAB)
    with pytest.raises(GuideError, match="outside"):
        bad.act([state], [1], np.random.default_rng(0))
    guide = ScriptedGuide(reverse_expert, vocab_size=REVERSE_VOCAB)
    with pytest.raises(ValueError, match="num_tokens"):
        guide.act([state], [1, 2], np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_tokens"):
        guide.act([state], [-1], np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        guide.act([state], [1], 0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ reference
def test_reference_replays_by_position() -> None:
    tok = reverse_tokenizer()
    envs = make_reverse_vector_env(5)
    states = _states(envs, [0, 2, 0, 4, 3])
    guide = ReferenceGuide(tok)
    asked = [3, 2, 0, 8, 1]
    out = guide.act(states, asked, np.random.default_rng(0))
    _check_contract(out, asked, REVERSE_VOCAB)
    for state, seq, k in zip(states, out, asked, strict=True):
        ref = [*tok.encode(state.references[0]), EOS]
        t = state.num_generated
        assert list(seq) == (ref[t : t + k] if k else [])
    _apply(envs, out)
    past_end = states[0].extend([2] * 7)  # longer than any reference (<= 6 letters + EOS)
    assert guide.act([past_end], [1], np.random.default_rng(0)) == [(EOS,)]


def test_reference_caches_encodings_and_needs_references() -> None:
    class Counting:
        eos_token_id = EOS
        pad_token_id = 0

        def __init__(self) -> None:
            self.inner = reverse_tokenizer()
            self.calls = 0

        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            self.calls += 1
            return self.inner.encode(text)

    tok = Counting()
    guide = ReferenceGuide(tok)  # type: ignore[arg-type]
    state = make_reverse_vector_env(1).task.initial_state(3)
    for t in range(3):
        guide.act([state.extend([2] * t)], [2], np.random.default_rng(0))
    assert tok.calls == 1
    bare = TextState("Reverse-v0", 0, (2, 3, 10))
    with pytest.raises(GuideError, match="no reference"):
        guide.act([bare], [1], np.random.default_rng(0))


# -------------------------------------------------------------------------- mixture
def test_mixture_extremes_are_one_guide() -> None:
    states = _states(make_reverse_vector_env(6), [0, 1, 2, 0, 1, 2])
    asked = [1, 2, 0, 3, 1, 2]
    for beta, token in ((1.0, 4), (0.0, 5)):
        first, second = Recorder(4), Recorder(5)
        out = MixtureGuide(first, second, beta).act(states, asked, np.random.default_rng(0))
        assert out == [(token,) * k for k in asked]
        used, unused = (first, second) if beta == 1.0 else (second, first)
        assert unused.calls == []
        assert len(used.calls) == 1
        assert used.calls[0][1] == [k for k in asked if k > 0]  # 0-token states are not sent


def test_mixture_splits_about_beta_and_keeps_order() -> None:
    state = make_reverse_vector_env(1).task.initial_state(0)
    first, second = Recorder(4), Recorder(5)
    n = 2000
    out = MixtureGuide(first, second, 0.5).act([state] * n, [2] * n, np.random.default_rng(1))
    share = np.mean([seq == (4, 4) for seq in out])
    assert 0.45 < share < 0.55
    assert len(first.calls) == len(second.calls) == 1
    assert len(first.calls[0][0]) == round(share * n)
    a = MixtureGuide(Recorder(4), Recorder(5), 0.5).act(
        [state] * 50, [1] * 50, np.random.default_rng(2)
    )
    b = MixtureGuide(Recorder(4), Recorder(5), 0.5).act(
        [state] * 50, [1] * 50, np.random.default_rng(2)
    )
    assert a == b
    with pytest.raises(ValueError, match="beta"):
        MixtureGuide(first, second, 1.2)


def test_mixture_beta_set_after_construction_is_checked_and_used() -> None:
    """``mix.beta = 2.0`` used to be accepted and act as 1; now it raises and changes nothing."""
    states = _states(make_reverse_vector_env(4), [0, 1, 2, 0])
    first, second = Recorder(4), Recorder(5)
    mix = MixtureGuide(first, second, 0.5)
    with pytest.raises(ValueError, match=r"^beta must be in \[0, 1\], got 2.0$"):
        mix.beta = 2.0
    with pytest.raises(TypeError, match=r"^beta must be a real number, got '1' \(str\)$"):
        mix.beta = "1"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="beta must be a finite number"):
        mix.beta = float("nan")
    assert mix.beta == 0.5  # a rejected value leaves the old one
    mix.beta = np.float32(0.0)
    assert mix.beta == 0.0 and type(mix.beta) is float
    assert mix.act(states, [1] * 4, np.random.default_rng(0)) == [(5,)] * 4
    with pytest.raises(TypeError, match="first must be a GuidePolicy"):
        mix.first = object()  # type: ignore[assignment]
    assert mix.first is first
    mix.first, mix.beta = Recorder(6), 1
    assert mix.act(states, [1] * 4, np.random.default_rng(0)) == [(6,)] * 4


def test_scripted_attributes_stay_valid_after_construction() -> None:
    guide = ScriptedGuide(reverse_expert, vocab_size=REVERSE_VOCAB, epsilon=0.5)
    with pytest.raises(ValueError, match=r"^epsilon must be in \[0, 1\], got 1.5$"):
        guide.epsilon = 1.5
    assert guide.epsilon == 0.5
    guide.epsilon = np.float32(0.25)
    assert guide.epsilon == 0.25 and type(guide.epsilon) is float
    # vocab_size, eos_token_id and noise_tokens were checked against each other: read-only
    for name, value in (
        ("vocab_size", 3),
        ("eos_token_id", 50),
        ("noise_tokens", np.array([99])),
        ("expert", len),
    ):
        with pytest.raises(AttributeError, match=f"property '{name}' .* has no setter"):
            setattr(guide, name, value)
    with pytest.raises(ValueError, match="read-only"):
        guide.noise_tokens[0] = 99
    assert guide.noise_tokens.tolist() == list(range(1, REVERSE_VOCAB))


def test_mixture_of_real_guides_drives_the_env() -> None:
    envs = make_reverse_vector_env(8)
    states = _states(envs, [0, 1, 2, 3, 0, 1, 2, 3])
    mix = MixtureGuide(
        ReferenceGuide(reverse_tokenizer()),
        ScriptedGuide(reverse_expert, vocab_size=REVERSE_VOCAB, epsilon=0.5),
        0.5,
    )
    asked = [3] * 8
    out = mix.act(states, asked, np.random.default_rng(0))
    _check_contract(out, asked, REVERSE_VOCAB)
    _apply(envs, out)


# ----------------------------------------------------------------------------- text
def test_text_guide_reencodes_and_appends_eos() -> None:
    tok = positive_tokenizer()
    envs = make_positive_vector_env(4)
    states = _states(envs, [0, 2, 1, 0])
    seen: list[list[str]] = []

    def fn(texts: list[str]) -> list[str]:
        seen.append(texts)
        return ["great wonderful movie", "good", "", "fine fine fine fine fine fine"][: len(texts)]

    guide = TextGuide(fn, tok, prompt_template="Continue: {prompt}")
    asked = [2, 3, 2, 0]
    out = guide.act(states, asked, np.random.default_rng(0))
    _check_contract(out, asked, POSITIVE_VOCAB)
    great, wonderful, good = tok.encode("great wonderful good")
    assert out[:3] == [(great, wonderful), (good, EOS), (EOS,)]
    assert out[3] == ()
    assert len(seen) == 1 and len(seen[0]) == 3  # 0-token states are not sent
    prompt = tok.decode(states[1].prompt_ids)
    completion = tok.decode(states[1].generated_ids)
    assert seen[0][1] == f"Continue: {prompt} {completion}"
    _apply(envs, out)
    assert guide.act(states[:1], [0], np.random.default_rng(0)) == [()]
    assert len(seen) == 1  # nothing asked: fn not called


class Service:
    """A fake rate-limited API: call ``i`` sleeps ``delays[i]`` seconds (the last entry repeats;
    ``None``: until :attr:`release` is set) and the most calls running at once is recorded."""

    def __init__(self, delays: Sequence[float | None]) -> None:
        self.delays = list(delays)
        self.calls = 0
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def __call__(self, texts: list[str]) -> list[str]:
        with self.lock:
            delay = self.delays[min(self.calls, len(self.delays) - 1)]
            self.calls += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if delay is None:
                self.release.wait(5)
            else:
                time.sleep(delay)
            return ["great"] * len(texts)
        finally:
            with self.lock:
                self.running -= 1


def test_text_guide_retry_waits_for_the_timed_out_call() -> None:
    """A retry starts only once the timed-out call has ended: calls never overlap."""
    state = make_positive_vector_env(1).task.initial_state(0)
    service = Service([0.15, 0.0])  # the first call ends 0.05 s after its 0.1 s timeout
    guide = TextGuide(service, positive_tokenizer(), timeout_s=0.1, retry_backoff_s=0)
    great = positive_tokenizer().encode("great")[0]
    start = time.perf_counter()
    assert guide.act([state], [1], np.random.default_rng(0)) == [(great,)]
    assert 0.15 <= time.perf_counter() - start < 1.0
    assert service.calls == 2 and service.most_running == 1


def test_text_guide_times_out_after_retries_one_call_at_a_time() -> None:
    """Every attempt times out; each retry waits for the call before, and when act raises
    no call it started is still running."""
    state = make_positive_vector_env(1).task.initial_state(0)
    service = Service([0.15, 0.15, 0.0])
    guide = TextGuide(
        service, positive_tokenizer(), timeout_s=0.1, max_retries=1, retry_backoff_s=0
    )
    with pytest.raises(
        GuideTimeoutError, match=r"^TextGuide: fn did not answer within 0.1 s \(2 attempt\(s\)\)$"
    ) as info:
        guide.act([state], [1], np.random.default_rng(0))
    assert isinstance(info.value.__cause__, TimeoutError)
    assert service.calls == 2 and service.running == 0  # it waited for the second call
    assert not guide.busy
    guide.act([state], [1], np.random.default_rng(0))
    assert service.calls == 3 and service.most_running == 1


def test_text_guide_never_starts_a_call_while_a_hung_one_runs() -> None:
    """A call that never ends blocks retries and later requests with GuideTimeoutError."""
    state = make_positive_vector_env(1).task.initial_state(0)
    service = Service([None, 0.0])
    guide = TextGuide(
        service, positive_tokenizer(), timeout_s=0.05, max_retries=2, retry_backoff_s=0
    )
    try:
        start = time.perf_counter()
        with pytest.raises(GuideTimeoutError) as info:
            guide.act([state], [1], np.random.default_rng(0))
        assert str(info.value) == (
            "TextGuide: fn did not answer within 0.05 s and had not ended after waiting "
            "0.05 s more; not retrying while that call runs (calls to fn never overlap)"
        )
        assert isinstance(info.value.__cause__, TimeoutError)
        assert time.perf_counter() - start < 0.5
        with pytest.raises(GuideTimeoutError) as info:
            guide.act([state], [1], np.random.default_rng(0))
        assert str(info.value) == (
            "TextGuide: an earlier call of fn that timed out had not ended after waiting "
            "0.05 s; not starting a new call while it runs (calls to fn never overlap)"
        )
        assert service.calls == 1
    finally:
        service.release.set()
    great = positive_tokenizer().encode("great")[0]
    assert guide.act([state], [1], np.random.default_rng(0)) == [(great,)]
    assert service.calls == 2 and service.most_running == 1


def _call_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "TextGuide-call"]


def test_text_guide_close_waits_for_a_call_that_ignored_its_timeout() -> None:
    """A call that runs past its timeout and the wait after it is reported at once; busy is
    true until it ends, and close() waits for it (or says it still runs)."""
    state = make_positive_vector_env(1).task.initial_state(0)
    service = Service([None])
    guide = TextGuide(service, positive_tokenizer(), timeout_s=0.05, max_retries=0)
    try:
        with pytest.raises(GuideTimeoutError) as info:
            guide.act([state], [1], np.random.default_rng(0))
        assert str(info.value) == (
            "TextGuide: fn did not answer within 0.05 s and had not ended after waiting "
            "0.05 s more; it still runs (calls to fn never overlap)"
        )
        assert guide.busy and service.running == 1 and len(_call_threads()) == 1
        with pytest.raises(GuideTimeoutError, match=r"^TextGuide.close: a call of fn that"):
            guide.close()
    finally:
        service.release.set()
    with guide:  # close() on exit: waits for the call to end
        pass
    assert not guide.busy and service.running == 0
    time.sleep(0.01)  # the worker thread exits right after setting the result
    assert _call_threads() == []


def test_text_guide_fn_given_its_timeout_leaves_nothing_running() -> None:
    """With fn_takes_timeout, fn gets the seconds it may block for; an fn that honours them
    (as an HTTP client's timeout does) has ended when act raises: no thread is left."""
    state = make_positive_vector_env(1).task.initial_state(0)
    given: list[float] = []

    def slow_client(texts: list[str], *, timeout_s: float) -> list[str]:
        given.append(timeout_s)
        time.sleep(timeout_s * 1.2)  # the request gives up a little after the guide does
        raise TimeoutError("read timed out")

    guide = TextGuide(
        slow_client, positive_tokenizer(), timeout_s=0.05, max_retries=1, retry_backoff_s=0,
        fn_takes_timeout=True,
    )  # fmt: skip
    with pytest.raises(GuideTimeoutError, match=r"within 0.05 s \(2 attempt\(s\)\)$"):
        guide.act([state], [1], np.random.default_rng(0))
    assert given == [0.05, 0.05] and not guide.busy
    time.sleep(0.01)
    assert _call_threads() == []
    with pytest.raises(TypeError, match="fn_takes_timeout must be a bool"):
        TextGuide(slow_client, positive_tokenizer(), fn_takes_timeout=1)  # type: ignore[arg-type]


def test_text_guide_reply_ends_at_eos_text_stop_strings_and_special_tokens() -> None:
    """Hosted models return their EOS or stop text: the reply ends there and the roll-out
    finishes (it used to fail with "continues after EOS")."""
    tok = positive_tokenizer()  # word-level: <pad>=0 <eos>=1
    envs = make_positive_vector_env(6)
    states = _states(envs, [0, 0, 0, 0, 0, 0])
    replies = [
        "great <eos>",  # ends with the EOS text
        "great<eos> movie was bad",  # EOS text inside a word, more text after it
        "good </s> awful",  # a configured stop string
        "fine <pad> good",  # a special token's text: pad is never taken as an action
        "<eos> wonderful",
        "wonderful brilliant great moving funny good fine",  # longer than the horizon
    ]
    guide = TextGuide(lambda texts: replies[: len(texts)], tok, stop=["</s>"])
    final, returns = roll_out(envs, guide, states)
    great, good, fine = tok.encode("great good fine")
    assert [s.generated_ids for s in final] == [
        (great, EOS), (great, EOS), (good, EOS), (fine, EOS), (EOS,),
        tuple(tok.encode(replies[5]))[:6],
    ]  # fmt: skip
    assert returns[:3].tolist() == pytest.approx([0.8 / 6, 0.8 / 6, 0.5 / 6])
    # Asked for fewer tokens than the reply holds: no room for EOS, the episode goes on.
    assert guide.act(states[:1], [1], np.random.default_rng(0)) == [(great,)]


def test_text_guide_special_tokens_of_a_hugging_face_tokenizer() -> None:
    """Control tokens end the continuation; the unknown token (text the policy cannot write)
    raises GuideError, unless the reply holds the unknown token's own text."""
    tok = tiny_hf_tokenizer(["the", "cat", "sat"])  # <pad>=0 <eos>=1 <unk>=2 the=3 cat=4 sat=5
    assert sorted(tok.all_special_ids) == [0, 1, 2]
    state = TextState("t", 0, (3, 4))
    reply = ""
    guide = TextGuide(lambda texts: [reply] * len(texts), tok)
    for reply, want in [
        ("the cat<eos>sat", (3, 4, 1)),  # cut at the EOS text before encoding
        ("the <pad> cat", (3, 1)),
        ("the cat <unk> sat", (3, 4, 1)),  # the literal <unk> text is a control token
        ("sat sat sat sat sat sat", (5, 5, 5, 5)),
    ]:
        assert guide.act([state], [4], np.random.default_rng(0)) == [want], reply
    reply = "the dog sat"
    with pytest.raises(GuideError, match="encodes part of the reply 'the dog sat' as its unknown"):
        guide.act([state], [4], np.random.default_rng(0))


def test_text_guide_attributes_and_stop_are_checked() -> None:
    tok = positive_tokenizer()
    guide = TextGuide(lambda t: t, tok, stop=("</s>",))
    assert guide.stop == ("</s>",)
    with pytest.raises(ValueError, match=r"^timeout_s must be > 0, got 0$"):
        guide.timeout_s = 0
    with pytest.raises(ValueError, match=r"^timeout_s must be a finite number > 0, got inf$"):
        guide.timeout_s = float("inf")
    with pytest.raises(ValueError, match=r"^max_retries must be an int >= 0, got -1$"):
        guide.max_retries = -1
    with pytest.raises(TypeError, match=r"^max_retries must be an int, got 1.0 \(float\)$"):
        guide.max_retries = 1.0  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"^retry_backoff_s must be a finite number >= 0"):
        guide.retry_backoff_s = float("nan")
    assert (guide.timeout_s, guide.max_retries, guide.retry_backoff_s) == (30.0, 2, 0.5)
    for name in ("fn", "policy_tokenizer", "eos_token_id", "prompt_template", "stop"):
        with pytest.raises(AttributeError, match=f"property '{name}' .* has no setter"):
            setattr(guide, name, None)
    with pytest.raises(TypeError, match=r"stop must be a sequence of str \(wrap a single"):
        TextGuide(lambda t: t, tok, stop="</s>")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"stop\[1\] must be a str, got 3 \(int\)"):
        TextGuide(lambda t: t, tok, stop=["</s>", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"stop\[0\] is empty"):
        TextGuide(lambda t: t, tok, stop=[""])
    copy = pickle.loads(pickle.dumps(TextGuide(str.split, tok, stop=["</s>"])))
    assert copy.stop == ("</s>",) and copy.act([], [], np.random.default_rng(0)) == []


def test_text_guide_raising_fn_and_flaky_fn() -> None:
    state = make_positive_vector_env(1).task.initial_state(0)
    tok = positive_tokenizer()

    def broken(texts: list[str]) -> list[str]:
        raise ConnectionError("service down")

    guide = TextGuide(broken, tok, max_retries=1, retry_backoff_s=0)
    with pytest.raises(GuideError, match="service down") as info:
        guide.act([state], [1], np.random.default_rng(0))
    assert not isinstance(info.value, GuideTimeoutError)
    assert isinstance(info.value.__cause__, ConnectionError)

    attempts = []

    def flaky(texts: list[str]) -> list[str]:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return ["great"] * len(texts)

    guide = TextGuide(flaky, tok, max_retries=2, retry_backoff_s=0.001)
    assert guide.act([state], [1], np.random.default_rng(0)) == [tuple(tok.encode("great"))]
    assert len(attempts) == 3


@pytest.mark.parametrize(
    ("reply", "message"),
    [("great", "list of str"), (["great", "good"], "2 texts"), ([3], "int"), (["zzz"], "encode")],
)
def test_text_guide_malformed_output_fails_at_once(reply: object, message: str) -> None:
    calls = []

    def fn(texts: list[str]) -> object:
        calls.append(1)
        return reply

    state = make_positive_vector_env(1).task.initial_state(0)
    guide = TextGuide(fn, positive_tokenizer(), max_retries=3)  # type: ignore[arg-type]
    with pytest.raises(GuideError, match=message):
        guide.act([state], [1], np.random.default_rng(0))
    assert len(calls) == 1


def test_text_guide_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="prompt_template"):
        TextGuide(lambda t: t, positive_tokenizer(), prompt_template="no placeholder")
    with pytest.raises(ValueError, match="timeout_s"):
        TextGuide(lambda t: t, positive_tokenizer(), timeout_s=0)


# ------------------------------------------------------------------------------- HF
@pytest.fixture
def budgets(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Records the per-row budgets of every sampler call made by HFGuide."""
    recorded: list[list[int]] = []
    real = hf_module.sample

    def spy(*args: object, **kwargs: object) -> list[list[int]]:
        recorded.append(list(args[3]))  # type: ignore[arg-type]
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        assert all(len(o) <= b for o, b in zip(out, recorded[-1], strict=True))
        return out

    monkeypatch.setattr(hf_module, "sample", spy)
    return recorded


def test_hf_guide_fast_path(budgets: list[list[int]]) -> None:
    envs = make_reverse_vector_env(6)
    states = _states(envs, [0, 1, 2, 3, 0, 5])
    guide = HFGuide(tiny_causal_lm(REVERSE_VOCAB, seed=3), reverse_tokenizer(), batch_size=4)
    asked = [8, 0, 1, 3, 2, 3]
    out = guide.act(states, asked, np.random.default_rng(0))
    _check_contract(out, asked, REVERSE_VOCAB)
    assert budgets == [[8, 1, 3, 2], [3]]  # exactly what was asked, chunked by batch_size
    assert out == guide.act(states, asked, np.random.default_rng(0))
    assert out != guide.act(states, asked, np.random.default_rng(1))
    _apply(envs, out)


def test_hf_guide_stop_token_becomes_eos() -> None:
    states = _states(make_reverse_vector_env(3), [0, 1, 2])
    model = tiny_causal_lm(REVERSE_VOCAB, seed=3)
    greedy = HFGuide(model, reverse_tokenizer(), do_sample=False)
    free = greedy.act(states, [8, 8, 8], np.random.default_rng(0))
    stop = next(t for t in free[0] if t != EOS)
    stopping = HFGuide(model, reverse_tokenizer(), do_sample=False, stop_token_ids=[stop])
    out = stopping.act(states, [8, 8, 8], np.random.default_rng(0))
    cut = free[0].index(stop)
    assert out[0] == (*free[0][:cut], EOS)
    _check_contract(out, [8, 8, 8], REVERSE_VOCAB)


def test_hf_guide_attributes_stay_valid_after_construction() -> None:
    states = _states(make_reverse_vector_env(3), [0, 1, 2])
    guide = HFGuide(tiny_causal_lm(REVERSE_VOCAB, seed=3), reverse_tokenizer(), top_k=5)
    with pytest.raises(ValueError, match=r"^temperature must be > 0, got 0$"):
        guide.temperature = 0
    with pytest.raises(ValueError, match=r"^top_p must be in \(0, 1\], got 1.5$"):
        guide.top_p = 1.5
    with pytest.raises(TypeError, match=r"^top_k must be an int, got 2.5 \(float\)$"):
        guide.top_k = 2.5  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"^batch_size must be a positive int, got 0$"):
        guide.batch_size = 0
    with pytest.raises(TypeError, match="do_sample must be a bool"):
        guide.do_sample = 0  # type: ignore[assignment]
    with pytest.raises(TypeError, match="does not support item assignment"):
        guide.sampling["top_k"] = 1  # type: ignore[index]
    assert dict(guide.sampling) == {"top_k": 5, "top_p": 1.0, "temperature": 1.0, "do_sample": True}
    for name in (
        "model", "seq2seq", "tokenizer", "policy_tokenizer", "prompt_template",
        "use_chat_template", "fast", "eos_token_id", "stop_token_ids", "pad_token_id",
        "vocab_limit",
    ):  # fmt: skip
        with pytest.raises(AttributeError, match=f"property '{name}' .* has no setter"):
            setattr(guide, name, None)
    guide.top_k, guide.batch_size, guide.do_sample = np.int32(0), np.int64(1), False
    assert dict(guide.sampling) == {
        "top_k": 0,
        "top_p": 1.0,
        "temperature": 1.0,
        "do_sample": False,
    }
    out = guide.act(states, [3, 3, 3], np.random.default_rng(0))
    _check_contract(out, [3, 3, 3], REVERSE_VOCAB)
    with pytest.raises(TypeError, match=r"stop_token_ids\[1\] must be an int, got 2.5"):
        HFGuide(guide.model, reverse_tokenizer(), stop_token_ids=[3, 2.5])
    with pytest.raises(TypeError, match="use_chat_template must be a bool"):
        HFGuide(guide.model, reverse_tokenizer(), use_chat_template="yes")  # type: ignore[arg-type]


def _lexicon_guide(**kwargs: object) -> HFGuide:
    guide_tok = tiny_hf_tokenizer(list(POSITIVE_LEXICON))
    model = tiny_causal_lm(len(guide_tok), seed=5)
    return HFGuide(model, guide_tok, policy_tokenizer=positive_tokenizer(), **kwargs)


def test_hf_guide_text_handoff(budgets: list[list[int]]) -> None:
    envs = make_positive_vector_env(5)
    states = _states(envs, [0, 1, 3, 0, 2])
    guide = _lexicon_guide(prompt_template="Continue this review: {prompt}")
    assert not guide.fast
    asked = [3, 2, 1, 0, 4]
    out = guide.act(states, asked, np.random.default_rng(0))
    _check_contract(out, asked, POSITIVE_VOCAB)
    assert budgets[0] == [k + 1 for k in asked if k > 0]  # about what was asked, not more
    total = np.sum([sum(b) for b in budgets])
    assert total <= 3 * sum(k + 1 for k in asked if k > 0)
    assert out == guide.act(states, asked, np.random.default_rng(0))
    _apply(envs, out)
    prompt = positive_tokenizer().decode(states[2].prompt_ids)
    completion = positive_tokenizer().decode(states[2].generated_ids)
    assert guide.contexts(states[2:3]) == [f"Continue this review: {prompt} {completion}"]


def test_hf_guide_chat_template_and_handoff_stop() -> None:
    guide = _lexicon_guide(use_chat_template=True, prompt_template="review: {prompt}")
    guide.tokenizer.chat_template = (
        "{% for m in messages %}<user> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<bot> {% endif %}"
    )
    states = _states(make_positive_vector_env(2), [0, 2])
    prompt = positive_tokenizer().decode(states[0].prompt_ids)
    assert guide.contexts(states[:1]) == [f"<user> review: {prompt} <bot> "]
    out = guide.act(states, [6, 6], np.random.default_rng(0))
    _check_contract(out, [6, 6], POSITIVE_VOCAB)

    # A guide that stops at once (every word is a stop token) hands over just the policy EOS.
    quitter = _lexicon_guide(stop_token_ids=list(range(len(guide.tokenizer))))
    assert quitter.act(states, [3, 1], np.random.default_rng(0)) == [(EOS,), (EOS,)]


# ------------------------------------------------------------- NumPy scalars as arguments
def _guide_output(guide: GuidePolicy, vector_env: TextGenVectorEnv) -> list[tuple[int, ...]]:
    states = _states(vector_env, [0, 1, 2, 0])
    return [tuple(s) for s in guide.act(states, [3, 2, 4, 1], np.random.default_rng(7))]


# Each entry builds a guide from numbers made by `i` (ints) and `x` (floats) and returns what it
# proposes; with NumPy scalars it must be exactly what the plain-Python guide proposes.
NUMPY_GUIDES: dict[str, Callable[[Callable[[int], Any], Callable[[float], Any]], Any]] = {
    "ScriptedGuide(vocab_size, epsilon, eos_token_id)": lambda i, x: _guide_output(
        ScriptedGuide(
            reverse_expert, vocab_size=i(REVERSE_VOCAB), epsilon=x(0.5), eos_token_id=i(EOS)
        ),
        make_reverse_vector_env(4),
    ),
    "MixtureGuide(beta)": lambda i, x: _guide_output(
        MixtureGuide(Recorder(4), Recorder(5), x(0.25)), make_reverse_vector_env(4)
    ),
    "HFGuide(top_k, top_p, temperature, batch_size), tiny_causal_lm(vocab_size, seed)": (
        lambda i, x: _guide_output(
            HFGuide(
                tiny_causal_lm(i(REVERSE_VOCAB), seed=i(3), hidden_size=i(16)),
                reverse_tokenizer(),
                top_k=i(5),
                top_p=x(0.75),
                temperature=x(0.5),
                batch_size=i(3),
                stop_token_ids=[i(10)],
            ),
            make_reverse_vector_env(4),
        )
    ),
    "TextGuide(timeout_s, max_retries, retry_backoff_s)": lambda i, x: _guide_output(
        TextGuide(
            lambda texts: ["great good"] * len(texts),
            positive_tokenizer(),
            timeout_s=x(2.0),
            max_retries=i(1),
            retry_backoff_s=x(0.0),
        ),
        make_positive_vector_env(4),
    ),
}


@pytest.mark.parametrize(
    ("int_type", "float_type"), [(np.int64, np.float32), (np.int32, np.float64)]
)
@pytest.mark.parametrize("entry", list(NUMPY_GUIDES))
def test_guides_accept_numpy_scalars(entry: str, int_type: type, float_type: type) -> None:
    build = NUMPY_GUIDES[entry]
    assert build(int_type, float_type) == build(int, float)


# ------------------------------------------------------------------------------ API
# (against a real server: tests/test_guides_api.py)
def test_api_guide_checks_its_arguments_and_hides_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tok = positive_tokenizer()
    url = "http://127.0.0.1:9/v1"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    guide = APIGuide(url + "/", "m", tok, stop=["</s>"], extra_body={"top_k": 50})
    assert guide.base_url == url and guide.endpoint == "completions"
    assert repr(guide) == f"APIGuide(base_url='{url}', model='m', endpoint='completions')"
    assert "sk-from" not in repr(guide) + str(vars(guide))
    assert dict(guide.sampling) == {"temperature": 1.0, "top_p": 1.0}
    assert dict(guide.extra_body) == {"top_k": 50} and guide.stop == ("</s>",)
    assert set(guide.usage()) >= {"requests", "retries", "errors", "seconds"}
    assert not any(guide.usage().values())
    assert guide.act([], [], np.random.default_rng(0)) == []  # nothing asked: no request
    guide.close()
    with pytest.raises(GuideError, match="closed"):
        guide.act([TextState("t", 0, ())], [1], np.random.default_rng(0))
    for name in ("base_url", "model", "endpoint", "timeout_s", "max_concurrency", "cache_dir"):
        with pytest.raises(AttributeError, match=f"property '{name}' .* has no setter"):
            setattr(guide, name, None)
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"base_url": "127.0.0.1:8000"}, ValueError, "base_url must be an http"),
        ({"model": ""}, ValueError, "model must be a non-empty str"),
        ({"endpoint": "responses"}, ValueError, "endpoint must be one of"),
        ({"prompt_template": "no placeholder"}, ValueError, "prompt_template"),
        ({"temperature": -1}, ValueError, "temperature must be >= 0"),
        ({"top_p": 0}, ValueError, r"top_p must be in \(0, 1\]"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency must be a positive int"),
        ({"max_retries": 1.5}, TypeError, "max_retries must be an int"),
        ({"extra_body": {"max_tokens": 9}}, ValueError, r"may not set \['max_tokens'\]"),
        ({"extra_body": {"x": object()}}, TypeError, "JSON-serialisable"),
        ({"send_seed": 1}, TypeError, "send_seed must be a bool"),
        ({"stop": "</s>"}, TypeError, "stop must be a sequence of str"),
    ]
    for change, error, message in bad:
        kw: dict[str, Any] = {"base_url": url, "model": "m"} | change
        with pytest.raises(error, match=message):
            APIGuide(kw.pop("base_url"), kw.pop("model"), tok, **kw)


def test_the_core_package_imports_without_openai() -> None:
    """openai is the optional extra ``api``: textgen_env and agents import without it, and
    only building an APIGuide says what to install."""
    code = (
        "import sys; sys.modules['openai'] = None\n"
        "import textgen_env, textgen_env.guides, agents.train\n"
        "from textgen_env.guides import APIGuide\n"
        "from textgen_env.tasks.toy import positive_tokenizer\n"
        "try:\n"
        "    APIGuide('http://127.0.0.1:9/v1', 'm', positive_tokenizer())\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == (
        "the API guide needs the openai client: pip install textgen-env[api]"
    )
