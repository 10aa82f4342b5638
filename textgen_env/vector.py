"""`TextGenVectorEnv`: N text-generation episodes batched over NumPy arrays in one process."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgen_env._checks import check_int, check_seed
from textgen_env.env import ObsType, observation_space
from textgen_env.episodes import EpisodeBatch
from textgen_env.rewards.base import RewardFunction
from textgen_env.state import Prompt, TextState
from textgen_env.task import TextTask, Truncation
from textgen_env.tokenizer import Tokenizer

__all__ = ["NO_TOKEN", "TextGenVectorEnv"]

NO_TOKEN = -1
"""Padding value in :meth:`TextGenVectorEnv.advance` token matrices: "no token for this env"."""


class TextGenVectorEnv(VectorEnv[ObsType, np.ndarray, np.ndarray]):
    """``num_envs`` independent :class:`~textgen_env.env.TextGenEnv` episodes over arrays.

    Same MDP, spaces and arguments as :class:`~textgen_env.env.TextGenEnv` (see its
    docstring), batched: observations are ``(num_envs, P+G)`` arrays, the reward function is
    called once per step with every episode that finished in that step, and text is decoded
    only for those episodes.

    Autoreset follows Gymnasium's ``AutoresetMode.NEXT_STEP`` by default: the step after an
    episode ends resets that sub-env (its action is ignored, reward 0). With
    ``autoreset_mode=AutoresetMode.DISABLED`` finished sub-envs must be reset explicitly with
    ``reset(options={"reset_mask": mask})``.

    Reset options (each a sequence of length ``num_envs``): ``"state"`` (a
    :class:`~textgen_env.state.TextState` or ``None`` per env), ``"prompt_index"`` (an int or
    ``None`` per env), ``"reset_mask"`` (bools: reset only those envs; entries of ``state``
    and ``prompt_index`` for the other envs must be ``None``). ``None`` means "sample a prompt
    with ``self.np_random``".

    Beyond ``step``, :meth:`advance` appends several tokens per env at once (ragged, padded
    with :data:`NO_TOKEN`); the guide oracles in :mod:`textgen_env.oracles` use it.

    >>> import gymnasium as gym
    >>> import textgen_env
    >>> envs = gym.make_vec(
    ...     "textgen_env/Reverse-v0", num_envs=4, vectorization_mode="vector_entry_point"
    ... )
    >>> obs, info = envs.reset(seed=0)
    >>> obs["input_ids"].shape
    (4, 16)
    >>> obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        tokenizer: Tokenizer,
        prompts: Sequence[Prompt | str],
        reward_fn: RewardFunction,
        *,
        max_new_tokens: int,
        max_prompt_tokens: int = 64,
        task_id: str = "custom",
        vocab_size: int | None = None,
        prompt_truncation: Truncation = "left",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ) -> None:
        num_envs = check_int(num_envs, "num_envs", minimum=1)
        autoreset_mode = AutoresetMode(autoreset_mode)
        if autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
            raise ValueError(f"autoreset_mode must be NEXT_STEP or DISABLED, got {autoreset_mode}")
        self.task = TextTask.build(
            tokenizer,
            prompts,
            reward_fn,
            max_new_tokens=max_new_tokens,
            max_prompt_tokens=max_prompt_tokens,
            task_id=task_id,
            vocab_size=vocab_size,
            prompt_truncation=prompt_truncation,
        )
        self.num_envs = num_envs
        self.metadata = {"render_modes": [], "autoreset_mode": autoreset_mode}
        self.single_action_space = spaces.Discrete(self.task.vocab_size)
        self.single_observation_space = observation_space(self.task)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._episodes = EpisodeBatch(self.task, num_envs)
        self.reward_seconds = 0.0  # wall time spent in the reward function (instrumentation)

    # ------------------------------------------------------------------ reset
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict[str, Any]]:
        """Reset all sub-envs, or those in ``options["reset_mask"]``; see the class docstring."""
        n = self.num_envs
        options = dict(options or {})
        states = options.pop("state", None)
        indices = options.pop("prompt_index", None)
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(
                f"unknown reset options {sorted(options)}; "
                "use 'state', 'prompt_index', 'reset_mask'"
            )
        seed = check_seed(seed)
        mask = np.ones(n, dtype=bool) if mask is None else np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise ValueError(
                f"reset_mask must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}"
            )
        chosen = self._resolve_reset(states, indices, mask)  # validates everything first
        super().reset(seed=seed)
        rows = np.flatnonzero(mask)
        need = [r for r in rows if chosen[r] is None]
        sampled = self.np_random.integers(self.task.num_prompts, size=len(need))
        for r, i in zip(need, sampled, strict=True):
            chosen[r] = self.task.initial_state(int(i))
        for r in rows:
            self._episodes.load(int(r), chosen[r])
        info = {"prompt_index": self._episodes.prompt_index.copy(), "_prompt_index": mask.copy()}
        return self._episodes.observation(), info

    def _resolve_reset(self, states: Any, indices: Any, mask: np.ndarray) -> list[TextState | None]:
        n = self.num_envs
        chosen: list[TextState | None] = [None] * n
        for name, values in (("state", states), ("prompt_index", indices)):
            if values is None:
                continue
            if isinstance(values, str | TextState) or len(values) != n:
                raise ValueError(f"options[{name!r}] must be a sequence of length num_envs={n}")
            for r, v in enumerate(values):
                if v is None:
                    continue
                if not mask[r]:
                    raise ValueError(
                        f"options[{name!r}][{r}] is set but env {r} is not in reset_mask"
                    )
                if chosen[r] is not None:
                    raise ValueError(f"env {r} has both a state and a prompt_index")
                if name == "state":
                    chosen[r] = self.task.validate_state(v)
                else:
                    chosen[r] = self.task.initial_state(
                        check_int(v, f"options['prompt_index'][{r}]")
                    )
        return chosen

    # ------------------------------------------------------------------- step
    def step(
        self, actions: Any
    ) -> tuple[ObsType, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Append one token per sub-env (NEXT_STEP autoreset of envs that ended last step)."""
        actions = self._check_tokens(actions, (self.num_envs,), "actions")
        ep = self._episodes
        if not ep.started.all():
            raise ResetNeeded("call reset() before step()")
        reset_rows = np.flatnonzero(ep.done)  # ended last step: NEXT_STEP autoreset
        if self.metadata["autoreset_mode"] == AutoresetMode.DISABLED and len(reset_rows):
            raise ResetNeeded(
                f"sub-envs {np.flatnonzero(ep.done).tolist()} have ended; reset them with "
                "reset(options={'reset_mask': mask}) (autoreset is disabled)"
            )
        tokens = actions.copy()
        tokens[reset_rows] = NO_TOKEN
        rewards, terminated, truncated = self._advance(tokens[:, None])
        if len(reset_rows):  # NEXT_STEP autoreset: these sub-envs start a new episode now
            sampled = self.np_random.integers(self.task.num_prompts, size=len(reset_rows))
            for r, i in zip(reset_rows, sampled, strict=True):
                ep.load(int(r), self.task.initial_state(int(i)))
        return ep.observation(), rewards, terminated, truncated, {}

    def advance(self, tokens: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Append a ragged batch of tokens: row ``i`` of ``tokens`` (num_envs, k) to env ``i``.

        Rows are padded with :data:`NO_TOKEN` (-1) after their last token; an all-padding row
        leaves its env untouched. Tokens may not continue past the end of an episode. No
        autoreset happens. Returns ``(rewards, terminated, truncated)``, each ``(num_envs,)``,
        for the episodes that ended during this call. A rejected call changes nothing.
        """
        tokens = self._check_tokens(tokens, None, "tokens")
        if tokens.ndim != 2 or tokens.shape[0] != self.num_envs:
            raise ValueError(
                f"tokens must have shape (num_envs={self.num_envs}, k), got {tokens.shape}"
            )
        return self._advance(tokens)

    def _check_tokens(self, tokens: Any, shape: tuple[int, ...] | None, name: str) -> np.ndarray:
        arr = np.asarray(tokens)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must be integer token ids, got dtype {arr.dtype}")
        if shape is not None and arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        arr = arr.astype(np.int64)
        bad = (
            (arr >= self.task.vocab_size)
            | (arr < NO_TOKEN)
            | ((arr == NO_TOKEN) & (shape is not None))
        )
        if bad.any():
            raise ValueError(
                f"{name} {arr[bad][:5].tolist()} outside the action space "
                f"Discrete({self.task.vocab_size})"
            )
        return arr

    def _advance(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Core transition on a validated ``(N, k)`` token matrix; atomic on failure."""
        ep = self._episodes
        n, k = tokens.shape
        if k == 0:  # nothing to append
            return np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        has = tokens != NO_TOKEN  # (N, k)
        counts = has.sum(axis=1)  # (N,)
        if (has & ~(np.arange(k) < counts[:, None])).any():
            raise ValueError(f"{NO_TOKEN} padding must come after a row's tokens")
        busy = counts > 0
        if (busy & ~ep.started).any():
            raise ResetNeeded("call reset() before stepping sub-envs")
        if (busy & ep.done).any():
            raise ResetNeeded(
                f"sub-envs {np.flatnonzero(busy & ep.done).tolist()} have ended; reset them"
            )
        # Tokens past the end of an episode (EOS or the horizon) are malformed input.
        room = ep.G - ep.gen_len  # (N,)
        eos_at = np.where(tokens == self.task.eos_token_id, np.arange(k), k).min(axis=1)  # (N,)
        ends_at = np.minimum(room, eos_at + 1)  # (N,) tokens that fit in the episode
        if (counts > ends_at).any():
            r = int(np.flatnonzero(counts > ends_at)[0])
            raise ValueError(f"env {r}: {counts[r]} tokens continue past the end of its episode")

        snap = ep.snapshot()
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        rewards = np.zeros(n, dtype=np.float64)
        try:
            for j in range(k):
                rows = np.flatnonzero(has[:, j])
                if len(rows) == 0:
                    break
                term, trunc = ep.append(rows, tokens[rows, j])
                terminated[rows] |= term
                truncated[rows] |= trunc
            finished = np.flatnonzero(terminated | truncated)
            if len(finished):
                t0 = time.perf_counter()
                rewards[finished] = ep.score(finished)  # one batched reward call
                ep.final_reward[finished] = rewards[finished]
                self.reward_seconds += time.perf_counter() - t0
        except BaseException:
            ep.restore(snap)
            raise
        return rewards, terminated, truncated

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Undo every change made to the episodes inside the block if the block raises."""
        snap = self._episodes.snapshot()
        try:
            yield
        except BaseException:
            self._episodes.restore(snap)
            raise

    # ----------------------------------------------------------------- states
    def get_states(self) -> tuple[TextState, ...]:
        """The :class:`~textgen_env.state.TextState` of every sub-env."""
        if not self._episodes.started.all():
            raise ResetNeeded("call reset() before get_states()")
        return tuple(self._episodes.state(r) for r in range(self.num_envs))

    def observation(self) -> ObsType:
        """Copies of every sub-env's observation arrays, ``(num_envs, P+G)`` each: what the
        last ``reset``/``step`` would return now (the oracles' ``advance`` changes them too).
        Training code reads finished episodes from here in the layout a model consumes."""
        if not self._episodes.started.all():
            raise ResetNeeded("call reset() before observation()")
        return self._episodes.observation()

    def final_reward(self, row: int, state: TextState) -> float | None:
        """The reward sub-env ``row`` computed for its ended episode if that episode is
        ``state``, else ``None`` (lets oracles avoid scoring the same episode twice)."""
        ep = self._episodes
        if not (ep.started[row] and ep.done[row]) or np.isnan(ep.final_reward[row]):
            return None
        return float(ep.final_reward[row]) if ep.state(row) == state else None

    @property
    def done(self) -> np.ndarray:
        """``(num_envs,)`` bool: which sub-envs' episodes have ended (a copy)."""
        return self._episodes.done.copy()
