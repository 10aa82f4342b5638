"""textgen_env: token-level text generation as a resettable Gymnasium environment.

Importing the package registers every environment id under the ``textgen_env/`` namespace,
each with a native vector entry point (``gym.make_vec(..., vectorization_mode=
"vector_entry_point")``).
"""

from __future__ import annotations

from gymnasium.envs.registration import register

from textgen_env.env import TextGenEnv
from textgen_env.errors import GuideError, GuideTimeoutError, InvalidStateError
from textgen_env.guides.base import GuidePolicy
from textgen_env.rewards.base import RewardFunction
from textgen_env.state import Prompt, TextState
from textgen_env.task import TextTask
from textgen_env.tokenizer import Tokenizer, ToyTokenizer
from textgen_env.vector import NO_TOKEN, TextGenVectorEnv

__all__ = [
    "NO_TOKEN",
    "GuideError",
    "GuidePolicy",
    "GuideTimeoutError",
    "InvalidStateError",
    "Prompt",
    "RewardFunction",
    "TextGenEnv",
    "TextGenVectorEnv",
    "TextState",
    "TextTask",
    "Tokenizer",
    "ToyTokenizer",
]

register(
    id="textgen_env/Reverse-v0",
    entry_point="textgen_env.tasks.toy:make_reverse_env",
    vector_entry_point="textgen_env.tasks.toy:make_reverse_vector_env",
)
register(
    id="textgen_env/Positive-v0",
    entry_point="textgen_env.tasks.toy:make_positive_env",
    vector_entry_point="textgen_env.tasks.toy:make_positive_vector_env",
)
register(
    id="textgen_env/Twist-v0",
    entry_point="textgen_env.tasks.toy:make_twist_env",
    vector_entry_point="textgen_env.tasks.toy:make_twist_vector_env",
)
register(
    id="textgen_env/IMDB-v0",
    entry_point="textgen_env.tasks.imdb:make_imdb_env",
    vector_entry_point="textgen_env.tasks.imdb:make_imdb_vector_env",
)
register(
    id="textgen_env/CommonGen-v0",
    entry_point="textgen_env.tasks.commongen:make_commongen_env",
    vector_entry_point="textgen_env.tasks.commongen:make_commongen_vector_env",
)
register(
    id="textgen_env/TLDR-v0",
    entry_point="textgen_env.tasks.tldr:make_tldr_env",
    vector_entry_point="textgen_env.tasks.tldr:make_tldr_vector_env",
)
