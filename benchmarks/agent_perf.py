"""Agent performance targets (issue "agents"), measured in one run:

1. **Roll-out vs generate**: rolling out through the env with the agent's KV-cached sampling
   (:class:`~agents.learner.LearnerPolicy` + :func:`~textgen_env.oracles.roll_out`, rewards
   included) vs. ``model.generate`` on the same model, batch, prompt lengths and sampling
   (top-k 50, 48 new tokens, same stop tokens). Target: time ratio ≤ 1.0.
2. **Guided vs PPO iteration**: wall time of a PPO++ and an AggreVaTeD iteration vs. a PPO
   iteration at the same batch (collect + update). Target ≤ 1.3×.
3. **Models in memory**: distinct LM parameter sets held by a guided run.

Default model: the offline SmolLM2-135M-Instruct on IMDB review openings (shipped test data).
Prints a table and writes ``benchmarks/results/agent_perf.json``.
Run: ``.venv/bin/python -m benchmarks.agent_perf [--batch 16] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import torch

from agents.algorithms import ALGORITHMS
from agents.cli import preset_values
from agents.trainer import run
from benchmarks.perf import rollout_vs_generate
from textgen_env.models import load_causal_lm

OUT = Path(__file__).parent / "results" / "agent_perf.json"


def _iteration_seconds(run_dir: Path) -> list[float]:
    """Per-iteration wall time (generation + reward + update) logged by the trainer."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    parts = [acc.Scalars(f"time/{k}") for k in ("generation", "reward", "update")]
    return [sum(p[i].value for p in parts) for i in range(len(parts[0]))]


def iteration_costs(
    env_id: str, batch: int, iterations: int, model: str | None, repeats: int = 1
) -> dict:
    """Median seconds per iteration (collect + update; warm-up iteration dropped)."""
    out: dict[str, list[float]] = {}
    for algo in ("ppo", "ppo_pp", "aggrevated"):
        cls = ALGORITHMS[algo].config
        values = preset_values("cpu-small", algo) | {
            "batch_size": batch, "minibatch_size": max(batch // 4, 1), "env_id": env_id,
            "total_iterations": iterations, "checkpoint_every": 1000, "model": model,
        }  # fmt: skip
        if algo != "ppo":
            values["beta"] = 0.5
        times: list[float] = []
        for r in range(repeats):
            out_dir = Path(f"/tmp/agent_perf/{env_id[12:]}-{algo}-{r}")
            shutil.rmtree(out_dir, ignore_errors=True)  # stale TensorBoard events would mix in
            cfg = cls(**values | {"seed": r, "output_dir": str(out_dir)})
            out_dir = run(cfg, algo)  # the task's default guide
            times += _iteration_seconds(out_dir)[1:]
        out[algo] = times
    ppo = statistics.median(out["ppo"])
    return {
        "env_id": env_id, "batch": batch, "beta": 0.5, "seconds_per_iteration": out,
        "ratio_ppo_pp": statistics.median(out["ppo_pp"]) / ppo,
        "ratio_aggrevated": statistics.median(out["aggrevated"]) / ppo,
    }  # fmt: skip


def models_in_memory() -> dict:
    """LM parameter sets held by a guided IMDB run with the defaults (SmolLM2, VADER)."""
    from agents.build import build_guide, build_policy
    from agents.ppo_pp import PPOPPConfig

    cfg = PPOPPConfig(env_id="textgen_env/IMDB-v0", batch_size=4, minibatch_size=2)
    ac, _, envs = build_policy(cfg)
    guide = build_guide(cfg, envs, ac)
    lms = {"policy": ac.model, "reference": ac.reference, "guide": guide.model}
    distinct = {id(m) for m in lms.values()}
    storage = {p.data_ptr() for m in lms.values() for p in m.parameters()}
    n_params = sum(
        p.numel() for m in {id(m): m for m in lms.values()}.values() for p in m.parameters()
    )
    return {
        "task": cfg.env_id,
        "guide_is_reference": guide.model is ac.reference,
        "distinct_lm_objects": len(distinct),
        "distinct_parameter_tensors": len(storage),
        "lm_parameters_total": n_params,
        "value_head_parameters": sum(p.numel() for p in ac.value_head.parameters()),
        "reward_model": "VADER lexicon (no LM)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--imdb-iterations", type=int, default=4,
        help="IMDB iterations per algorithm (the first is dropped as warm-up)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tok = load_causal_lm()
    results = {"torch_threads": torch.get_num_threads(), "device": "cpu"}
    results["rollout_vs_generate"] = rollout_vs_generate(
        model, tok, "cpu", args.repeats, args.batch, args.new_tokens
    )
    results["iteration_cost_toy"] = iteration_costs("textgen_env/Positive-v0", 32, 6, None, 3)
    results["iteration_cost_imdb"] = iteration_costs(
        "textgen_env/IMDB-v0", 8, args.imdb_iterations, None
    )
    results["models_in_memory"] = models_in_memory()
    r = results["rollout_vs_generate"]
    print(f"SmolLM2-135M, batch {r['batch']}, {r['new_tokens']} new tokens, top-k 50, CPU")
    print(f"  env roll-out / generate time ratio (median) {r['time_ratio_median']:.3f}"
          f"  per-token {r['per_token_ratio_median']:.3f}")  # fmt: skip
    for key in ("iteration_cost_toy", "iteration_cost_imdb"):
        c = results[key]
        print(f"{c['env_id']}, batch {c['batch']}, β 0.5: PPO++ / PPO {c['ratio_ppo_pp']:.2f}×, "
              f"AggreVaTeD / PPO {c['ratio_aggrevated']:.2f}×")  # fmt: skip
    m = results["models_in_memory"]
    shared = m["guide_is_reference"]
    print(f"{m['task']} guided run: {m['distinct_lm_objects']} LM copies (policy + reference;"
          f" guide is the reference: {shared}); reward: {m['reward_model']}")  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
