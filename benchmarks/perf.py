"""Performance report (issue #9): ``python -m benchmarks.perf [--device cpu|cuda]``.

Writes ``benchmarks/results/perf.md`` and ``perf.json`` with, measured in one run:

1. the machine: CPU, cores, torch threads, library versions, and what the hardware allows
   (fp32 and bf16 matmul throughput, memory bandwidth);
2. env-only steps/s at N = 64 (IMDB-shaped: 64 prompt + 48 new tokens, 49,152-token vocab);
3. roll-out through env + agent (:class:`agents.learner.LearnerPolicy` and
   :func:`textgen_env.oracles.roll_out`) vs ``model.generate``: SmolLM2, batch 16, 48 new
   tokens, top-k 50;
4. restart cost against the length L of the state restarted from (one token from each), beside
   the FLOPs of that state's prefill at the measured rate;
5. seconds per training iteration split into generation / reward / update, and peak RSS, of
   ``python -m agents.train`` on IMDB-v0 (batch 16, one epoch over one minibatch of 16):
   PPO, PPO++ and AggreVaTeD in fp32, PPO under bf16 autocast, with activation checkpointing
   and with LoRA;
6. TRL's PPO on the same job (``benchmarks/trl_ppo.py`` in ``.venv-trl``, ``make
   trl-venv``), with the two ratios; if TRL cannot run, the report says why;
7. where the time of the rows with a missed target goes: the operators with the most self time
   in one iteration, under torch's profiler (:mod:`benchmarks.op_profile`).

Each row states the hardware bound beside it: the FLOPs of the passes at the measured matmul
throughput (the LM head counted only at the columns whose logits a pass computes), or the bytes
of weights read per decoding step at the measured bandwidth. The report
ends with :data:`HISTORY`, what each optimization saved when it landed. ``--render-only``
rewrites ``perf.md`` from ``perf.json`` without measuring; ``--profile-only`` measures only
item 7 into the existing ``perf.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import textgen_env
from agents.learner import LearnerPolicy
from benchmarks.hardware import cpu_model
from benchmarks.op_profile import iteration_profile, profile_markdown
from textgen_env import Prompt, TextGenVectorEnv
from textgen_env.generation import first_attended_column
from textgen_env.models import default_model_dir, load_causal_lm, load_tokenizer
from textgen_env.oracles import roll_out

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"
DATA = Path(textgen_env.__file__).parent / "data" / "imdb" / "test.jsonl"
TRL_PYTHON = ROOT / ".venv-trl" / "bin" / "python"
BATCH, NEW, PROMPT = 16, 48, 64

# The optimizations of issue #9 and what each saved, as measured when it landed (commit, the
# benchmark that measured it). Iteration figures are comparable within a row only: the VM's
# speed varies from day to day.
HISTORY: list[tuple[str, str]] = [
    (
        "first report (1ce607c)",
        "PPO 17.60 s vs TRL 22.46 s (0.78×), 7.10 vs 11.09 GiB (0.64×)",
    ),
    (
        "entropy in the graph only when ent_coef > 0, logits divided by the temperature only "
        "when it is not 1 (d36d6e6)",
        "PPO 17.60 → 17.06 s (ace60e2, perf)",
    ),
    (
        "π's scoring pass reused by the update with one epoch over one minibatch (986b3e3)",
        "one LM forward fewer per iteration (not measured alone; in the rows of 7e8d4fb)",
    ),
    (
        "activation checkpointing as an option (cc96cf8)",
        "peak RSS 7.08 → 4.96 GiB, +0.2 s per iteration (ace60e2, perf)",
    ),
    (
        "glibc mmap threshold lowered (tried, reverted in 419e0b9)",
        "peak RSS 7.08 → 6.18 GiB but "
        "17.06 → 22.66 s per iteration (page faults on every large allocation)",
    ),
    (
        "top-k sampling among the k best only (7f5b1d1)",
        "sample_next 121 → 15 ms per step, 16 rows; roll-out / generate 1.08 → 0.87 (7e8d4fb)",
    ),
    (
        "token log-prob and entropy through their own chunked autograd functions (d6012d5), "
        "value head from the LM head's input (1051d1c), scoring pass in its own row order, "
        "π_ref's logits and gradients freed early (1cf4aad)",
        "PPO peak RSS 0.64× → 0.56× TRL's, with activation "
        "checkpointing 0.45× → 0.38× (ace60e2 vs 7e8d4fb)",
    ),
    ("fused AdamW (bfebf29)", "optimizer step 0.30 → 0.06 s for SmolLM2's parameters"),
    (
        "sampling loops under no_grad, not inference_mode, so that autocast keeps π's bf16 "
        "weight copies for a whole roll-out (0bd4ecb); top-k of tied bf16 logits drawn among "
        "the 2k best, not over the vocabulary (4db6186)",
        "LM head, 16 rows: 65 → 17 ms per decoding step under autocast; bf16 generation / fp32 "
        "generation in one run 1.47 (7e8d4fb: 9.80 vs 6.68 s) → 0.80 (c619f91: 7.33 vs 9.14 s); "
        "bf16 iteration / TRL's 0.67× → 0.48×",
    ),
    (
        "fp32 decoding on CPU with oneDNN-prepacked linear weights, packed once per roll-out "
        "(a6fab9b)",
        "on an AMD EPYC (2 cores; the rows above ran on an Intel Xeon), SmolLM2, 16 rows: all "
        "linear weights × 16 rows 79 → 39 ms; a decoding step 108-114 → 68-70 ms; sample() of "
        "48 tokens 6.5-8.2 → 5.1 s, the same 768 tokens; the PPO row's generation 6.17, 7.02 → "
        "4.09, 4.32 s per iteration (two runs each, alternating), peak RSS 6.24-6.29 → 6.24-6.33 "
        "GiB; TRL not re-run (the iteration rows above predate it)",
    ),
    (
        "training and scoring passes skip the prompt columns that are padding in every row of "
        "the batch (e3a0111; the sampler already did)",
        "not measured alone: the update's and π_ref's passes compute 87.2 of the 112 columns on "
        "average (-22% of their FLOPs); with it, on the AMD EPYC, in one run with TRL (e00fb55): "
        "PPO fp32 17.17 s vs TRL 38.96 s (0.44×), peak RSS 5.71 vs 10.72 GiB (0.53×); "
        "activation checkpointing 20.37 s (0.52×), 4.06 GiB (0.38×); bf16 10.53 s (0.27×)",
    ),
    (
        "under bf16 autocast, decoding packs a bf16 copy of each linear weight for oneDNN "
        "(7dce5d7; the same logits and tokens as autocast's own casts)",
        "the bf16 PPO row alternating with TEXTGEN_ENV_PREPACK=0, two runs each on the AMD "
        "EPYC: generation 4.41, 5.00 → 3.16, 4.48 s; iteration 10.99, 13.09 → 9.45, 11.06 s. "
        "In the report run after it (7dce5d7) the bf16 row took 11.66 s (0.28×), its generation "
        "4.47 s: this VM's speed moves by more than the change between runs",
    ),
]


def machine(device: str) -> dict:
    """CPU/GPU, versions, matmul GFLOPS (fp32, bf16) and memory bandwidth (GB/s)."""
    cpu = cpu_model()
    flops = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(2048, 2048, device=device, dtype=dtype)
        times = []
        for _ in range(6):
            t0 = time.perf_counter()
            a @ a
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        flops[str(dtype).split(".")[1]] = 2 * 2048**3 / statistics.median(times[1:]) / 1e9
    src = torch.ones(64 * 2**20, device=device)  # 256 MB, touched once before timing
    dst = torch.zeros_like(src)
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        dst.copy_(src)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    bandwidth = 2 * src.numel() * 4 / statistics.median(times[1:]) / 1e9  # read + write
    return {
        "device": device, "cpu": cpu, "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "matmul_gflops": flops, "memory_gb_per_s": bandwidth,
    }  # fmt: skip


def env_only() -> float:
    """Env steps/s at N = 64 with an IMDB-shaped task (benchmarks/env_throughput.py)."""
    from benchmarks.env_throughput import env_only as steps_per_s
    from benchmarks.env_throughput import imdb_shaped_envs

    return steps_per_s(imdb_shaped_envs(64), steps=2000)


def imdb_envs(tok, n: int, new_tokens: int = NEW) -> TextGenVectorEnv:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()][:n]
    return TextGenVectorEnv(
        n, tok, [Prompt(r["text"]) for r in rows], lambda p, c, r: [0.0] * len(c),
        max_new_tokens=new_tokens, max_prompt_tokens=PROMPT, prompt_truncation="left",
    )  # fmt: skip


def rollout_vs_generate(
    model, tok, device: str, repeats: int = 3, batch: int = BATCH, new_tokens: int = NEW
) -> dict:
    """Env + agent roll-out vs ``model.generate``: same prompts and lengths, top-k 50."""
    envs = imdb_envs(tok, batch, new_tokens)
    states = [envs.task.initial_state(i) for i in range(batch)]
    learner = LearnerPolicy(model, eos_token_id=tok.eos_token_id, vocab_limit=len(tok),
                            top_k=50, temperature=1.0)  # fmt: skip
    width = max(len(s.prompt_ids) for s in states)
    ids = torch.full((batch, width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for i, s in enumerate(states):
        ids[i, width - len(s.prompt_ids) :] = torch.tensor(s.prompt_ids)
        mask[i, width - len(s.prompt_ids) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    ours, theirs, tok_ours, tok_theirs = [], [], [], []
    for r in range(repeats + 1):  # the first round warms up
        envs.reset(seed=r)
        t0 = time.perf_counter()
        final, _ = roll_out(envs, learner, states, np.random.default_rng(r))
        t1 = time.perf_counter()
        torch.manual_seed(r)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=50,
                                 max_new_tokens=new_tokens, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)  # fmt: skip
        t2 = time.perf_counter()
        if r:
            ours.append(t1 - t0)
            theirs.append(t2 - t1)
            tok_ours.append(sum(len(s.generated_ids) for s in final))
            tok_theirs.append(int((out[:, width:] != tok.pad_token_id).sum()))
    per_token = [
        (o / a) / (t / b) for o, t, a, b in zip(ours, theirs, tok_ours, tok_theirs, strict=True)
    ]
    return {
        "env_rollout_seconds": ours, "generate_seconds": theirs,
        "env_tokens": tok_ours, "generate_tokens": tok_theirs,
        "time_ratio_median": statistics.median(o / t for o, t in zip(ours, theirs, strict=True)),
        "per_token_ratio_median": statistics.median(per_token),
    }  # fmt: skip


def restart_cost(model, tok, lengths=(0, 8, 16, 32, 47)) -> list[dict]:
    """Seconds to restart 16 episodes at states of L generated tokens and sample one token
    (one prefill of P' + L tokens each, P' the longest of the 16 prompts)."""
    envs = imdb_envs(tok, BATCH)
    starts = [envs.task.initial_state(i) for i in range(BATCH)]
    width = restart_prompt_width(envs)
    filler = tok.encode(" and the film was", add_special_tokens=False)
    learner = LearnerPolicy(model, eos_token_id=tok.eos_token_id, vocab_limit=len(tok),
                            top_k=50, temperature=1.0)  # fmt: skip
    rows = []
    for length in lengths:
        gen = tuple((filler * 20)[:length])
        states = [s.__class__(s.task_id, s.prompt_index, s.prompt_ids, gen, s.references)
                  for s in starts]  # fmt: skip
        times = []
        for r in range(4):
            envs.reset(seed=r)
            t0 = time.perf_counter()
            learner.act(states, [1] * BATCH, np.random.default_rng(r))
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "generated_tokens": length,
                "prompt_width": width,
                "seconds": statistics.median(times[1:]),
            }
        )
    return rows


def restart_prompt_width(envs: TextGenVectorEnv) -> int:
    """P' of the restart rows: the longest prompt of their 16 states (the sampler drops the
    columns before it, padding in every row)."""
    return max(len(envs.task.initial_state(i).prompt_ids) for i in range(BATCH))


def train_iteration(flags: list[str], iterations: int = 4) -> dict:
    """Median seconds per ``agents.train`` iteration (warm-up dropped), split, + peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "import atexit, resource, runpy, sys\n"
            "atexit.register(lambda: print('PEAK_RSS_KB', resource.getrusage("
            "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
            "sys.argv = ['agents.train'] + sys.argv[1:]\n"
            "runpy.run_module('agents.train', run_name='__main__')\n"
        )
        cmd = [sys.executable, "-c", code, *flags, "--total-iterations", str(iterations),
               "--checkpoint-every", "1000", "--output-dir", f"{tmp}/run"]  # fmt: skip
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            return {"error": done.stderr.strip().splitlines()[-1]}
        peak = next(int(line.split()[1]) for line in done.stderr.splitlines()
                    if line.startswith("PEAK_RSS_KB"))  # fmt: skip
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(f"{tmp}/run/tb", size_guidance={"scalars": 0})
        acc.Reload()
        parts = {p: [e.value for e in acc.Scalars(f"time/{p}")][1:]
                 for p in ("generation", "reward", "update")}  # fmt: skip
    total = [sum(v) for v in zip(*parts.values(), strict=True)]
    return {
        "seconds": statistics.median(total),
        **{p: statistics.median(v) for p, v in parts.items()},
        "peak_rss_bytes": peak * 1024,
    }


def trl_iteration(iterations: int = 4, checkpointing: bool = True) -> dict:
    """TRL's PPO on the same job, in its own venv (benchmarks/trl_ppo.py); TRL's defaults
    include activation checkpointing."""
    if not TRL_PYTHON.exists():
        return {"error": f"{TRL_PYTHON} does not exist: build it with `make trl-venv`"}
    script = ROOT / "benchmarks" / "trl_ppo.py"
    cmd = [str(TRL_PYTHON), str(script), "--model", str(default_model_dir()),
           "--prompts", str(DATA), "--iterations", str(iterations)]  # fmt: skip
    cmd += [] if checkpointing else ["--no-gradient-checkpointing"]
    done = subprocess.run(cmd, cwd="/tmp", capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1][:300]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = result["seconds_per_iteration"]
    return {"seconds": statistics.median(seconds[1:]), "all": seconds,
            "peak_rss_bytes": result["peak_rss_bytes"]}  # fmt: skip


def matmul_params(model: torch.nn.Module) -> dict[str, int]:
    """The weights a pass multiplies by, the LM head apart: ``body`` (every weight matrix but
    the input embedding, a lookup, and the LM head), ``head`` (the LM head's, multiplied only
    at the columns whose logits are computed) and ``total`` (every parameter once: the bytes a
    decoding step reads)."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    skip = {id(embedding), id(head)}
    body = sum(p.numel() for p in model.parameters() if p.dim() >= 2 and id(p) not in skip)
    total = sum(p.numel() for p in model.parameters())
    return {"body": body, "head": head.numel(), "total": total}


def forward_flops(params: dict[str, int], rows: int, tokens: float, logits: int) -> float:
    """FLOPs of one forward over ``rows`` sequences of ``tokens`` positions with logits at
    ``logits`` columns of each (2 per multiply-add; attention's own products left out: at
    these lengths they are under 2% of the weights')."""
    return 2 * rows * (params["body"] * tokens + params["head"] * logits)


def update_width(draws: int = 200) -> float:
    """Mean columns a training pass of the job computes: the env's P + G = 112 less the prompt
    columns that are padding in all 16 rows (dropped before the forward, issue #9), over
    ``draws`` batches of IMDB-v0's train split (resets with seeds 0 .. draws-1). TRL pads each
    batch to its longest prompt too: the same width."""
    envs = gym.make_vec(
        "textgen_env/IMDB-v0", num_envs=BATCH, vectorization_mode="vector_entry_point"
    )
    widths = []
    for seed in range(draws):
        obs, _ = envs.reset(seed=seed)
        prompt_mask = torch.as_tensor(obs["attention_mask"][:, :PROMPT])  # (16, P)
        widths.append(PROMPT + NEW - first_attended_column(prompt_mask))
    envs.close()
    return float(np.mean(widths))


def bounds(hw: dict, params: dict[str, int], width: float = PROMPT + NEW) -> dict:
    """Hardware lower bounds of the job at the measured throughput and bandwidth: the FLOPs a
    pass over ``width`` columns needs (logits at the generated columns only, as the update
    computes them) at the matmul rate. Generation is bound by the larger of the weights'
    bytes read once per decoding step at the memory bandwidth and its FLOPs (the prompt's
    prefill and 48 steps of 16 rows: those of one forward over the same columns) at the
    matmul rate."""
    fp32, bf16 = hw["matmul_gflops"]["float32"] * 1e9, hw["matmul_gflops"]["bfloat16"] * 1e9
    forward = forward_flops(params, BATCH, width, NEW)
    update = 3 * forward  # forward + backward of π on the batch
    reference = forward  # no-grad forward of π_ref (π's scoring pass is reused)
    decode_bytes = 4 * params["total"] * NEW  # fp32 weights read once per decoding step
    bandwidth = hw["memory_gb_per_s"] * 1e9
    return {
        "update_seconds_fp32": update / fp32,
        "update_seconds_bf16": update / bf16,
        "reference_seconds_fp32": reference / fp32,
        "reference_seconds_bf16": reference / bf16,
        "generation_bytes_seconds_fp32": decode_bytes / bandwidth,
        "generation_flops_seconds_fp32": forward / fp32,
        "generation_seconds_fp32": max(decode_bytes / bandwidth, forward / fp32),
        # bf16 weight copies: half the bytes
        "generation_seconds_bf16": max(decode_bytes / 2 / bandwidth, forward / bf16),
    }


def restart_bound(hw: dict, params: dict[str, int], prompt: int, generated: int) -> float:
    """Seconds of the prefill a restart at a state of ``generated`` tokens needs (16 rows,
    ``prompt`` + L positions, logits at the last), at the measured fp32 matmul rate."""
    flops = forward_flops(params, BATCH, prompt + generated, 1)
    return flops / (hw["matmul_gflops"]["float32"] * 1e9)


def iteration_floor(b: dict, precision: str) -> float | None:
    """A PPO iteration's lower bound in ``precision`` ("fp32", "bf16"): π's forward and
    backward, π_ref's forward and the decoding, each at the machine's measured rate, nothing
    else (None for a report written before the bf16 bounds were)."""
    keys = [f"{part}_seconds_{precision}" for part in ("update", "reference", "generation")]
    return sum(b[k] for k in keys) if all(k in b for k in keys) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=4, help="per training row")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite perf.md from perf.json; measure nothing"
    )
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="measure only the operator profiles, into the existing perf.json",
    )
    args = parser.parse_args()
    job = ["--env-id", "textgen_env/IMDB-v0", "--batch-size", str(BATCH), "--minibatch-size",
           str(BATCH), "--update-epochs", "1", "--device", args.device]  # fmt: skip
    rows = {
        "ppo fp32": ["--algo", "ppo", *job],
        "ppo_pp fp32 (β 0.5)": ["--algo", "ppo_pp", "--beta", "0.5", *job],
        "aggrevated fp32 (β 0.5)": ["--algo", "aggrevated", "--beta", "0.5", *job],
        "ppo bf16 autocast": ["--algo", "ppo", "--bf16", *job],
        "ppo activation checkpointing": ["--algo", "ppo", "--activation-checkpointing", *job],
        "ppo LoRA r=8": ["--algo", "ppo", "--lora-rank", "8", *job],
    }
    if args.profile_only:
        report = json.loads((OUT / "perf.json").read_text())
        report["profile"] = profiles(rows)
        (OUT / "perf.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.render_only or args.profile_only:  # perf.md from perf.json
        report = json.loads((OUT / "perf.json").read_text())
        if "params" not in report:  # a report from before the bounds counted the LM head apart
            report["params"] = matmul_params(load_causal_lm()[0])
        width = report.get("update_width", PROMPT + NEW)  # 112: before padding was dropped
        if "prompt_width" not in report["restart_cost"][0]:  # a report from before it was kept
            prompt = restart_prompt_width(imdb_envs(load_tokenizer(), BATCH))
            for row in report["restart_cost"]:
                row["prompt_width"] = prompt
        report["bounds"] = bounds(report["machine"], report["params"], width)
        (OUT / "perf.md").write_text(markdown(report) + "\n")
        return
    hw = machine(args.device)
    print(json.dumps(hw, indent=1))
    report: dict = {"machine": hw, "env_steps_per_s": env_only()}
    model, tok = load_causal_lm(device=args.device)
    model.eval()
    report["params"] = matmul_params(model)
    report["update_width"] = update_width()
    report["bounds"] = bounds(hw, report["params"], report["update_width"])
    report["rollout_vs_generate"] = rollout_vs_generate(model, tok, args.device)
    report["restart_cost"] = restart_cost(model, tok)
    del model
    report["iterations"] = {}
    for name, flags in rows.items():
        report["iterations"][name] = train_iteration(flags, args.iterations)
        print(name, report["iterations"][name])
    if not args.skip_trl:
        report["trl_ppo"] = trl_iteration(args.iterations)
        print("trl", report["trl_ppo"])
        report["trl_ppo_no_checkpointing"] = trl_iteration(args.iterations, checkpointing=False)
        print("trl, no activation checkpointing", report["trl_ppo_no_checkpointing"])
    report["profile"] = profiles(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "perf.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "perf.md").write_text(markdown(report) + "\n")
    print(f"wrote {OUT / 'perf.md'}")


# The rows whose iteration time perf.md breaks down by operator: PPO's fp32 row and the bf16
# row, whose target (≤ 0.25× TRL's fp32 iteration) is missed so far.
PROFILED = ("ppo fp32", "ppo bf16 autocast")


def profiles(rows: dict[str, list[str]]) -> dict[str, dict]:
    """Operator profiles of the :data:`PROFILED` rows
    (:func:`~benchmarks.op_profile.iteration_profile`)."""
    out = {}
    for name in PROFILED:
        out[name] = iteration_profile(rows[name])
        print("profile", name, out[name].get("error", "done"))
    return out


def _floors(b: dict, trl: dict | None) -> list[str]:
    """The sentence comparing each precision's iteration floor with its target (#9)."""
    floors = {p: iteration_floor(b, p) for p in ("fp32", "bf16")}
    if floors["fp32"] is None or floors["bf16"] is None:
        return []
    parts = [f"{floors[p]:.2f} s {p}" for p in ("fp32", "bf16")]
    if trl and "seconds" in trl:
        parts = [
            f"{part} = {floors[p] / trl['seconds']:.2f}× TRL's iteration (target ≤ {target})"
            for part, p, target in zip(parts, ("fp32", "bf16"), ("0.5", "0.25"), strict=True)
        ]
    return ["", "Floor of one iteration at these rates (the three bounds added, no other work): "
            + "; ".join(parts) + ". A target below its floor cannot be met on this machine "
            "without doing less work."]  # fmt: skip


def _generation_bound(b: dict) -> str:
    return (f"Bound: {b['generation_seconds_fp32']:.2f} s, the larger of the fp32 weights read "
            f"once per step at the measured bandwidth ({b['generation_bytes_seconds_fp32']:.2f} "
            f"s) and the FLOPs of the prefill and the steps at the measured fp32 matmul rate "
            f"({b['generation_flops_seconds_fp32']:.2f} s).")  # fmt: skip


def _width_note(r: dict) -> str:
    if "update_width" not in r:  # a report from before the passes dropped padded columns
        return ""
    return (" on average: the 112 columns less those padded in every row, over 200 batches "
            "of the train split")  # fmt: skip


def _restart_row(hw: dict, params: dict[str, int], row: dict) -> str:
    bound = restart_bound(hw, params, row["prompt_width"], row["generated_tokens"])
    share = bound / row["seconds"]
    return f"| {row['generated_tokens']} | {row['seconds']:.3f} | {bound:.3f} | {share:.2f} |"


def markdown(r: dict) -> str:
    """The report as Markdown tables."""
    hw, b = r["machine"], r["bounds"]
    restart_prompt = r["restart_cost"][0]["prompt_width"]
    gib = 2**30
    lines = [
        "# Performance report (`python -m benchmarks.perf`)", "",
        f"Machine: {hw['cpu']} · {hw['cores']} cores · torch threads {hw['torch_threads']} · "
        f"torch {hw['torch']} · transformers {hw['transformers']} · device {hw['device']}"
        + (f" ({hw['gpu']})" if hw["gpu"] else ""), "",
        f"Hardware: matmul {hw['matmul_gflops']['float32']:.0f} GFLOPS fp32, "
        f"{hw['matmul_gflops']['bfloat16']:.0f} GFLOPS bf16; "
        f"memory {hw['memory_gb_per_s']:.1f} GB/s"
        + (f" ({hw['memory_note']})." if hw.get("memory_note") else "."),
        "", f"Env only, N = 64, IMDB-shaped: **{r['env_steps_per_s']:,.0f} steps/s**.", "",
    ]  # fmt: skip
    rg = r["rollout_vs_generate"]
    lines += [
        "## Roll-out through env + agent vs `model.generate` (batch 16, 48 tokens, top-k 50)", "",
        f"Time ratio (median of {len(rg['env_rollout_seconds'])}): "
        f"**{rg['time_ratio_median']:.2f}**; "
        f"per token {rg['per_token_ratio_median']:.2f}. Env roll-out "
        f"{statistics.median(rg['env_rollout_seconds']):.2f} s, generate "
        f"{statistics.median(rg['generate_seconds']):.2f} s. {_generation_bound(b)}", "",
        "## Restart cost (16 states, one sampled token each)", "",
        f"One prefill of the P' + L tokens of each state (P' = {restart_prompt}, "
        "the longest of the 16 prompts; the columns before it are padding in every row and "
        "are not computed), then one token. "
        "Bound: that prefill's FLOPs at the measured fp32 matmul rate (of a 2048² "
        "product; a ratio near 1: the restart runs at that rate).", "",
        "| generated tokens L | seconds | bound | bound / seconds |", "| --- | --- | --- | --- |",
        *[_restart_row(hw, r["params"], row) for row in r["restart_cost"]], "",
        "## Training iteration, IMDB-v0, batch 16, one epoch over one minibatch of 16", "",
        "| row | s/iteration | generation | reward | update | peak RSS | time, memory / TRL |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    trl, trl_nc = r.get("trl_ppo"), r.get("trl_ppo_no_checkpointing", {})
    for name, it in r["iterations"].items():
        if "error" in it:
            lines.append(f"| {name} | failed: {it['error']} | | | | | |")
            continue
        ratio = ""
        if trl and "error" not in trl:
            ratio = (
                f"{it['seconds'] / trl['seconds']:.2f}×, "
                f"{it['peak_rss_bytes'] / trl['peak_rss_bytes']:.2f}×"
            )
        lines.append(
            f"| {name} | {it['seconds']:.2f} | {it['generation']:.2f} | {it['reward']:.2f} | "
            f"{it['update']:.2f} | {it['peak_rss_bytes'] / gib:.2f} GiB | {ratio} |"
        )
    if "seconds" in trl_nc:
        lines.append(
            f"| TRL 1.12 PPO fp32, no activation checkpointing | {trl_nc['seconds']:.2f} | | | | "
            f"{trl_nc['peak_rss_bytes'] / gib:.2f} GiB | |"
        )
    if trl and "error" not in trl:
        ours = r["iterations"]["ppo fp32"]
        lines += [
            "| TRL 1.12 PPO fp32 (its defaults: activation checkpointing) | "
            f"{trl['seconds']:.2f} | | | | "
            f"{trl['peak_rss_bytes'] / gib:.2f} GiB | 1×, 1× |",
            "", f"Ratios, ours / TRL (fp32): time **{ours['seconds'] / trl['seconds']:.2f}×** "
            f"(target ≤ 0.5), peak RSS **{ours['peak_rss_bytes'] / trl['peak_rss_bytes']:.2f}×** "
            "(target ≤ 0.4).",
        ]  # fmt: skip
        bf = r["iterations"].get("ppo bf16 autocast", {})
        if "seconds" in bf:
            lines.append(
                f"bf16 autocast / TRL fp32: **{bf['seconds'] / trl['seconds']:.2f}×** "
                "(target ≤ 0.25)."
            )
    elif trl:
        lines += ["", f"TRL row: not measured ({trl['error']})."]
    lines += [
        "", "Bounds at the measured throughput: update (forward + backward of π on 16 × "
        f"{r.get('update_width', PROMPT + NEW):.1f} tokens{_width_note(r)}, logits at the 48 "
        f"generated columns) {b['update_seconds_fp32']:.2f} s fp32 / "
        f"{b['update_seconds_bf16']:.2f} s bf16; "
        f"π_ref's no-grad forward {b['reference_seconds_fp32']:.2f} s fp32; generation "
        f"{b['generation_seconds_fp32']:.2f} s fp32.",
        *_floors(b, trl),
        *(["", *profile_markdown(r["profile"])] if r.get("profile") else []),
        "", "## History: what each change saved (issue #9; figures from the run named)", "",
        "| change | measured |", "| --- | --- |",
        *[f"| {change} | {saved} |" for change, saved in HISTORY],
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
