"""DeepSpeed ZeRO under accelerate: which ZeRO launches a run takes, and π's and AdamW's state
when DeepSpeed's engine partitions them over the processes.

* **What is run** (:func:`check_deepspeed`, :func:`check_zero`, :func:`configure`): stages
  1, 2 and 3 without offloading; DeepSpeed's batch-size fields are set to one sample per
  process (the update picks its own minibatches) and its gradient clipping to the run's
  ``max_grad_norm``; under stage 3 models are built whole (π_ref stays out of the engine).
* **π whole for a block** (:func:`gathered`): under stage 3, the blocks that run π outside the
  engine (sampling, scoring, checks, checkpoints) gather its weights in every process.
* **AdamW in torch's layout** (:func:`full_state`, :func:`load_full_state`,
  :func:`clear_state`): a checkpoint holds the whole optimizer state gathered from the
  partitions, so a ZeRO run resumes under ZeRO, DDP or one process and back;
  :func:`take_weights` hands weights set in place (ReST-EM's restart) to ZeRO's fp32 copy.

:class:`agents.distributed.Processes` calls these where DeepSpeed holds π; every function that
gathers or scatters is collective (every process calls it at the same point).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from agents.config import TrainConfig
from agents.policy import ActorCritic
from agents.rundir import RunSetupError

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "DEEPSPEED",
    "ZERO_STAGES",
    "check_deepspeed",
    "check_zero",
    "clear_state",
    "configure",
    "full_state",
    "gathered",
    "load_full_state",
    "take_weights",
    "uses_deepspeed",
]

DEEPSPEED = "ACCELERATE_USE_DEEPSPEED"
"""What ``accelerate launch`` sets for a DeepSpeed config (``configs/accelerate/zero2.yaml``)."""
ZERO_STAGES = ("1", "2", "3")
"""The ZeRO stages run here. Stages 1 and 2 keep π's weights whole in every process; stage 3
partitions them too, and gathers them whole for the blocks that use π outside DeepSpeed's
engine (:func:`gathered`)."""


def uses_deepspeed() -> bool:
    """Whether ``accelerate launch`` started this process under a DeepSpeed config."""
    return os.environ.get(DEEPSPEED, "").lower() == "true"


def check_deepspeed() -> None:
    """Refuse (:class:`RunSetupError`) a DeepSpeed launch this run cannot take: DeepSpeed not
    installed, a ZeRO stage other than :data:`ZERO_STAGES`, or offloading."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise RunSetupError(
            "accelerate launch asked for DeepSpeed, which is not installed here: "
            "pip install 'textgen-env[deepspeed]'"
        )
    # (a DeepSpeed config file instead of these keys: :func:`configure` checks what it says)
    check_zero(
        os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2"),
        {
            what: os.environ.get(f"ACCELERATE_DEEPSPEED_OFFLOAD_{what.upper()}_DEVICE", "none")
            for what in ("optimizer", "param")
        },
    )


def check_zero(stage: str, offload: dict[str, str]) -> None:
    """Refuse (:class:`RunSetupError`) a ZeRO stage other than :data:`ZERO_STAGES` or
    offloading (``offload``: what → device, "none" for none)."""
    if stage not in ZERO_STAGES:
        raise RunSetupError(
            f"DeepSpeed ZeRO stage {stage} is not run by this trainer: use stage "
            f"{', '.join(ZERO_STAGES[:-1])} or {ZERO_STAGES[-1]} (stage 0 is plain data "
            "parallelism: configs/accelerate/cpu.yaml or ddp.yaml)"
        )
    for what, device in offload.items():
        if device != "none":
            raise RunSetupError(
                f"DeepSpeed's offload_{what}_device {device!r} is not run by this trainer: "
                "use 'none'"
            )


def configure(accelerator: Accelerator, cfg: TrainConfig, world: int) -> None:
    """Check the DeepSpeed config accelerate took from the launch (:func:`check_zero`, no
    ``zero3_init_flag``) and fit it to the run: one sample per process in DeepSpeed's batch
    sizes, no accumulation, the run's ``max_grad_norm`` as its clipping. Under stage 3 the
    config is unregistered from transformers, so that models are built whole. Raises
    :class:`RunSetupError`."""
    plugin = accelerator.state.deepspeed_plugin
    ds = plugin.deepspeed_config
    zero = ds.get("zero_optimization", {})
    check_zero(
        str(zero.get("stage", 0)),
        {
            what: str(zero.get(f"offload_{what}", {}).get("device", "none"))
            for what in ("optimizer", "param")
        },
    )
    if plugin.zero3_init_flag:
        raise RunSetupError(
            "DeepSpeed's zero3_init_flag partitions every model as it is built, π_ref "
            "too, which stays out of the engine and must be whole: set it to false "
            "(π is partitioned when the engine takes it; configs/accelerate/zero3.yaml)"
        )
    if str(zero.get("stage", 0)) == "3":
        from transformers.integrations import unset_hf_deepspeed_config

        # accelerate 1.16 registers its DeepSpeed config with transformers even with
        # zero3_init_flag false (DeepSpeedPlugin.set_deepspeed_weakref), and under stage 3
        # from_pretrained then builds every model partitioned, π_ref too, which stays out
        # of the engine. Unregistered, models are built whole; the engine partitions π.
        unset_hf_deepspeed_config()
    # The update picks its own minibatches; DeepSpeed's batch sizes only have to agree
    # with each other (one sample per process, no accumulation). Clipping is the run's.
    ds |= {
        "train_micro_batch_size_per_gpu": 1,
        "train_batch_size": world,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.max_grad_norm,
    }


@contextmanager
def gathered(engine: nn.Module, ac: ActorCritic, modify: bool = False) -> Iterator[None]:
    """π's weights, partitioned by ZeRO-3's ``engine``, whole in this process for the block
    (every process enters it together: gathering them is collective).

    Inside, ZeRO-3's hooks are off π's modules: each process may then run π as often as it
    likes (sampling differs in length between processes), where the hooks would gather every
    layer again in every call and join the other processes for it. With ``modify`` the main
    process's weights at the end of the block become every process's partitions (ReST-EM's
    restart); without it, what the block writes into them is lost.
    """
    import deepspeed

    offload = engine.optimizer.parameter_offload  # type: ignore[union-attr]
    params = list(ac.parameters())
    with deepspeed.zero.GatheredParameters(params, modifier_rank=0 if modify else None):
        hooks = [*offload.forward_hooks, *offload.backward_hooks, offload.fwd_pre_hook]
        for hook in hooks:  # the root's pre-hook too: it compares traces across processes
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            offload.setup_zero_stage3_hooks()  # (re-registered: it re-records its trace)


def clear_state(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Put ``optimizer`` (accelerate's wrapper of DeepSpeed's) in the state of a new AdamW at
    learning rate ``lr``: its partitions' moments and step counts zeroed in place."""
    base = _base(optimizer)
    for st in base.state.values():  # this process's partitions (none before a step)
        for value in st.values():  # step, exp_avg, exp_avg_sq
            value.zero_()
    for group in base.param_groups:
        group["lr"] = lr


def take_weights(ac: ActorCritic) -> None:
    """Hand π's weights, set in place, to ZeRO's fp32 copy of each process's partition, which
    is what ZeRO steps (under ZeRO-3 call it inside ``gathered(..., modify=True)``)."""
    from deepspeed.utils import safe_set_full_fp32_param

    for p in ac.trainable_parameters():
        safe_set_full_fp32_param(p, p.detach().clone())


def full_state(optimizer: torch.optim.Optimizer, ac: ActorCritic) -> dict[str, Any]:
    """``optimizer``'s state in torch's AdamW layout (``AdamW.state_dict()``), gathered from
    every process's ZeRO partition; the main process gets the whole state."""
    from deepspeed.utils import safe_get_full_optimizer_state

    base = _base(optimizer)
    params = ac.trainable_parameters()
    state = {}
    if base.state:  # (none before the first step, as in a new AdamW)
        step = _step(base)
        for i, p in enumerate(params):
            state[i] = {"step": step.clone()} | {
                k: safe_get_full_optimizer_state(p, k).detach().to("cpu", copy=True)
                for k in ("exp_avg", "exp_avg_sq")
            }
    group = {k: v for k, v in base.param_groups[0].items() if k != "params"}
    return {"state": state, "param_groups": [group | {"params": list(range(len(params)))}]}


def load_full_state(
    optimizer: torch.optim.Optimizer, ac: ActorCritic, saved: dict[str, Any], zero3: bool
) -> None:
    """Load a state in torch's AdamW layout (:func:`full_state`, or an AdamW's own) into this
    process's partition of ``optimizer``. Raises ValueError when it has another number of
    parameters than π trains."""
    from deepspeed.utils import safe_set_full_optimizer_state

    base = _base(optimizer)
    params = ac.trainable_parameters()
    if saved["state"]:  # (none: saved before the first step)
        if len(saved["state"]) != len(params):
            raise ValueError(
                f"the saved optimizer state has {len(saved['state'])} parameters, π trains "
                f"{len(params)}"
            )
        step = next(iter(saved["state"].values()))["step"]
        for flat in _flats(optimizer, zero3):  # AdamW makes it at a first step
            base.state[flat] = {
                "step": torch.as_tensor(float(step), dtype=torch.float32).clone(),
                "exp_avg": torch.zeros_like(flat),
                "exp_avg_sq": torch.zeros_like(flat),
            }
        # ZeRO-1/2 link each parameter to its slice of that state after their first step
        # (DeepSpeed 0.19, stage_1_and_2.py); before one, link it now. ZeRO-3 finds the
        # slices in the state itself.
        if not zero3:
            optimizer.optimizer._lazy_init_hp_params_optimizer_state()  # type: ignore[attr-defined]
        for i, p in enumerate(params):
            for key in ("exp_avg", "exp_avg_sq"):
                safe_set_full_optimizer_state(p, saved["state"][i][key].to(p.device), key)
    hyper = {k: v for k, v in saved["param_groups"][0].items() if k != "params"}
    for group in base.param_groups:
        group.update(hyper)


def _base(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer under accelerate's and DeepSpeed's wrappers: it steps ZeRO's flat
    fp32 partitions."""
    return optimizer.optimizer.optimizer  # type: ignore[attr-defined]


def _flats(optimizer: torch.optim.Optimizer, zero3: bool) -> list[torch.Tensor]:
    """The flat fp32 partitions ZeRO's AdamW steps (its state's keys): ZeRO-1/2 keep them in
    its param groups, ZeRO-3 puts them there only for the duration of a step (DeepSpeed
    0.19, stage3.py)."""
    if zero3:
        return list(optimizer.optimizer.fp32_partitioned_groups_flat)  # type: ignore[attr-defined]
    return [flat for group in _base(optimizer).param_groups for flat in group["params"]]


def _step(base: torch.optim.Optimizer) -> torch.Tensor:
    """The number of steps ZeRO's AdamW took (the same for every partition)."""
    steps = {float(st["step"]) for st in base.state.values()}
    if len(steps) != 1:
        raise RuntimeError(f"ZeRO's AdamW partitions disagree on their step count: {steps}")
    return torch.tensor(steps.pop())
