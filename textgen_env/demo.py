"""A short, visible tour of textgen_env on the Reverse toy task (``make demo``).

Shows the token MDP, restart-to-state, and the guide oracles: a scripted guide of tunable
quality rolls in (produces start states for the learner) and rolls out (completes partial
generations so their value can be estimated).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import textgen_env  # noqa: F401  (registers ids)
from textgen_env.guides import ScriptedGuide
from textgen_env.oracles import roll_in, roll_out, sample_switch_points
from textgen_env.tasks.toy import reverse_expert


class RandomGuide:
    """The untrained learner's stand-in: uniform over the vocabulary (pad excluded)."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def act(self, states, num_tokens, rng):
        out = []
        for k in num_tokens:
            seq: list[int] = []
            while len(seq) < k and (not seq or seq[-1] != 1):
                seq.append(int(rng.integers(1, self.vocab_size)))
            out.append(tuple(seq))
        return out


def main() -> None:
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
    learner = RandomGuide(vocab)
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


if __name__ == "__main__":
    main()
