"""π as the update functions see it when several processes share a run.

:class:`ReplicatedPolicy` runs π's forward through accelerate's DDP wrapper (the backward pass
averages the gradients over the processes); :class:`ShardedPolicy` runs it through DeepSpeed's
engine, which also takes the optimizer step. Both answer the calls the updates make of π
(:class:`agents.policy.ActorCritic`'s), so an update runs unchanged in one process or several.
:class:`agents.distributed.Processes` hands them out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from agents.policy import ActorCritic

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["ReplicatedPolicy", "ShardedPolicy"]


class ReplicatedPolicy:
    """π as the update functions see it in a multi-process run.

    Calling it runs π's forward through accelerate's DDP wrapper, whose backward averages the
    gradients over the processes; the other methods the updates use are π's own.
    """

    def __init__(
        self, ac: ActorCritic, wrapped: nn.Module, summed: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        self.ac = ac
        self._wrapped: nn.Module | None = wrapped
        self._summed = summed

    @property
    def wrapped(self) -> nn.Module:
        """π in accelerate's DDP wrapper. Raises RuntimeError after :meth:`release`."""
        if self._wrapped is None:
            raise RuntimeError("π's DDP wrapper was released: Processes.finish() ended the run")
        return self._wrapped

    def release(self) -> None:
        """Drop the DDP wrapper (:meth:`agents.distributed.Processes.finish`, before the
        process group ends)."""
        self._wrapped = None

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """π's logits ``(B, G, V)`` and values ``(B, G, 2)`` (:meth:`ActorCritic.forward`)."""
        return self.wrapped(input_ids, attention_mask, prompt_width)

    def train(self, mode: bool = True) -> ReplicatedPolicy:
        """Set π's train/eval mode (:meth:`ActorCritic.train`)."""
        self.wrapped.train(mode)
        return self

    def eval(self) -> ReplicatedPolicy:
        """Eval mode (no dropout)."""
        return self.train(False)

    def parameters(self) -> Iterator[nn.Parameter]:
        """π's parameters."""
        return self.ac.parameters()

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer updates."""
        return self.ac.trainable_parameters()

    def summed_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over every process (an all-reduce: each process must call it at
        the same point), e.g. the update's KL for ``target_kl``."""
        return self._summed(values)

    def step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, max_grad_norm: float
    ) -> torch.Tensor:
        """One gradient step on ``loss`` (:meth:`ActorCritic.step`); the backward pass through
        the DDP wrapper averages the gradients over the processes."""
        return self.ac.step(loss, optimizer, max_grad_norm)

    def reference_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
    ) -> torch.Tensor:
        """π_ref's logits (:meth:`ActorCritic.reference_logits`); π_ref is not trained."""
        return self.ac.reference_logits(input_ids, attention_mask, prompt_width)


class ShardedPolicy(ReplicatedPolicy):
    """π as the update functions see it under DeepSpeed ZeRO (stage 1, 2 or 3).

    Calling it runs π's forward through DeepSpeed's engine; :meth:`step` hands the loss to the
    engine, which averages the gradients over the processes, clips them to the config's
    ``gradient_clipping`` (the run's ``max_grad_norm``, :func:`agents.zero.configure`) and
    steps its partition of AdamW. Under stages 1 and 2 the weights stay whole in every
    process; under stage 3 the engine gathers each layer's for its passes
    (:meth:`agents.distributed.Processes.whole` for the passes outside it).
    """

    def __init__(
        self,
        ac: ActorCritic,
        engine: nn.Module,
        accelerator: Accelerator,
        summed: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        super().__init__(ac, engine, summed)
        self._accelerator = accelerator

    def step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, max_grad_norm: float
    ) -> torch.Tensor:
        """One gradient step on ``loss`` by DeepSpeed's engine (``optimizer``, accelerate's
        wrapper of it, steps with the engine); returns the gradient norm before clipping.

        Raises:
            ValueError: ``max_grad_norm`` is not the engine's clipping (the run's
                ``max_grad_norm``, set by :func:`agents.zero.configure`).
        """
        clipping = self._accelerator.state.deepspeed_plugin.deepspeed_config["gradient_clipping"]
        if max_grad_norm != clipping:
            raise ValueError(
                f"max_grad_norm {max_grad_norm} is not DeepSpeed's gradient_clipping {clipping}"
            )
        self._accelerator.backward(loss)  # engine.backward, then engine.step (clip, AdamW, zero)
        norm = self._accelerator.clip_grad_norm_(self.ac.trainable_parameters(), max_grad_norm)
        return torch.as_tensor(float(norm))
