"""The training loop every algorithm runs: collect → update → log → checkpoint.

An algorithm supplies a *plan* (how each iteration collects data: who rolls in, β) and an
*update* (its learning step on the rollout). The loop owns seeding, the progress bar,
TensorBoard logging (``charts/``, ``losses/``, ``time/``, the config as text) and atomic
checkpoints holding everything needed for ``--resume`` to reproduce an uninterrupted run:
policy (+ value head), optimizer, KL controller, iteration and every RNG state.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agents.build import build_policy, learner_policy
from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.common import AdaptiveKLController, FixedKLController, KLController
from agents.config import TrainConfig
from agents.engine import collect
from agents.policy import ActorCritic
from agents.ppo import Plan
from textgen_env.guides.base import GuidePolicy

__all__ = ["PlanFn", "UpdateFn", "load_policy", "run", "run_dir"]

# plan(cfg, iteration, rng) -> Plan: how iteration `iteration` collects its data.
PlanFn = Callable[[Any, int, np.random.Generator], Plan]
# update(ac, optimizer, rollout, cfg, kl_ctl, plan, rng) -> scalars to log.
UpdateFn = Callable[..., dict[str, float]]
# A guide, or a function (envs, ac) -> guide building it once the run's envs and policy exist
# (it may need the task, or reuse the policy's frozen reference model as the guide's LM).
GuideArg = GuidePolicy | Callable[[Any, ActorCritic], GuidePolicy] | None


def run(
    cfg: TrainConfig,
    plan_fn: PlanFn,
    update_fn: UpdateFn,
    *,
    algo: str,
    guide: GuideArg = None,
    demonstrator: GuideArg = None,
    init_from: str | None = None,
    resume: bool = False,
) -> Path:
    """Train for ``cfg.total_iterations`` iterations; return the run directory.

    Args:
        cfg: The algorithm's config (a :class:`~agents.config.TrainConfig` subclass).
        plan_fn: The algorithm's data-collection plan per iteration.
        update_fn: The algorithm's learning step.
        algo: Name for logs and the default output directory.
        guide: The guide policy (or ``(envs, ac) -> guide``) for guided samples.
        demonstrator: If given, it acts instead of π when collecting (behaviour cloning).
        init_from: Checkpoint or run directory whose policy weights start training (BC+X).
        resume: Continue from the latest checkpoint in the output directory.
    """
    out = run_dir(cfg, algo)
    random.seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    ac, tokenizer, envs = build_policy(cfg)
    envs.reset(seed=cfg.seed)
    guide, demonstrator = (
        g(envs, ac) if callable(g) and not hasattr(g, "act") else g for g in (guide, demonstrator)
    )
    actor = demonstrator if demonstrator is not None else learner_policy(ac, tokenizer, cfg)
    optimizer = torch.optim.AdamW(ac.trainable_parameters(), lr=cfg.learning_rate)
    kl_ctl = _kl_controller(cfg)
    start = 0
    saved = load_checkpoint(out) if resume else None
    if saved is not None and init_from is None:
        init_from = saved[2].get("init_from")  # a resumed BC+X run keeps its reference
    if init_from:  # BC+X: start from, and regularize towards, the loaded policy
        ac.load_policy_state(load_checkpoint(init_from)[0])
        ac.sync_reference()
    if saved is not None:
        policy_state, state, _ = saved
        ac.load_policy_state(policy_state)
        optimizer.load_state_dict(state["optimizer"])
        kl_ctl.load_state_dict(state["kl_controller"])
        np_rng.bit_generator.state = state["np_rng"]
        envs.unwrapped.np_random.bit_generator.state = state["env_rng"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        start = state["iterations_done"]

    config = {"algo": algo, **dataclasses.asdict(cfg), "init_from": init_from}
    writer = SummaryWriter(str(out / "tb"))
    writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", start)

    def checkpoint(done: int) -> None:
        trainer_state = {
            "iterations_done": done,
            "optimizer": optimizer.state_dict(),
            "kl_controller": kl_ctl.state_dict(),
            "np_rng": np_rng.bit_generator.state,
            "env_rng": envs.unwrapped.np_random.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }
        save_checkpoint(
            out, done, policy_state=ac.policy_state(), trainer_state=trainer_state, config=config
        )

    bar = tqdm(range(start, cfg.total_iterations), desc=algo, unit="it", dynamic_ncols=True)
    for iteration in bar:
        p = plan_fn(cfg, iteration, np_rng)
        ac.eval()
        rollout = collect(
            envs.unwrapped, actor, guide, roll_in_by=p.roll_in_by, beta=p.beta, rng=np_rng
        )
        t0 = time.perf_counter()
        scalars = update_fn(ac, optimizer, rollout, cfg, kl_ctl, p, np_rng)
        update_s = time.perf_counter() - t0
        total_s = rollout.generation_seconds + rollout.reward_seconds + update_s
        scalars |= {
            "charts/roll_in": ["none", "guide", "learner"].index(p.roll_in_by.value),
            "time/generation": rollout.generation_seconds,
            "time/reward": rollout.reward_seconds,
            "time/update": update_s,
            "time/tokens_per_s": float(rollout.gen_mask.sum()) / total_s,
        }
        for k, v in scalars.items():
            writer.add_scalar(k, v, iteration)
        bar.set_postfix(reward=f"{rollout.task_rewards.mean().item():.3f}")
        if (iteration + 1) % cfg.checkpoint_every == 0 or iteration + 1 == cfg.total_iterations:
            checkpoint(iteration + 1)
    if cfg.total_iterations == 0:  # the "no training" checkpoint: the initial policy
        checkpoint(0)
    writer.close()
    return out


def run_dir(cfg: TrainConfig, algo: str) -> Path:
    """The run's output directory: ``cfg.output_dir`` or ``runs/<algo>-<env>-s<seed>``."""
    return Path(cfg.output_dir or f"runs/{algo}-{cfg.env_id.split('/')[-1]}-s{cfg.seed}")


def _kl_controller(cfg: TrainConfig) -> KLController:
    target = getattr(cfg, "target_kl", 0.0)
    coef = getattr(cfg, "kl_coef", 0.0)
    if target > 0:
        return AdaptiveKLController(coef, target, getattr(cfg, "kl_horizon", 10_000))
    return FixedKLController(coef)


def load_policy(path: str) -> tuple[ActorCritic, Any, dict]:
    """Rebuild a checkpoint's policy (and tokenizer) for evaluation; returns its config too."""
    from agents.cli import config_from_dict

    policy_state, _, config = load_checkpoint(path)
    cfg = config_from_dict(config)
    ac, tokenizer, _ = build_policy(cfg)
    ac.load_policy_state(policy_state)
    return ac.eval(), tokenizer, config
