"""Env step throughput (N=64) and the env's share of a rollout with a tiny model.

Measures, for the vector env:
1. env-only steps/s on the Reverse toy task and on an IMDB-shaped task (64 prompt tokens,
   48 new tokens, a 49,152-token vocabulary like SmolLM2's, a cheap length reward so the
   figure is the env's own overhead);
2. the share of a rollout's wall time spent inside the env (step + reward) when a tiny random
   GPT-2 samples the actions with a KV cache, on the IMDB-shaped task.

Prints a table and writes ``benchmarks/results/env_throughput.json``. Medians over repeats.
Run: ``.venv/bin/python benchmarks/env_throughput.py``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import textgen_env  # noqa: F401  (registers ids)
from textgen_env import Prompt, TextGenVectorEnv, ToyTokenizer
from textgen_env.vector import NO_TOKEN

N = 64
REPEATS = 5
OUT = Path(__file__).parent / "results" / "env_throughput.json"


def length_reward(prompts, completions, references):
    return [len(c) / 100.0 for c in completions]


def imdb_shaped_envs(num_envs: int) -> TextGenVectorEnv:
    vocab = tuple(f"w{i}" for i in range(49_150))  # + <pad>, <eos> = 49,152 tokens
    tok = ToyTokenizer(vocab, separator=" ")
    rng = np.random.default_rng(0)
    prompts = [
        Prompt(" ".join(f"w{i}" for i in rng.integers(2, 49_150, size=int(rng.integers(20, 64)))))
        for _ in range(300)
    ]
    return TextGenVectorEnv(
        num_envs, tok, prompts, length_reward, max_new_tokens=48, max_prompt_tokens=64
    )


def env_only(envs, steps: int) -> float:
    """Steps/s (one step = one token for all N envs counts N env-steps)."""
    rng = np.random.default_rng(0)
    vocab = envs.single_action_space.n
    actions = rng.integers(2, vocab, size=(steps, envs.num_envs))  # no EOS: full episodes
    envs.reset(seed=0)
    t0 = time.perf_counter()
    for a in actions:
        envs.step(a)
    return steps * envs.num_envs / (time.perf_counter() - t0)


def rollout_share(envs: TextGenVectorEnv, model: GPT2LMHeadModel, episodes: int) -> dict:
    """Sample full episodes with a KV-cached tiny model, stepping the env per token."""
    g = torch.Generator().manual_seed(0)
    t_env = t_model = 0.0
    n_tokens = 0
    for _ in range(episodes):
        t0 = time.perf_counter()
        obs, _ = envs.reset(seed=0)
        t_env += time.perf_counter() - t0
        P = envs.task.max_prompt_tokens
        ids = torch.from_numpy(obs["input_ids"][:, :P])  # (N, P) left-padded prompts
        mask = torch.from_numpy(obs["attention_mask"][:, :P])  # (N, P)
        past = None
        done = np.zeros(envs.num_envs, dtype=bool)
        with torch.inference_mode():
            while not done.all():
                t0 = time.perf_counter()
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                step_pos = pos if past is None else pos[:, -1:]
                out = model(
                    input_ids=ids, attention_mask=mask, position_ids=step_pos,
                    past_key_values=past, use_cache=True,
                )  # fmt: skip
                past = out.past_key_values
                logits = out.logits[:, -1, :]  # (N, V)
                top = torch.topk(logits, 50)
                pick = torch.multinomial(torch.softmax(top.values, -1), 1, generator=g)
                action = top.indices.gather(1, pick).squeeze(1).numpy()  # (N,)
                t1 = time.perf_counter()
                tokens = np.where(done, NO_TOKEN, action)[:, None]
                envs.advance(tokens)
                done = envs.done
                t2 = time.perf_counter()
                t_model += t1 - t0
                t_env += t2 - t1
                n_tokens += int((tokens != NO_TOKEN).sum())
                ids = torch.from_numpy(action[:, None])
                mask = torch.cat([mask, torch.ones(envs.num_envs, 1, dtype=mask.dtype)], 1)
    return {
        "env_seconds": t_env,
        "model_seconds": t_model,
        "env_share": t_env / (t_env + t_model),
        "tokens_per_second": n_tokens / (t_env + t_model),
    }


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    reverse = gym.make_vec(
        "textgen_env/Reverse-v0", num_envs=N, vectorization_mode="vector_entry_point"
    )
    imdb = imdb_shaped_envs(N)
    results: dict = {
        "num_envs": N,
        "repeats": REPEATS,
        "machine": platform.processor() or platform.machine(),
    }
    results["reverse_steps_per_s"] = statistics.median(
        env_only(reverse, 2000) for _ in range(REPEATS)
    )
    results["imdb_shaped_steps_per_s"] = statistics.median(
        env_only(imdb, 960) for _ in range(REPEATS)
    )

    cfg = GPT2Config(
        vocab_size=49_152,
        n_layer=2,
        n_embd=64,
        n_head=2,
        n_positions=128,
        bos_token_id=1,
        eos_token_id=1,
    )
    model = GPT2LMHeadModel(cfg).eval()
    runs = [rollout_share(imdb, model, episodes=2) for _ in range(REPEATS)]
    results["tiny_model_rollout"] = {
        "model": "GPT-2, 2 layers, d=64, vocab 49,152 (random)",
        "env_share_median": statistics.median(r["env_share"] for r in runs),
        "tokens_per_s_median": statistics.median(r["tokens_per_second"] for r in runs),
    }
    print(f"{'measure':<44}{'median':>14}")
    print(f"{'env-only steps/s, Reverse-v0, N=64':<44}{results['reverse_steps_per_s']:>14,.0f}")
    imdb_rate = results["imdb_shaped_steps_per_s"]
    print(f"{'env-only steps/s, IMDB-shaped (64+48), N=64':<44}{imdb_rate:>14,.0f}")
    r = results["tiny_model_rollout"]
    print(f"{'env share of tiny-model rollout':<44}{r['env_share_median']:>14.1%}")
    print(f"{'rollout tokens/s (tiny model + env)':<44}{r['tokens_per_s_median']:>14,.0f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
