"""Config dataclasses shared by the algorithms, and field docstrings for ``--help``.

Each algorithm module defines its config as a dataclass whose fields carry a docstring (the
string literal right below the field). :func:`field_docs` reads them from the source, so the
CLI's ``--help`` is the documentation. Values are validated in ``__post_init__``; derived
values (e.g. the number of minibatches) are properties, not fields.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
from dataclasses import dataclass

__all__ = ["TrainConfig", "field_docs"]


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings of a dataclass's fields (including inherited ones)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def _unit(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not 0.0 <= value <= 1.0:
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
    lora_rank: int = 0
    """LoRA rank (peft); 0 trains all weights. With LoRA the reference is the adapter-disabled
    base model (no extra copy)."""
    separate_critic: bool = False
    """Put the value head on a separate copy of the LM instead of the policy's trunk."""
    output_dir: str = ""
    """Where checkpoints and TensorBoard logs go; default runs/<algo>-<env>-s<seed>."""
    checkpoint_every: int = 10
    """Write a checkpoint every this many iterations (and at the end)."""
    device: str = "cpu"
    """Torch device for the policy ("cpu", "cuda", ...)."""

    def __post_init__(self) -> None:
        if isinstance(self.total_iterations, bool) or self.total_iterations < 0:
            raise ValueError(f"total_iterations must be >= 0, got {self.total_iterations!r}")
        _positive(self, "batch_size", "learning_rate", "max_grad_norm")
        _positive(self, "temperature", "checkpoint_every")
        if self.top_k < 0 or self.lora_rank < 0:
            raise ValueError("top_k and lora_rank must be >= 0")
        if not self.env_id.startswith("textgen_env/"):
            raise ValueError(f"env_id must be a textgen_env/ id, got {self.env_id!r}")
