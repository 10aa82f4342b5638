"""The learner π: a causal LM with a scalar value head on its own trunk (no extra LM copy).

Batches use the env's observation layout (prompt block of width ``P`` left-padded, then the
generation block of width ``G`` right-padded), so the logits at column ``P - 1 + t`` predict
generated token ``t`` and the value at that column is V(s_t), the state before token ``t``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from transformers import PreTrainedModel

__all__ = ["ActorCritic", "position_ids"]


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip padding: ``cumsum(mask) - 1`` clipped at 0.  # (B, T)"""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _hidden_size(model: PreTrainedModel) -> int:
    cfg = model.config
    return int(getattr(cfg, "hidden_size", None) or cfg.n_embd)


class ActorCritic(nn.Module):
    """Policy LM + value head.

    Args:
        model: The policy, any Hugging Face causal LM (optionally a peft LoRA model).
        separate_critic: If True, the value head sits on a separate copy of the initial LM
            (more memory, sometimes more stable); by default it shares the policy's trunk.
        reference: The frozen reference policy π_ref for the KL penalty. ``None`` means: the
            adapter-disabled base when ``model`` is a LoRA model, otherwise a frozen copy of
            the initial ``model`` (the one extra LM copy PPO needs). Pass the guide's model
            here when guide and reference are the same model, to share it.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        separate_critic: bool = False,
        reference: PreTrainedModel | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.is_lora = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
        self.critic = copy.deepcopy(model) if separate_critic else None
        self.value_head = nn.Linear(_hidden_size(model), 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        if reference is None and not self.is_lora:
            reference = copy.deepcopy(model)
        if reference is not None:
            reference.eval().requires_grad_(False)
        # Kept out of the module tree: never trained, never saved in the policy checkpoint.
        self._reference = [reference]

    @property
    def reference(self) -> PreTrainedModel | None:
        """The frozen reference model (``None`` for LoRA: the adapter-disabled base is used)."""
        return self._reference[0]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, G, V)`` predicting each generated token and values ``(B, G)``."""
        pos = position_ids(attention_mask)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=pos,
            output_hidden_states=self.critic is None,
            use_cache=False,
        )
        span = slice(prompt_width - 1, input_ids.shape[1] - 1)  # columns P-1 .. P+G-2
        logits = out.logits[:, span]  # (B, G, V)
        if self.critic is None:
            hidden = out.hidden_states[-1][:, span]  # (B, G, H)
        else:
            hidden = self.critic(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=pos,
                output_hidden_states=True,
                use_cache=False,
            ).hidden_states[-1][:, span]  # (B, G, H)
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)  # (B, G)
        return logits, values

    @torch.no_grad()
    def reference_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
    ) -> torch.Tensor:
        """Logits ``(B, G, V)`` of π_ref at the same positions as :meth:`forward`."""
        model = self.reference if self.reference is not None else self.model
        with self._adapters_off():
            out = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids(attention_mask),
                use_cache=False,
            )
        return out.logits[:, prompt_width - 1 : input_ids.shape[1] - 1]  # (B, G, V)

    @contextmanager
    def _adapters_off(self) -> Iterator[None]:
        ctx = (
            self.model.disable_adapter()
            if self.is_lora and self.reference is None
            else nullcontext()
        )
        with ctx:
            yield

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer updates (LoRA adapters only, for a LoRA model)."""
        return [p for p in self.parameters() if p.requires_grad]
