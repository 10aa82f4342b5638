"""Several processes on one run: data parallelism through Hugging Face accelerate.

A launcher (``accelerate launch --multi_gpu --num_processes N``, ``torchrun``) starts N
processes of ``python -m agents.train`` and tells each its place (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``); :func:`join_processes` turns that into a :class:`Processes`, with an accelerate
``Accelerator`` that joins them. The run's config describes the whole run; the processes
split it:

* **batch**: process r runs its own vector env of ``batch_size / N`` sub-envs and takes
  ``minibatch_size / N`` of its episodes per gradient step (:meth:`Processes.share`), so a
  gradient step still sees ``minibatch_size`` episodes and an iteration takes as many steps
  as in one process. Roll-ins, roll-outs, rewards and scoring stay in the process (advantages
  are whitened over the process's own episodes).
* **plan**: every process collects under the main process's plan of the iteration (LOLS
  tosses one coin per iteration for the whole batch, as in one process).
* **gradients**: accelerate's ``prepare`` wraps π in DDP; the update's forward passes go
  through the wrapper (:class:`ReplicatedPolicy`), so the backward pass averages gradients
  over the processes and every process takes the same optimizer step from the same weights.
  Under an accelerate DeepSpeed config (ZeRO stage 1 or 2) π and its
  optimizer go into DeepSpeed's engine instead (:class:`ShardedPolicy`): the gradients are
  averaged the same way, and each process keeps only its partition of the AdamW state (and,
  with stage 2, of the gradients); with stages 1 and 2 the weights stay whole in every
  process, so sampling and scoring are unchanged. Stage 3 partitions the weights as well:
  the engine gathers each layer for the update's passes, and every block that runs π outside
  the engine (sampling, scoring, the finiteness check, checkpoints, ReST's Grow and restart,
  A-LoL's V_ref samples) runs inside :meth:`Processes.whole`, which gathers π whole in every
  process for its duration. π_ref is not in the engine: it stays whole in every process.
* **scalars**: one iteration's logged scalars are the mean over the processes (counts of
  the batch's work, :data:`SUMMED`, are summed); the KL that adapts β_KL is the mean over
  every π token of the global batch (:meth:`Processes.reduce`).
* **randomness**: process r seeds each of its generators with :func:`process_seed` of the
  run's seed and r (the seed itself for r = 0); the initial π is the same in every process.
* **files**: only the main process (r = 0) claims the run directory, logs and writes
  checkpoints; a checkpoint holds every process's RNG states (:meth:`Processes.gather`) and
  the optimizer's state in torch's AdamW layout, gathered from ZeRO's partitions when
  DeepSpeed holds it (:meth:`Processes.optimizer_state`), so a run resumes under any number
  of processes, with or without DeepSpeed.

The offline loops (:mod:`agents.alol`, :mod:`agents.rest`) split rows instead of episodes:
every process holds the whole data and draws the same global minibatch, takes its
contiguous part of it (:meth:`Processes.rows`) and scales its token-mean loss by its share
of the minibatch's tokens (:meth:`Processes.token_share`), so DDP's average is the gradient
of the whole minibatch's loss; passes over all the data are split the same way and gathered
(:meth:`Processes.gather_rows`), sampling is split by whole chunks.

Without a launcher there is one process and no accelerator: :meth:`Processes.share` returns
the config itself, :meth:`Processes.replicate` π itself, :meth:`Processes.reduce` its input,
:meth:`Processes.rows` every row, so a single-process run is the same computation, bit for
bit.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

from agents.config import TrainConfig
from agents.policy import ActorCritic
from agents.rundir import RunSetupError

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "SHARDING",
    "SPLIT",
    "SUMMED",
    "Processes",
    "ReplicatedPolicy",
    "ShardedPolicy",
    "check_processes",
    "join_processes",
    "lone_process_of_several",
    "main_process",
    "process_seed",
    "split_fields",
    "world_size",
]

C = TypeVar("C", bound=TrainConfig)
T = TypeVar("T")

SPLIT = ("batch_size", "minibatch_size")
"""Config fields that count episodes (or rows) of the whole run: each process gets 1/N of them
(ReST's ``batch_size`` is not one: :func:`split_fields`)."""
SUMMED = frozenset(
    {
        "charts/roll_in_resampled",
        "time/tokens_per_s",
        "guide/requests",
        "guide/cache_hits",
        "guide/retries",
        "guide/errors",
        "guide/prompt_tokens",
        "guide/completion_tokens",
    }
)
"""Scalars that count the work of a process's share of the batch: the run logs their sum."""
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What a launcher sets besides WORLD_SIZE, and :func:`join_processes` needs to join the others."""
MPI_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
"""Where mpirun (accelerate's MULTI_CPU launcher with a hostfile) puts the number of processes."""
SHARDING = {
    "ACCELERATE_USE_FSDP": "FSDP",
    "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM",
}
"""What ``accelerate launch`` sets when its config asks for a sharding this trainer does not run
(accelerate 1.16 on CPUs ignores these flags and would silently run DDP instead): flag → name.
DeepSpeed (:data:`DEEPSPEED`) is run."""
DEEPSPEED = "ACCELERATE_USE_DEEPSPEED"
"""What ``accelerate launch`` sets for a DeepSpeed config (``configs/accelerate/zero2.yaml``)."""
ZERO_STAGES = ("1", "2", "3")
"""The ZeRO stages run here. Stages 1 and 2 keep π's weights whole in every process; stage 3
partitions them too, and gathers them whole for the blocks that use π outside DeepSpeed's
engine (:meth:`Processes.whole`)."""


def world_size() -> int:
    """How many processes the launcher started: ``WORLD_SIZE`` (torchrun, ``accelerate launch``)
    or mpirun's count, 1 without a launcher."""
    for name in ("WORLD_SIZE", *MPI_SIZES):
        world = os.environ.get(name)
        if world is None:
            continue
        if not world.isdigit() or int(world) < 1:
            raise RunSetupError(f"{name}={world!r} is not a number of processes")
        return int(world)
    return 1


def main_process() -> bool:
    """Whether this process is the main one (``RANK`` 0, or no launcher): the one that prints
    what a run says once."""
    return os.environ.get("RANK", "0") == "0"


def split_fields(cfg: TrainConfig) -> tuple[str, ...]:
    """The :data:`SPLIT` fields of ``cfg`` that its processes split: all of them, except
    ReST's ``batch_size``, the sub-envs of each process's Grow chunks (every process samples
    whole chunks, :func:`agents.offline_data.sample_chunks`)."""
    from agents.rest import RestConfig  # agents.rest imports this module (through agents.build)

    names = {f.name for f in dataclasses.fields(cfg)}
    if isinstance(cfg, RestConfig):
        names.discard("batch_size")
    return tuple(name for name in SPLIT if name in names)


def lone_process_of_several() -> bool:
    """Whether ``accelerate launch`` was asked for several processes but started this one
    alone: its simple launcher (``--cpu``, a MULTI_CPU config without mpirun, no
    ``--multi_gpu``) sets ``ACCELERATE_USE_CPU`` and, for more than one process,
    ``MASTER_ADDR``, and starts one process without ``WORLD_SIZE``."""
    return world_size() == 1 and {"ACCELERATE_USE_CPU", "MASTER_ADDR"} <= os.environ.keys()


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
    # (a DeepSpeed config file instead of these keys: join_processes checks what it says)
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


def check_processes(cfg: TrainConfig, world: int) -> None:
    """Raise :class:`RunSetupError` when ``world`` processes cannot share the run ``cfg``: no
    launcher started them, the launcher asked for a sharding this trainer does not run
    (:data:`SHARDING`, or a DeepSpeed set-up :func:`check_deepspeed` refuses), a field they
    split (:func:`split_fields`) does not divide by ``world``, the device names one index for
    all, or a process would have no GPU of its own."""
    if "WORLD_SIZE" not in os.environ:
        raise RunSetupError(
            f"this process is one of {world} started by mpirun, which this trainer does not "
            "join: launch through torchrun (accelerate launch --multi_gpu, or "
            "configs/accelerate/cpu.yaml on CPUs)"
        )
    missing = [name for name in LAUNCHER_VARIABLES if name not in os.environ]
    if missing:
        raise RunSetupError(
            f"this process is one of {world} (WORLD_SIZE={world}) but no launcher started it "
            f"({', '.join(missing)} not set): start it with accelerate launch or torchrun, or "
            "start a single process"
        )
    asked = [name for flag, name in SHARDING.items() if os.environ.get(flag, "").lower() == "true"]
    if asked:
        raise RunSetupError(
            f"accelerate launch asked for {asked[0]}, which this trainer does not run: it averages "
            "gradients with DDP (accelerate launch --multi_gpu, configs/accelerate/ddp.yaml or "
            "cpu.yaml) or shards the optimizer with DeepSpeed ZeRO (zero2.yaml); docs/scaling.md "
            "says what FSDP would need"
        )
    if uses_deepspeed():
        check_deepspeed()
    for name in split_fields(cfg):
        if getattr(cfg, name) % world:
            raise RunSetupError(
                f"{name} {getattr(cfg, name)} does not divide among {world} processes: it counts "
                f"the episodes (or rows) of all of them; use a multiple of {world}"
            )
    device = torch.device(cfg.device)
    if device.type != "cpu" and device.index is not None:
        raise RunSetupError(
            f"device {cfg.device!r} names one device for {world} processes; name the type only "
            f"({device.type!r}): process r uses {device.type}:LOCAL_RANK"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda" and local_rank >= torch.cuda.device_count():
        raise RunSetupError(
            f"process {os.environ['RANK']} (local rank {local_rank}) has no GPU of its own: "
            f"{torch.cuda.device_count()} visible; start at most that many processes per node"
        )


def process_seed(seed: int, rank: int, restart: int = 0) -> int:
    """The seed of process ``rank``'s generators: ``seed`` itself for rank 0 (a single process
    is seeded as it always was), else a mix of ``seed`` and ``rank`` (no two runs' streams
    coincide the way ``seed + rank`` would). ``restart`` > 0 (the iterations done when a run
    resumed with another number of processes) mixes in too: new streams, not replayed ones."""
    if rank == 0 and restart == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank, restart]).generate_state(1, np.uint32)[0])


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
        """Drop the DDP wrapper (:meth:`Processes.finish`, before the process group ends)."""
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
    ``gradient_clipping`` (the run's ``max_grad_norm``, :func:`join_processes`) and steps its
    partition of AdamW. Under stages 1 and 2 the weights stay whole in every process; under
    stage 3 the engine gathers each layer's for its passes (:meth:`Processes.whole` for the
    passes outside it).
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
                ``max_grad_norm``, set by :func:`join_processes`).
        """
        clipping = self._accelerator.state.deepspeed_plugin.deepspeed_config["gradient_clipping"]
        if max_grad_norm != clipping:
            raise ValueError(
                f"max_grad_norm {max_grad_norm} is not DeepSpeed's gradient_clipping {clipping}"
            )
        self._accelerator.backward(loss)  # engine.backward, then engine.step (clip, AdamW, zero)
        norm = self._accelerator.clip_grad_norm_(self.ac.trainable_parameters(), max_grad_norm)
        return torch.as_tensor(float(norm))


@dataclass
class Processes:
    """This process's place among the run's processes, and what they do together."""

    rank: int
    """0 .. world - 1; process 0 is the main one."""
    world: int
    """How many processes share the run."""
    accelerator: Accelerator | None = None
    """Joins the processes (``None`` in a single process)."""
    replicas: list[ReplicatedPolicy] = field(default_factory=list, repr=False)
    """What :meth:`replicate` handed out, released by :meth:`finish`."""
    _whole: bool = field(default=False, repr=False)
    """Inside :meth:`whole` (ZeRO-3)."""

    @property
    def main(self) -> bool:
        """Whether this process logs and writes checkpoints."""
        return self.rank == 0

    def share(self, cfg: C) -> C:
        """The config this process runs: 1/N of each :data:`SPLIT` field and, on GPUs, its own
        device (the config itself in a single process)."""
        if self.accelerator is None:
            return cfg
        names = {f.name for f in dataclasses.fields(cfg)}
        split = {name: getattr(cfg, name) // self.world for name in SPLIT if name in names}
        return dataclasses.replace(self.placed(cfg), **split)

    def placed(self, cfg: C) -> C:
        """``cfg`` on this process's device: on GPUs its own (the config itself on CPUs and
        in a single process)."""
        if self.accelerator is None or torch.device(cfg.device).type == "cpu":
            return cfg
        return dataclasses.replace(cfg, device=str(self.accelerator.device))

    def part(self, n: int) -> slice:
        """This process's contiguous part of ``n`` items: sizes differ by at most one, the
        first ``n % N`` processes take one more (all ``n`` in a single process)."""
        size, extra = divmod(n, self.world)
        lo = self.rank * size + min(self.rank, extra)
        return slice(lo, lo + size + (self.rank < extra))

    def rows(self, pick: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """This process's rows of the global minibatch ``pick`` ``(b,)`` (:meth:`part`), and
        whether it has any. One without any gets ``pick``'s first row, to mask out: it must
        still run a forward and backward pass, which DDP's all-reduce joins."""
        mine = pick[self.part(len(pick))]
        return (mine, True) if len(mine) else (pick[:1], False)

    def token_share(self, local_tokens: torch.Tensor, total_tokens: torch.Tensor) -> torch.Tensor:
        """What turns a token mean over this process's rows into its part of the token mean
        over the whole minibatch, times N (DDP averages the N gradients): ``local / total ·
        N``; both counts at least 1. Times the loss, DDP's average is the gradient of the
        whole minibatch's token-mean loss, however the tokens fall among the processes."""
        return local_tokens.clamp(min=1) / total_tokens.clamp(min=1) * self.world

    def seed(self, seed: int, restart: int = 0) -> int:
        """This process's seed (:func:`process_seed`)."""
        return process_seed(seed, self.rank, restart)

    @property
    def deepspeed(self) -> bool:
        """Whether DeepSpeed's engine holds π and its optimizer (:class:`ShardedPolicy`)."""
        return self.accelerator is not None and self.accelerator.state.deepspeed_plugin is not None

    @property
    def zero3(self) -> bool:
        """Whether π's weights are partitioned over the processes (DeepSpeed ZeRO stage 3)."""
        return self.deepspeed and self.accelerator.state.deepspeed_plugin.zero_stage == 3  # type: ignore[union-attr]

    @contextmanager
    def whole(self, ac: ActorCritic, modify: bool = False) -> Iterator[None]:
        """π's weights whole in this process for the block, where ZeRO-3 partitions them
        (every process enters it together: gathering them is collective); a no-op otherwise.

        Inside, ZeRO-3's hooks are off π's modules: each process may then run π as often as
        it likes (sampling differs in length between processes), where the hooks would
        gather every layer again in every call and join the other processes for it. With
        ``modify`` the main process's weights at the end of the block become every process's
        partitions (ReST-EM's restart); without it, what the block writes into them is lost.
        """
        engine = next((r.wrapped for r in self.replicas if isinstance(r, ShardedPolicy)), None)
        if not self.zero3 or engine is None or self._whole:  # (whole already: no nesting)
            yield
            return
        import deepspeed

        offload = engine.optimizer.parameter_offload  # type: ignore[union-attr]
        params = list(ac.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0 if modify else None):
            hooks = [*offload.forward_hooks, *offload.backward_hooks, offload.fwd_pre_hook]
            for hook in hooks:  # the root's pre-hook too: it compares traces across processes
                hook.remove()
            offload.forward_hooks, offload.backward_hooks = [], []
            self._whole = True
            try:
                yield
            finally:
                self._whole = False
                offload.setup_zero_stage3_hooks()  # (re-registered: it re-records its trace)

    def replicate(self, ac: ActorCritic) -> ActorCritic | ReplicatedPolicy:
        """π for the update: wrapped by accelerate (DDP) in a multi-process run, else π."""
        if self.accelerator is None:
            return ac
        self.replicas.append(ReplicatedPolicy(ac, self.accelerator.prepare(ac), self.summed))
        return self.replicas[-1]

    def prepare(
        self, ac: ActorCritic, optimizer: torch.optim.Optimizer
    ) -> tuple[ActorCritic | ReplicatedPolicy, torch.optim.Optimizer]:
        """π and the optimizer the update uses: under DeepSpeed both go into its engine
        (:class:`ShardedPolicy`, accelerate's wrapper of the optimizer), else
        :meth:`replicate` and ``optimizer`` itself."""
        if not self.deepspeed:
            return self.replicate(ac), optimizer
        assert self.accelerator is not None
        engine, wrapped = self.accelerator.prepare(ac, optimizer)
        self.replicas.append(ShardedPolicy(ac, engine, self.accelerator, self.summed))
        return self.replicas[-1], wrapped

    def fresh_optimizer(
        self, optimizer: torch.optim.Optimizer, ac: ActorCritic, lr: float
    ) -> torch.optim.Optimizer:
        """An optimizer in the state of a new one (no moments, no steps) at learning rate
        ``lr``: a new AdamW, or under DeepSpeed ``optimizer`` itself with its partitions'
        state emptied (its engine holds it; every process calls this)."""
        if not self.deepspeed:
            return ac.optimizer(lr)
        base = _zero_base(optimizer)
        for st in base.state.values():  # this process's partitions (none before a step)
            for value in st.values():  # step, exp_avg, exp_avg_sq, zeroed in place
                value.zero_()
        for group in base.param_groups:
            group["lr"] = lr
        return optimizer

    def weights_changed(self, ac: ActorCritic) -> None:
        """Tell DeepSpeed that π's weights were set in place (ReST-EM's restart): ZeRO steps
        its own fp32 copy of each process's partition, which takes them over here (every
        process calls this, under ZeRO-3 inside ``whole(ac, modify=True)``; nothing to do
        without DeepSpeed)."""
        if not self.deepspeed:
            return
        from deepspeed.utils import safe_set_full_fp32_param

        for p in ac.trainable_parameters():
            safe_set_full_fp32_param(p, p.detach().clone())

    def optimizer_state(self, optimizer: torch.optim.Optimizer, ac: ActorCritic) -> dict[str, Any]:
        """``optimizer``'s state in torch's AdamW layout (``optimizer.state_dict()``): under
        DeepSpeed gathered from every process's ZeRO partition, so every process must call it
        at the same point; the main process gets the whole state."""
        if not self.deepspeed:
            return optimizer.state_dict()
        from deepspeed.utils import safe_get_full_optimizer_state

        base = _zero_base(optimizer)
        params = ac.trainable_parameters()
        state = {}
        if base.state:  # (none before the first step, as in a new AdamW)
            step = _zero_step(base)
            for i, p in enumerate(params):
                state[i] = {"step": step.clone()} | {
                    k: safe_get_full_optimizer_state(p, k).detach().to("cpu", copy=True)
                    for k in ("exp_avg", "exp_avg_sq")
                }
        group = {k: v for k, v in base.param_groups[0].items() if k != "params"}
        return {"state": state, "param_groups": [group | {"params": list(range(len(params)))}]}

    def load_optimizer_state(
        self, optimizer: torch.optim.Optimizer, ac: ActorCritic, saved: dict[str, Any]
    ) -> None:
        """Load a state :meth:`optimizer_state` wrote (with any number of processes, with or
        without DeepSpeed) into ``optimizer``, under DeepSpeed into this process's partition
        of it (every process calls it)."""
        if not self.deepspeed:
            optimizer.load_state_dict(saved)
            return
        from deepspeed.utils import safe_set_full_optimizer_state

        base = _zero_base(optimizer)
        params = ac.trainable_parameters()
        if saved["state"]:  # (none: saved before the first step)
            if len(saved["state"]) != len(params):
                raise ValueError(
                    f"the saved optimizer state has {len(saved['state'])} parameters, π trains "
                    f"{len(params)}"
                )
            step = next(iter(saved["state"].values()))["step"]
            for flat in _zero_flats(optimizer, self.zero3):  # AdamW makes it at a first step
                base.state[flat] = {
                    "step": torch.as_tensor(float(step), dtype=torch.float32).clone(),
                    "exp_avg": torch.zeros_like(flat),
                    "exp_avg_sq": torch.zeros_like(flat),
                }
            # ZeRO-1/2 link each parameter to its slice of that state after their first step
            # (DeepSpeed 0.19, stage_1_and_2.py); before one, link it now. ZeRO-3 finds the
            # slices in the state itself.
            if not self.zero3:
                optimizer.optimizer._lazy_init_hp_params_optimizer_state()  # type: ignore[attr-defined]
            for i, p in enumerate(params):
                for key in ("exp_avg", "exp_avg_sq"):
                    safe_set_full_optimizer_state(p, saved["state"][i][key].to(p.device), key)
        hyper = {k: v for k, v in saved["param_groups"][0].items() if k != "params"}
        for group in base.param_groups:
            group.update(hyper)

    def first_on_main(
        self, fn: Callable[[], T], errors: tuple[type[Exception], ...] = (RunSetupError,)
    ) -> T:
        """Run ``fn`` on the main process while the others wait (e.g. claiming the run
        directory, writing a shared file) and return its result in every process; an error of
        a type in ``errors`` that it raises is raised in every process (the same type, whose
        constructor takes the message)."""
        if self.accelerator is None:
            return fn()
        from accelerate.utils import broadcast_object_list

        result, error = None, None
        if self.main:
            try:
                result = fn()
            except errors as err:
                error = (type(err), str(err))
        result, error = broadcast_object_list([result, error])
        if error is not None:
            kind, message = error
            raise kind(message)
        return result

    def from_main(self, value: T) -> T:
        """The main process's ``value`` in every process (``value`` itself in a single one)."""
        if self.accelerator is None:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (plain Python objects and tensors), in rank order."""
        if self.accelerator is None:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def gather_rows(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Every process's ``parts`` (CPU tensors of rows, any number, possibly none),
        concatenated in rank order: a pass over all the data split with :meth:`part`."""
        return torch.cat([part for every in self.gather(parts) for part in every])

    def summed(self, values: torch.Tensor) -> torch.Tensor:
        """The sum of ``values`` over the processes (``values`` itself in a single process)."""
        if self.accelerator is None:
            return values
        from accelerate.utils import reduce

        return reduce(values.clone(), reduction="sum")

    def reduce(
        self, scalars: dict[str, float], kl: float | None, kl_tokens: int
    ) -> tuple[dict[str, float], float | None]:
        """One iteration's scalars and KL over every process: each scalar the mean of the
        processes that have it (:data:`SUMMED` ones the sum); the KL the mean over the
        ``kl_tokens`` of every process (their own KL means weighted by their token counts).
        The same result in every process; the input itself in a single process."""
        if self.accelerator is None:
            return scalars, kl
        every = self.gather((scalars, kl, kl_tokens))
        names = dict.fromkeys(name for s, _, _ in every for name in s)  # first-seen order
        out = {}
        for name in names:
            values = [s[name] for s, _, _ in every if name in s]
            out[name] = float(sum(values)) if name in SUMMED else float(np.mean(values))
        if kl is None:
            return out, None
        tokens = sum(n for _, _, n in every)
        mean_kl = (
            sum(k * n for _, k, n in every) / tokens
            if tokens
            else float(np.mean([k for _, k, _ in every]))
        )
        if "charts/kl" in out:
            out["charts/kl"] = mean_kl
        return out, mean_kl

    def wait(self) -> None:
        """Return once every process got here."""
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def finish(self) -> None:
        """End the run in every process together (after the main one's last checkpoint) and
        leave the process group. Every :class:`ReplicatedPolicy` this handed out is released
        first (calling it afterwards raises RuntimeError).

        The order matters (torch 2.13, gloo): DDP's reducer holds the process group; when the
        reducer is the last holder, the group's destructor joins gloo's worker threads while
        holding the GIL, and a worker still freeing the last collective's tensors waits for the
        GIL: a deadlock at the end of a run, seen in CI on 1 launch in ~20 and at once in a
        stress loop. Dropping the wrappers before the group ends and pausing a moment without
        the GIL (so that a worker finishes freeing) made it go away (0 hangs in 300 cycles)."""
        if self.accelerator is None:
            return
        self.accelerator.wait_for_everyone()
        for replica in self.replicas:
            replica.release()
        self.replicas.clear()
        self.accelerator.free_memory()  # accelerate's own references to the DDP wrappers, gc
        time.sleep(0.1)
        self.accelerator.end_training()  # destroys the process group


def _zero_base(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer under accelerate's and DeepSpeed's wrappers: it steps ZeRO's flat
    fp32 partitions."""
    return optimizer.optimizer.optimizer  # type: ignore[attr-defined]


def _zero_flats(optimizer: torch.optim.Optimizer, zero3: bool) -> list[torch.Tensor]:
    """The flat fp32 partitions ZeRO's AdamW steps (its state's keys): ZeRO-1/2 keep them in
    its param groups, ZeRO-3 puts them there only for the duration of a step (DeepSpeed
    0.19, stage3.py)."""
    if zero3:
        return list(optimizer.optimizer.fp32_partitioned_groups_flat)  # type: ignore[attr-defined]
    return [flat for group in _zero_base(optimizer).param_groups for flat in group["params"]]


def _zero_step(base: torch.optim.Optimizer) -> torch.Tensor:
    """The number of steps ZeRO's AdamW took (the same for every partition)."""
    steps = {float(st["step"]) for st in base.state.values()}
    if len(steps) != 1:
        raise RuntimeError(f"ZeRO's AdamW partitions disagree on their step count: {steps}")
    return torch.tensor(steps.pop())


def join_processes(cfg: TrainConfig) -> Processes:
    """Join the processes the launcher started (:class:`Processes`; a single one without a
    launcher). Call :func:`check_processes` first. Under DeepSpeed, its config's gradient
    clipping becomes the run's ``max_grad_norm``. Raises :class:`RunSetupError` in every
    process for an accelerate set-up this trainer does not run: FSDP or other sharding,
    accelerate's own mixed precision (use ``--bf16``), gradient accumulation."""
    world = world_size()
    if world == 1:
        return Processes(rank=0, world=1)
    from accelerate import Accelerator, DistributedType
    from accelerate.utils import DistributedDataParallelKwargs

    # Unused parameters: BC never uses the value head, a value-only minibatch not the LM head.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    cpu = torch.device(cfg.device).type == "cpu"
    deepspeed = uses_deepspeed()
    if deepspeed and cpu:
        from accelerate import PartialState

        # accelerate 1.16 names no backend for DeepSpeed without a GPU and then counts one
        # process, though DeepSpeed joined them all (accelerate/state.py); gloo is the backend
        # DeepSpeed's CPU accelerator uses.
        PartialState(backend="gloo")
    accelerator = Accelerator(cpu=cpu and not deepspeed, kwargs_handlers=[ddp])
    kind = accelerator.distributed_type
    expected = (
        (DistributedType.DEEPSPEED,)
        if deepspeed
        else (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    )
    if kind not in expected:
        raise RunSetupError(
            f"accelerate's {kind.value} is not supported: this trainer averages gradients with "
            "DDP (accelerate launch --multi_gpu, configs/accelerate/cpu.yaml or ddp.yaml) or "
            "DeepSpeed ZeRO (zero2.yaml); docs/scaling.md says what FSDP would need"
        )
    if deepspeed:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        zero = ds.get("zero_optimization", {})
        check_zero(
            str(zero.get("stage", 0)),
            {
                what: str(zero.get(f"offload_{what}", {}).get("device", "none"))
                for what in ("optimizer", "param")
            },
        )
        if accelerator.state.deepspeed_plugin.zero3_init_flag:
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
    if accelerator.mixed_precision != "no":
        raise RunSetupError(
            f"accelerate's mixed_precision {accelerator.mixed_precision!r} is not used by this "
            "trainer: launch with mixed_precision 'no' and pass --bf16 (bf16 autocast inside "
            "the policy, fp32 weights)"
        )
    if accelerator.gradient_accumulation_steps != 1:
        raise RunSetupError(
            "accelerate's gradient_accumulation_steps is not used by this trainer (one "
            "optimizer step per minibatch): launch with 1 and choose minibatch_size instead"
        )
    if accelerator.num_processes != world:
        raise RunSetupError(
            f"accelerate joined {accelerator.num_processes} processes, WORLD_SIZE is {world}"
        )
    return Processes(rank=accelerator.process_index, world=world, accelerator=accelerator)
