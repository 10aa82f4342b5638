"""Rewards: the :class:`RewardFunction` Protocol and batched task rewards (all offline).

* sentiment (IMDB): :class:`VaderSentiment` (default), :class:`ClassifierSentiment` (any HF
  sequence classifier), :class:`ZeroShotSentimentJudge` (an instruct LM as judge);
* overlap (CommonGen, TL;DR): :class:`CiderD` (default for CommonGen), :class:`Spider`
  (needs SPICE's CoreNLP jars), :class:`RougeL` (default for TL;DR);
* similarity: :class:`SemanticSimilarity` (MiniLM), :class:`RewardModelScore` (any HF reward
  model).
"""

from textgen_env.rewards.base import RewardFunction, check_rewards
from textgen_env.rewards.overlap import CiderD, RougeL, Spider
from textgen_env.rewards.sentiment import (
    ClassifierSentiment,
    VaderSentiment,
    ZeroShotSentimentJudge,
)
from textgen_env.rewards.similarity import RewardModelScore, SemanticSimilarity

__all__ = [
    "CiderD",
    "ClassifierSentiment",
    "RewardFunction",
    "RewardModelScore",
    "RougeL",
    "SemanticSimilarity",
    "Spider",
    "VaderSentiment",
    "ZeroShotSentimentJudge",
    "check_rewards",
]
