"""`TextGenEnv`: token-level text generation as a single Gymnasium environment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from textgen_env._checks import check_int, check_seed, is_int
from textgen_env.episodes import EpisodeBatch
from textgen_env.rewards.base import RewardFunction
from textgen_env.state import Prompt, TextState
from textgen_env.task import TextTask, Truncation
from textgen_env.tokenizer import Tokenizer

__all__ = ["TextGenEnv", "observation_space"]

ObsType = dict[str, np.ndarray]


def observation_space(task: TextTask) -> spaces.Dict:
    """Observation space of one episode: padded token ids and attention mask, shape (P+G,)."""
    width = task.max_prompt_tokens + task.max_new_tokens
    return spaces.Dict(
        {
            "input_ids": spaces.Box(0, task.vocab_size - 1, (width,), np.int64),
            "attention_mask": spaces.Box(0, 1, (width,), np.int64),
        }
    )


def _as_action(action: Any, vocab_size: int) -> int:
    """Validate one action: an integer token id in ``[0, vocab_size)``."""
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action[()]
    if not is_int(action):
        raise TypeError(f"action must be an integer token id, got {type(action).__name__}")
    action = int(action)
    if not 0 <= action < vocab_size:
        raise ValueError(f"action {action} is outside the action space Discrete({vocab_size})")
    return action


class TextGenEnv(gym.Env[ObsType, np.int64]):
    """Generate text one token at a time; the finished text is scored by a reward function.

    ## Description
    A finite-horizon MDP over tokens. The state is a prompt plus the tokens generated so far;
    an action appends one token (a deterministic transition). Because transitions are
    deterministic, the env can restart at any state: ``env.unwrapped.get_state()`` returns a
    frozen, picklable :class:`~textgen_env.state.TextState`, and
    ``env.reset(options={"state": s})`` continues from it exactly. Guide policies use this to
    roll in and roll out (see :mod:`textgen_env.oracles`).

    ## Action Space
    ``Discrete(vocab_size)``: the id of the next token (``vocab_size`` defaults to
    ``len(tokenizer)``).

    ## Observation Space
    ``Dict(input_ids=Box(0, vocab_size-1, (P+G,), int64), attention_mask=Box(0, 1, (P+G,),
    int64))`` with ``P = max_prompt_tokens`` and ``G = max_new_tokens``. The prompt block
    (first ``P`` columns) is **left**-padded, the generation block (last ``G`` columns) is
    **right**-padded, so generated token ``t`` is at column ``P + t``; padding uses the
    tokenizer's pad id (EOS if it has none) and has ``attention_mask == 0``.

    ## Rewards
    0 on every step but the last; on the last step (EOS or horizon) the reward function scores
    the decoded completion (special tokens removed) given the prompt text and references.

    ## Starting State
    ``reset(seed=...)`` draws a prompt uniformly from the prompt set with ``self.np_random``;
    ``options={"prompt_index": i}`` picks prompt ``i``; ``options={"state": s}`` restarts at
    ``s`` (which must belong to this task and not be terminal).

    ## Episode End
    Terminated when the policy emits EOS; truncated when ``max_new_tokens`` tokens have been
    generated without EOS. The task reward is given in both cases (the horizon is part of the
    task).

    ## Arguments
    * ``tokenizer``: any object with the :class:`~textgen_env.tokenizer.Tokenizer` API.
    * ``prompts``: a sequence of :class:`~textgen_env.state.Prompt` (or str).
    * ``reward_fn``: a :class:`~textgen_env.rewards.RewardFunction`.
    * ``max_new_tokens``, ``max_prompt_tokens``, ``task_id``, ``vocab_size``,
      ``prompt_truncation``: see :meth:`textgen_env.task.TextTask.build` (long prompts are
      left-truncated by default, keeping the tokens nearest the generation).
    * ``render_mode``: ``None`` or ``"ansi"`` (returns the prompt and completion as text).

    ## Version History
    * v0: Initial version.

    ## Example
    >>> import gymnasium as gym
    >>> import textgen_env
    >>> env = gym.make("textgen_env/Reverse-v0")
    >>> obs, info = env.reset(seed=0)
    >>> state = env.unwrapped.get_state()
    >>> obs, reward, terminated, truncated, info = env.step(3)
    >>> obs2, _ = env.reset(options={"state": state})
    >>> env.unwrapped.get_state() == state
    True
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        tokenizer: Tokenizer,
        prompts: Sequence[Prompt | str],
        reward_fn: RewardFunction,
        *,
        max_new_tokens: int,
        max_prompt_tokens: int = 64,
        task_id: str = "custom",
        vocab_size: int | None = None,
        prompt_truncation: Truncation = "left",
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
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
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(self.task.vocab_size)
        self.observation_space = observation_space(self.task)
        self._episodes = EpisodeBatch(self.task, 1)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict[str, Any]]:
        """Start at a sampled prompt, ``options["prompt_index"]`` or ``options["state"]``.

        A rejected call (bad options or state) leaves the env unchanged.
        """
        options = dict(options or {})
        state = options.pop("state", None)
        prompt_index = options.pop("prompt_index", None)
        if options:
            raise ValueError(
                f"unknown reset options {sorted(options)}; use 'state' or 'prompt_index'"
            )
        if state is not None and prompt_index is not None:
            raise ValueError("give either options['state'] or options['prompt_index'], not both")
        # Validate before touching anything, so a rejected reset leaves the env unchanged.
        if state is not None:
            state = self.task.validate_state(state)
        elif prompt_index is not None:
            state = self.task.initial_state(check_int(prompt_index, "options['prompt_index']"))
        super().reset(seed=check_seed(seed))
        if state is None:
            state = self.task.initial_state(int(self.np_random.integers(self.task.num_prompts)))
        self._episodes.load(0, state)
        return self._episodes.observation(0), {"prompt_index": state.prompt_index}

    def step(self, action: Any) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        """Append token ``action``; the reward is non-zero only on the episode's last step."""
        token = _as_action(action, self.task.vocab_size)
        ep = self._episodes
        if not ep.started[0]:
            raise ResetNeeded("call reset() before step()")
        if ep.done[0]:
            raise ResetNeeded("the episode has ended; call reset() before step()")
        snap = ep.snapshot()
        rows = np.zeros(1, dtype=np.int64)
        terminated, truncated = ep.append(rows, np.array([token], dtype=np.int64))
        reward = 0.0
        if ep.done[0]:
            try:
                reward = float(ep.score(rows)[0])
            except BaseException:
                ep.restore(snap)  # a failing reward function leaves the env unchanged
                raise
        return ep.observation(0), reward, bool(terminated[0]), bool(truncated[0]), {}

    def get_state(self) -> TextState:
        """The current :class:`~textgen_env.state.TextState`; restart there with
        ``reset(options={"state": s})``."""
        if not self._episodes.started[0]:
            raise ResetNeeded("call reset() before get_state()")
        return self._episodes.state(0)

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the prompt and the completion so far, as text."""
        if self.render_mode != "ansi" or not self._episodes.started[0]:
            return None
        state = self._episodes.state(0)
        prompt, completion = self.task.decode([state.prompt_ids, state.generated_ids])
        return f"{prompt} ▸ {completion}"
