"""Guide policies: objects that propose the next tokens of episode states.

See :class:`GuidePolicy` for the contract. Implementations:

* :class:`HFGuide`: a Hugging Face causal LM (same vocabulary, or a text hand-off with a
  prompt template, a chat template or another tokenizer);
* :class:`TextGuide`: any text-in, text-out function (an API client), with timeout and retries;
* :class:`APIGuide`: a model behind an OpenAI-compatible server (a hosted API, vLLM, llama.cpp,
  ``transformers serve``), through the ``openai`` client (``pip install textgen-env[api]``);
* :class:`ReferenceGuide`: the data set's reference completion, replayed by position;
* :class:`ScriptedGuide`: a hand-written expert with ε-noise (for the toy tasks);
* :class:`MixtureGuide`: per state, one of two guides with probability β.
"""

from __future__ import annotations

from textgen_env.guides.api import APIGuide
from textgen_env.guides.base import GuidePolicy
from textgen_env.guides.hf import HFGuide
from textgen_env.guides.mixture import MixtureGuide
from textgen_env.guides.reference import ReferenceGuide
from textgen_env.guides.scripted import ScriptedGuide
from textgen_env.guides.text import TextGuide

__all__ = [
    "APIGuide",
    "GuidePolicy",
    "HFGuide",
    "MixtureGuide",
    "ReferenceGuide",
    "ScriptedGuide",
    "TextGuide",
]
