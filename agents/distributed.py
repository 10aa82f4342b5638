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
  through the wrapper (:class:`agents.replicas.ReplicatedPolicy`), so the backward pass
  averages gradients over the processes and every process takes the same optimizer step
  from the same weights. Under an accelerate DeepSpeed config (ZeRO stage 1, 2 or 3) π and
  its optimizer go into DeepSpeed's engine instead (:class:`agents.replicas.ShardedPolicy`;
  :mod:`agents.zero` holds what is particular to ZeRO): the gradients are averaged the same
  way, and each process keeps only its partition of the AdamW state (and, with stage 2, of
  the gradients); with stages 1 and 2 the weights stay whole in every process, so sampling
  and scoring are unchanged. Stage 3 partitions the weights as well: the engine gathers each
  layer for the update's passes, and every block that runs π outside the engine (sampling,
  scoring, the finiteness check, checkpoints, ReST's Grow and restart, A-LoL's V_ref
  samples) runs inside :meth:`Processes.whole`, which gathers π whole in every process for
  its duration. π_ref is not in the engine: it stays whole in every process.
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

from agents import zero
from agents.config import TrainConfig
from agents.policy import ActorCritic
from agents.replicas import ReplicatedPolicy, ShardedPolicy
from agents.rundir import RunSetupError
from agents.zero import check_deepspeed, uses_deepspeed

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "SHARDING",
    "SPLIT",
    "SUMMED",
    "Processes",
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
DeepSpeed (:data:`agents.zero.DEEPSPEED`) is run."""


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
        (:func:`agents.zero.gathered`: every process enters it together, and with ``modify``
        the main process's weights at its end become every process's partitions); a no-op
        otherwise, and inside such a block."""
        engine = next((r.wrapped for r in self.replicas if isinstance(r, ShardedPolicy)), None)
        if not self.zero3 or engine is None or self._whole:  # (whole already: no nesting)
            yield
            return
        with zero.gathered(engine, ac, modify):
            self._whole = True
            try:
                yield
            finally:
                self._whole = False

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
        zero.clear_state(optimizer, lr)
        return optimizer

    def weights_changed(self, ac: ActorCritic) -> None:
        """Tell DeepSpeed that π's weights were set in place (ReST-EM's restart): ZeRO steps
        its own fp32 copy of each process's partition, which takes them over here (every
        process calls this, under ZeRO-3 inside ``whole(ac, modify=True)``; nothing to do
        without DeepSpeed)."""
        if self.deepspeed:
            zero.take_weights(ac)

    def optimizer_state(self, optimizer: torch.optim.Optimizer, ac: ActorCritic) -> dict[str, Any]:
        """``optimizer``'s state in torch's AdamW layout (``optimizer.state_dict()``): under
        DeepSpeed gathered from every process's ZeRO partition, so every process must call it
        at the same point; the main process gets the whole state."""
        if not self.deepspeed:
            return optimizer.state_dict()
        return zero.full_state(optimizer, ac)

    def load_optimizer_state(
        self, optimizer: torch.optim.Optimizer, ac: ActorCritic, saved: dict[str, Any]
    ) -> None:
        """Load a state :meth:`optimizer_state` wrote (with any number of processes, with or
        without DeepSpeed) into ``optimizer``, under DeepSpeed into this process's partition
        of it (every process calls it)."""
        if not self.deepspeed:
            optimizer.load_state_dict(saved)
            return
        zero.load_full_state(optimizer, ac, saved, self.zero3)

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
        if self.accelerator is None:
            return
        if self.accelerator.device.type == "cpu":
            # A plain barrier on the CPU group: accelerate before 1.16 passes `device_ids` here
            # too, and torch then runs the barrier on a visible GPU, cuda:<local rank> (2 CPU
            # processes on a 1-GPU machine: process 1 failed, seen with accelerate 1.15).
            torch.distributed.barrier()
        else:
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
        self.wait()
        for replica in self.replicas:
            replica.release()
        self.replicas.clear()
        self.accelerator.free_memory()  # accelerate's own references to the DDP wrappers, gc
        time.sleep(0.1)
        self.accelerator.end_training()  # destroys the process group


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
        zero.configure(accelerator, cfg, world)
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
