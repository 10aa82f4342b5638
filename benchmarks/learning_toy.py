"""Learning evidence on a toy task: every algorithm vs. the random policy and the guide.

For each algorithm and seed, trains with the ``cpu-small`` preset and, every ``--eval-every``
iterations (continuing with ``--resume``, which reproduces an uninterrupted run exactly),
evaluates π alone on the test split (no guide). Reports, per algorithm: final test return
(mean ± std over seeds), whether it beats the random policy and the ε-scripted guide it
learned from, the episodes needed to reach PPO's final return, and the mean learning
curves. Rows are :data:`VARIANTS`: each algorithm with its defaults, plus PPO++'s β at
TRIL's 0.6. Writes
``benchmarks/results/learning_<task>.json``.

Run: ``.venv/bin/python benchmarks/learning_toy.py [--env-id ID] [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import textgen_env  # noqa: F401  (registers ids)
from agents.algorithms import ALGORITHMS
from agents.build import scripted_guide
from agents.cli import PRESETS, preset_values
from agents.evaluate import evaluate
from agents.trainer import run
from textgen_env.oracles import roll_out

# Row name -> (--algo, config overrides). The defaults, plus PPO++'s β as TRIL's config sets
# it (0.6; the paper's table says 0.2, our default), alone and inside LOLS.
VARIANTS: dict[str, tuple[str, dict]] = {
    "ppo": ("ppo", {}),
    "ppo_pp": ("ppo_pp", {}),
    "ppo_pp β=0.6": ("ppo_pp", {"beta": 0.6}),
    "aggrevated": ("aggrevated", {}),
    "aggrevated λ=0": ("aggrevated", {"guided_gae_lambda": 0.0}),
    "lols": ("lols", {}),
    "lols β=0.6": ("lols", {"ppo_pp_beta": 0.6}),
    "d2lols": ("d2lols", {}),
    "d2lols λ=0": ("d2lols", {"aggrevated_gae_lambda": 0.0}),
}
OUT = Path(__file__).parent / "results"


def baseline(env_id: str, policy_for, seed: int = 0) -> float:
    """Mean test return of a policy over all test prompts."""
    envs = gym.make_vec(env_id, num_envs=48, vectorization_mode="vector_entry_point", split="test")
    task = envs.unwrapped.task
    policy = policy_for(task.vocab_size)
    rng = np.random.default_rng(seed)
    returns = []
    for lo in range(0, task.num_prompts, 48):
        states = [task.initial_state(i) for i in range(lo, min(lo + 48, task.num_prompts))]
        returns += roll_out(envs, policy, states, rng)[1].tolist()
    return float(np.mean(returns))


def bc_warm_start(env_id: str, seed: int, iterations: int, epsilon: float, root: Path) -> str:
    """BC on the ε-scripted guide's own roll-outs: the "BC" of BC+X (no optimal data)."""
    values = preset_values("cpu-small", "bc") | {
        "env_id": env_id, "seed": seed, "total_iterations": iterations,
        "demonstrations": "guide", "guide_epsilon": epsilon, "epochs": 4,
        "output_dir": str(root / f"bc-s{seed}"),
    }  # fmt: skip
    cfg = ALGORITHMS["bc"].config(**values)
    return str(run(cfg, "bc"))  # demonstrator: the ε-noisy scripted guide


def train_and_track(
    variant: str, env_id: str, seed: int, iterations: int, every: int, root: Path,
    init_from: str | None = None,
):  # fmt: skip
    algo, overrides = VARIANTS[variant]
    cls = ALGORITHMS[algo].config
    values = preset_values("cpu-small", algo) | overrides
    out = root / f"{variant.replace(' ', '_')}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)  # a stale run's checkpoints would be resumed
    curve = []
    for done in range(every, iterations + 1, every):
        cfg = cls(**{**values, "env_id": env_id, "seed": seed, "total_iterations": done,
                     "checkpoint_every": every, "output_dir": str(out)})  # fmt: skip
        # the task's guide: the scripted expert with cfg.guide_epsilon (default 0.3)
        run(cfg, algo, resume=done > every, init_from=init_from if done == every else None)
        result = evaluate(str(out), split="test", batch_size=48, seed=seed)
        curve.append((done * cfg.batch_size, result["metrics"]["task_reward"]))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env-id", default="textgen_env/Positive-v0")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--algos", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--guide-epsilon", type=float, default=0.3)
    parser.add_argument("--runs-dir", default="/tmp/textgen_learning")
    parser.add_argument("--output", help="JSON path (default results/learning_<task>.json)")
    parser.add_argument(
        "--bc-iterations", type=int, default=0,
        help="BC+X: first behaviour-clone the ε-guide's roll-outs for this many iterations",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is much faster on 2 cores
    t0 = time.time()
    random_return = baseline(args.env_id, lambda v: scripted_guide(args.env_id, v, 1.0))  # uniform
    guide_return = baseline(
        args.env_id, lambda v: scripted_guide(args.env_id, v, args.guide_epsilon)
    )
    root = Path(args.runs_dir)
    warm = {
        s: bc_warm_start(args.env_id, s, args.bc_iterations, args.guide_epsilon, root)
        if args.bc_iterations else None
        for s in args.seeds
    }  # fmt: skip
    bc_return = (
        statistics.mean(
            evaluate(warm[s], split="test", batch_size=48, seed=s)["metrics"]["task_reward"]
            for s in args.seeds
        )
        if args.bc_iterations
        else None
    )
    curves = {
        a: [train_and_track(a, args.env_id, s, args.iterations, args.eval_every, root, warm[s])
            for s in args.seeds]
        for a in args.algos
    }  # fmt: skip
    ppo_final = statistics.mean(c[-1][1] for c in curves["ppo"])  # needs "ppo" in --algos
    rows = {}
    for a, cs in curves.items():
        finals = [c[-1][1] for c in cs]
        reach = [next((n for n, r in c if r >= ppo_final), None) for c in cs]
        rows[a] = {
            "final_mean": statistics.mean(finals),
            "final_std": statistics.pstdev(finals),
            "beats_random": min(finals) > random_return,
            "beats_guide": statistics.mean(finals) > guide_return,
            "episodes_to_ppo_final": reach,
            "curves": cs,
        }
    name = args.env_id.split("/")[-1].split("-")[0].lower()
    name += f"_bc{args.bc_iterations}" if args.bc_iterations else ""
    result = {"env_id": args.env_id, "seeds": args.seeds, "iterations": args.iterations,
              "preset": PRESETS["cpu-small"], "guide_epsilon": args.guide_epsilon,
              "random_return": random_return, "guide_return": guide_return,
              "ppo_final_return": ppo_final, "algorithms": rows,
              "bc_iterations": args.bc_iterations, "bc_return": bc_return,
              "wall_seconds": time.time() - t0}  # fmt: skip
    print(f"{args.env_id}, test split, π alone; seeds {args.seeds}, {args.iterations} iterations")
    print(f"random policy {random_return:.3f} · scripted guide ε={args.guide_epsilon} "
          f"{guide_return:.3f} · optimum see README")  # fmt: skip
    if bc_return is not None:
        print(f"BC warm start ({args.bc_iterations} iterations on the guide's roll-outs): "
              f"{bc_return:.3f}")  # fmt: skip
    print(f"{'algo':<14}{'final':>16}{'>random':>9}{'>guide':>8}  episodes to PPO's final")
    for a, r in rows.items():
        print(f"{a:<14}{r['final_mean']:>9.3f} ± {r['final_std']:.3f}{r['beats_random']!s:>9}"
              f"{r['beats_guide']!s:>8}  {r['episodes_to_ppo_final']}")  # fmt: skip
    points = [n for n, _ in curves["ppo"][0]]
    print("mean test return over seeds, by episodes: " + " ".join(f"{n:>7}" for n in points))
    for a, cs in curves.items():
        means = [statistics.mean(c[i][1] for c in cs) for i in range(len(points))]
        print(f"{a:<41}" + " ".join(f"{m:>7.3f}" for m in means))
    OUT.mkdir(parents=True, exist_ok=True)
    path = Path(args.output) if args.output else OUT / f"learning_{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
