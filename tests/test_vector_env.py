"""`TextGenVectorEnv`: equivalence with single envs, autoreset, ``advance`` and bad input.

The reference for every batched result is a list of single :class:`TextGenEnv` instances of
the same task (Reverse: vocab 11, EOS 1, P = G = 8) restarted at the same states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode

from textgen_env.env import TextGenEnv
from textgen_env.errors import InvalidStateError
from textgen_env.state import TextState
from textgen_env.tasks.toy import (
    ReverseReward,
    make_positive_env,
    reverse_prompts,
    reverse_tokenizer,
)
from textgen_env.vector import NO_TOKEN, TextGenVectorEnv

EOS, VOCAB, G = 1, 11, 8
N = 5


class CountingReward:
    """ReverseReward that records every call and can be told to fail.

    ``mode`` is ``"ok"``, ``"raise"`` (RuntimeError), ``"shape"`` or ``"nan"`` (ValueError
    expected from the env).
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[tuple[list[str], list[str], list[tuple[str, ...]]]] = []

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> np.ndarray:
        self.calls.append((list(prompts), list(completions), [tuple(r) for r in references]))
        if self.mode == "raise":
            raise RuntimeError("reward model crashed")
        values = ReverseReward()(prompts, completions, references)
        if self.mode == "shape":
            return values[:-1]
        if self.mode == "nan":
            return values * np.nan
        return values


def task_kwargs(reward_fn: Any = None) -> dict[str, Any]:
    """Constructor arguments of the Reverse task with an optional custom reward."""
    return dict(
        tokenizer=reverse_tokenizer(),
        prompts=reverse_prompts("train"),
        reward_fn=ReverseReward() if reward_fn is None else reward_fn,
        max_new_tokens=G,
        max_prompt_tokens=8,
        task_id="Reverse-v0",
        prompt_truncation="error",
    )


def vec_env(
    n: int = N, reward_fn: Any = None, mode: AutoresetMode = AutoresetMode.NEXT_STEP
) -> TextGenVectorEnv:
    """A Reverse vector env with ``n`` sub-envs."""
    return TextGenVectorEnv(n, **task_kwargs(reward_fn), autoreset_mode=mode)


def single_env(reward_fn: Any = None) -> TextGenEnv:
    """A single Reverse env."""
    return TextGenEnv(**task_kwargs(reward_fn))


def random_states(rng: np.random.Generator, n: int = N) -> list[TextState]:
    """``n`` random non-terminal Reverse states (random prompt, 0-5 non-EOS tokens)."""
    env = single_env()
    states = []
    for _ in range(n):
        env.reset(options={"prompt_index": int(rng.integers(512))})
        for _ in range(int(rng.integers(0, 6))):
            env.step(int(rng.choice([0, *range(2, VOCAB)])))
        states.append(env.get_state())
    return states


def started(states: Sequence[TextState], **kwargs: Any) -> TextGenVectorEnv:
    """A vector env seeded with 0 and reset to ``states``."""
    envs = vec_env(len(states), **kwargs)
    envs.reset(seed=0, options={"state": list(states)})
    return envs


def singles_at(states: Sequence[TextState]) -> list[TextGenEnv]:
    """Single envs restarted at ``states``."""
    envs = [single_env() for _ in states]
    for env, state in zip(envs, states, strict=True):
        env.reset(options={"state": state})
    return envs


def ragged_tokens(rng: np.random.Generator, states: Sequence[TextState]) -> np.ndarray:
    """A random valid ``advance`` matrix: per env 0..room tokens, sometimes ending in EOS."""
    rows = []
    for s in states:
        room = G - s.num_generated
        count = int(rng.integers(0, room + 1))
        row = [int(rng.choice([0, *range(2, VOCAB)])) for _ in range(count)]
        if row and rng.random() < 0.4:
            row[-1] = EOS
        rows.append(row)
    width = max(len(r) for r in rows) + int(rng.integers(0, 2))
    out = np.full((len(rows), max(width, 1)), NO_TOKEN, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def assert_vec_unchanged(
    envs: TextGenVectorEnv, states: Sequence[TextState], obs: dict[str, np.ndarray]
) -> None:
    """``envs`` is still at live ``states`` with observation ``obs`` and an untouched RNG.

    Consumes ``envs``: a reference env seeded with 0 (as ``envs`` was) is restarted at
    ``states``; both take the same step and then an unseeded reset, and must agree.
    """
    assert envs.get_states() == tuple(states)
    assert not envs.done.any()
    ref = vec_env(len(states))
    ref_obs, _ = ref.reset(seed=0, options={"state": list(states)})
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(obs[key], ref_obs[key])
    actions = np.arange(2, 2 + envs.num_envs) % VOCAB
    got, want = envs.step(actions), ref.step(actions)
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(got[0][key], want[0][key])
    for x, y in zip(got[1:4], want[1:4], strict=True):
        np.testing.assert_array_equal(x, y)
    assert envs.get_states() == ref.get_states()
    np.testing.assert_array_equal(envs.reset()[1]["prompt_index"], ref.reset()[1]["prompt_index"])


# ----------------------------------------------------------------------------- reset
def test_reset_shapes_and_info() -> None:
    """Observations are (N, P+G) arrays in the batched space; info has the prompt indices."""
    envs = vec_env()
    obs, info = envs.reset(seed=0)
    assert obs["input_ids"].shape == obs["attention_mask"].shape == (N, 16)
    assert obs in envs.observation_space
    assert info["prompt_index"].tolist() == [s.prompt_index for s in envs.get_states()]
    assert info["_prompt_index"].tolist() == [True] * N
    assert all(s.generated_ids == () for s in envs.get_states())


def test_reset_to_states_and_prompt_indices_matches_single_envs() -> None:
    """Per-env ``state``/``prompt_index`` options (None = sample) give the single-env rows."""
    rng = np.random.default_rng(0)
    states = random_states(rng)
    envs = vec_env()
    obs, info = envs.reset(
        seed=1,
        options={
            "state": [states[0], None, states[2], None, None],
            "prompt_index": [None, 7, None, np.int64(9), None],
        },
    )
    got = envs.get_states()
    assert got[0] == states[0] and got[2] == states[2]
    assert got[1].prompt_index == 7 and got[3].prompt_index == 9
    assert got[4].generated_ids == ()
    assert info["prompt_index"].tolist() == [s.prompt_index for s in got]
    for row, state in enumerate(got):
        single_obs, _ = single_env().reset(options={"state": state})
        for key in single_obs:
            np.testing.assert_array_equal(obs[key][row], single_obs[key])


def test_seeded_reset_is_reproducible() -> None:
    """The same seed samples the same prompts."""
    first = vec_env().reset(seed=42)[1]["prompt_index"]
    assert vec_env().reset(seed=42)[1]["prompt_index"].tolist() == first.tolist()
    assert any(
        vec_env().reset(seed=s)[1]["prompt_index"].tolist() != first.tolist() for s in range(3)
    )


# ------------------------------------------------------------------ step vs single envs
def test_step_matches_single_envs_with_next_step_autoreset() -> None:
    """Random steps: live envs match single envs exactly; ended envs autoreset next step.

    On the autoreset step the env reports reward 0 and both flags False and its action is
    ignored; it starts a fresh prompt (then the single reference is restarted there).
    """
    rng = np.random.default_rng(0)
    states = random_states(rng)
    envs, singles = started(states), singles_at(states)
    ended = np.zeros(N, dtype=bool)
    autoresets = finished = 0
    for _ in range(80):
        actions = rng.integers(VOCAB, size=N)
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        new_states = envs.get_states()
        for i, env in enumerate(singles):
            if ended[i]:
                autoresets += 1
                assert (rewards[i], terminated[i], truncated[i]) == (0.0, False, False)
                assert new_states[i].generated_ids == ()
                ref_obs, _ = env.reset(options={"state": new_states[i]})
            else:
                ref_obs, r, term, trunc, _ = env.step(int(actions[i]))
                assert (rewards[i], terminated[i], truncated[i]) == (r, term, trunc)
                assert env.get_state() == new_states[i]
                finished += term or trunc
            for key in ref_obs:
                np.testing.assert_array_equal(obs[key][i], ref_obs[key])
        ended = terminated | truncated
        np.testing.assert_array_equal(envs.done, ended)
    assert autoresets > 10 and finished > 10  # both paths were exercised


def test_autoreset_step_ignores_the_action_of_ended_envs() -> None:
    """Two different actions for an ended env on its autoreset step: identical outcome."""
    rng = np.random.default_rng(1)
    states = random_states(rng)
    results = []
    for action in (2, 9):
        envs = started(states)
        envs.step(np.array([EOS, 2, 2, 2, 2]))
        assert envs.done.tolist() == [True, False, False, False, False]
        step = envs.step(np.array([action, 3, 3, 3, 3]))
        results.append((step, envs.get_states()))
        assert not step[2][0] and not step[3][0] and step[1][0] == 0.0
    (a, sa), (b, sb) = results
    assert sa == sb
    for x, y in zip(a[1:4], b[1:4], strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[0]["input_ids"], b[0]["input_ids"])


def test_done_property_is_a_copy() -> None:
    """``done`` reports ended episodes and cannot be used to alter the env."""
    envs = started(random_states(np.random.default_rng(2)))
    envs.step(np.array([EOS, 2, 2, 2, 2]))
    done = envs.done
    done[:] = False
    assert envs.done.tolist() == [True, False, False, False, False]


def test_observation_is_the_current_arrays_as_copies() -> None:
    """``observation()`` returns what reset/step last returned, updated by ``advance``, and
    as copies; before any reset it raises ResetNeeded."""
    with pytest.raises(ResetNeeded):
        vec_env().observation()
    envs = vec_env()
    obs, _ = envs.reset(seed=0)
    now = envs.observation()
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(now[key], obs[key])
    stepped = envs.step(np.full(N, 2))[0]
    np.testing.assert_array_equal(envs.observation()["input_ids"], stepped["input_ids"])
    tokens = np.full((N, 2), NO_TOKEN)
    tokens[0] = [3, 4]
    envs.advance(tokens)
    P = envs.task.max_prompt_tokens
    assert envs.observation()["input_ids"][0, P : P + 3].tolist() == [2, 3, 4]
    copy = envs.observation()
    copy["input_ids"][:] = 0
    assert envs.observation()["input_ids"][0, P] == 2


# ------------------------------------------------------------------- disabled autoreset
def test_disabled_autoreset_requires_partial_reset() -> None:
    """DISABLED: stepping an ended env raises ResetNeeded (no change); reset_mask restarts it."""
    rng = np.random.default_rng(3)
    states = random_states(rng)
    envs = started(states, mode=AutoresetMode.DISABLED)
    obs, *_ = envs.step(np.array([EOS, 2, 3, 4, 5]))
    before = envs.get_states()
    with pytest.raises(ResetNeeded, match="reset_mask"):
        envs.step(np.array([2, 2, 2, 2, 2]))
    assert envs.get_states() == before
    assert envs.done.tolist() == [True, False, False, False, False]

    new_state = random_states(rng, 1)[0]
    mask = np.array([True, False, False, False, False])
    obs2, info = envs.reset(options={"reset_mask": mask, "state": [new_state, *[None] * 4]})
    assert info["_prompt_index"].tolist() == mask.tolist()
    after = envs.get_states()
    assert after[0] == new_state and after[1:] == before[1:]
    for key in obs:  # the other rows' observations are untouched
        np.testing.assert_array_equal(obs2[key][1:], obs[key][1:])
    assert not envs.done.any()
    singles = singles_at(after)
    _, rewards, terminated, truncated, _ = envs.step(np.array([3, 3, 3, 3, 3]))
    for i, env in enumerate(singles):
        _, r, term, trunc, _ = env.step(3)
        assert (rewards[i], terminated[i], truncated[i]) == (r, term, trunc)


def test_partial_reset_samples_only_masked_envs() -> None:
    """A mask without states resamples just those envs, using the env's RNG."""
    envs = started(random_states(np.random.default_rng(4)))
    before = envs.get_states()
    envs.reset(options={"reset_mask": [False, True, False, True, False]})
    after = envs.get_states()
    assert [after[i] == before[i] for i in range(N)] == [True, False, True, False, True]
    assert after[1].generated_ids == () == after[3].generated_ids


def test_step_before_reset_raises_reset_needed() -> None:
    """Stepping or reading states before every env was reset raises ResetNeeded."""
    envs = vec_env()
    with pytest.raises(ResetNeeded):
        envs.step(np.full(N, 2))
    with pytest.raises(ResetNeeded):
        envs.get_states()
    envs.reset(options={"reset_mask": np.array([True] * (N - 1) + [False])})
    with pytest.raises(ResetNeeded):
        envs.step(np.full(N, 2))
    with pytest.raises(ResetNeeded):
        envs.advance(np.full((N, 1), 2))
    rewards, *_ = envs.advance(np.array([[2]] * (N - 1) + [[NO_TOKEN]]))  # idle env: fine
    assert rewards.tolist() == [0.0] * N


# ------------------------------------------------------------------------------ advance
def test_advance_equals_stepping_token_by_token() -> None:
    """Ragged ``advance`` == column-by-column ``advance`` == single envs stepping tokens.

    Also checks that the reward function is called exactly once per ``advance`` that
    finishes an episode, with exactly the finished episodes (in env order), never otherwise.
    """
    rng = np.random.default_rng(5)
    states = random_states(rng)
    counter = CountingReward()
    envs = vec_env(reward_fn=counter)
    envs.reset(options={"state": states})
    columns = vec_env()
    columns.reset(options={"state": states})
    singles = singles_at(states)
    calls_with_finish = 0
    for _ in range(60):
        tokens = ragged_tokens(rng, envs.get_states())
        n_calls = len(counter.calls)
        rewards, terminated, truncated = envs.advance(tokens)

        col_rewards = np.zeros(N)
        col_term = np.zeros(N, dtype=bool)
        col_trunc = np.zeros(N, dtype=bool)
        for j in range(tokens.shape[1]):
            r, te, tr = columns.advance(tokens[:, j : j + 1])
            col_rewards += r
            col_term |= te
            col_trunc |= tr
        np.testing.assert_array_equal(rewards, col_rewards)
        np.testing.assert_array_equal(terminated, col_term)
        np.testing.assert_array_equal(truncated, col_trunc)
        assert envs.get_states() == columns.get_states()

        for i, env in enumerate(singles):
            r = term = trunc = 0
            for t in tokens[i][tokens[i] != NO_TOKEN]:
                _, r, term, trunc, _ = env.step(int(t))
            assert (rewards[i], terminated[i], truncated[i]) == (r, term, trunc)
            assert env.get_state() == envs.get_states()[i]

        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            calls_with_finish += 1
            assert len(counter.calls) == n_calls + 1
            prompts, completions, refs = counter.calls[-1]
            vocab = reverse_tokenizer().vocab
            final = envs.get_states()
            assert prompts == [vocab_text(final[i].prompt_ids, vocab) for i in ended]
            expected = [vocab_text(final[i].generated_ids, vocab) for i in ended]
            assert completions == expected
            assert refs == [final[i].references for i in ended]
            restart = random_states(rng, len(ended))
            mask = terminated | truncated
            options = {"reset_mask": mask, "state": [None] * N}
            for i, s in zip(ended, restart, strict=True):
                options["state"][i] = s
                singles[i].reset(options={"state": s})
            envs.reset(options=options)
            columns.reset(options=dict(options))
        else:
            assert len(counter.calls) == n_calls
    assert calls_with_finish > 10


def vocab_text(ids: Sequence[int], vocab: Sequence[str]) -> str:
    """Decode Reverse token ids by hand (pad and EOS dropped)."""
    return "".join(vocab[t] for t in ids if t > EOS)


def test_step_calls_reward_once_with_the_finished_episodes() -> None:
    """``step`` makes one reward call per step in which episodes finish, none otherwise."""
    rng = np.random.default_rng(6)
    counter = CountingReward()
    envs = vec_env(reward_fn=counter)
    envs.reset(seed=0)
    for _ in range(60):
        before = len(counter.calls)
        _, rewards, terminated, truncated, _ = envs.step(rng.integers(VOCAB, size=N))
        ended = np.flatnonzero(terminated | truncated)
        assert len(counter.calls) == before + (len(ended) > 0)
        if len(ended):
            assert len(counter.calls[-1][1]) == len(ended)
            expected = ReverseReward()(*counter.calls[-1])
            np.testing.assert_allclose(rewards[ended], expected)
        assert not rewards[~(terminated | truncated)].any()


def test_advance_all_padding_rows_are_untouched() -> None:
    """A row of only NO_TOKEN leaves its env as it was, even an ended one."""
    rng = np.random.default_rng(7)
    states = random_states(rng)
    envs = started(states)
    envs.advance(np.array([[EOS], [NO_TOKEN], [2], [NO_TOKEN], [NO_TOKEN]]))
    assert envs.done.tolist() == [True, False, False, False, False]
    rewards, terminated, truncated = envs.advance(np.full((N, 3), NO_TOKEN))
    assert not rewards.any() and not terminated.any() and not truncated.any()
    after = envs.get_states()
    assert after[1] == states[1] and after[3:] == tuple(states[3:])
    assert after[2] == states[2].extend([2])


def test_advance_with_zero_columns_is_a_no_op_or_clear_error() -> None:
    """A (num_envs, 0) token matrix holds no tokens: a no-op (or a clear ValueError)."""
    states = random_states(np.random.default_rng(8))
    envs = started(states)
    try:
        rewards, terminated, truncated = envs.advance(np.zeros((N, 0), dtype=np.int64))
    except ValueError as err:
        assert "tokens" in str(err), f"unclear error: {err}"
    else:
        assert not rewards.any() and not terminated.any() and not truncated.any()
    assert envs.get_states() == tuple(states)


# --------------------------------------------------------------------------- bad input
def _live(seed: int) -> tuple[TextGenVectorEnv, list[TextState], dict[str, np.ndarray]]:
    """A seeded vector env at random live states with 0-3 tokens; its states and obs."""
    rng = np.random.default_rng(seed)
    states = [replace(s, generated_ids=s.generated_ids[:3]) for s in random_states(rng)]
    envs = vec_env()
    obs, _ = envs.reset(seed=0, options={"state": states})
    return envs, states, obs


BAD_ADVANCE: dict[str, tuple[Any, type]] = {
    "token after EOS": ([[2, EOS, 3], [2, -1, -1], [-1, -1, -1], [-1] * 3, [-1] * 3], ValueError),
    "past the horizon": ([[2] * 9, [2] + [-1] * 8, [-1] * 9, [-1] * 9, [-1] * 9], ValueError),
    "padding before a token": ([[-1, 2], [2, 2], [2, -1], [-1, -1], [-1, -1]], ValueError),
    "token above vocab": ([[VOCAB], [2], [2], [2], [2]], ValueError),
    "token below -1": ([[-2], [2], [2], [2], [2]], ValueError),
    "1-d tokens": ([2, 2, 2, 2, 2], ValueError),
    "3-d tokens": ([[[2]]] * N, ValueError),
    "too few rows": ([[2], [2]], ValueError),
    "float dtype": (np.full((N, 1), 2.0), TypeError),
    "bool dtype": (np.ones((N, 1), dtype=bool), TypeError),
    "string dtype": ([["a"]] * N, TypeError),
}


@pytest.mark.parametrize("name", list(BAD_ADVANCE))
def test_bad_advance_is_rejected_and_changes_nothing(name: str) -> None:
    """Malformed token matrices raise TypeError/ValueError before anything changes."""
    tokens, error = BAD_ADVANCE[name]
    envs, states, obs = _live(10)
    with pytest.raises(error):
        envs.advance(tokens)
    assert_vec_unchanged(envs, states, obs)


def test_advance_on_an_ended_env_raises_reset_needed() -> None:
    """Tokens for an env whose episode ended raise ResetNeeded; nothing changes."""
    envs, _, _ = _live(11)
    envs.advance(np.array([[EOS], [NO_TOKEN], [NO_TOKEN], [NO_TOKEN], [NO_TOKEN]]))
    ended = envs.get_states()
    with pytest.raises(ResetNeeded, match="ended"):
        envs.advance(np.full((N, 1), 2))
    assert envs.get_states() == ended
    assert envs.done.tolist() == [True, False, False, False, False]
    envs.advance(np.array([[NO_TOKEN], [2], [2], [2], [2]]))
    assert envs.get_states()[1:] == tuple(s.extend([2]) for s in ended[1:])


@pytest.mark.parametrize(
    ("actions", "error"),
    [
        (np.full((N, 1), 2), ValueError),
        (np.full(N + 1, 2), ValueError),
        (2, ValueError),
        (np.full(N, 2.0), TypeError),
        (np.ones(N, dtype=bool), TypeError),
        (["a"] * N, TypeError),
        ([2, 2, 2, 2, None], TypeError),
        ([2, 2, 2, 2, NO_TOKEN], ValueError),
        ([2, 2, 2, 2, VOCAB], ValueError),
    ],
)
def test_bad_step_actions_are_rejected_and_change_nothing(actions: Any, error: type) -> None:
    """Actions of the wrong shape, dtype or range raise before anything changes."""
    envs, states, obs = _live(12)
    with pytest.raises(error, match="actions"):
        envs.step(actions)
    assert_vec_unchanged(envs, states, obs)


def _other_task_state() -> TextState:
    env = make_positive_env()
    env.reset(options={"prompt_index": 0})
    return env.get_state()


@pytest.mark.parametrize(
    ("make_options", "error"),
    [
        (lambda s: {"prompts": [0] * N}, ValueError),
        (lambda s: {"state": s[:2]}, ValueError),
        (lambda s: {"state": s[0]}, ValueError),
        (lambda s: {"prompt_index": [1, 2]}, ValueError),
        (lambda s: {"state": [s[0], *[None] * 4], "prompt_index": [3, *[None] * 4]}, ValueError),
        (lambda s: {"reset_mask": [1, 0, 0, 0, 0]}, ValueError),
        (lambda s: {"reset_mask": [True, False]}, ValueError),
        (
            lambda s: {"reset_mask": [True, False, False, False, False], "state": [None, *s[1:]]},
            ValueError,
        ),
        (lambda s: {"state": [*s[:4], s[4].extend([EOS])]}, InvalidStateError),
        (lambda s: {"state": [*s[:4], s[4].extend([VOCAB])]}, InvalidStateError),
        (lambda s: {"state": [*s[:4], _other_task_state()]}, InvalidStateError),
        (lambda s: {"state": [*s[:4], (0, 1, 2)]}, TypeError),
        (lambda s: {"prompt_index": [0, 1, 2, 3, 512]}, (IndexError, ValueError)),
        (lambda s: {"prompt_index": [0, 1, 2, 3, 1.5]}, TypeError),
    ],
)
def test_bad_reset_options_are_rejected_and_change_nothing(make_options: Any, error: Any) -> None:
    """Bad options raise before any env is reset, and the RNG is not reseeded."""
    envs, states, obs = _live(13)
    with pytest.raises(error):
        envs.reset(seed=99, options=make_options(states))
    assert_vec_unchanged(envs, states, obs)


def test_bad_seed_type_is_rejected() -> None:
    """A non-integer seed raises TypeError and changes nothing."""
    envs, states, obs = _live(14)
    with pytest.raises(TypeError, match="seed"):
        envs.reset(seed=1.5)  # type: ignore[arg-type]
    assert_vec_unchanged(envs, states, obs)


# -------------------------------------------------------------------- failing rewards
@pytest.mark.parametrize(
    ("mode", "error"), [("raise", RuntimeError), ("shape", ValueError), ("nan", ValueError)]
)
@pytest.mark.parametrize("call", ["advance", "step"])
def test_failing_reward_function_changes_nothing(mode: str, error: type, call: str) -> None:
    """A reward failure during ``advance``/``step`` propagates; no env changes, no autoreset.

    After the reward function is fixed the same call gives the single-env results.
    """
    rng = np.random.default_rng(15)
    states = random_states(rng)
    counter = CountingReward()
    envs = vec_env(reward_fn=counter)
    envs.reset(seed=0, options={"state": states})
    envs.step(np.array([EOS, 2, 2, 2, 2]))  # env 0 ended: the next step autoresets it
    before = envs.get_states()
    counter.mode = mode
    if call == "advance":
        tokens = np.array([[NO_TOKEN, NO_TOKEN], [3, EOS], [3, NO_TOKEN], [EOS, NO_TOKEN], [2, 2]])
        with pytest.raises(error):
            envs.advance(tokens)
    else:
        tokens = np.array([[4], [EOS], [3], [EOS], [2]])
        with pytest.raises(error):
            envs.step(tokens[:, 0])
    assert envs.get_states() == before
    assert envs.done.tolist() == [True, False, False, False, False]

    counter.mode = "ok"
    singles = singles_at(before[1:])
    if call == "advance":
        rewards, terminated, truncated = envs.advance(tokens)
    else:
        _, rewards, terminated, truncated, _ = envs.step(tokens[:, 0])
        assert envs.get_states()[0].generated_ids == ()  # the autoreset happened now
    assert (rewards[0], terminated[0], truncated[0]) == (0.0, False, False)
    for i, env in enumerate(singles, start=1):
        r = term = trunc = 0
        for t in tokens[i][tokens[i] != NO_TOKEN]:
            _, r, term, trunc, _ = env.step(int(t))
        assert (rewards[i], terminated[i], truncated[i]) == (r, term, trunc)
        assert env.get_state() == envs.get_states()[i]


# ---------------------------------------------------------------------------- construction
@pytest.mark.parametrize(
    ("num_envs", "extra", "error"),
    [
        (0, {}, ValueError),
        (-1, {}, ValueError),
        (True, {}, TypeError),
        (2.0, {}, TypeError),
        (2, {"autoreset_mode": AutoresetMode.SAME_STEP}, ValueError),
    ],
)
def test_bad_constructor_arguments(
    num_envs: Any, extra: dict[str, Any], error: type[Exception]
) -> None:
    """num_envs must be a positive int (a float or bool is a TypeError); only NEXT_STEP and
    DISABLED autoreset are offered."""
    with pytest.raises(error):
        TextGenVectorEnv(num_envs, **task_kwargs(), **extra)


def test_vector_long_prompt_with_error_truncation_fails() -> None:
    """The vector env applies ``prompt_truncation`` like the single env."""
    kwargs = task_kwargs()
    kwargs["max_prompt_tokens"] = 4
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        TextGenVectorEnv(2, **kwargs)
    kwargs["prompt_truncation"] = "left"
    envs = TextGenVectorEnv(2, **kwargs)
    envs.reset(options={"prompt_index": [0, 1]})
    single = TextGenEnv(**kwargs)
    for i, state in enumerate(envs.get_states()):
        single.reset(options={"prompt_index": i})
        assert state == single.get_state() and len(state.prompt_ids) <= 4
