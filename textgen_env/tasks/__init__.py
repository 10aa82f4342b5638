"""Tasks: prompt sets, reward functions and env factories registered by :mod:`textgen_env`.

* :mod:`textgen_env.tasks.toy`: ``Reverse-v0`` and ``Positive-v0`` (tiny vocabularies).
* :mod:`textgen_env.tasks.imdb`, :mod:`~textgen_env.tasks.commongen`,
  :mod:`~textgen_env.tasks.tldr`: the paper's ``IMDB-v0``, ``CommonGen-v0`` and ``TLDR-v0``,
  on small shipped splits by default (:mod:`textgen_env.tasks.data`).

:func:`default_guide` builds the guide policy of a real task: an instruct model told the task
through the task's ``GUIDE_TEMPLATE``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from textgen_env.tokenizer import Tokenizer

if TYPE_CHECKING:  # imported lazily: the toy tasks need neither torch nor transformers
    from textgen_env.guides.hf import HFGuide

__all__ = ["REAL_TASKS", "default_guide", "guide_template", "task_module"]

REAL_TASKS = {"IMDB-v0": "imdb", "CommonGen-v0": "commongen", "TLDR-v0": "tldr"}
"""Env names of the paper's tasks and the modules that define them."""


def task_module(env_id: str) -> ModuleType:
    """The module of a real task, from ``"textgen_env/IMDB-v0"``, ``"IMDB-v0"`` or a task id
    such as ``"IMDB-v0/test"``.

    Raises:
        ValueError: Not one of the paper's tasks.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a str, got {type(env_id).__name__}")
    name = env_id.removeprefix("textgen_env/").split("/")[0]
    if name not in REAL_TASKS:
        raise ValueError(f"{env_id!r} is not one of the real tasks {sorted(REAL_TASKS)}")
    return importlib.import_module(f"textgen_env.tasks.{REAL_TASKS[name]}")


def guide_template(env_id: str) -> str:
    """The ``GUIDE_TEMPLATE`` (with a ``{prompt}`` placeholder) of a real task."""
    return task_module(env_id).GUIDE_TEMPLATE


def default_guide(
    env_id: str,
    policy_tokenizer: Tokenizer,
    model: Any = None,
    tokenizer: Tokenizer | None = None,
    *,
    top_k: int = 50,
) -> HFGuide:
    """The default guide of a real task: an instruct LM prompted with the task's template.

    The guide sees the env prompt placed in ``GUIDE_TEMPLATE``, wrapped in its chat template
    as a user turn, followed by the completion so far as the start of its answer; it samples
    with top-k and hands its text back through ``policy_tokenizer`` (the :class:`HFGuide` text
    hand-off), so the policy may use another tokenizer.

    Args:
        env_id: ``"textgen_env/IMDB-v0"``, ``"textgen_env/CommonGen-v0"`` or
            ``"textgen_env/TLDR-v0"`` (the prefix and a ``/split`` suffix are optional).
        policy_tokenizer: The env's tokenizer.
        model: The instruct causal LM; ``None`` loads the offline SmolLM2-135M-Instruct. Pass
            the policy's frozen reference model when it is that same model, to avoid a copy.
        tokenizer: The model's tokenizer (required with ``model``, which needs a chat
            template).
        top_k: Top-k filter of the guide's sampling.

    Raises:
        ValueError: Unknown task, or only one of ``model`` and ``tokenizer`` given.
    """
    from textgen_env.guides.hf import HFGuide

    template = guide_template(env_id)
    if (model is None) != (tokenizer is None):
        raise ValueError("give both model and tokenizer, or neither (to load SmolLM2)")
    if model is None:
        from textgen_env.models import load_causal_lm

        model, tokenizer = load_causal_lm()
    return HFGuide(
        model,
        tokenizer,
        policy_tokenizer=policy_tokenizer,
        prompt_template=template,
        use_chat_template=True,
        top_k=top_k,
    )
