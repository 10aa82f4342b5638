"""`EpisodeBatch`: the array-backed store of N episodes shared by the single and vector envs.

Layout of one row of width ``P + G`` (``P = max_prompt_tokens``, ``G = max_new_tokens``)::

    [pad ... pad  p_0 ... p_{n-1} | g_0 g_1 ... g_{t-1}  pad ... pad]
     <-- prompt block, LEFT-padded --> <-- generation block, RIGHT-padded -->

Generated token ``t`` always sits at column ``P + t``, so a step writes one column and never
shifts the row. ``attention_mask`` is 1 on real tokens. With a Hugging Face model, pass
``position_ids = attention_mask.cumsum(-1) - 1`` (clipped at 0) so positions skip the padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textgen_env.state import TextState
from textgen_env.task import TextTask

__all__ = ["EpisodeBatch", "states_to_arrays"]


@dataclass
class _Snapshot:
    arrays: tuple[np.ndarray, ...]


class EpisodeBatch:
    """N episodes of one task stored in fixed-shape NumPy arrays (internal to the envs)."""

    _FIELDS = (
        "ids", "mask", "prompt_len", "gen_len", "prompt_index", "done", "started", "final_reward"
    )  # fmt: skip

    def __init__(self, task: TextTask, num_rows: int) -> None:
        self.task = task
        self.n = num_rows
        self.P = task.max_prompt_tokens
        self.G = task.max_new_tokens
        width = self.P + self.G
        self.ids = np.full((num_rows, width), task.pad_token_id, dtype=np.int64)  # (N, P+G)
        self.mask = np.zeros((num_rows, width), dtype=np.int64)  # (N, P+G)
        self.prompt_len = np.zeros(num_rows, dtype=np.int64)  # (N,)
        self.gen_len = np.zeros(num_rows, dtype=np.int64)  # (N,)
        self.prompt_index = np.full(num_rows, -1, dtype=np.int64)  # (N,)
        self.done = np.zeros(num_rows, dtype=bool)  # (N,) episode ended
        self.started = np.zeros(num_rows, dtype=bool)  # (N,) reset at least once
        self.final_reward = np.full(num_rows, np.nan)  # (N,) reward of the ended episode

    def load(self, row: int, state: TextState) -> None:
        """Write a (validated) state into ``row``."""
        p, g = state.prompt_ids, state.generated_ids
        self.ids[row] = self.task.pad_token_id
        self.mask[row] = 0
        self.ids[row, self.P - len(p) : self.P] = p
        self.mask[row, self.P - len(p) : self.P] = 1
        if g:
            self.ids[row, self.P : self.P + len(g)] = g
            self.mask[row, self.P : self.P + len(g)] = 1
        self.prompt_len[row] = len(p)
        self.gen_len[row] = len(g)
        self.prompt_index[row] = state.prompt_index
        self.done[row] = False
        self.started[row] = True
        self.final_reward[row] = np.nan

    def append(self, rows: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append ``tokens[j]`` to episode ``rows[j]`` (rows must be live and distinct).

        Returns ``(terminated, truncated)`` for those rows: EOS ends an episode as terminated,
        reaching ``max_new_tokens`` without EOS as truncated.
        """
        pos = self.P + self.gen_len[rows]  # (R,)
        self.ids[rows, pos] = tokens
        self.mask[rows, pos] = 1
        self.gen_len[rows] += 1
        terminated = tokens == self.task.eos_token_id  # (R,)
        truncated = ~terminated & (self.gen_len[rows] >= self.G)  # (R,)
        self.done[rows] = terminated | truncated
        return terminated, truncated

    def generated(self, row: int) -> np.ndarray:
        """Generated token ids of ``row`` (a view)."""
        return self.ids[row, self.P : self.P + self.gen_len[row]]

    def state(self, row: int) -> TextState:
        """The :class:`TextState` of ``row``."""
        i = int(self.prompt_index[row])
        return TextState(
            self.task.task_id,
            i,
            self.task.prompt_ids[i],
            tuple(self.generated(row).tolist()),
            self.task.prompts[i].references,
        )

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Task rewards of the finished episodes ``rows`` (one reward-function call)."""
        return self.task.score(self.prompt_index[rows], [self.generated(r) for r in rows])

    def observation(self, row: int | None = None) -> dict[str, np.ndarray]:
        """Copies of the observation arrays, for one row or all rows."""
        if row is None:
            return {"input_ids": self.ids.copy(), "attention_mask": self.mask.copy()}
        return {"input_ids": self.ids[row].copy(), "attention_mask": self.mask[row].copy()}

    def snapshot(self) -> _Snapshot:
        """A copy of all arrays, to undo a call that fails half-way."""
        return _Snapshot(tuple(getattr(self, f).copy() for f in self._FIELDS))

    def restore(self, snap: _Snapshot) -> None:
        """Undo to ``snap``."""
        for f, arr in zip(self._FIELDS, snap.arrays, strict=True):
            getattr(self, f)[...] = arr


def states_to_arrays(task: TextTask, states: list[TextState]) -> dict[str, np.ndarray]:
    """The observation arrays ``(len(states), P+G)`` of ``states`` (same layout as the env).

    Training code uses this to turn finished states into a padded batch for one forward pass.
    """
    batch = EpisodeBatch(task, len(states))
    for row, state in enumerate(states):
        batch.load(row, task.validate_state(state, allow_terminal=True))
    return batch.observation()
