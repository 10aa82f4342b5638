"""TRL's PPO on the job of ``benchmarks/perf.py``, for the side-by-side row (issue #9).

Runs in its own virtual environment (``make trl-venv``: ``trl==1.12.0``, the last release
with ``trl.experimental.ppo``, and this project's ``torch==2.13.0``); it does not import this
project. The job: SmolLM2-135M-Instruct in fp32 (the folder this project converts it to), 16
IMDB review openings of at most 64 tokens, 48 new tokens (TRL always generates all 48), one
PPO epoch over one minibatch of 16. TRL needs four models: policy, reference, value model and
reward model (here SmolLM2 with a one-output score head; its reward is not VADER, which does
not change the cost of an iteration). TRL's defaults are kept, activation checkpointing
included (``--no-gradient-checkpointing`` turns it off). Prints one JSON line: seconds per
iteration (the first is warm-up) and the process's peak RSS.

    .venv-trl/bin/python benchmarks/trl_ppo.py --model DIR --prompts FILE --iterations 4
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
)
from trl.experimental.ppo import PPOConfig, PPOTrainer


class StepTimes(TrainerCallback):
    """Wall-clock time at the end of every PPO step."""

    def __init__(self) -> None:
        self.stamps = [time.perf_counter()]

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.stamps.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="SmolLM2 folder (Hugging Face layout)")
    parser.add_argument("--prompts", required=True, help="JSONL with a 'text' field per line")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--no-gradient-checkpointing", action="store_true",
        help="turn off TRL's default activation checkpointing",
    )  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with open(args.prompts) as fh:
        texts = [json.loads(line)["text"] for line in fh][: args.batch]
    ids = [tok(t, add_special_tokens=False)["input_ids"][-64:] for t in texts]  # ≤ 64 tokens
    dataset = Dataset.from_dict({"input_ids": ids})
    fp32 = {"dtype": torch.float32}
    policy = AutoModelForCausalLM.from_pretrained(args.model, **fp32)
    ref = AutoModelForCausalLM.from_pretrained(args.model, **fp32)
    value = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, **fp32)
    reward = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, **fp32)
    for m in (value, reward):
        m.config.pad_token_id = tok.pad_token_id
    with tempfile.TemporaryDirectory() as out:
        config = PPOConfig(
            output_dir=out, report_to=[], save_strategy="no", learning_rate=1e-5,
            per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
            num_mini_batches=1, num_ppo_epochs=1, total_episodes=args.batch * args.iterations,
            response_length=48, local_rollout_forward_batch_size=args.batch,
            num_sample_generations=0, temperature=1.0, kl_coef=0.05, use_cpu=True,
            dataset_num_proc=None, disable_tqdm=True, seed=0,
            gradient_checkpointing=not args.no_gradient_checkpointing,
        )  # fmt: skip
        times = StepTimes()
        trainer = PPOTrainer(
            args=config, processing_class=tok, model=policy, ref_model=ref,
            reward_model=reward, value_model=value, train_dataset=dataset, callbacks=[times],
        )  # fmt: skip
        times.stamps = [time.perf_counter()]
        trainer.train()
    seconds = [b - a for a, b in zip(times.stamps, times.stamps[1:], strict=False)]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds_per_iteration": seconds, "peak_rss_bytes": peak_kib * 1024}))


if __name__ == "__main__":
    main()
