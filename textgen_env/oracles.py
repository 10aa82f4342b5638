"""Guide-policy oracles over the vector env: roll-in and roll-out (Chang et al., 2023, §3).

Because the token MDP is deterministic, a guide can take over from any state:

* **roll-in**: from given states the guide acts for ``k`` tokens; we get the new states, from
  which the learner can continue. :func:`sample_switch_points` draws ``k`` uniformly on
  ``1..L-1`` as in the paper.
* **roll-out**: from given states the guide completes each episode; we get the final states
  and their returns (the task reward of the finished text).

The guide only proposes tokens; the env applies them and computes the rewards, so the env is
the single source of truth. Both functions check the states and the guide's output *before*
touching the env: a guide that raises, times out or returns malformed output gets a
:class:`~textgen_env.errors.GuideError` and the env is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textgen_env._checks import check_int, is_int
from textgen_env.errors import GuideError
from textgen_env.guides.base import GuidePolicy
from textgen_env.state import TextState
from textgen_env.task import TextTask
from textgen_env.vector import NO_TOKEN, TextGenVectorEnv

__all__ = ["roll_in", "roll_out", "sample_switch_points"]


def sample_switch_points(rng: np.random.Generator, size: int, horizon: int) -> np.ndarray:
    """``size`` switch points ``k`` drawn uniformly on ``1..horizon-1`` (the paper's roll-in
    length), as an int64 array of shape ``(size,)``.

    Raises:
        TypeError: ``rng`` is not a NumPy Generator, or ``size``/``horizon`` is not an int.
        ValueError: ``size < 0`` or ``horizon < 2``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    size = check_int(size, "size", minimum=0)
    horizon = check_int(horizon, "horizon")
    if horizon < 2:
        raise ValueError(f"horizon must be >= 2 to sample k in 1..horizon-1, got {horizon}")
    return rng.integers(1, horizon, size=size)


def roll_in(
    envs: TextGenVectorEnv,
    guide: GuidePolicy,
    states: Sequence[TextState],
    num_tokens: Sequence[int] | np.ndarray,
    rng: np.random.Generator | None = None,
) -> tuple[TextState, ...]:
    """Let ``guide`` act for ``num_tokens[i]`` tokens from ``states[i]``; return the new states.

    ``num_tokens[i]`` is capped at the tokens left before the horizon; the guide may stop
    earlier only by emitting EOS. Terminal states and ``num_tokens[i] == 0`` pass through
    unchanged and the guide is not asked for them. Uses sub-envs ``0..len(states)-1``.
    """
    venv, task, states = _check(envs, states)
    k = np.asarray(num_tokens)
    if k.shape != (len(states),) or not np.issubdtype(k.dtype, np.integer) or (k < 0).any():
        raise ValueError(f"num_tokens must be {len(states)} non-negative ints, got {num_tokens!r}")
    room = np.array([_room(task, s) for s in states], dtype=np.int64)
    k = np.minimum(k.astype(np.int64), room)
    final, _ = _apply(venv, task, guide, states, k, rng)
    return final


def roll_out(
    envs: TextGenVectorEnv,
    guide: GuidePolicy,
    states: Sequence[TextState],
    rng: np.random.Generator | None = None,
) -> tuple[tuple[TextState, ...], np.ndarray]:
    """Let ``guide`` complete every episode from ``states``; return final states and returns.

    The return of an episode is its task reward (rewards are 0 before the last step). A
    terminal input state is scored as it is, without asking the guide. Uses sub-envs
    ``0..len(states)-1``.
    """
    venv, task, states = _check(envs, states)
    room = np.array([_room(task, s) for s in states], dtype=np.int64)
    return _apply(venv, task, guide, states, room, rng, must_finish=True)


def _check(
    envs: TextGenVectorEnv, states: Sequence[TextState]
) -> tuple[TextGenVectorEnv, TextTask, list[TextState]]:
    venv = envs.unwrapped
    if not isinstance(venv, TextGenVectorEnv):
        raise TypeError(f"oracles need a TextGenVectorEnv, got {type(venv).__name__}")
    if isinstance(states, TextState) or not 0 < len(states) <= venv.num_envs:
        raise ValueError(f"states must be a sequence of 1..num_envs={venv.num_envs} TextStates")
    task = venv.task
    return venv, task, [task.validate_state(s, allow_terminal=True) for s in states]


def _room(task: TextTask, state: TextState) -> int:
    return 0 if task.is_terminal(state) else task.max_new_tokens - len(state.generated_ids)


def _apply(
    venv: TextGenVectorEnv,
    task: TextTask,
    guide: GuidePolicy,
    states: list[TextState],
    k: np.ndarray,
    rng: np.random.Generator | None,
    *,
    must_finish: bool = False,
) -> tuple[tuple[TextState, ...], np.ndarray]:
    rng = venv.np_random if rng is None else rng
    active = np.flatnonzero(k > 0)  # rows the guide acts on
    proposals = _ask(guide, task, [states[i] for i in active], k[active], rng)

    b = len(states)
    returns = np.zeros(b, dtype=np.float64)
    final = list(states)
    with venv.atomic():  # a failing reward function leaves the env unchanged
        if len(active):
            mask = np.zeros(venv.num_envs, dtype=bool)
            mask[active] = True
            restart: list[TextState | None] = [None] * venv.num_envs
            for i in active:
                restart[i] = states[i]
            venv.reset(options={"state": restart, "reset_mask": mask})
            width = int(max(len(p) for p in proposals)) if proposals else 0
            tokens = np.full((venv.num_envs, max(width, 1)), NO_TOKEN, dtype=np.int64)
            for i, p in zip(active, proposals, strict=True):
                tokens[i, : len(p)] = p
            rewards, _, _ = venv.advance(tokens)
            returns[active] = rewards[active]
            now = venv.get_states()
            for i in active:
                final[i] = now[i]
        if must_finish:  # terminal inputs: reuse the env's reward, or score them (one call)
            ended = []
            for i in np.flatnonzero(k == 0):
                known = venv.final_reward(int(i), states[i])  # k == 0: not restarted above
                if known is None:
                    ended.append(int(i))
                else:
                    returns[i] = known
            if ended:
                returns[ended] = task.score(
                    np.array([states[i].prompt_index for i in ended]),
                    [states[i].generated_ids for i in ended],
                )
    return tuple(final), returns


def _ask(
    guide: GuidePolicy,
    task: TextTask,
    states: list[TextState],
    k: np.ndarray,
    rng: np.random.Generator,
) -> list[tuple[int, ...]]:
    """Call the guide and check its output against the GuidePolicy contract."""
    if not states:
        return []
    try:
        out = guide.act(states, [int(x) for x in k], rng)
    except GuideError:
        raise
    except Exception as err:
        raise GuideError(
            f"guide {type(guide).__name__} raised {type(err).__name__}: {err}"
        ) from err
    name = type(guide).__name__
    if isinstance(out, str | bytes) or not hasattr(out, "__len__") or len(out) != len(states):
        raise GuideError(f"guide {name} must return {len(states)} token sequences, got {out!r:.80}")
    checked = []
    for i, (seq, want) in enumerate(zip(out, k, strict=True)):
        try:
            toks = tuple(_token(t) for t in seq)
        except (TypeError, ValueError) as err:
            raise GuideError(f"guide {name}: sequence {i} is not token ids ({err})") from err
        eos = task.eos_token_id
        if any(not 0 <= t < task.vocab_size for t in toks):
            raise GuideError(f"guide {name}: sequence {i} has ids outside [0, {task.vocab_size})")
        if len(toks) > want or (len(toks) < want and (not toks or toks[-1] != eos)):
            raise GuideError(
                f"guide {name}: sequence {i} has {len(toks)} tokens, asked for {int(want)} "
                "(fewer is allowed only when it ends with EOS)"
            )
        if eos in toks[:-1]:
            raise GuideError(f"guide {name}: sequence {i} continues after EOS")
        checked.append(toks)
    return checked


def _token(t: object) -> int:
    if not is_int(t):
        raise TypeError(f"{t!r} is not an int")
    return int(t)
