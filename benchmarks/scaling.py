"""Data-parallel scaling on this machine's CPUs (issue #12): ``python benchmarks/scaling.py``.

For each task, the same training job (the config's global batch) runs in three layouts:

* **1 process × 2 threads**: ``python -m agents.train``'s loop in one process,
  ``OMP_NUM_THREADS=2``;
* **2 processes × 1 thread**: ``accelerate launch`` with ``configs/accelerate/cpu.yaml``, each
  process one thread and half of every batch, gradients averaged by DDP over gloo;
* **1 process × 1 thread**: the reference that shows what the second thread buys;
* **2 processes × 1 thread, ZeRO-2** and **ZeRO-3**: as the 2-process layout, under DeepSpeed
  ZeRO stage 2 or 3 (``configs/accelerate/zero2_cpu.yaml``, ``zero3_cpu.yaml``): what
  DeepSpeed's engine costs over DDP here, and what its partitions save in memory.

Every process records its peak resident memory (``ru_maxrss``); the report gives the largest
over a run's processes, which is what each machine must have per process.

Tasks: a toy task (PPO on Twist-v0, the tiny random LM, batch 64, 4 epochs over minibatches
of 16), IMDB-v0 (PPO with SmolLM2-135M, batch 8, one epoch over one minibatch of 8) and an
offline toy task (A-LoL seq on Reverse-v0's references, the tiny LM, 64 rows per gradient
step; an iteration is one step). Seconds per iteration are the gaps between the TensorBoard
events of consecutive iterations (the first iteration, a warm-up, has no gap; A-LoL's set-up,
V_ref's samples and fit, comes before it), with the ``time/`` split the run logged
(generation, reward, update; in the 2-process run the mean over the processes; A-LoL logs
the update only). ``--task`` picks tasks, ``--layout`` layouts; ``--output`` another results
file (e.g. to time the offline task alone without replacing the committed figures).

Communication share: before training, the 2 processes time the collectives one iteration
makes, alone: one all-reduce of every trainable parameter's gradient per gradient step (what
DDP sends, here as one flat tensor instead of 25 MB buckets) and the small object
collectives (the plan's broadcast, the scalars' gather). Their sum over an iteration, divided
by the measured 2-process iteration, is the share. It is an estimate: inside the update the
all-reduce overlaps the backward pass of earlier layers, and it does not count the time one
process waits for a slower one.

Writes ``benchmarks/results/scaling.json`` and ``scaling.md``. On a machine shared with other
jobs the times are noisy; the report records the load average before and after, and says
the figures are noisy when it was above 1.5 (2 cores) before the runs.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CPU_CONFIG = REPO / "configs" / "accelerate" / "cpu.yaml"
ZERO2_CONFIG = REPO / "configs" / "accelerate" / "zero2_cpu.yaml"
ZERO3_CONFIG = REPO / "configs" / "accelerate" / "zero3_cpu.yaml"
PARTS = ("generation", "reward", "update")
# Layout -> (processes, torch threads per process, accelerate config of a launch).
LAYOUTS = {
    "1 process x 2 threads": (1, 2, None),
    "2 processes x 1 thread": (2, 1, CPU_CONFIG),
    "1 process x 1 thread": (1, 1, None),
    "2 processes x 1 thread, ZeRO-2": (2, 1, ZERO2_CONFIG),
    "2 processes x 1 thread, ZeRO-3": (2, 1, ZERO3_CONFIG),
}

# Task name -> (algo, config fields).
TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "toy (Twist-v0, tiny LM, batch 64)": ("ppo", dict(
        env_id="textgen_env/Twist-v0", batch_size=64, minibatch_size=16, update_epochs=4,
        learning_rate=1e-3, top_k=0, total_iterations=8,
    )),
    "IMDB-v0 (SmolLM2-135M, batch 8)": ("ppo", dict(
        env_id="textgen_env/IMDB-v0", batch_size=8, minibatch_size=8, update_epochs=1,
        total_iterations=4,
    )),
    "offline toy (A-LoL seq, Reverse-v0, 64 rows/step)": ("alol_seq", dict(
        env_id="textgen_env/Reverse-v0", batch_size=64, total_iterations=12,
        learning_rate=1e-3, value_samples=1, value_steps=50,
    )),
}  # fmt: skip


def gradient_steps(cfg: Any) -> int:
    """Gradient steps (one DDP all-reduce each) in one iteration of ``cfg``'s run."""
    from agents.ppo import PPOConfig

    if isinstance(cfg, PPOConfig):
        return cfg.update_epochs * (cfg.batch_size // cfg.minibatch_size)
    return 1  # A-LoL: an iteration is one step


def iteration_tag(algo: str) -> str:
    """A scalar the run logs once per iteration: its events' wall times time the loop."""
    from agents.algorithms import ALGORITHMS, OfflineAlgorithm

    return "losses/nll" if isinstance(ALGORITHMS[algo], OfflineAlgorithm) else "charts/task_reward"


# ----------------------------------------------------------------------------- worker


def time_collectives(cfg: Any) -> dict[str, float]:
    """In a 2-process launch, before training: the seconds of the collectives one iteration
    makes, each timed alone (median of 3 after a warm-up)."""
    import torch.distributed as dist
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object

    from agents.build import build_policy

    PartialState(cpu=True)  # the process group the run's Accelerator will use
    ac, _, _ = build_policy(cfg)
    numel = sum(p.numel() for p in ac.trainable_parameters())
    del ac
    gc.collect()
    grads = torch.zeros(numel)
    scalars = {f"charts/s{i}": float(i) for i in range(30)}

    def seconds(fn: Any) -> float:
        times = []
        for rep in range(4):
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            if rep:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    allreduce = seconds(lambda: dist.all_reduce(grads))
    objects = seconds(lambda: (broadcast_object_list([scalars]), gather_object([scalars])))
    steps = gradient_steps(cfg)
    return {
        "gradient_numel": numel,
        "allreduce_s": allreduce,
        "object_collectives_s": objects,
        "gradient_steps_per_iteration": steps,
        "per_iteration_s": steps * allreduce + objects,
    }


def worker(task: str, output: Path, out_dir: Path) -> None:
    """Train ``task`` (in this process, or as one process of a launch) and write its times."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from agents.algorithms import ALGORITHMS
    from agents.distributed import world_size
    from agents.trainer import run
    from agents.zero import uses_deepspeed

    algo, fields = TASKS[task]
    cfg = ALGORITHMS[algo].config(
        **fields, output_dir=str(out_dir), checkpoint_every=10_000, log_samples_every=0
    )
    # (DDP's collectives only: DeepSpeed's engine joins the processes its own way)
    comm = time_collectives(cfg) if world_size() > 1 and not uses_deepspeed() else None
    t0 = time.perf_counter()
    run(cfg, algo)
    wall = time.perf_counter() - t0
    rank = int(os.environ.get("RANK", "0"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux: KiB)
    output.with_name(f"rss-{rank}.json").write_text(json.dumps(peak))
    if rank != 0:
        return
    acc = EventAccumulator(str(out_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    stamps = [e.wall_time for e in acc.Scalars(iteration_tag(algo))]
    logged = acc.Tags()["scalars"]
    result = {
        "processes": world_size(),
        "torch_threads": torch.get_num_threads(),
        "iteration_s": [b - a for a, b in itertools.pairwise(stamps)],
        **{
            f"{p}_s": [e.value for e in acc.Scalars(f"time/{p}")][1:]
            for p in PARTS
            if f"time/{p}" in logged
        },
        "run_wall_s": wall,
        "communication": comm,
    }
    output.write_text(json.dumps(result))


# ----------------------------------------------------------------------------- driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(
    task: str, processes: int, threads: int, config: Path | None, tmp: Path
) -> dict[str, Any]:
    """One run of ``task`` with ``processes`` processes of ``threads`` torch threads each,
    launched with accelerate ``config`` when there are several."""
    output, out_dir = tmp / "result.json", tmp / "run"
    me = [str(Path(__file__).resolve()), "--worker", task, str(output), str(out_dir)]
    if processes == 1:
        cmd = [sys.executable, *me]
    else:
        launch = [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(config), "--num_processes", str(processes), "--main_process_port",
            str(free_port()),
        ]  # fmt: skip
        cmd = [*launch, *me]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env |= {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "0"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    peaks = [json.loads((tmp / f"rss-{r}.json").read_text()) for r in range(processes)]
    return json.loads(output.read_text()) | {
        "launch_wall_s": time.perf_counter() - t0,
        "peak_rss_bytes": peaks,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def part(r: dict[str, Any], name: str) -> str:
    """The median of a ``time/`` part, or "-" for one the run does not log."""
    return f"{median(r[f'{name}_s']):.3f}" if f"{name}_s" in r else "-"


def report(results: dict[str, Any]) -> str:
    lines = [
        "# Data-parallel scaling on this machine's CPUs (issue #12)",
        "",
        f"Written by `python benchmarks/scaling.py` on {results['date']}: {results['machine']}, "
        f"{results['cores']} cores, torch {results['torch']}. Load average "
        f"{results['load_before']} before and {results['load_after']} after"
        + (
            ": the machine was shared with other jobs, so every figure is noisy."
            if results["load_before"][0] > 1.5
            else " (nothing else ran)."
        )
        + " Medians over the iterations after the first (a warm-up).",
        "",
        "| task | layout | s/iteration | generation | reward | update | vs 1 process x 2 threads "
        "| peak RSS per process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, rows in results["tasks"].items():
        first = rows.get("1 process x 2 threads")
        base = median(first["iteration_s"]) if first else float("nan")
        for layout, r in rows.items():
            it = median(r["iteration_s"])
            parts = " | ".join(part(r, p) for p in PARTS)
            rss = f"{max(r['peak_rss_bytes']) / 2**30:.2f} GiB" if "peak_rss_bytes" in r else "-"
            ratio = f"{base / it:.2f}x" if first else "-"  # (that layout not run)
            lines.append(f"| {task} | {layout} | {it:.3f} | {parts} | {ratio} | {rss} |")
    lines += [
        "",
        "Communication in the 2-process runs (the collectives of one iteration, timed alone "
        "before training; gloo on one machine):",
        "",
        "| task | gradient floats | all-reduce | steps/iteration | object collectives | "
        "per iteration | share of the 2-process iteration |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, rows in results["tasks"].items():
        if "2 processes x 1 thread" not in rows:
            continue
        c = rows["2 processes x 1 thread"]["communication"]
        it = median(rows["2 processes x 1 thread"]["iteration_s"])
        lines.append(
            f"| {task} | {c['gradient_numel']:,} | {c['allreduce_s']:.4f} s | "
            f"{c['gradient_steps_per_iteration']} | {c['object_collectives_s']:.4f} s | "
            f"{c['per_iteration_s']:.3f} s | {c['per_iteration_s'] / it:.1%} |"
        )
    lines += [
        "",
        "s/iteration: the gap between consecutive iterations' TensorBoard events (the whole "
        "loop: plan, collect, score, update, reductions, logging; offline: one gradient step "
        "with its reductions and logging). generation / reward / "
        "update: the `time/` scalars (2 processes: the mean of the two). The time split in "
        "2 processes is per process: each does half the episodes with one thread. Peak RSS: "
        "the largest `ru_maxrss` of the run's processes (the whole process: π, π_ref, "
        "optimizer, activations, the allocator's cache, the libraries).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=3, metavar=("TASK", "OUTPUT", "RUN_DIR"))
    parser.add_argument("--task", action="append", choices=sorted(TASKS), help="default: all")
    parser.add_argument("--layout", action="append", choices=list(LAYOUTS), help="default: all")
    parser.add_argument("--output", type=Path, default=RESULTS / "scaling.json")
    args = parser.parse_args()
    if args.worker:
        task, output, out_dir = args.worker
        worker(task, Path(output), Path(out_dir))
        return
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()  # fmt: skip
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "tasks": {},
    }
    for task in args.task or list(TASKS):
        results["tasks"][task] = {}
        for layout in args.layout or list(LAYOUTS):
            processes, threads, config = LAYOUTS[layout]
            with tempfile.TemporaryDirectory() as tmp:
                print(f"{task}: {layout} ...", flush=True)
                results["tasks"][task][layout] = measure(
                    task, processes, threads, config, Path(tmp)
                )
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    args.output.with_suffix(".md").write_text(report(results))
    print(args.output.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
