"""ReST: Reinforced Self-Training (Gulcehre et al., 2023), and its expert-iteration form
(ReST-EM: every Grow restarts from the base model).

A run is G Grow steps, each followed by I Improve steps (one per threshold τ₁ < τ₂ < … <
τ_I); an iteration of the run is one Improve step, so ``total_iterations`` = G · I:

1. **Grow** (paper §2, Alg. 1): the current policy π writes N episodes per train prompt
   through the env; the rows, with the env's rewards, are appended to
   ``<output_dir>/grow-<g>.jsonl``; each row records its Grow step and the policy that
   wrote it (the checkpoint ``iter-…`` after the previous Grow step's Improve steps). The
   rows are written in chunks, so a killed Grow continues where it stopped;
2. **Improve** i = 1..I: keep the Grow step's rows (plus the task's references with
   ``--include-references``) whose reward is ≥ τ_i, and fine-tune π on them with NLL for
   ``improve_epochs`` passes. Step i starts from step i−1's policy (the first from the
   policy that grew the data, or with ``--restart-from-base`` from the base model), with a
   fresh optimizer.

Thresholds are rewards (``--threshold-kind absolute``) or percentiles of the Grow step's
rewards (``percentile``, the default). The default schedule is the paper's τ = 0, 0.7, 0.8,
0.9, set on its [0, 1] reward model; read as percentiles 0, 70, 80, 90 it keeps all rows,
then the best 30 %, 20 % and 10 %, whatever the task's reward scale. A threshold that keeps
no row skips its step (logged as a kept share of 0).

Resuming: a checkpoint is written after every Improve step and counts the Improve steps
done, and the Grow data are on disk, so a resumed run continues at the step where it stopped
and ends as an uninterrupted run would: Grow chunk c of step g samples with the seed
(seed, g, c), Improve step (g, i) shuffles with the seed (seed, g, i).

Several processes (``accelerate launch``, :mod:`agents.distributed`): in a Grow step each
process samples whole chunks of ``batch_size`` episodes (chunk c still seeded from
(seed, g, c)) and the main process alone appends every chunk to the file, in order; every
process replays the rows and shuffles them the same way; each gradient step's
``minibatch_size`` rows are split among the processes, each scales its token-mean NLL by its
share of the step's tokens, and DDP averages the gradients. The Grow files and every step's
rows are then those of a single process, whatever N, and the weights match its up to float
rounding; the main process logs and writes the checkpoints.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from agents.build import build_learner
from agents.checkpoint import check_finite
from agents.config import TrainConfig, check_positive
from agents.distributed import Processes
from agents.losses import logprobs_from_logits, weighted_nll_loss
from agents.offline_data import (
    DataFileError,
    Replayed,
    Row,
    read_rows,
    reference_rows,
    replay,
    write_rows,
    write_samples,
)
from agents.offline_run import OfflineRun, start_run
from agents.policy import ActorCritic
from agents.replicas import ReplicatedPolicy
from agents.rundir import RunSetupError

__all__ = ["RestConfig", "improve_thresholds", "train"]


@dataclass
class RestConfig(TrainConfig):
    """ReST settings (``--algo rest``)."""

    total_iterations: int = 8
    """Improve steps in all, G · I: G Grow steps of I = len(thresholds) Improve steps each
    (a multiple of I); 0 writes the initial policy."""
    samples_per_prompt: int = 4
    """N: episodes per train prompt in each Grow step."""
    max_prompts: int = 0
    """Grow on the first this many train prompts only (0 = all)."""
    thresholds: tuple[float, ...] = (0.0, 70.0, 80.0, 90.0)
    """τ₁ < τ₂ < …: one Improve step each (see threshold_kind)."""
    threshold_kind: Literal["percentile", "absolute"] = "percentile"
    """"percentile": τ is a percentile of the Grow step's rewards; "absolute": a reward."""
    improve_epochs: int = 1
    """Passes over the kept rows in each Improve step."""
    minibatch_size: int = 16
    """Rows per gradient step (with N processes, minibatch_size / N from each)."""
    batch_size: int = 16
    """Episodes sampled at once in a Grow step (vector sub-envs; with several processes, each
    samples whole chunks of this many)."""
    learning_rate: float = 2e-5
    """AdamW learning rate (a fresh optimizer per Improve step)."""
    include_references: bool = False
    """Add the task's references (scored by the env) to every Improve step's candidates."""
    restart_from_base: bool = False
    """ReST-EM / expert iteration: each Grow step's Improve steps start from the base model
    (the initial or --init-from policy), not from the policy that grew the data."""
    checkpoint_every: int = 1
    """Not used: ReST writes a checkpoint after every Improve step (where it resumes)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "samples_per_prompt", "improve_epochs", "minibatch_size")
        if self.max_prompts < 0:
            raise ValueError(f"max_prompts must be >= 0, got {self.max_prompts}")
        taus = tuple(float(t) for t in self.thresholds)
        if not taus:
            raise ValueError("thresholds must hold at least one value (one Improve step each)")
        if any(b <= a for a, b in itertools.pairwise(taus)):
            raise ValueError(f"thresholds must increase strictly, got {taus}")
        if self.threshold_kind not in ("percentile", "absolute"):
            raise ValueError(
                f"threshold_kind must be 'percentile' or 'absolute', got {self.threshold_kind!r}"
            )
        if self.threshold_kind == "percentile" and not all(0 <= t <= 100 for t in taus):
            raise ValueError(f"percentile thresholds must be in [0, 100], got {taus}")
        self.thresholds = taus
        if self.total_iterations % len(taus):
            raise ValueError(
                f"total_iterations {self.total_iterations} must be a multiple of the "
                f"{len(taus)} thresholds (G Grow steps × I Improve steps)"
            )

    @property
    def grow_steps(self) -> int:
        """G: Grow steps of the run."""
        return self.total_iterations // len(self.thresholds)


def train(
    cfg: RestConfig,
    algo: str = "rest",
    *,
    init_from: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Run ReST (see the module doc); return the run directory."""
    if cfg.restart_from_base and cfg.lora_rank > 0:
        raise RunSetupError("restart_from_base needs full weights (not LoRA): set lora_rank 0")
    run = start_run(cfg, algo, init_from=init_from, resume=resume, overwrite=overwrite)
    ac, venv, procs = run.ac, run.envs.unwrapped, run.procs
    task = venv.task
    steps = len(cfg.thresholds)
    n = task.num_prompts if cfg.max_prompts == 0 else min(cfg.max_prompts, task.num_prompts)
    references = _references(run) if cfg.include_references else []
    learner = build_learner(ac, run.tokenizer, cfg)

    for g in range(run.done // steps, cfg.grow_steps):
        # 1. Grow: π writes N episodes per prompt, appended to grow-<g>.jsonl
        path = run.out / f"grow-{g}.jsonl"
        first = run.done - g * steps if g == run.done // steps else 0  # Improve steps done
        ac.eval()
        t0 = time.perf_counter()
        try:
            with procs.whole(ac):  # (ZeRO-3: π's weights gathered for the block)
                grown = write_samples(
                    path, venv, learner, range(n), cfg.samples_per_prompt, (cfg.seed, g),
                    {"source": "policy", "grow_step": g, "policy": f"iter-{g * steps:06d}"},
                    progress=procs.main, procs=procs,
                )  # fmt: skip
        except DataFileError as err:
            raise RunSetupError(str(err)) from err
        rewards = np.array([r.reward for r in grown])
        run.log("grow/reward_mean", rewards.mean(), g)
        run.log("grow/reward_std", rewards.std(), g)
        run.log("time/grow", time.perf_counter() - t0, g)
        candidates = grown + references
        data = replay(venv, candidates, str(path))
        cut = improve_thresholds(cfg.thresholds, cfg.threshold_kind, rewards)
        if cfg.restart_from_base and first == 0:
            _restart_from_base(ac, procs)

        # 2. Improve: NLL on the rows at or above each threshold, step after step
        for i in range(first, steps):
            done = g * steps + i
            keep = torch.nonzero(data.rewards >= cut[i]).squeeze(1)  # (K,)
            run.log("improve/threshold", cut[i], done)
            run.log("improve/kept_share", len(keep) / len(data), done)
            run.fresh_optimizer()
            if len(keep):
                scalars = _improve(
                    run.policy, ac, run.optimizer, data, keep, cfg, (cfg.seed, g, i), procs
                )
                with procs.whole(ac):
                    check_finite(ac, scalars, done, run.out)  # before it is logged or saved
                for name, value in scalars.items():
                    run.log(name, value, done)
            run.checkpoint(done + 1, grow_step=g, improve_step=i)
    if cfg.total_iterations == 0:
        run.checkpoint(0)
    run.finish()
    return run.out


def improve_thresholds(
    thresholds: tuple[float, ...], kind: str, rewards: np.ndarray
) -> list[float]:
    """The reward cut of each Improve step: ``thresholds`` as they are (``"absolute"``) or as
    percentiles of the Grow step's ``rewards`` (``"percentile"``)."""
    if kind == "absolute":
        return [float(t) for t in thresholds]
    if kind != "percentile":
        raise ValueError(f"kind must be 'percentile' or 'absolute', got {kind!r}")
    return [float(np.percentile(rewards, t)) for t in thresholds]


def _improve(
    policy: ActorCritic | ReplicatedPolicy,
    ac: ActorCritic,
    optimizer: torch.optim.Optimizer,
    data: Replayed,
    keep: torch.Tensor,
    cfg: RestConfig,
    seed: tuple[int, ...],
    procs: Processes,
) -> dict[str, float]:
    """``improve_epochs`` passes of NLL over rows ``keep`` of ``data``, shuffled with ``seed``
    (the same order in every process; each takes its part of every minibatch)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(procs.seed(int(rng.integers(2**31))))  # dropout, if the model has any
    dev = next(ac.parameters()).device
    ones = torch.ones(cfg.minibatch_size, device=dev)
    policy.train()
    nlls, norms = [], []
    for _ in tqdm(range(cfg.improve_epochs), desc="improve", unit="epoch", leave=False,
                  disable=not procs.main):  # fmt: skip
        order = keep[torch.from_numpy(rng.permutation(len(keep)))]
        for lo in range(0, len(order), cfg.minibatch_size):
            pick = order[lo : lo + cfg.minibatch_size]  # (b,) the whole step's rows
            rows, real = procs.rows(pick)  # (b',) this process's part of them
            ids, attn = data.input_ids[rows].to(dev), data.attention_mask[rows].to(dev)
            logits, _ = policy(ids, attn, data.prompt_width)  # (b', G, V)
            logprobs = logprobs_from_logits(logits, data.tokens[rows].to(dev))  # (b', G)
            mask = data.mask[rows].to(dev) & real  # (b', G)
            loss, _ = weighted_nll_loss(logprobs, None, mask, ones[: len(rows)], "none", 0.5)
            if procs.world > 1:  # its part of the step's token mean, times N (DDP averages)
                loss = loss * procs.token_share(mask.sum(), data.mask[pick].sum().to(dev))
            norms.append(policy.step(loss, optimizer, cfg.max_grad_norm))
            nlls.append(loss.detach() / procs.world)
    nll = torch.stack(nlls)  # (steps,) this process's part of each step's NLL
    if procs.world > 1:
        nll = procs.summed(nll)
    return {
        "losses/nll": nll.mean().item(),
        "losses/grad_norm": torch.stack(norms).mean().item(),
    }


@torch.no_grad()
def _restart_from_base(ac: ActorCritic, procs: Processes) -> None:
    """Put the base model's weights back into π (ReST-EM); π_ref is that base model."""
    assert ac.reference is not None  # not LoRA (checked before the run starts)
    with procs.whole(ac, modify=True):  # (ZeRO-3: set whole, then partitioned again)
        ac.model.load_state_dict(ac.reference.state_dict())
        procs.weights_changed(ac)  # DeepSpeed's own fp32 copy of them, under ZeRO


def _references(run: OfflineRun) -> list[Row]:
    """The task's references as rows, scored once into ``<output_dir>/references.jsonl``."""
    task = run.envs.unwrapped.task
    path = run.out / "references.jsonl"

    def write() -> None:
        if not path.exists():
            write_rows(path, reference_rows(run.envs.unwrapped))

    try:
        run.procs.first_on_main(write, (DataFileError,))  # written once, by the main process
        return read_rows(path, task)
    except DataFileError as err:
        raise RunSetupError(f"--include-references: {err}") from err
