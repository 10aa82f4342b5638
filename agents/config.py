"""``TrainConfig``: the settings every algorithm shares, and the checks of its values.

Each algorithm's config is a dataclass deriving from it (:class:`agents.ppo.PPOConfig`,
:class:`agents.bc.BCConfig`, ...). A field's docstring (the string right below it) is its
documentation and becomes its ``--help`` text (the CLI reads it with ``tyro``). Values are
checked in ``__post_init__``; derived values (e.g. the number of minibatches) are
properties, not fields.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal, TypeVar

__all__ = ["TrainConfig", "check_positive", "check_unit"]

C = TypeVar("C", bound="TrainConfig")


def check_positive(obj: object, *names: str) -> None:
    """Raise ValueError unless every field ``names`` of ``obj`` is a number > 0."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def check_unit(obj: object, *names: str) -> None:
    """Raise ValueError unless every field ``names`` of ``obj`` is a number in [0, 1]."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")


@dataclass
class TrainConfig:
    """Settings every algorithm shares."""

    env_id: str = "textgen_env/Reverse-v0"
    """Registered environment id (``textgen_env/...``)."""
    model: str | None = None
    """Policy LM: a hub name or local directory. Default: a tiny random LM for the toy tasks,
    the offline SmolLM2-135M-Instruct for the real tasks."""
    seq2seq: bool = False
    """Toy tasks: a tiny random T5 policy instead of a causal LM; real models: detected from
    the model's config."""
    seed: int = 0
    """Seed of every random number generator (env prompts, β coins, k, sampling, minibatches)."""
    total_iterations: int = 100
    """Training iterations (one batch of episodes and one update each); 0 writes the initial
    policy as a checkpoint (the zero-shot row of an evaluation)."""
    batch_size: int = 64
    """Episodes per iteration (the number of vector sub-envs)."""
    learning_rate: float = 1e-5
    """AdamW learning rate."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""
    top_k: int = 50
    """Top-k sampling of the policy (0 = full softmax)."""
    temperature: float = 1.0
    """Sampling temperature of the policy."""
    kl_coef: float = 0.05
    """Initial KL-penalty coefficient β_KL (penalty −β_KL·(log π − log π_ref) per π token)."""
    adaptive_kl_target: float = 0.0
    """Target KL per π token (nats) of the adaptive β_KL controller (Ziegler et al., 2019);
    0 keeps β_KL fixed."""
    kl_horizon: int = 10_000
    """Horizon (episodes) of the adaptive KL controller."""
    guide_epsilon: float = 0.3
    """Toy tasks only: ε-noise of the scripted guide (0 = optimal expert)."""
    lora_rank: int = 0
    """LoRA rank (peft); 0 trains all weights. With LoRA the reference is the adapter-disabled
    base model (no extra copy)."""
    separate_critic: bool = False
    """Put the value head on a separate copy of the LM instead of the policy's trunk."""
    output_dir: str = ""
    """Where checkpoints and TensorBoard logs go; default runs/<algo>-<env>-s<seed>."""
    checkpoint_every: int = 10
    """Write a checkpoint every this many iterations (and at the end)."""
    log_samples_every: int = 10
    """Log a table of sample completions (prompt, who wrote which part, reward) to
    TensorBoard every this many iterations (0 = never)."""
    device: str = "cpu"
    """Torch device for the policy ("cpu", "cuda", ...)."""
    bf16: bool = False
    """Run the LM passes (sampling, scoring, update) under bf16 autocast: several times faster
    on GPUs and on CPUs with avx512_bf16; weights, optimizer and losses stay fp32."""
    activation_checkpointing: bool = False
    """Recompute each layer's activations in the update's backward pass instead of keeping
    them: less memory, about a third more update compute."""
    guide_api_base: str = ""
    """Base URL of an OpenAI-compatible server whose model is the guide (roll-ins, roll-outs,
    BC's demonstrations), e.g. http://127.0.0.1:8000/v1 for `transformers serve`, vLLM or
    llama.cpp, or https://api.openai.com/v1; empty: the in-process guide. The API key comes
    from the OPENAI_API_KEY environment variable only (never saved). The KL reference π_ref
    stays the policy's own frozen copy."""
    guide_api_model: str = ""
    """Model name the guide server knows (as its /v1/models lists it); required with
    guide_api_base."""
    guide_api_endpoint: Literal["completions", "chat"] = "completions"
    """"completions": the server continues the prompt text (with the completion so far);
    "chat": the prompt is a user turn and the completion so far a final assistant message
    (only servers that continue it, e.g. vLLM or llama.cpp, continue half-written text)."""
    guide_api_prompt_template: str = ""
    """Guide prompt with a {prompt} placeholder; empty: the task's guide template, on the
    completions endpoint wrapped as a user turn in the policy tokenizer's chat template
    (right when the served model shares the policy's chat format, as the default SmolLM2
    does)."""
    guide_api_temperature: float = 1.0
    """Sampling temperature of the served guide (0: greedy)."""
    guide_api_top_p: float = 1.0
    """Nucleus filter of the served guide, in (0, 1]."""
    guide_api_extra_body: str = ""
    """Further fields for every request, as a JSON object, for server-specific settings: e.g.
    '{"top_k": 50}' for vLLM, or '{"generation_config": "{\\"do_sample\\": true,
    \\"top_k\\": 50}"}' for `transformers serve`, which otherwise decodes greedily when the
    model's generation config does not sample."""
    guide_api_timeout_s: float = 60.0
    """Seconds one request to the guide server may wait to connect and for each read."""
    guide_api_max_retries: int = 3
    """Retries of a guide request after a connection error, timeout, HTTP 429 or 5xx
    (exponential backoff; a Retry-After header is honoured)."""
    guide_api_concurrency: int = 4
    """Most guide requests in flight at once."""
    guide_api_cache_dir: str = ""
    """Folder of an on-disk cache of the guide's replies (one JSON file per identical
    request): a rerun with the same seed replays them without asking the server."""

    @classmethod
    def from_record(cls: type[C], record: dict[str, Any]) -> C:
        """The config a checkpoint's ``config.json`` records (its other keys, e.g. ``algo``,
        are ignored; names of earlier versions are mapped to today's)."""
        if "target_kl" in record and "adaptive_kl_target" not in record:
            # Runs written before issue #8 named the adaptive β_KL target "target_kl".
            record = {**record, "adaptive_kl_target": record["target_kl"], "target_kl": None}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})

    def __post_init__(self) -> None:
        if isinstance(self.total_iterations, bool) or self.total_iterations < 0:
            raise ValueError(f"total_iterations must be >= 0, got {self.total_iterations!r}")
        check_positive(self, "batch_size", "learning_rate", "max_grad_norm")
        check_positive(self, "temperature", "checkpoint_every", "kl_horizon")
        check_unit(self, "guide_epsilon")
        if self.top_k < 0 or self.lora_rank < 0 or self.log_samples_every < 0:
            raise ValueError("top_k, lora_rank and log_samples_every must be >= 0")
        if self.kl_coef < 0 or self.adaptive_kl_target < 0:
            raise ValueError("kl_coef and adaptive_kl_target must be >= 0")
        if self.adaptive_kl_target > 0 and self.kl_coef == 0:
            raise ValueError("the adaptive KL controller needs kl_coef > 0 to start from")
        if not self.env_id.startswith("textgen_env/"):
            raise ValueError(f"env_id must be a textgen_env/ id, got {self.env_id!r}")
        self._check_guide_api()

    def _check_guide_api(self) -> None:
        """The guide_api_* fields: a URL and a model together, valid settings."""
        if bool(self.guide_api_base) != bool(self.guide_api_model):
            raise ValueError("guide_api_base and guide_api_model go together: set both or neither")
        if self.guide_api_base and not self.guide_api_base.startswith(("http://", "https://")):
            raise ValueError(
                f"guide_api_base must be an http:// or https:// URL, got {self.guide_api_base!r}"
            )
        if self.guide_api_endpoint not in ("completions", "chat"):
            raise ValueError(
                "guide_api_endpoint must be 'completions' or 'chat', got "
                f"{self.guide_api_endpoint!r}"
            )
        template = self.guide_api_prompt_template
        if template and "{prompt}" not in template:
            raise ValueError(f"guide_api_prompt_template must contain {{prompt}}, got {template!r}")
        check_positive(self, "guide_api_top_p", "guide_api_timeout_s", "guide_api_concurrency")
        if self.guide_api_top_p > 1 or self.guide_api_temperature < 0:
            raise ValueError("guide_api_top_p must be in (0, 1] and guide_api_temperature >= 0")
        if self.guide_api_max_retries < 0:
            raise ValueError(
                f"guide_api_max_retries must be >= 0, got {self.guide_api_max_retries}"
            )
        _ = self.guide_api_extra  # a JSON object, or ValueError

    @property
    def guide_api_extra(self) -> dict[str, Any]:
        """``guide_api_extra_body`` parsed (``{}`` when empty); ValueError if not a JSON object."""
        if not self.guide_api_extra_body:
            return {}
        try:
            extra = json.loads(self.guide_api_extra_body)
        except ValueError as err:
            raise ValueError(f"guide_api_extra_body is not JSON: {err}") from err
        if not isinstance(extra, dict):
            raise ValueError(
                f"guide_api_extra_body must be a JSON object, got {self.guide_api_extra_body!r}"
            )
        return extra
