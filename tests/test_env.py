"""`TextGenEnv`: observation layout, rewards, restart-to-state and rejection of bad input.

Most tests use a tiny custom task so the expected arrays can be written by hand::

    ToyTokenizer("abcd="): <pad>=0 <eos>=1 a=2 b=3 c=4 d=5 "="=6   (vocab 7)
    prompts: 0 "ab=" -> "ba", 1 "cda=" -> "adc", 2 "d=" -> "d"
    max_prompt_tokens P=6, max_new_tokens G=4, ReverseReward

Every rejected call must raise and leave the env exactly as it was; :func:`assert_unchanged`
checks that through the public API (state, next observation, reward and RNG).
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded

import textgen_env  # noqa: F401  (registers the ids)
from textgen_env.env import TextGenEnv
from textgen_env.errors import InvalidStateError
from textgen_env.metrics import distinct_n
from textgen_env.oracles import sample_switch_points
from textgen_env.rewards.overlap import CiderD
from textgen_env.state import Prompt, TextState
from textgen_env.tasks.toy import (
    PositiveReward,
    ReverseReward,
    make_positive_env,
    make_reverse_env,
    positive_optimal_return,
)
from textgen_env.tokenizer import ToyTokenizer
from textgen_env.vector import TextGenVectorEnv

PAD, EOS, A, B, C, D, EQ = range(7)
P, G = 6, 4
SMALL_PROMPTS = (Prompt("ab=", ("ba",)), Prompt("cda=", ("adc",)), Prompt("d=", ("d",)))


class ScriptedReward:
    """ReverseReward that records its calls and can be told to misbehave.

    ``mode`` is ``"ok"``, ``"raise"`` (RuntimeError), ``"shape"`` (one value too many),
    ``"nan"`` or ``"text"`` (returns a string).
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[tuple[list[str], list[str], list[tuple[str, ...]]]] = []

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> Any:
        self.calls.append((list(prompts), list(completions), [tuple(r) for r in references]))
        if self.mode == "raise":
            raise RuntimeError("reward model crashed")
        values = ReverseReward()(prompts, completions, references)
        if self.mode == "shape":
            return np.append(values, 0.0)
        if self.mode == "nan":
            return np.full_like(values, np.nan)
        if self.mode == "text":
            return "high"
        return values


def small_env(reward_fn: Any = None, **kwargs: Any) -> TextGenEnv:
    """The hand-checkable task described in the module docstring."""
    params: dict[str, Any] = dict(
        tokenizer=ToyTokenizer(tuple("abcd=")),
        prompts=SMALL_PROMPTS,
        reward_fn=ReverseReward() if reward_fn is None else reward_fn,
        max_new_tokens=G,
        max_prompt_tokens=P,
        task_id="small",
    )
    params.update(kwargs)
    return TextGenEnv(**params)


def play(env: TextGenEnv, actions: Sequence[int]) -> list[tuple[Any, ...]]:
    """Step ``actions`` and return each step's (ids, mask, reward, terminated, truncated)."""
    out = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs["input_ids"].tolist(), obs["attention_mask"].tolist(), reward))
        out[-1] += (terminated, truncated, info)
    return out


def assert_unchanged(
    env: TextGenEnv,
    factory: Callable[[], TextGenEnv],
    state: TextState,
    obs: dict[str, np.ndarray],
) -> None:
    """Check that ``env`` still is at ``state`` with observation ``obs`` (consumes the env).

    A reference env built by ``factory`` is restarted at ``state``; both then take the same
    valid action (or, for an ended episode, must both refuse to step), and finally both are
    reset without a seed, which must draw the same prompt (the RNG was not touched).

    Args:
        env: The env that just rejected a call; it was seeded with ``reset(seed=0)``.
        factory: Builds a fresh env of the same task.
        state: ``env.get_state()`` before the rejected call.
        obs: The observation ``env`` returned last before the rejected call.
    """
    assert env.get_state() == state
    ref = factory()
    ref.reset(seed=0)
    if ref.task.is_terminal(state):
        with pytest.raises(ResetNeeded):
            env.step(A)
    else:
        ref_obs, _ = ref.reset(options={"state": state})
        for key in ("input_ids", "attention_mask"):
            np.testing.assert_array_equal(obs[key], ref_obs[key])
        assert play(env, [A]) == play(ref, [A])
    assert [env.reset()[1] for _ in range(5)] == [ref.reset()[1] for _ in range(5)]


# ------------------------------------------------------------------ spaces and observation
def test_spaces() -> None:
    """Discrete(vocab) actions; Dict of int64 Boxes of width P+G."""
    env = small_env()
    assert env.action_space == gym.spaces.Discrete(7)
    assert env.observation_space["input_ids"] == gym.spaces.Box(0, 6, (P + G,), np.int64)
    assert env.observation_space["attention_mask"] == gym.spaces.Box(0, 1, (P + G,), np.int64)


def test_reset_layout_left_padded_prompt_right_padded_generation() -> None:
    """The prompt ends at column P; generated token t is written at column P + t."""
    env = small_env()
    obs, info = env.reset(options={"prompt_index": 1})
    assert info == {"prompt_index": 1}
    assert obs["input_ids"].tolist() == [PAD, PAD, C, D, A, EQ, PAD, PAD, PAD, PAD]
    assert obs["attention_mask"].tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    assert obs in env.observation_space
    obs, *_ = env.step(B)
    obs, *_ = env.step(PAD)  # the pad id is a legal action; it is attended to
    assert obs["input_ids"].tolist() == [PAD, PAD, C, D, A, EQ, B, PAD, PAD, PAD]
    assert obs["attention_mask"].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert env.get_state().generated_ids == (B, PAD)


def test_observations_are_copies() -> None:
    """Mutating a returned observation does not affect the env."""
    env = small_env()
    obs, _ = env.reset(options={"prompt_index": 0})
    obs["input_ids"][:] = 5
    obs2, *_ = env.step(B)
    assert obs2["input_ids"].tolist() == [PAD, PAD, PAD, A, B, EQ, B, PAD, PAD, PAD]


def test_render_ansi() -> None:
    """``render_mode="ansi"`` shows the prompt and the completion so far."""
    env = small_env(render_mode="ansi")
    assert env.render() is None
    env.reset(options={"prompt_index": 0})
    env.step(B)
    env.step(A)
    assert env.render() == "ab= ▸ ba"
    assert small_env().render() is None


# ---------------------------------------------------------------------------------- rewards
def test_reward_on_eos_is_terminated() -> None:
    """Rewards are 0 until EOS; EOS terminates and the completion (EOS removed) is scored."""
    env = small_env()
    env.reset(options={"prompt_index": 0})
    steps = play(env, [B, A, EOS])
    assert [s[2:5] for s in steps] == [(0.0, False, False), (0.0, False, False), (1.0, True, False)]


def test_reward_at_horizon_is_truncated() -> None:
    """Reaching max_new_tokens without EOS truncates, and the task reward is still given."""
    env = small_env()
    env.reset(options={"prompt_index": 0})
    steps = play(env, [B, A, A, A])
    assert [s[3:5] for s in steps] == [(False, False)] * 3 + [(False, True)]
    assert [s[2] for s in steps] == [0.0, 0.0, 0.0, pytest.approx(2 / 4)]  # "baaa" vs "ba"


def test_eos_at_last_position_is_terminated_not_truncated() -> None:
    """EOS as the G-th token ends the episode as terminated."""
    env = small_env()
    env.reset(options={"prompt_index": 2})
    steps = play(env, [D, D, D, EOS])
    assert steps[-1][2:5] == (pytest.approx(1 / 3), True, False)


@pytest.mark.parametrize("factory", [make_reverse_env, make_positive_env])
def test_final_reward_equals_reward_function_on_decoded_completion(
    factory: Callable[[], TextGenEnv],
) -> None:
    """Over random rollouts: 0 before the last step, then ``reward_fn`` of the decoded text."""
    env = factory()
    task = env.task
    vocab = task.tokenizer.vocab
    rng = np.random.default_rng(0)
    for episode in range(150):
        env.reset(seed=episode)
        while True:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(task.vocab_size)))
            if not (terminated or truncated):
                assert reward == 0.0
                continue
            state = env.get_state()
            gen = state.generated_ids
            assert terminated == (gen[-1] == EOS)
            assert truncated == (not terminated and len(gen) == task.max_new_tokens)
            words = [vocab[t] for t in gen if t not in (PAD, EOS)]
            text = task.tokenizer.separator.join(words)
            prompt = task.prompts[state.prompt_index]
            expected = task.reward_fn([prompt.text], [text], [prompt.references])[0]
            assert reward == pytest.approx(expected)
            break


# ------------------------------------------------------------------------ restart to state
def test_restart_replays_exactly() -> None:
    """Mid-episode state -> actions; restart there -> the same actions give the same results."""
    env = make_reverse_env()
    rng = np.random.default_rng(0)
    for trial in range(40):
        env.reset(seed=trial)
        for _ in range(int(rng.integers(0, 4))):
            env.step(int(rng.integers(2, 11)))  # no EOS: the episode stays open
        state = env.get_state()
        actions = [int(a) for a in rng.integers(0, 11, size=8)]
        remaining = 8 - state.num_generated
        n = min([i + 1 for i, a in enumerate(actions) if a == EOS] + [remaining])
        first = play(env, actions[:n])
        assert first[-1][3] or first[-1][4]
        env.reset(options={"state": state})
        assert env.get_state() == state
        assert play(env, actions[:n]) == first
        other = make_reverse_env()  # a state is portable across instances
        other.reset(options={"state": pickle.loads(pickle.dumps(state))})
        assert play(other, actions[:n]) == first


def test_restart_observation_equals_original() -> None:
    """The observation after restarting equals the one seen at that point."""
    env = small_env()
    env.reset(options={"prompt_index": 1})
    obs, *_ = env.step(A)
    state = env.get_state()
    env.step(D)
    env.reset(options={"prompt_index": 0})
    obs2, info = env.reset(options={"state": state})
    assert info == {"prompt_index": 1}
    for key in obs:
        np.testing.assert_array_equal(obs[key], obs2[key])


def test_textstate_pickle_equality_and_hash() -> None:
    """States are frozen, picklable, comparable and hashable values."""
    env = small_env()
    env.reset(options={"prompt_index": 1})
    env.step(A)
    state = env.get_state()
    assert state == TextState("small", 1, (C, D, A, EQ), (A,), ("adc",))
    assert state.num_generated == 1
    copy_ = pickle.loads(pickle.dumps(state))
    assert copy_ == state and hash(copy_) == hash(state)
    assert len({state, copy_, state.extend([D])}) == 2
    assert state.extend([D]) == TextState("small", 1, [C, D, A, EQ], [A, D], ["adc"])
    assert state.extend([D]) != state and state.generated_ids == (A,)
    assert dataclasses.replace(state, task_id="other") != state
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.generated_ids = ()  # type: ignore[misc]
    lists = TextState("small", 1, [C, D, A, EQ], np.array([A]), ["adc"])
    assert lists == state and hash(lists) == hash(state)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"generated_ids": (A, 2.7)},
            r"TextState.generated_ids\[1\] must be an int token id, got 2.7",
        ),
        (
            {"generated_ids": (2.0,)},
            r"TextState.generated_ids\[0\] must be an int token id, got 2.0",
        ),
        ({"generated_ids": ("3",)}, r"TextState.generated_ids\[0\] .* got '3' \(str\)"),
        ({"generated_ids": (True,)}, r"TextState.generated_ids\[0\] .* got True \(bool\)"),
        ({"generated_ids": np.array([1.0])}, r"generated_ids\[0\] .* got np.float64\(1.0\)"),
        ({"generated_ids": "ab"}, "TextState.generated_ids must be a sequence of int token ids"),
        ({"prompt_ids": (C, np.float32(4))}, r"TextState.prompt_ids\[1\] must be an int token id"),
        ({"prompt_index": 1.0}, r"TextState.prompt_index must be an int, got 1.0 \(float\)"),
        ({"prompt_index": np.bool_(True)}, "TextState.prompt_index must be an int"),
        ({"references": "adc"}, "TextState.references must be a sequence of str"),
    ],
)
def test_textstate_rejects_non_integer_token_ids(kwargs: dict[str, Any], message: str) -> None:
    """Token ids and prompt_index must be ints; 2.7 is never silently token 2."""
    fields: dict[str, Any] = {
        "task_id": "small",
        "prompt_index": 1,
        "prompt_ids": (C, D, A, EQ),
        "generated_ids": (A,),
        "references": ("adc",),
    }
    with pytest.raises(TypeError, match=message):
        TextState(**(fields | kwargs))
    state = TextState(**fields)
    with pytest.raises(TypeError, match=r"generated_ids\[1\] must be an int token id, got 2.5"):
        state.extend([D, 2.5])
    assert state.generated_ids == (A,)


def test_textstate_accepts_numpy_integers_as_python_ints() -> None:
    """NumPy integer scalars and arrays are token ids, stored as Python ints."""
    state = TextState(
        "small", np.int64(1), np.array([C, D, A, EQ], dtype=np.int32), [np.int64(A)], ["adc"]
    )
    assert state == TextState("small", 1, (C, D, A, EQ), (A,), ("adc",))
    assert all(type(t) is int for t in (*state.prompt_ids, *state.generated_ids))
    assert type(state.prompt_index) is int
    assert state.extend(np.array([D], dtype=np.uint8)).generated_ids == (A, D)
    env = small_env()
    env.reset(options={"state": state})  # accepted by the env as the plain-int state is
    assert env.get_state() == state


def test_prompt_index_option_accepts_numpy_ints() -> None:
    """``prompt_index`` picks that prompt; NumPy integers work too."""
    env = small_env()
    for i in (2, np.int64(0), np.int32(1)):
        _, info = env.reset(options={"prompt_index": i})
        assert info["prompt_index"] == int(i) == env.get_state().prompt_index
        assert env.get_state().generated_ids == ()


def test_reset_with_state_of_larger_prefix_and_seed() -> None:
    """A seed given with a state seeds the RNG but the state decides where the episode is."""
    env, ref = small_env(), small_env()
    state = TextState("small", 2, (D, EQ), (D, A), ("d",))
    env.reset(seed=5, options={"state": state})
    ref.reset(seed=5, options={"prompt_index": 0})
    assert env.get_state() == state
    assert [env.reset()[1] for _ in range(5)] == [ref.reset()[1] for _ in range(5)]


# ---------------------------------------------------------------------------- bad actions
@pytest.mark.parametrize(
    ("action", "error"),
    [
        (-1, ValueError),
        (7, ValueError),
        (10**9, ValueError),
        (np.int64(7), ValueError),
        (2.0, TypeError),
        (np.float32(2), TypeError),
        ("a", TypeError),
        (True, TypeError),
        (np.bool_(True), TypeError),
        (None, TypeError),
        ([2], TypeError),
        (np.array([2]), TypeError),
        (np.array([[2]]), TypeError),
        (np.array(2.0), TypeError),
    ],
)
def test_bad_action_is_rejected_and_changes_nothing(action: Any, error: type) -> None:
    """Out-of-range ids raise ValueError, non-integers TypeError; the env is untouched."""
    env = small_env()
    env.reset(seed=0)
    env.reset(options={"prompt_index": 1})
    obs, *_ = env.step(B)
    state = env.get_state()
    with pytest.raises(error, match="action"):
        env.step(action)
    assert_unchanged(env, small_env, state, obs)


@pytest.mark.parametrize("action", [2, np.int8(2), np.uint16(2), np.int64(2), np.array(2)])
def test_integer_like_actions_are_accepted(action: Any) -> None:
    """Python and NumPy integer scalars (and 0-d integer arrays) are valid actions."""
    env = small_env()
    env.reset(options={"prompt_index": 0})
    obs, *_ = env.step(action)
    assert env.get_state().generated_ids == (A,)
    assert obs["input_ids"][P] == A


def test_step_before_reset_raises_reset_needed() -> None:
    """Stepping or reading the state before the first reset raises ResetNeeded."""
    env = small_env()
    with pytest.raises(ResetNeeded):
        env.step(A)
    with pytest.raises(ResetNeeded):
        env.get_state()
    env.reset(options={"prompt_index": 0})
    assert env.get_state().generated_ids == ()  # the failed step left no trace
    with pytest.raises(ResetNeeded):
        gym.make("textgen_env/Reverse-v0").step(2)


@pytest.mark.parametrize("last", [EOS, A])
def test_step_after_episode_end_raises_reset_needed(last: int) -> None:
    """After EOS or the horizon, step raises ResetNeeded and the final state is kept."""
    env = small_env()
    env.reset(seed=0)
    env.reset(options={"prompt_index": 0})
    *_, (ids, mask, _, term, trunc, _) = play(env, [B, A, A, last])
    assert term or trunc
    state = env.get_state()
    assert env.task.is_terminal(state)
    obs = {"input_ids": np.array(ids), "attention_mask": np.array(mask)}
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(A)
    assert_unchanged(env, small_env, state, obs)


# ------------------------------------------------------------------------ bad reset input
def _other_task_state() -> TextState:
    env = make_positive_env()
    env.reset(options={"prompt_index": 0})
    return env.get_state()


BAD_STATES: dict[str, Callable[[], TextState]] = {
    "token above vocab": lambda: TextState("small", 0, (A, B, EQ), (7,), ("ba",)),
    "negative token": lambda: TextState("small", 0, (A, B, EQ), (-3,), ("ba",)),
    "longer than max_new_tokens": lambda: TextState("small", 0, (A, B, EQ), (A,) * 5, ("ba",)),
    "prompt tokens mismatch": lambda: TextState("small", 0, (C, D, A, EQ), (), ("ba",)),
    "prompt index out of range": lambda: TextState("small", 3, (A, B, EQ), (), ()),
    "negative prompt index": lambda: TextState("small", -1, (D, EQ), (), ("d",)),
    "other task id": lambda: TextState("other", 0, (A, B, EQ), (), ("ba",)),
    "state of another env": _other_task_state,
    "EOS before the end": lambda: TextState("small", 0, (A, B, EQ), (B, EOS, A), ("ba",)),
    "terminal (EOS)": lambda: TextState("small", 0, (A, B, EQ), (B, A, EOS), ("ba",)),
    "terminal (horizon)": lambda: TextState("small", 0, (A, B, EQ), (B,) * G, ("ba",)),
}


def _mid_episode(env: TextGenEnv) -> tuple[TextState, dict[str, np.ndarray]]:
    """Seed ``env``, start prompt 1 and take one step; return its state and observation."""
    env.reset(seed=0)
    env.reset(options={"prompt_index": 1})
    obs, *_ = env.step(D)
    return env.get_state(), obs


@pytest.mark.parametrize("name", list(BAD_STATES))
def test_invalid_state_is_rejected_and_changes_nothing(name: str) -> None:
    """States that do not fit the task raise InvalidStateError; the env is untouched."""
    bad = BAD_STATES[name]()
    env = small_env()
    state, obs = _mid_episode(env)
    with pytest.raises(InvalidStateError):
        env.reset(seed=123, options={"state": bad})
    assert_unchanged(env, small_env, state, obs)


def test_state_with_foreign_references_is_rejected() -> None:
    """A state whose references are not its prompt's is refused like a prompt mismatch."""
    env = small_env()
    state, obs = _mid_episode(env)
    foreign = TextState("small", 0, (A, B, EQ), (B,), ("zzz",))
    with pytest.raises(InvalidStateError):
        env.reset(seed=123, options={"state": foreign})
    assert_unchanged(env, small_env, state, obs)


@pytest.mark.parametrize(
    "bad", [("small", 0, (A, B, EQ)), {"prompt_index": 0}, "state", 0, Prompt("ab=")]
)
def test_non_textstate_is_rejected_with_type_error(bad: Any) -> None:
    """Anything but a TextState as ``options["state"]`` raises TypeError."""
    env = small_env()
    state, obs = _mid_episode(env)
    with pytest.raises(TypeError, match="TextState"):
        env.reset(seed=123, options={"state": bad})
    assert_unchanged(env, small_env, state, obs)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"prompt": 0}, ValueError, "unknown reset options"),
        ({"state": None, "seed": 1}, ValueError, "unknown reset options"),
        (
            {"state": TextState("small", 2, (D, EQ), (), ("d",)), "prompt_index": 2},
            ValueError,
            "not both",
        ),
        ({"prompt_index": "1"}, TypeError, "prompt_index"),
        ({"prompt_index": 1.0}, TypeError, "prompt_index"),
        ({"prompt_index": True}, TypeError, "prompt_index"),
        ({"prompt_index": 3}, (IndexError, ValueError), "prompt_index"),
        ({"prompt_index": -1}, (IndexError, ValueError), "prompt_index"),
    ],
)
def test_bad_reset_options_are_rejected_and_change_nothing(
    options: dict[str, Any], error: type | tuple[type, ...], match: str
) -> None:
    """Unknown keys, state plus prompt_index, bad prompt indices: clear error, no change."""
    env = small_env()
    state, obs = _mid_episode(env)
    with pytest.raises(error, match=match):
        env.reset(seed=123, options=options)
    assert_unchanged(env, small_env, state, obs)


# -------------------------------------------------------------------- misbehaving rewards
@pytest.mark.parametrize(
    ("mode", "error"),
    [("raise", RuntimeError), ("shape", ValueError), ("nan", ValueError), ("text", TypeError)],
)
@pytest.mark.parametrize("last", [EOS, A])
def test_failing_reward_function_changes_nothing(mode: str, error: type, last: int) -> None:
    """A reward function that raises or returns junk: the error surfaces, nothing changes.

    After the reward function is fixed, the same final step succeeds with the right reward.
    """
    reward = ScriptedReward()
    env = small_env(reward)
    env.reset(seed=0)
    env.reset(options={"prompt_index": 0})
    *_, (ids, mask, *_rest) = play(env, [B, A, A])
    state = env.get_state()
    reward.mode = mode
    with pytest.raises(error):
        env.step(last)
    assert env.get_state() == state
    reward.mode = "ok"
    assert_unchanged(
        env,
        lambda: small_env(ScriptedReward()),
        state,
        {
            "input_ids": np.array(ids),
            "attention_mask": np.array(mask),
        },
    )


def test_reward_function_called_once_per_finished_episode() -> None:
    """The reward function is called only on the last step, with that one episode."""
    reward = ScriptedReward()
    env = small_env(reward)
    env.reset(options={"prompt_index": 1})
    play(env, [A, D])
    assert reward.calls == []
    env.step(EOS)
    assert reward.calls == [(["cda="], ["ad"], [("adc",)])]


# ---------------------------------------------------------------- construction arguments
def test_long_prompt_with_error_truncation_fails_at_construction() -> None:
    """``prompt_truncation="error"`` refuses a prompt longer than max_prompt_tokens."""
    tok = ToyTokenizer(tuple("abcdef"))
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        TextGenEnv(
            tok, ["ab", "abcdef"], ReverseReward(), max_new_tokens=2, max_prompt_tokens=4,
            prompt_truncation="error",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("truncation", "kept"), [("left", "cdef"), ("right", "abcd"), (None, "cdef")]
)
def test_long_prompt_truncation(truncation: str | None, kept: str) -> None:
    """Left truncation (the default) keeps the last tokens, right the first ones."""
    tok = ToyTokenizer(tuple("abcdef"))
    extra = {} if truncation is None else {"prompt_truncation": truncation}
    env = TextGenEnv(
        tok, [Prompt("abcdef", ("x",)), "ab"], ReverseReward(), max_new_tokens=2,
        max_prompt_tokens=4, **extra,
    )  # fmt: skip
    obs, _ = env.reset(options={"prompt_index": 0})
    assert obs["input_ids"][:4].tolist() == tok.encode(kept)
    assert env.get_state().prompt_ids == tuple(tok.encode(kept))
    obs, _ = env.reset(options={"prompt_index": 1})  # short prompts are left-padded
    assert obs["input_ids"][:4].tolist() == [0, 0, *tok.encode("ab")]
    state = env.get_state()
    env.reset(options={"state": state})
    assert env.get_state() == state


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_new_tokens": 0}, ValueError),
        ({"max_prompt_tokens": 0}, ValueError),
        ({"prompts": []}, ValueError),
        ({"prompts": "ab="}, ValueError),
        ({"prompts": ["ab=", ""]}, ValueError),
        ({"prompts": ["xyz"]}, ValueError),
        ({"prompt_truncation": "middle"}, ValueError),
        ({"reward_fn": "reverse"}, TypeError),
        ({"vocab_size": 1}, ValueError),
        ({"render_mode": "human"}, ValueError),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any], error: type) -> None:
    """Bad construction arguments raise a clear TypeError/ValueError."""
    with pytest.raises(error):
        small_env(**kwargs)


def test_env_does_not_mutate_prompts_or_tokenizer() -> None:
    """The prompts list and tokenizer given to the envs are left exactly as they were."""
    tok = ToyTokenizer(tuple("abcd="))
    prompts: list[Prompt | str] = [*SMALL_PROMPTS, "dd="]
    prompts_before = copy.deepcopy(prompts)
    tok_before = copy.deepcopy(vars(tok))
    rng = np.random.default_rng(0)
    env = small_env(lambda p, c, r: [len(x) for x in c], tokenizer=tok, prompts=prompts)
    for episode in range(30):
        env.reset(seed=episode)
        done = False
        while not done:
            *_, terminated, truncated, _ = env.step(int(rng.integers(7)))
            done = terminated or truncated
    envs = TextGenVectorEnv(
        3, tok, prompts, lambda p, c, r: [len(x) for x in c], max_new_tokens=G, task_id="small"
    )
    envs.reset(seed=0)
    for _ in range(20):
        envs.step(rng.integers(7, size=3))
    assert prompts == prompts_before
    assert all(a is b for a, b in zip(prompts[:3], SMALL_PROMPTS, strict=True))
    assert vars(tok) == tok_before


# ------------------------------------------------------------- NumPy scalars as arguments
def _small_vector(num_envs: Any) -> TextGenVectorEnv:
    return TextGenVectorEnv(
        num_envs, ToyTokenizer(tuple("abcd=")), SMALL_PROMPTS, ReverseReward(),
        max_new_tokens=G, max_prompt_tokens=P, task_id="small",
    )  # fmt: skip


def _resets(env: Any, seed: Any) -> list[Any]:
    """Prompt indices of a seeded reset and four unseeded ones (what the seed decides)."""
    first = env.reset(seed=seed)[1]["prompt_index"]
    return [np.asarray(first).tolist()] + [
        np.asarray(env.reset()[1]["prompt_index"]).tolist() for _ in range(4)
    ]


def _first_step(env: TextGenEnv, action: Any) -> tuple[Any, ...]:
    env.reset(seed=0)
    return env.step(action)[1:4]


# Each entry calls a public entry point with numbers made by `i` (ints) and `x` (floats) and
# returns something comparable; with NumPy scalars it must equal the plain-Python result.
NUMPY_ENTRY_POINTS: dict[str, Callable[[Callable[[int], Any], Callable[[float], Any]], Any]] = {
    "TextGenEnv(max_new_tokens, max_prompt_tokens, vocab_size)": lambda i, x: [
        (v, type(v))
        for v in vars(
            small_env(max_new_tokens=i(3), max_prompt_tokens=i(5), vocab_size=i(9)).task
        ).values()
        if isinstance(v, int)
    ],
    "TextGenVectorEnv(num_envs)": lambda i, x: (
        _small_vector(i(3)).num_envs,
        type(_small_vector(i(3)).num_envs),
        _small_vector(i(3)).reset(seed=0)[0]["input_ids"].shape,
    ),
    "TextGenEnv.reset(seed)": lambda i, x: _resets(small_env(), i(7)),
    "TextGenVectorEnv.reset(seed)": lambda i, x: _resets(_small_vector(2), i(7)),
    "TextGenVectorEnv.reset(prompt_index)": lambda i, x: (
        _small_vector(2).reset(options={"prompt_index": [i(2), i(0)]})[1]["prompt_index"].tolist()
    ),
    "TextGenEnv.step(action)": lambda i, x: _first_step(small_env(), i(A)),
    "TextTask.initial_state(prompt_index)": lambda i, x: small_env().task.initial_state(i(1)),
    "sample_switch_points(size, horizon)": lambda i, x: sample_switch_points(
        np.random.default_rng(0), i(5), i(8)
    ).tolist(),
    "PositiveReward(max_new_tokens)": lambda i, x: PositiveReward(i(3))(
        ["the movie was"], ["great good"], [()]
    ).tolist(),
    "positive_optimal_return(max_new_tokens)": lambda i, x: positive_optimal_return(i(4)),
    "CiderD(n, sigma)": lambda i, x: CiderD([["a cat sat"], ["a dog ran"]], n=i(4), sigma=x(3.5))(
        ["", ""], ["a cat sat", "a dog"], [["a cat sat"], ["a dog ran"]]
    ).tolist(),
    "distinct_n(n)": lambda i, x: distinct_n(["a b a b", "a b c"], i(2)),
}


@pytest.mark.parametrize(
    ("int_type", "float_type"), [(np.int64, np.float32), (np.int32, np.float64)]
)
@pytest.mark.parametrize("entry", list(NUMPY_ENTRY_POINTS))
def test_numpy_scalars_are_accepted_wherever_numbers_are(
    entry: str, int_type: type, float_type: type
) -> None:
    """Every public entry point taking a number takes NumPy scalars too, with the same result."""
    call = NUMPY_ENTRY_POINTS[entry]
    assert call(int_type, float_type) == call(int, float)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: small_env(max_new_tokens=np.float32(4)),
            TypeError,
            r"max_new_tokens must be an int, got np.float32\(4.0\) \(float32\)",
        ),
        (lambda: small_env(max_prompt_tokens=True), TypeError, "max_prompt_tokens must be an int"),
        (lambda: small_env(vocab_size=np.int64(1)), ValueError, "vocab_size must be an int >= 2"),
        (lambda: _small_vector(np.int64(0)), ValueError, "num_envs must be a positive int, got 0"),
        (lambda: small_env().reset(seed=2.0), TypeError, r"seed must be an int, got 2.0 \(float\)"),
        (lambda: small_env().reset(seed=np.int64(-1)), ValueError, "seed must be an int >= 0"),
        (
            lambda: small_env().reset(options={"prompt_index": np.float32(1)}),
            TypeError,
            r"options\['prompt_index'\] must be an int, got np.float32\(1.0\)",
        ),
        (
            lambda: small_env().task.initial_state(1.7),
            TypeError,
            r"prompt_index must be an int, got 1.7 \(float\)",
        ),
        (
            lambda: sample_switch_points(np.random.default_rng(0), 3, 8.0),
            TypeError,
            r"horizon must be an int, got 8.0 \(float\)",
        ),
        (lambda: PositiveReward(0), ValueError, "max_new_tokens must be a positive int, got 0"),
        (lambda: CiderD(sigma="6"), TypeError, r"sigma must be a real number, got '6' \(str\)"),
        (lambda: CiderD(sigma=np.inf), ValueError, "sigma must be a finite number > 0, got inf"),
    ],
)
def test_bad_numbers_name_the_argument(call: Callable[[], Any], error: type, message: str) -> None:
    """Wrong types raise TypeError, bad values ValueError; both name the argument."""
    with pytest.raises(error, match=message):
        call()


def test_rejected_numpy_seed_changes_nothing() -> None:
    """A bad seed is refused before the env is touched."""
    env = small_env()
    state, obs = _mid_episode(env)
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=np.int64(-3), options={"prompt_index": 0})
    assert_unchanged(env, small_env, state, obs)
