"""The learner π: an LM with a value head on its own trunk (no extra LM copy).

Batches use the env's observation layout (prompt block of width ``P`` left-padded, then the
generation block of width ``G`` right-padded). For a causal LM the logits at column
``P - 1 + t`` predict generated token ``t`` and the value at that column is V(s_t), the state
before token ``t``. For an encoder-decoder LM (e.g. T5) the encoder reads the prompt block and
the decoder reads ``[decoder_start, g_0, ..., g_{G-2}]`` (the generation block shifted right),
so decoder position ``t`` predicts token ``t`` and carries V(s_t). Either way :meth:`forward`
returns logits ``(B, G, V)`` and values ``(B, G, 2)``, so the algorithms never see the
difference.

The value head has two outputs on the same trunk: ``values[..., PI]`` estimates V^π, the
return when π finishes the episode, and ``values[..., GUIDE]`` estimates V^g, the return when
the guide takes over from that state (AggreVaTeD's cost-to-go, Chang et al., 2023, §4.2).
One state has different values under the two roll-out policies, so one scalar head trained
on both would give π's own samples a baseline inflated by the guide's returns.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial

import torch
from torch import nn
from transformers import PreTrainedModel

from textgen_env.generation import (
    decoder_start_token_id,
    first_attended_column,
    is_encoder_decoder,
)

__all__ = ["GUIDE", "PI", "ActorCritic", "position_ids", "right_align"]

PI, GUIDE = 0, 1  # value-head outputs: V^π (π rolls out) and V^g (the guide rolls out)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip padding: ``cumsum(mask) - 1`` clipped at 0.  # (B, T)"""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def right_align(
    input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's attended tokens to the front, in order (right padding).  # (B, T) each

    Encoders with absolute positions expect their input at positions ``0..n-1``; the env's
    prompt block is left-padded.
    """
    order = torch.argsort(1 - attention_mask.long(), dim=-1, stable=True)  # (B, T)
    return input_ids.gather(-1, order), attention_mask.gather(-1, order)


def _accepts(model: PreTrainedModel, keyword: str) -> bool:
    """Whether the forward of ``model`` (looked through a peft wrapper) takes ``keyword``."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    return keyword in inspect.signature(base.forward).parameters


def _enable_checkpointing(model: PreTrainedModel) -> None:
    """Turn on transformers' activation checkpointing, for passes with gradients only
    (:func:`_checkpoint_only_with_grad`)."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.24
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    layers = [m for m in base.modules() if getattr(m, "gradient_checkpointing", False) is True]
    if not layers:
        raise ValueError(f"{type(base).__name__} has no layers that can be checkpointed")
    base.register_forward_pre_hook(partial(_checkpoint_only_with_grad, layers))


def _checkpoint_only_with_grad(layers: list[nn.Module], *_: object) -> None:
    """Forward pre-hook of a checkpointed model: its checkpointed modules are in train mode
    (the only mode in which transformers checkpoints them, also when the policy is in eval
    mode for its update) exactly when gradients are on. A pass without gradients (sampling)
    then keeps its KV cache: transformers before 5.24 drops the cache of train-mode
    checkpointed modules even under ``torch.no_grad`` (seen with 5.17 on a GPU machine)."""
    grad = torch.is_grad_enabled()
    for layer in layers:
        layer.training = grad


def _hidden_size(model: PreTrainedModel) -> int:
    cfg = model.config
    return int(getattr(cfg, "hidden_size", None) or cfg.n_embd)


class ActorCritic(nn.Module):
    """Policy LM + value head (outputs V^π and V^g, see the module doc).

    Args:
        model: The policy, a Hugging Face causal LM or encoder-decoder LM (detected from
            ``model.config.is_encoder_decoder``), optionally a peft LoRA model.
        separate_critic: If True, the value head sits on a separate copy of the initial LM
            (more memory, sometimes more stable); by default it shares the policy's trunk (for
            an encoder-decoder: the decoder's last hidden state).
        reference: The frozen reference policy π_ref for the KL penalty. ``None`` means: the
            adapter-disabled base when ``model`` is a LoRA model, otherwise a frozen copy of
            the initial ``model`` (the one extra LM copy PPO needs). Pass the guide's model
            here when guide and reference are the same model, to share it.
        bf16: Run the LM passes under bf16 autocast (weights and value head stay fp32; log-probs
            are computed in fp32).
        activation_checkpointing: Recompute the policy LM's layer activations in the backward
            pass (transformers' activation checkpointing, non-reentrant), in every pass with
            gradients, in train or eval mode; passes without them keep their KV cache.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        separate_critic: bool = False,
        reference: PreTrainedModel | None = None,
        bf16: bool = False,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.bf16 = bool(bf16)
        self.seq2seq = is_encoder_decoder(model)
        if reference is not None and is_encoder_decoder(reference) != self.seq2seq:
            raise ValueError("reference and model must both be causal or both encoder-decoder")
        self.decoder_start = decoder_start_token_id(model) if self.seq2seq else None
        self.is_lora = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
        self.critic = copy.deepcopy(model) if separate_critic else None
        self.value_head = nn.Linear(_hidden_size(model), 2)  # [V^π, V^g]
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        # A copy made here is this module's own: `.to()` and friends move it with the policy
        # (`_apply`); a reference passed in (the guide's model) stays where its owner put it.
        self._owns_reference = reference is None and not self.is_lora
        if self._owns_reference:
            reference = copy.deepcopy(model)
        if reference is not None:
            reference.eval().requires_grad_(False)
        # Kept out of the module tree: never trained, never saved in the policy checkpoint.
        self._reference = [reference]
        if activation_checkpointing:
            _enable_checkpointing(model)

    def _apply(
        self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
    ) -> ActorCritic:
        """`nn.Module._apply` (behind ``.to()``, ``.cuda()``, ``.float()``...), applied to the
        reference copy too when this module made it: it sits outside the module tree."""
        super()._apply(fn, recurse)
        if self._owns_reference:
            self._reference[0]._apply(fn, recurse)
        return self

    @property
    def reference(self) -> PreTrainedModel | None:
        """The frozen reference model (``None`` for LoRA: the adapter-disabled base is used)."""
        return self._reference[0]

    def _run(
        self,
        model: PreTrainedModel,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_width: int,
        hidden: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, G, V)`` for the generated tokens and, if ``hidden``, the last hidden
        state ``(B, G, H)`` at the same positions; under bf16 autocast when ``self.bf16``."""
        bf16 = torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        if self.seq2seq:
            enc_ids, enc_mask = right_align(
                input_ids[:, :prompt_width], attention_mask[:, :prompt_width]
            )  # (B, P) each
            # The encoder reads only up to the longest prompt (issue #9): the columns after it
            # are padding in every row once the rows are right-aligned.
            width = max(1, int(enc_mask.sum(-1).max()))
            enc_ids, enc_mask = enc_ids[:, :width], enc_mask[:, :width]  # (B, P') each
            gen = input_ids[:, prompt_width:]  # (B, G)
            start = gen.new_full((gen.shape[0], 1), self.decoder_start)  # (B, 1)
            with bf16:
                out = model(
                    input_ids=enc_ids,
                    attention_mask=enc_mask,
                    decoder_input_ids=torch.cat([start, gen[:, :-1]], dim=1),  # (B, G)
                    output_hidden_states=hidden,
                    use_cache=False,
                )
            return out.logits, out.decoder_hidden_states[-1] if hidden else None
        # Columns that are padding in every row are dropped (issue #9): the env's prompt block
        # is as wide as the task's longest prompt, a batch's prompts are mostly shorter (IMDB-v0,
        # 16 rows: 18-31 of its 64 columns). Column P-1 stays: it predicts the first token.
        g = input_ids.shape[1] - prompt_width
        lead = min(first_attended_column(attention_mask[:, :prompt_width]), prompt_width - 1)
        if lead > 0:
            input_ids, attention_mask = input_ids[:, lead:], attention_mask[:, lead:]  # (B, T')
        # Logits only where they are used: columns P-1 .. P+G-1 (issue #9); the prompt's
        # P-1 columns would cost a (P-1) x V projection and its memory for nothing.
        extra = {"logits_to_keep": g + 1} if _accepts(model, "logits_to_keep") else {}
        # The last hidden state is what the LM head reads: taken from its input, at the kept
        # columns, rather than asking the model for every layer's hidden states (issue #9).
        head = getattr(model, "get_output_embeddings", lambda: None)() if hidden else None
        read: list[torch.Tensor] = []
        hook = head.register_forward_pre_hook(lambda _, a: read.append(a[0])) if head else None
        try:
            with bf16:
                out = model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids(attention_mask),
                    output_hidden_states=hidden and head is None,
                    use_cache=False,
                    **extra,
                )
        finally:
            if hook is not None:
                hook.remove()
        logits = out.logits[:, -(g + 1) : -1]  # (B, G, V): columns P-1 .. P+G-2
        if not hidden:
            return logits, None
        last = read[-1] if head is not None else out.hidden_states[-1]  # (B, g+1 or P+G, H)
        return logits, last[:, -(g + 1) : -1]  # (B, G, H)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, G, V)`` predicting each generated token and values ``(B, G, 2)``
        (``[..., PI]`` = V^π(s_t), ``[..., GUIDE]`` = V^g(s_t))."""
        shared = self.critic is None
        logits, hidden = self._run(self.model, input_ids, attention_mask, prompt_width, shared)
        if not shared:
            _, hidden = self._run(self.critic, input_ids, attention_mask, prompt_width, True)
        assert hidden is not None
        values = self.value_head(hidden.to(self.value_head.weight.dtype))  # (B, G, 2)
        return logits, values

    @torch.no_grad()
    def sync_reference(self) -> None:
        """Make π_ref a frozen copy of the current policy weights (e.g. after a BC warm start).

        With LoRA the reference stays the adapter-disabled base model.
        """
        if self.reference is not None:
            self.reference.load_state_dict(self.model.state_dict())

    @torch.no_grad()
    def reference_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
    ) -> torch.Tensor:
        """Logits ``(B, G, V)`` of π_ref at the same positions as :meth:`forward`."""
        with self.reference_model() as model:
            logits, _ = self._run(model, input_ids, attention_mask, prompt_width, False)
        return logits

    @torch.no_grad()
    def reference_prompt_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
    ) -> torch.Tensor:
        """π_ref's representation of each prompt ``(B, H)``: its last hidden state where it
        predicts the first generated token (a function of the prompt alone)."""
        cols = prompt_width + 1  # the prompt block and one generated column
        with self.reference_model() as model:
            _, hidden = self._run(
                model, input_ids[:, :cols], attention_mask[:, :cols], prompt_width, True
            )
        assert hidden is not None
        return hidden[:, 0].float()  # (B, H)

    @contextmanager
    def reference_model(self) -> Iterator[PreTrainedModel]:
        """π_ref as a model: the frozen copy, or the LoRA model with its adapters disabled
        for the duration of the block."""
        if self.reference is not None:
            yield self.reference
            return
        ctx = self.model.disable_adapter() if self.is_lora else nullcontext()
        with ctx:
            yield self.model

    def policy_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: the whole state, or for LoRA only the trainable tensors
        (adapters, value head), since the frozen base is rebuilt from the model name."""
        state = self.state_dict()
        if not self.is_lora:
            return state
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in state.items() if k in trainable}

    def load_policy_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`policy_state` output; raises ``ValueError`` on missing or unknown keys."""
        if not self.is_lora:
            self.load_state_dict(state)
            return
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        missing = sorted(trainable - state.keys())
        unknown = sorted(state.keys() - self.state_dict().keys())
        if missing or unknown:
            raise ValueError(
                f"checkpoint does not fit this LoRA policy: missing {missing[:3]}, "
                f"unknown {unknown[:3]}"
            )
        self.load_state_dict(state, strict=False)

    def summed_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the processes that train π: π trains in this process alone,
        so ``values`` itself (a multi-process run's π, ``agents.replicas.ReplicatedPolicy``,
        all-reduces them)."""
        return values

    def step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, max_grad_norm: float
    ) -> torch.Tensor:
        """One gradient step on ``loss``: backward, the gradients of
        :meth:`trainable_parameters` clipped to norm ``max_grad_norm``, ``optimizer``'s step.
        Returns the gradient norm before clipping. (In a multi-process run the update calls
        ``agents.distributed``'s policies' ``step`` instead.)"""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), max_grad_norm)
        optimizer.step()
        return norm

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer updates (LoRA adapters only, for a LoRA model)."""
        return [p for p in self.parameters() if p.requires_grad]

    def optimizer(self, lr: float) -> torch.optim.AdamW:
        """AdamW over :meth:`trainable_parameters`, fused where torch has the kernel for the device.

        The fused step gives the default (multi-tensor) step's numbers, up to rounding, with fewer
        passes over memory and no temporary copies of the parameters: 0.30 → 0.06 s per step
        for SmolLM2's parameters on the 2-core CPU (issue #9).
        """
        params = self.trainable_parameters()
        device = params[0].device.type if params else "cpu"
        fused = True if device in ("cpu", "cuda", "mps", "xpu") else None  # None: torch's default
        return torch.optim.AdamW(params, lr=lr, fused=fused)
