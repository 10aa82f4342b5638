"""The training loop every algorithm runs: plan · collect · score · update · log · checkpoint.

:func:`run` builds the run (envs, policy π with its value head and reference π_ref, π's
actor, the guide or demonstrator, optimizer, KL controller), restores a checkpoint on
``--resume``, then repeats one iteration per step. The algorithm (a record of
:data:`agents.algorithms.ALGORITHMS`) supplies the plan, score and update functions. The
loop owns seeding, TensorBoard logging (``charts/``, ``losses/``, ``time/``, a served guide's
``guide/`` requests, tokens, latency and errors, the config and sample completions as text)
and atomic checkpoints that hold everything ``--resume`` needs to reproduce an uninterrupted
run: policy (+ value head), optimizer, KL controller, iteration and every RNG state.

Started by ``accelerate launch`` (or ``torchrun``) as N processes, each runs this loop on its
share of the batch, DDP averages the update's gradients, and only the main process logs and
saves (:mod:`agents.distributed` says how the run splits). ``--resume`` with the number of
processes the run had continues it exactly; with another number, π, the optimizer, β_KL and
the iteration carry over and each process starts new random streams.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agents.algorithms import ALGORITHMS, OfflineAlgorithm
from agents.build import (
    build_demonstrator,
    build_guide,
    build_learner,
    build_policy,
    check_setup,
)
from agents.checkpoint import (
    TrainingDiverged,
    check_finite,
    load_checkpoint,
    restore_rng_states,
    rng_record,
    rng_states,
    save_checkpoint,
    saved_rng_states,
)
from agents.config import TrainConfig
from agents.distributed import join_processes
from agents.engine import Actor, collect
from agents.kl_control import kl_controller
from agents.policy import ActorCritic
from agents.rundir import (
    claim_run_dir,
    load_policy_state,
    read_init_from,
    resumed_config,
    run_dir,
)
from agents.samples import samples_table
from textgen_env.guides.api import APIGuide
from textgen_env.guides.base import GuidePolicy
from textgen_env.vector import TextGenVectorEnv

__all__ = ["GuideBuilder", "TrainingDiverged", "run", "run_dir"]

# Builds the run's guide once its envs and policy exist: (envs, ac) -> guide. A real task's
# default guide reuses π's frozen reference LM, so it cannot be built before the policy.
GuideBuilder = Callable[[TextGenVectorEnv, ActorCritic], GuidePolicy]


def run(
    cfg: TrainConfig,
    algo: str,
    *,
    guide: GuideBuilder | None = None,
    init_from: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train ``algo`` for ``cfg.total_iterations`` iterations; return the run directory.

    Args:
        cfg: The algorithm's config (an instance of its record's config class).
        algo: A name in :data:`~agents.algorithms.ALGORITHMS`.
        guide: Builds the guide (or, for behaviour cloning, the demonstrator); default: the
            task's (:func:`~agents.build.build_guide`, :func:`~agents.build.build_demonstrator`).
            Ignored when the algorithm needs neither.
        init_from: Checkpoint or run directory whose policy weights start training and become
            π_ref (BC+X).
        resume: Continue from the latest checkpoint in the output directory (only
            :data:`~agents.rundir.RESUMABLE` config fields may differ from the run's).
        overwrite: Replace a run that the output directory already holds (else refused).

    Raises:
        RunSetupError: Before training, for settings the run cannot start with.
        TrainingDiverged: A loss, gradient or parameter became non-finite; no checkpoint is
            written for that iteration.
    """
    spec = ALGORITHMS[algo]
    if not isinstance(cfg, spec.config):
        raise TypeError(f"{algo} needs a {spec.config.__name__}, got {type(cfg).__name__}")
    if isinstance(spec, OfflineAlgorithm):  # its family's own loop (agents.alol, agents.rest)
        return spec.train(cfg, algo, init_from=init_from, resume=resume, overwrite=overwrite)
    # Everything that can be refused is checked before the models load.
    check_setup(cfg, guide_server=spec.needs_guide or spec.demonstrator, processes=True)
    procs = join_processes(cfg)  # this process among those a launcher started (or alone)
    local = procs.share(cfg)  # its share: batch_size / N episodes, minibatch_size / N a step
    out = run_dir(cfg, algo)
    procs.first_on_main(partial(claim_run_dir, out, resume=resume, overwrite=overwrite))
    config = {"algo": algo, **dataclasses.asdict(cfg), "init_from": init_from}
    saved = load_checkpoint(out) if resume else None
    start = 0
    if saved is not None:
        start = saved[1]["iterations_done"]
        if init_from is None:  # a resumed BC+X run keeps its reference
            config["init_from"] = init_from = saved[2].get("init_from")
        config = resumed_config(saved[2], config, start, type(cfg))
    donor = read_init_from(init_from) if init_from else None
    # This process's saved random streams: none when the run had another number of processes.
    rngs = saved_rng_states(saved[1], procs.rank, procs.world) if saved is not None else None
    seed = procs.seed(cfg.seed, restart=start if saved is not None and rngs is None else 0)

    random.seed(seed)
    np_rng = np.random.default_rng(seed)
    ac, tokenizer, envs = build_policy(local)  # the same initial π in every process
    if seed != cfg.seed:  # torch's stream too, once π is built
        torch.manual_seed(seed)
    venv = envs.unwrapped
    venv.reset(seed=seed)
    guide = guide or partial(build_demonstrator if spec.demonstrator else build_guide, local)
    if spec.demonstrator:  # BC: the demonstrator writes every episode
        actor, helper = guide(venv, ac), None
    else:
        actor = build_learner(ac, tokenizer, local)
        helper = guide(venv, ac) if spec.needs_guide else None
    optimizer = ac.optimizer(cfg.learning_rate)
    kl_ctl = kl_controller(cfg)
    if donor is not None:  # BC+X: start from, and regularize towards, the loaded policy
        load_policy_state(ac, donor, f"--init-from {init_from}")
        ac.sync_reference()
    if saved is not None:
        policy_state, state, _ = saved
        load_policy_state(ac, policy_state, f"checkpoint in {out}")
        kl_ctl.load_state_dict(state["kl_controller"])
        if rngs is not None:
            restore_rng_states(rngs, np_rng, venv.np_random)
    # What the update calls: π (through DDP, or DeepSpeed's engine with its optimizer, when
    # several processes share the run), and the optimizer, with its saved state.
    policy, optimizer = procs.prepare(ac, optimizer)
    if saved is not None:
        procs.load_optimizer_state(optimizer, ac, saved[1]["optimizer"])

    writer = SummaryWriter(str(out / "tb")) if procs.main else None  # the main process logs
    if writer is not None:
        writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", start)

    def checkpoint(done: int) -> None:
        every = procs.gather(rng_states(np_rng, venv.np_random))  # every process's streams
        optimizer_state = procs.optimizer_state(optimizer, ac)  # gathered from ZeRO's parts
        trainer_state = {
            "iterations_done": done,
            "optimizer": optimizer_state,
            "kl_controller": kl_ctl.state_dict(),
            **rng_record(every),
        }
        with procs.whole(ac):  # (every process: ZeRO-3 gathers π's weights)
            if procs.main:
                save_checkpoint(
                    out, done, policy_state=ac.policy_state(), trainer_state=trainer_state,
                    config=config,
                )  # fmt: skip

    # A served guide's usage is logged per iteration, and its connections closed at the end.
    served = next((g for g in (helper, actor) if isinstance(g, APIGuide)), None)
    bar = tqdm(
        range(start, cfg.total_iterations),
        desc=algo,
        unit="it",
        dynamic_ncols=True,
        disable=not procs.main or start >= cfg.total_iterations,  # no empty bar (a 0-iteration run)
    )
    try:
        for iteration in bar:
            # 1. plan: who rolls in and out of guided samples this iteration, and β (one plan
            # for the whole batch: the main process's)
            plan = procs.from_main(spec.plan(local, iteration, np_rng))
            # 2. collect: this process's share of the batch through its env (agents.engine)
            # (under ZeRO-3 with π's weights gathered whole; without it, as they are)
            ac.eval()
            used = served.usage() if served is not None else None
            with procs.whole(ac):
                rollout = collect(venv, actor, helper, plan, np_rng)
                # 3. score: log-probs, KL-shaped rewards, advantages (PPO family) or demonstrations
                t0 = time.perf_counter()
                batch = spec.score(ac, rollout, local, kl_ctl.value)
            # 4. update: gradient steps (with several processes DDP averages the gradients)
            scalars = batch.stats | spec.update(policy, optimizer, batch, local, np_rng)
            update_s = time.perf_counter() - t0
            # 5. log: the scalars of the whole batch (every process); β_KL adapts to its KL
            total_s = rollout.generation_seconds + rollout.reward_seconds + update_s
            scalars |= {
                "charts/guide_rolls_in": float(plan.beta > 0 and plan.roll_in is Actor.GUIDE),
                "charts/guide_rolls_out": float(plan.beta > 0 and plan.roll_out is Actor.GUIDE),
                "time/generation": rollout.generation_seconds,
                "time/reward": rollout.reward_seconds,
                "time/update": update_s,
                "time/tokens_per_s": float(rollout.gen_mask.sum()) / total_s,
            }
            if served is not None and used is not None:  # the served guide's requests
                scalars |= _guide_scalars(used, served.usage())
            pi_tokens = int(rollout.learner_mask.sum())
            scalars, kl = procs.reduce(scalars, batch.kl, pi_tokens)
            if kl is not None:
                kl_ctl.update(kl, cfg.batch_size)
            with procs.whole(ac):
                check_finite(ac, scalars, iteration, out)  # before anything is logged or saved
            if writer is not None:
                for name, value in scalars.items():
                    writer.add_scalar(name, value, iteration)
                if cfg.log_samples_every and iteration % cfg.log_samples_every == 0:
                    writer.add_text("samples", samples_table(venv.task, rollout), iteration)
            bar.set_postfix(reward=f"{rollout.task_rewards.mean().item():.3f}")
            # 6. checkpoint
            if (iteration + 1) % cfg.checkpoint_every == 0 or iteration + 1 == cfg.total_iterations:
                checkpoint(iteration + 1)
        if cfg.total_iterations == 0:  # the "no training" checkpoint: the initial policy
            checkpoint(0)
    finally:  # also when the guide fails: the checkpoints written so far stay the run's
        if writer is not None:
            writer.close()
        if served is not None:
            served.close()
    procs.finish()  # every process returns once the last checkpoint is written
    return out


def _guide_scalars(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """One iteration of a served guide's usage (two :meth:`APIGuide.usage` snapshots)."""
    d = {name: after[name] - before[name] for name in after}
    return {
        "guide/requests": d["requests"],
        "guide/cache_hits": d["cache_hits"],
        "guide/retries": d["retries"],
        "guide/errors": d["errors"],
        "guide/prompt_tokens": d["prompt_tokens"],
        "guide/completion_tokens": d["completion_tokens"],
        "guide/latency_s": d["request_seconds"] / d["requests"] if d["requests"] else 0.0,
        "time/guide": d["seconds"],
    }
