"""``make demo-toy``: a short tour of the token MDP, then a guided algorithm on a toy task.

1. The token MDP on the Reverse toy task: restart-to-state, and the guide oracles (a scripted
   guide of tunable quality rolls in and rolls out).
2. D2LOLS fine-tunes a tiny LM on the Twist toy task with an ε=0.3 scripted
   guide (``--preset cpu-small``, under a minute on 2 CPU cores), then π alone is evaluated
   on the test split against the random policy, the guide it learned from, and plain praise:
   the local optimum where PPO stays on this task (benchmarks/learning_toy.py).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

import textgen_env  # noqa: F401  (registers ids)
from agents.algorithms import ALGORITHMS
from agents.cli import preset_values
from agents.evaluate import evaluate
from agents.trainer import run
from textgen_env.guides import ScriptedGuide
from textgen_env.oracles import roll_in, roll_out, sample_switch_points
from textgen_env.tasks.toy import reverse_expert, twist_expert


def env_tour() -> None:
    """The token MDP on Reverse-v0: a random and an expert episode, then guide oracles."""
    env = gym.make("textgen_env/Reverse-v0", render_mode="ansi")
    print("== textgen_env/Reverse-v0: write the prompt's letters reversed, then EOS ==")
    print(f"action space {env.action_space}, observation keys {list(env.observation_space)}")
    env.reset(seed=0)
    start = env.unwrapped.get_state()
    rng = np.random.default_rng(0)
    total = 0.0
    while True:
        action = int(rng.integers(1, env.action_space.n))
        _, reward, terminated, truncated, _ = env.step(action)
        total += reward
        if terminated or truncated:
            break
    print(f"random policy : {env.render()!r:24} return {total:.2f}")

    env.reset(options={"state": start})  # restart exactly where the episode began
    total = 0.0
    while True:
        action = reverse_expert(env.unwrapped.get_state())
        _, reward, terminated, truncated, _ = env.step(action)
        total += reward
        if terminated or truncated:
            break
    print(
        f"expert        : {env.render()!r:24} return {total:.2f}  (restarted from the same state)"
    )

    n = 64
    envs = gym.make_vec(
        "textgen_env/Reverse-v0", num_envs=n, vectorization_mode="vector_entry_point", split="test"
    )
    envs.reset(seed=1)
    starts = envs.get_states()
    vocab = envs.unwrapped.task.vocab_size
    print(f"\n== guide roll-outs from {n} test prompts (batched, one reward call per step) ==")
    for eps in (0.0, 0.3, 0.6, 1.0):
        guide = ScriptedGuide(reverse_expert, vocab_size=vocab, epsilon=eps)
        _, returns = roll_out(envs, guide, starts, np.random.default_rng(2))
        print(f"scripted guide ε={eps:.1f}: mean return {returns.mean():.3f}")

    guide = ScriptedGuide(reverse_expert, vocab_size=vocab, epsilon=0.3)
    learner = ScriptedGuide(reverse_expert, vocab_size=vocab, epsilon=1.0)  # uniform: untrained
    k = sample_switch_points(np.random.default_rng(3), n, envs.unwrapped.task.max_new_tokens)
    mid = roll_in(envs, guide, starts, k, np.random.default_rng(4))
    _, learner_returns = roll_out(envs, learner, mid, np.random.default_rng(5))
    mid2 = roll_in(envs, learner, starts, k, np.random.default_rng(4))
    _, guide_returns = roll_out(envs, guide, mid2, np.random.default_rng(5))
    print("\n== mean return when policies switch at k ~ U{1..L-1} ==")
    print(f"guide roll-in, random roll-out (PPO++-style)   : {learner_returns.mean():.3f}")
    print(f"random roll-in, guide roll-out (AggreVaTeD-style): {guide_returns.mean():.3f}")
    task = envs.unwrapped.task
    for s in mid[:3]:
        prompt, guided = task.decode([s.prompt_ids, s.generated_ids])
        print(f"  prompt {prompt!r:10} guide rolled in {len(s.generated_ids)} tokens: {guided!r}")


def main_job(iterations: int = 50) -> None:
    """D2LOLS on Twist-v0 with an ε=0.3 scripted guide, then π alone on the test split."""
    torch.set_num_threads(1)  # a tiny LM: one thread is faster on 2 cores
    env_id = "textgen_env/Twist-v0"
    print(f"\n== D2LOLS on {env_id} (tiny LM, ε=0.3 scripted guide) ==")
    print("   words after the pivot 'but quite' score 4x; plain praise is a local optimum")
    values = preset_values("cpu-small", "d2lols") | {"total_iterations": iterations}
    cfg = ALGORITHMS["d2lols"].config(
        **values, env_id=env_id, guide_epsilon=0.3, output_dir="runs/demo-d2lols-Twist-v0"
    )
    # the task's guide: the ε-noisy scripted expert; the demo replaces its previous demo run
    out = run(cfg, "d2lols", overwrite=True)
    result = evaluate(str(out), split="test", batch_size=48)

    envs = gym.make_vec(env_id, num_envs=48, vectorization_mode="vector_entry_point", split="test")
    task = envs.unwrapped.task
    starts = [task.initial_state(i) for i in range(task.num_prompts)]
    returns = {
        name: roll_out(envs, ScriptedGuide(twist_expert, vocab_size=task.vocab_size, epsilon=eps),
                       starts, np.random.default_rng(0))[1].mean()
        for name, eps in (("random policy", 1.0), ("scripted guide ε=0.3", 0.3))
    }  # fmt: skip
    praise = task.reward_fn([""], ["wonderful brilliant great moving funny good"], [()])[0]
    trained = result["metrics"]["task_reward"]
    print(f"test return, π alone after {iterations} iterations: {trained:.3f}")
    print("  " + " · ".join(f"{k} {v:.3f}" for k, v in returns.items())
          + f" · plain praise {praise:.3f} · optimum 1.000")  # fmt: skip
    for s in result["samples"][:3]:
        print(f"  {s['prompt']!r} ▸ {s['generation']!r}")
    print(f"checkpoints and TensorBoard logs: {out}  (tensorboard --logdir {out}/tb)")


def main() -> None:
    """``make demo-toy``: the env tour, then D2LOLS on Twist-v0."""
    env_tour()
    main_job()


if __name__ == "__main__":
    main()
