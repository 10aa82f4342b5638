"""A-LoL: advantage-weighted offline policy gradient on a fixed data file (Baheti et al., 2023,
"Improving Language Models with Advantage-based Offline Policy Gradients"), with the paper's
baselines.

The data are rows (x, y, R(x, y)) (:mod:`agents.offline_data`); π_ref is the frozen initial
policy, or the ``--init-from`` policy (e.g. a BC checkpoint). A run:

1. **data**: the ``--data`` file, or the task's default (its references when it has them,
   else its guide's episodes, sampled once into ``<output_dir>/data.jsonl``), replayed through
   the env, which lays the rows out and gives R(x, y);
2. **V_ref and advantages**: V_ref(x) is a small MLP on π_ref's representation of the prompt
   (:meth:`~agents.policy.ActorCritic.reference_prompt_features`), fitted with MSE to the
   rewards of π_ref's own samples on the validation split (the train split on the toy tasks,
   which have no other); the advantage of a row is A = R(x, y) − V_ref(x) (paper §2);
3. **filter**: rows with A ≤ 0 are dropped (the reward baselines keep R > 0); none left is an
   error;
4. **steps**: each iteration draws ``batch_size`` rows, uniformly or, with priority sampling,
   with probability ∝ A, and takes one gradient step on the variant's loss.

Losses, per row, with NLL_t = −log π_θ(y_t | x, y_<t), ρ an importance weight π_θ/π_ref
clipped to [1−ε, 1+ε] and detached (the paper's A-LoL gradient, eq. 2-3)::

    alol           A · ρ(y|x) · Σ_t NLL_t          ρ of the whole sequence
    alol_seq       A · Σ_t ρ(y_t|·) · NLL_t        per-token ρ (the paper's A-LoL seq.)
    alol_ref_free  A · Σ_t NLL_t                   no importance weight
    alol_kl        A · Σ_t NLL_t + β_KL · Σ_t KL(π_θ(·|s_t) ‖ π_ref(·|s_t))
    wbc            R · Σ_t NLL_t                   weighted behaviour cloning
    rlol           R · ρ(y|x) · Σ_t NLL_t          reward in place of advantage
    nll            Σ_t NLL_t                       plain BC on the same file (the NLL baseline)

Each batch's sum is divided by its number of response tokens (the LM-loss convention, as in
:mod:`agents.bc`), so a learning rate means the same in both.

Choices (where the paper leaves room): ε = 0.9 (the paper's clip range; with sequence-level
ratios of 48-token replies, narrower ranges clip almost every row). The ``alol_seq`` weight
keeps the advantage factor A (the issue's formula omits it; the paper's variant has it).
Priority sampling draws row i with probability A_i / Σ A and weights every drawn row by the
mean Ā instead of A_i: the expected gradient equals uniform sampling with weight A, with less
variance; it is on by default, as in the paper's main runs. V_ref's MLP (one hidden layer of
256 ReLU units, Adam, full batch) is ours; the paper does not fix its shape.

Several processes (``accelerate launch``, :mod:`agents.distributed`): every process replays the
whole file and draws the same ``batch_size`` rows each step; it takes its contiguous part of
them, scales its token-mean loss by its share of the step's tokens, and DDP averages the
gradients, so a step's gradient is the one a single process computes on those rows (up to
float rounding). The passes of π_ref over all the rows (log-probs, prompt features) are split
among the processes and gathered. V_ref's samples are split by whole chunks of
``batch_size`` episodes, chunk c seeded from (seed, 1, c) (a single process keeps its one
stream, seeded from (seed, 1)); the main process fits V_ref and sends the rows' weights to the
others.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from agents.build import build_envs, build_guide, build_learner, is_toy
from agents.checkpoint import check_finite
from agents.config import TrainConfig, check_positive
from agents.distributed import Processes
from agents.losses import exact_kl, logprobs_from_logits, weighted_nll_loss
from agents.offline_data import (
    DataFileError,
    Replayed,
    Row,
    read_rows,
    reference_rows,
    replay,
    sample_chunks,
    sample_rows,
    write_rows,
    write_samples,
)
from agents.offline_run import OfflineRun, start_run
from agents.policy import ActorCritic
from agents.replicas import ReplicatedPolicy
from agents.rundir import RunSetupError

__all__ = [
    "VARIANTS",
    "ALoLConfig",
    "Variant",
    "draw_rows",
    "fit_value",
    "step_loss",
    "train",
]


@dataclass
class ALoLConfig(TrainConfig):
    """A-LoL and its baselines (``--algo alol|alol_seq|alol_ref_free|alol_kl|wbc|rlol|nll``)."""

    data: str = ""
    """JSONL data file (``python -m agents.make_data``); empty: the task's references, or the
    task guide's episodes sampled once into <output_dir>/data.jsonl."""
    samples_per_prompt: int = 4
    """Default data from the guide: episodes per train prompt."""
    total_iterations: int = 200
    """Gradient steps (one batch of rows each); 0 writes the initial policy."""
    batch_size: int = 16
    """Rows per gradient step (and sub-envs for replaying and sampling)."""
    learning_rate: float = 2e-5
    """AdamW learning rate."""
    clip_epsilon: float = 0.9
    """ε of the importance-weight clip [1 − ε, 1 + ε]."""
    priority_sampling: bool = True
    """Draw rows with probability ∝ their weight (A, or R for the reward baselines)."""
    kl_coef: float = 0.05
    """alol_kl: β_KL of its KL(π ‖ π_ref) term (the other variants have none)."""
    value_samples: int = 4
    """π_ref episodes per validation prompt that V_ref is fitted to."""
    value_steps: int = 500
    """Full-batch Adam steps of V_ref's fit."""
    value_learning_rate: float = 1e-3
    """Adam learning rate of V_ref's fit."""
    checkpoint_every: int = 50
    """Write a checkpoint every this many gradient steps (and at the end)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.clip_epsilon < 1.0:
            raise ValueError(f"clip_epsilon must be in (0, 1), got {self.clip_epsilon!r}")
        check_positive(self, "samples_per_prompt", "value_samples", "value_steps")
        check_positive(self, "value_learning_rate")


@dataclass(frozen=True)
class Variant:
    """What one ``--algo`` of this family weights its NLL with."""

    weight: str
    """"advantage" (A = R − V_ref), "reward" (R) or "one"."""
    ratio: str
    """Importance weight ρ: "sequence", "token" or "none"."""
    kl: bool = False
    """Add β_KL · KL(π_θ ‖ π_ref) on the response positions."""


VARIANTS: dict[str, Variant] = {
    "alol": Variant("advantage", "sequence"),
    "alol_seq": Variant("advantage", "token"),
    "alol_ref_free": Variant("advantage", "none"),
    "alol_kl": Variant("advantage", "none", kl=True),
    "wbc": Variant("reward", "none"),
    "rlol": Variant("reward", "sequence"),
    "nll": Variant("one", "none"),
}


def train(
    cfg: ALoLConfig,
    algo: str,
    *,
    init_from: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train ``algo`` (a key of :data:`VARIANTS`) on ``cfg``'s data; return the run directory.

    Raises:
        RunSetupError: Before training: bad settings, or data that cannot be trained on (a
            bad file, or no row with a positive weight).
    """
    variant = VARIANTS[algo]
    if variant.kl and cfg.kl_coef == 0:
        raise RunSetupError(f"{algo} needs kl_coef > 0 (its KL term's β_KL)")
    run = start_run(cfg, algo, init_from=init_from, resume=resume, overwrite=overwrite)
    ac, venv, procs = run.ac, run.envs.unwrapped, run.procs

    # 1.-2. under ZeRO-3 with π's weights (and LoRA's π_ref) gathered whole for the block
    with procs.whole(ac):
        # 1. data: the rows, replayed through the env
        rows, path = _rows(cfg, run)
        try:
            data = replay(venv, rows, str(path))
        except DataFileError as err:
            raise RunSetupError(str(err)) from err
        _check_rewards(rows, data, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        # log π_ref of every response token (N, G), for the importance weights only
        ref_logprobs = None
        if variant.ratio != "none":
            ref_logprobs = _reference_logprobs(ac, data, cfg.batch_size, procs)

        # 2. V_ref and the rows' weights (kept in the checkpoint: a resumed run reuses them)
        if run.state is not None:
            if run.state["data_sha256"] != digest:
                raise RunSetupError(f"--resume: {path} changed since the run started")
            weights = run.state["weights"]
        else:
            weights = _weights(variant, cfg, run, data)
    # 3. filter: rows with a positive weight
    keep = torch.nonzero(weights > 0).squeeze(1)  # (N',)
    if len(keep) == 0:
        what = {"advantage": "positive advantage", "reward": "positive reward"}[variant.weight]
        raise RunSetupError(f"{path}: no row of {len(rows)} has a {what}")

    run.restore()
    run.log("data/rows", len(rows), 0)
    run.log("data/kept_share", len(keep) / len(rows), 0)
    run.log("data/reward_mean", data.rewards.mean().item(), 0)

    def checkpoint(done: int) -> None:
        run.checkpoint(done, weights=weights, data_sha256=digest)

    # 4. steps: draw rows, one gradient step on the variant's loss
    priority = cfg.priority_sampling and variant.weight != "one"
    steps = range(run.done, cfg.total_iterations)
    bar = tqdm(steps, desc=algo, unit="step", dynamic_ncols=True, disable=not procs.main)
    for step in bar:
        t0 = time.perf_counter()
        # the same global rows in every process (np_rng is one stream); each takes its part
        drawn, w = draw_rows(weights[keep], cfg.batch_size, run.np_rng, priority=priority)
        pick = keep[drawn]  # (b,)
        scalars = _step(
            run.policy, ac, run.optimizer, data, ref_logprobs, pick, w, variant, cfg, procs
        )
        scalars["time/update"] = time.perf_counter() - t0
        with procs.whole(ac):
            check_finite(ac, scalars, step, run.out)  # before anything is logged or saved
        for name, value in scalars.items():
            run.log(name, value, step)
        bar.set_postfix(nll=f"{scalars['losses/nll']:.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.total_iterations:
            checkpoint(step + 1)
    if cfg.total_iterations == 0:
        checkpoint(0)
    run.finish()
    return run.out


def draw_rows(
    weights: torch.Tensor, size: int, rng: np.random.Generator, *, priority: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows for one step from positive ``weights`` ``(K,)``: their indices ``(b,)`` and the
    weight each gets ``(b,)``.

    Uniform: b = min(size, K) distinct rows, each with its own weight. Priority: b = size
    draws (with replacement) with probability w_i / Σ w, each weighted by the mean w̄, so that
    the expected gradient is the uniform one (module doc).
    """
    if not priority:
        rows = torch.from_numpy(
            rng.choice(len(weights), size=min(size, len(weights)), replace=False)
        )
        return rows, weights[rows]
    p = weights.double().numpy()
    rows = torch.from_numpy(rng.choice(len(weights), size=size, p=p / p.sum()))
    return rows, weights.mean().expand(size)


def step_loss(
    policy: ActorCritic | ReplicatedPolicy,
    ac: ActorCritic,
    data: Replayed,
    ref_logprobs: torch.Tensor | None,
    pick: torch.Tensor,
    weight: torch.Tensor,
    variant: Variant,
    cfg: ALoLConfig,
    procs: Processes,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """This process's loss of one gradient step on rows ``pick`` ``(b,)`` of ``data``
    weighted by ``weight`` ``(b,)``, and its statistics (token means).

    In a single process, the variant's loss on every row. With N processes, this process's
    part of the rows (:meth:`~agents.distributed.Processes.rows`), its token means scaled by
    its share of the rows' tokens (:meth:`~agents.distributed.Processes.token_share`): the
    backward passes, averaged by DDP, leave the single-process gradient in every process, and
    the statistics summed over the processes are the single-process ones.
    """
    dev = next(ac.parameters()).device
    rows, real = procs.rows(pick)  # (b',)
    w = weight[procs.part(len(pick))] if real else weight[:1]  # (b',)
    ids = data.input_ids[rows].to(dev)  # (b', P+G)
    attn = data.attention_mask[rows].to(dev)  # (b', P+G)
    mask = data.mask[rows].to(dev) & real  # (b', G); none for a process without rows
    logits, _ = policy(ids, attn, data.prompt_width)  # (b', G, V)
    logprobs = logprobs_from_logits(logits, data.tokens[rows].to(dev))  # (b', G)
    ref = ref_logprobs[rows].to(dev) if ref_logprobs is not None else None
    loss, stats = weighted_nll_loss(logprobs, ref, mask, w.to(dev), variant.ratio, cfg.clip_epsilon)
    if variant.kl:
        kl = exact_kl(logits, ac.reference_logits(ids, attn, data.prompt_width))  # (b', G)
        kl = (kl * mask).sum() / mask.sum().clamp(min=1)
        loss = loss + cfg.kl_coef * kl
        stats["kl"] = kl.detach()
    if procs.world > 1:
        share = procs.token_share(mask.sum(), data.mask[pick].sum().to(dev))
        loss = loss * share
        stats = {k: v * share / procs.world for k, v in stats.items()}
    return loss, stats


def _step(
    policy: ActorCritic | ReplicatedPolicy,
    ac: ActorCritic,
    optimizer: torch.optim.Optimizer,
    data: Replayed,
    ref_logprobs: torch.Tensor | None,
    pick: torch.Tensor,
    weight: torch.Tensor,
    variant: Variant,
    cfg: ALoLConfig,
    procs: Processes,
) -> dict[str, float]:
    """One gradient step on rows ``pick`` of ``data`` weighted by ``weight``
    (:func:`step_loss`); the scalars of the whole step, the same in every process."""
    policy.train()
    loss, stats = step_loss(policy, ac, data, ref_logprobs, pick, weight, variant, cfg, procs)
    norm = policy.step(loss, optimizer, cfg.max_grad_norm)
    names = [f"losses/{k}" for k in stats] + ["losses/loss"]
    values = torch.stack([*stats.values(), loss.detach() / procs.world])
    if procs.world > 1:  # one all-reduce: the statistics of every process's part of the rows
        values = procs.summed(values)
    return dict(zip(names, values.tolist(), strict=True)) | {"losses/grad_norm": norm.item()}


def _rows(cfg: ALoLConfig, run: OfflineRun) -> tuple[list[Row], Path]:
    """The run's rows and their file: ``--data``, or the task's default (module doc, step 1)."""
    venv = run.envs.unwrapped
    task = venv.task
    try:
        if cfg.data:
            return read_rows(cfg.data, task), Path(cfg.data)
        path = run.out / "data.jsonl"
        if any(p.references for p in task.prompts):

            def write() -> None:  # once, by the main process (the others wait)
                if not path.exists():
                    write_rows(path, reference_rows(venv))

            run.procs.first_on_main(write, (DataFileError,))
            return read_rows(path, task), path
        guide = build_guide(cfg, venv, run.ac)
        rows = write_samples(
            path,
            venv,
            guide,
            range(task.num_prompts),
            cfg.samples_per_prompt,
            cfg.seed,
            {"source": "guide"},
            procs=run.procs,
        )
        return rows, path
    except FileNotFoundError as err:
        raise RunSetupError(f"--data {cfg.data}: no such file") from err
    except DataFileError as err:
        raise RunSetupError(str(err)) from err


def _check_rewards(rows: list[Row], data: Replayed, path: Path) -> None:
    """The file's rewards must be the env's (else the file was made for another setting)."""
    file_rewards = torch.tensor([r.reward for r in rows], dtype=torch.float32)
    off = torch.nonzero((file_rewards - data.rewards).abs() > 1e-3 * (1 + file_rewards.abs()))
    if len(off):
        i = int(off[0])
        raise RunSetupError(
            f"{path} line {i + 1}: reward {rows[i].reward:.4g} in the file, but the env gives "
            f"{data.rewards[i].item():.4g} ({len(off)} rows differ): the file was made with "
            "another reward or task setting"
        )


def _reference_logprobs(
    ac: ActorCritic, data: Replayed, chunk: int, procs: Processes
) -> torch.Tensor:
    """log π_ref of every response token ``(N, G)`` (π_ref is frozen: computed once)."""

    def logprobs(ids: torch.Tensor, attn: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logits = ac.reference_logits(ids, attn, data.prompt_width)  # (b, G, V)
        return logprobs_from_logits(logits, tokens).float()  # (b, G)

    return _by_chunks(ac, data, chunk, logprobs, procs)


def _weights(variant: Variant, cfg: ALoLConfig, run: OfflineRun, data: Replayed) -> torch.Tensor:
    """Each row's weight ``(N,)``: A = R − V_ref(x), R, or 1 (module doc, step 2)."""
    if variant.weight == "one":
        return torch.ones(len(data))
    if variant.weight == "reward":
        return data.rewards.clone()
    ac, procs = run.ac, run.procs
    # π_ref's own episodes on held-out prompts; π is still π_ref here (nothing trained yet).
    split = "train" if is_toy(cfg.env_id) else "validation"
    val_envs = build_envs(cfg, run.tokenizer if not is_toy(cfg.env_id) else None, split=split)
    val_task = val_envs.unwrapped.task
    learner = build_learner(ac, run.tokenizer, cfg)
    order = [p for p in range(val_task.num_prompts) for _ in range(cfg.value_samples)]
    ac.eval()
    val_rows: list[Row] = []
    if procs.world == 1:  # one stream, as a single process always sampled them
        rng = np.random.default_rng((cfg.seed, 1))
        for lo in tqdm(range(0, len(order), cfg.batch_size), desc="V_ref samples", unit="batch"):
            val_rows += sample_rows(val_envs, learner, order[lo : lo + cfg.batch_size], rng)
    else:  # whole chunks per process, chunk c seeded from (seed, 1, c)
        for rows in sample_chunks(val_envs, learner, order, 0, (cfg.seed, 1), {}, procs):
            val_rows += rows
    val = replay(val_envs, val_rows, f"{split} samples")
    val_features = _features(ac, val, cfg.batch_size, procs)  # (M, H)
    features = _features(ac, data, cfg.batch_size, procs)  # (N, H)
    if not procs.main:  # the main process fits V_ref and sends the weights
        return procs.from_main(torch.empty(0))
    head = fit_value(val_features, val.rewards, cfg.value_steps, cfg.value_learning_rate)
    with torch.no_grad():
        values = head(features).squeeze(1)  # (N,)
        fit_mse = nn.functional.mse_loss(head(val_features).squeeze(1), val.rewards).item()
    run.log("value/fit_mse", fit_mse, 0)
    run.log("value/reward_var", val.rewards.var().item(), 0)
    run.log("value/ref_reward_mean", val.rewards.mean().item(), 0)
    return procs.from_main((data.rewards - values).detach())


def _features(ac: ActorCritic, data: Replayed, chunk: int, procs: Processes) -> torch.Tensor:
    """π_ref's prompt features of every row ``(N, H)``."""
    width = data.prompt_width
    return _by_chunks(
        ac, data, chunk, lambda i, a, _: ac.reference_prompt_features(i, a, width), procs
    )


@torch.no_grad()
def _by_chunks(
    ac: ActorCritic,
    data: Replayed,
    chunk: int,
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    procs: Processes,
) -> torch.Tensor:
    """``fn(input_ids, attention_mask, tokens)`` on the policy's device for ``chunk`` rows at a
    time, concatenated on the CPU. With several processes each takes its contiguous part of
    the rows (:meth:`~agents.distributed.Processes.part`) and every process gets all of them."""
    dev = next(ac.parameters()).device
    mine = procs.part(len(data))
    out = []
    for lo in range(mine.start, mine.stop, chunk):
        rows = slice(lo, min(lo + chunk, mine.stop))
        ids, attn = data.input_ids[rows].to(dev), data.attention_mask[rows].to(dev)
        out.append(fn(ids, attn, data.tokens[rows].to(dev)).cpu())
    return procs.gather_rows(out)


def fit_value(
    features: torch.Tensor, rewards: torch.Tensor, steps: int, lr: float, seed: int = 0
) -> nn.Module:
    """V_ref: an MLP ``(N, H) → (N, 1)`` fitted with MSE to ``rewards`` ``(N,)`` (full batch)."""
    gen = torch.Generator().manual_seed(seed)
    hidden = 256
    head = nn.Sequential(nn.Linear(features.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
    with torch.no_grad():
        for layer in (head[0], head[2]):
            bound = 1 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
        head[2].bias.fill_(rewards.mean().item())  # start at the mean reward
    scale = features.std(0, keepdim=True).clamp(min=1e-6)
    shift = features.mean(0, keepdim=True)
    model = nn.Sequential(_Standardize(shift, scale), head)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(features).squeeze(1), rewards)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


class _Standardize(nn.Module):
    """``(x − shift) / scale`` with fixed statistics of the fit's features."""

    def __init__(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale
