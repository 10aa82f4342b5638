"""Training with several processes (issue #12): started here with ``accelerate launch`` and
configs/accelerate/cpu.yaml, 2 processes on CPUs (gloo), each launch bounded in time.

DDP's averaged gradient equals one process's on the same global batch; a 2-process run learns
and writes one set of logs and checkpoints; killed and resumed, it ends with the weights of the
uninterrupted run; another number of processes resumes it; a process that raises stops the
job with its error. Offline: A-LoL's 2-process gradient equals one process's on the same rows
(also split unevenly, or leaving a process without a row); a 2-process A-LoL run resumed by
one process draws the same rows; a 2-process ReST run writes one data file per Grow step (the
single process's) and one set of checkpoints, and killed and resumed, ends as the
uninterrupted run. Under DeepSpeed ZeRO-2 and ZeRO-3 (configs/accelerate/zero2_cpu.yaml,
zero3_cpu.yaml): steps on fixed batches equal one process's, a run learns and writes one run,
resumes to the uninterrupted run's weights, and one process without DeepSpeed continues it;
A-LoL and ReST-EM end as one process; ZeRO-3's zero3_init_flag is refused. Settings the
processes cannot share, and DeepSpeed set-ups the trainer does not run, are refused before
anything is written (no launch needed).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.alol import ALoLConfig
from agents.build import TOY_MODEL
from agents.checkpoint import load_checkpoint
from agents.distributed import Processes, split_fields
from agents.make_data import MakeDataConfig, make_data
from agents.policy import ActorCritic
from agents.ppo import PPOConfig
from agents.replicas import ReplicatedPolicy
from agents.rest import RestConfig
from agents.rundir import RunSetupError
from agents.trainer import run
from textgen_env.models import tiny_causal_lm

REPO = Path(__file__).resolve().parents[1]
CPU_CONFIG = REPO / "configs" / "accelerate" / "cpu.yaml"
ZERO2_CONFIG = REPO / "configs" / "accelerate" / "zero2_cpu.yaml"  # DeepSpeed ZeRO-2, gloo
ZERO3_CONFIG = REPO / "configs" / "accelerate" / "zero3_cpu.yaml"  # DeepSpeed ZeRO-3, gloo
ZERO_CONFIGS = {"zero2": ZERO2_CONFIG, "zero3": ZERO3_CONFIG}
LAUNCH_TIMEOUT_S = 300  # one launch: ~10-25 s on 2 busy cores

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available: no multi-process launch",
)

# PPO on Twist-v0 learns within a dozen iterations (reward ~0.03 -> ~0.2); 16 episodes each.
TRAIN = [
    "-m", "agents.train", "--algo", "ppo", "--env-id", "textgen_env/Twist-v0",
    "--total-iterations", "12", "--batch-size", "32", "--minibatch-size", "16",
    "--update-epochs", "4", "--learning-rate", "3e-3", "--top-k", "0", "--kl-coef", "0.01",
    "--adaptive-kl-target", "0.05", "--kl-horizon", "1000", "--checkpoint-every", "3",
    "--log-samples-every", "0",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(*args: str, config: Path = CPU_CONFIG) -> list[str]:
    """``accelerate launch`` of 2 processes (a shipped config: DDP on CPUs) running ``args``."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
        "--num_processes", "2", "--main_process_port", str(free_port()), *args,
    ]  # fmt: skip


def launch_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "PYTEST"))}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    # PYTHONFAULTHANDLER: a worker sent SIGABRT prints its Python stack (see kill_tree).
    return env | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}


def kill_tree(proc: subprocess.Popen[str], *, dump_stacks: bool = False) -> None:
    """SIGKILL a launch: the launcher and every process under it.

    torch's launcher starts each worker in a session of its own, so killing the launcher's
    process group would leave the workers running, still holding our end of the output pipe (a
    CI run once hung there for 90 minutes). With ``dump_stacks`` the workers first get SIGABRT,
    on which each prints its Python stack into the launch's output.
    """
    try:
        launcher = psutil.Process(proc.pid)
        tree = [launcher, *launcher.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    if dump_stacks:
        for worker in tree[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.send_signal(signal.SIGABRT)
        psutil.wait_procs(tree[1:], timeout=10)
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(tree, timeout=10)


def launch(
    *args: str, timeout: float = LAUNCH_TIMEOUT_S, config: Path = CPU_CONFIG
) -> subprocess.CompletedProcess[str]:
    """Run a 2-process launch to its end; on a timeout the launcher and its workers are killed."""
    proc = subprocess.Popen(
        launch_command(*args, config=config), cwd=REPO, env=launch_env(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc, dump_stacks=True)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out = "(no output: the pipe stayed open)"
        pytest.fail(f"the launch did not end within {timeout} s:\n{out[-12000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)


def rewards(run_dir: Path, tag: str = "charts/task_reward") -> list[float]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def killed_after(args: list[str], out: Path, checkpoint: str) -> None:
    """Start a 2-process launch of ``args`` and SIGKILL all of it once ``checkpoint`` exists."""
    proc = subprocess.Popen(
        launch_command(*args), cwd=REPO, env=launch_env(),
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    try:
        while not (out / "checkpoints" / checkpoint).exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.05)
    finally:
        kill_tree(proc)
        proc.wait()


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_checkpoint(a, trainer=False)[0], load_checkpoint(b, trainer=False)[0]
    return all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2-process PPO run of 12 iterations."""
    out = tmp_path_factory.mktemp("two") / "run"
    done = launch(*TRAIN, "--output-dir", str(out))
    assert done.returncode == 0, done.stdout[-3000:]
    return out


# ----------------------------------------------------------------------------- gradients


def test_ddp_gradient_equals_the_single_process_gradient(tmp_path: Path) -> None:
    """Each process takes half of a fixed batch through the DDP-wrapped π; the gradient DDP
    leaves in every process equals the one a single process computes on the whole batch."""
    result = tmp_path / "grad.json"
    done = launch(str(REPO / "tests" / "distributed_helper.py"), "grad", str(result))
    assert done.returncode == 0, done.stdout[-3000:]
    found = json.loads(result.read_text())
    assert found["world"] == 2
    assert found["largest"] > 1e-3  # a real gradient, not zeros
    assert max(found["max_diff"]) <= 1e-6 * max(1.0, found["largest"])
    # finish() released π's DDP wrapper before the process group ended, in both processes
    # (a wrapper that outlived the group deadlocked at exit: Processes.finish).
    for rank in (0, 1):
        after = json.loads((tmp_path / f"after-{rank}.json").read_text())
        assert after == {"ddp_alive": 0, "released": True}


# ----------------------------------------------------------------------------- a run


def test_two_processes_learn_and_write_one_run(two_process_run: Path) -> None:
    out = two_process_run
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1  # the main process logs
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "iter-000009", "iter-000012", "latest",
    ]  # fmt: skip
    _, state, config = load_checkpoint(out)
    assert config["batch_size"] == 32 and config["minibatch_size"] == 16  # the global batch
    # Every process's random streams are saved, and they differ (seeded from seed and rank).
    assert state["world_size"] == 2 and len(state["process_rngs"]) == 1
    other = state["process_rngs"][0]
    assert other["np_rng"] != state["np_rng"] and other["env_rng"] != state["env_rng"]
    # One scalar per iteration, and the policy learns: the untrained one is near random.
    curve = rewards(out)
    assert len(curve) == 12
    first, last = np.mean(curve[:3]), np.mean(curve[-3:])
    assert last > 0.12 and last > first + 0.08, curve


def test_a_killed_run_resumes_to_the_uninterrupted_runs_weights(
    two_process_run: Path, tmp_path: Path
) -> None:
    """SIGKILL to the whole launch after its second checkpoint, then ``--resume``: the same
    number of processes restores every process's streams, so the result is bit-identical."""
    out = tmp_path / "run"
    killed_after([*TRAIN, "--output-dir", str(out)], out, "iter-000006")
    assert load_checkpoint(out)[1]["iterations_done"] in (6, 9)  # 9: it saved before the kill
    done = launch(*TRAIN, "--output-dir", str(out), "--resume")
    assert done.returncode == 0, done.stdout[-3000:]
    resumed, uninterrupted = load_checkpoint(out), load_checkpoint(two_process_run)
    assert resumed[1]["iterations_done"] == 12
    assert all(torch.equal(resumed[0][k], v) for k, v in uninterrupted[0].items())
    assert resumed[1]["kl_controller"] == uninterrupted[1]["kl_controller"]


def continued_alone(saved: Path, out: Path, iterations: int) -> tuple[Any, Any]:
    """Copy the PPO run ``saved`` to ``out`` and continue it in this process (no launcher) to
    ``iterations``: its checkpoint before and after."""
    shutil.copytree(saved, out)
    before = load_checkpoint(out)
    cfg = PPOConfig.from_record(
        before[2] | {"total_iterations": iterations, "output_dir": str(out)}
    )
    run(cfg, "ppo", resume=True)
    return before, load_checkpoint(out)


def test_another_number_of_processes_continues_the_run(
    two_process_run: Path, tmp_path: Path
) -> None:
    """A 2-process run resumed by one process: π, optimizer, β_KL and the iteration carry
    over; the process starts new random streams (the saved ones were two others')."""
    out = tmp_path / "run"
    before, (policy, state, _) = continued_alone(two_process_run, out, 14)
    assert state["iterations_done"] == 14 and state["world_size"] == 1
    assert state["np_rng"] != before[1]["np_rng"]
    assert not all(torch.equal(policy[k], v) for k, v in before[0].items())  # it trained on
    assert len(rewards(out)) == 14  # iterations 12 and 13 logged after the 2-process run's


def test_target_kl_stops_both_processes_at_the_same_epoch(tmp_path: Path) -> None:
    """``--target-kl`` with 2 processes: the KL that decides the stop is the mean over both
    processes' minibatches, so they stop together (a process stopping alone would leave the
    other's next DDP backward waiting). Each iteration's logged epoch count, the mean of the
    two processes', is then a whole number, and the target cuts some updates short."""
    out = tmp_path / "run"
    at = TRAIN.index("--total-iterations")
    args = [*TRAIN[:at], "--total-iterations", "4", *TRAIN[at + 2 :], "--target-kl", "0.01"]
    done = launch(*args, "--output-dir", str(out))
    assert done.returncode == 0, done.stdout[-3000:]
    epochs = rewards(out, "losses/epochs")
    assert len(epochs) == 4 and all(e == int(e) for e in epochs), epochs
    assert min(epochs) < 4, epochs  # the target stopped an update early


# ----------------------------------------------------------------------------- offline

# ReST on Reverse-v0: 4 Grow steps of 16 episodes (2 chunks of 8) and 2 Improve steps each.
REST = [
    "-m", "agents.train", "--algo", "rest", "--env-id", "textgen_env/Reverse-v0",
    "--total-iterations", "8", "--thresholds", "0", "50", "--batch-size", "8",
    "--minibatch-size", "6", "--max-prompts", "8", "--samples-per-prompt", "2",
    "--learning-rate", "1e-3",
]  # fmt: skip


def test_alol_gradient_with_two_processes_equals_one_process(tmp_path: Path) -> None:
    """Every process holds the same rows and takes its part of a global minibatch; scaled by
    its share of the tokens, DDP's average is the single-process gradient, also for 7 rows
    (4 + 3, of different lengths) and for 1 row (process 1 runs a masked-out row)."""
    result = tmp_path / "grad.json"
    done = launch(str(REPO / "tests" / "distributed_helper.py"), "alol_grad", str(result))
    assert done.returncode == 0, done.stdout[-3000:]
    found = json.loads(result.read_text())
    assert found["world"] == 2
    for every in found["processes"]:
        assert every["ref_diff"] <= 1e-6  # π_ref's log-probs, split and gathered
        checks = {k: v for k, v in every.items() if k != "ref_diff"}
        assert len(checks) == 8
        for name, check in checks.items():
            assert check["largest"] > 1e-2, name  # a real gradient
            assert check["max_diff"] <= 1e-6 * max(1.0, check["largest"]), (name, check)


@pytest.fixture(scope="module")
def alol_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alol") / "rev.jsonl"
    make_data(MakeDataConfig(env_id="textgen_env/Reverse-v0", out=str(path), max_prompts=16,
                             batch_size=8), progress=False)  # fmt: skip
    return path


def alol_args(data: Path, out: Path, steps: int) -> list[str]:
    return [
        "-m", "agents.train", "--algo", "alol_seq", "--env-id", "textgen_env/Reverse-v0",
        "--data", str(data), "--batch-size", "8", "--total-iterations", str(steps),
        "--learning-rate", "1e-3", "--value-steps", "20", "--value-samples", "1",
        "--checkpoint-every", "2", "--output-dir", str(out),
    ]  # fmt: skip


def test_alol_with_two_processes_resumed_by_one(alol_data: Path, tmp_path: Path) -> None:
    """A 2-process A-LoL run writes one run; stopped after 2 steps and resumed by one process,
    it draws the rows the 2 processes would have drawn (one stream in every process), so it
    ends where the uninterrupted 2-process run does, up to float rounding."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    done = launch(*alol_args(alol_data, whole, 4))
    assert done.returncode == 0, done.stdout[-3000:]
    assert done.stdout.count("run directory:") == 1  # printed by the main process only
    assert len(list((whole / "tb").glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (whole / "checkpoints").iterdir()) == [
        "iter-000002", "iter-000004", "latest",
    ]  # fmt: skip
    _, state, config = load_checkpoint(whole)
    assert state["world_size"] == 2 and len(state["process_rngs"]) == 1
    assert config["batch_size"] == 8
    assert state["process_rngs"][0]["np_rng"] == state["np_rng"]  # the shared stream
    assert state["process_rngs"][0]["torch_rng"].ne(state["torch_rng"]).any()
    assert len(rewards(whole, "losses/nll")) == 4
    done = launch(*alol_args(alol_data, part, 2))
    assert done.returncode == 0, done.stdout[-3000:]
    cfg = ALoLConfig.from_record(load_checkpoint(part)[2] | {"total_iterations": 4})
    run(cfg, "alol_seq", resume=True)
    a, b = load_checkpoint(whole), load_checkpoint(part)
    assert b[1]["world_size"] == 1 and torch.equal(a[1]["weights"], b[1]["weights"])
    for k, v in a[0].items():
        torch.testing.assert_close(b[0][k], v, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def rest_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2-process ReST run."""
    out = tmp_path_factory.mktemp("rest") / "run"
    done = launch(*REST, "--output-dir", str(out))
    assert done.returncode == 0, done.stdout[-3000:]
    return out


def test_rest_with_two_processes_writes_a_single_processs_data(
    rest_run: Path, tmp_path: Path
) -> None:
    """One data file per Grow step (chunks sampled by both processes, written by the main
    one), one log, one set of checkpoints; the Grow files are a single process's, byte for
    byte, and so are the weights up to float rounding (each step's rows split, token shares)."""
    out = rest_run
    assert sorted(p.name for p in out.glob("grow-*")) == [f"grow-{g}.jsonl" for g in range(4)]
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "iter-000007", "iter-000008", "latest",
    ]  # fmt: skip
    _, state, config = load_checkpoint(out)
    assert state["world_size"] == 2 and config["minibatch_size"] == 6
    alone = run(RestConfig.from_record(config | {"output_dir": str(tmp_path / "one")}), "rest")
    for g in range(4):  # Grow g samples from the policy after 2·g Improve steps
        name = f"grow-{g}.jsonl"
        assert (out / name).read_text() == (alone / name).read_text(), name
    # Float rounding differs (each process sums its part of a step); AdamW's normalized step
    # magnifies it on the few entries whose gradient is rounding noise (up to ~2 lr here). How
    # much depends on the CPU's kernels: 95 % of entries within 1e-5 on an Intel Xeon, 85 % on
    # an AMD EPYC (99.5 % within 1e-4 there, the largest 2.8e-3).
    a, b = load_checkpoint(out)[0], load_checkpoint(alone)[0]
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert (diffs <= 1e-4).float().mean() > 0.99 and diffs.max() < 1e-2


def test_rest_killed_and_resumed_ends_as_the_uninterrupted_run(
    rest_run: Path, tmp_path: Path
) -> None:
    """Killed after its third Improve step: resumed by 2 processes, it ends with the
    uninterrupted run's weights and Grow files, bit for bit; resumed by one, with its Grow
    files and its weights up to float rounding (the data and orders come from fixed seeds)."""
    out, alone = tmp_path / "run", tmp_path / "alone"
    killed_after([*REST, "--output-dir", str(out)], out, "iter-000003")
    assert load_checkpoint(out)[1]["iterations_done"] < 8
    shutil.copytree(out, alone)
    done = launch(*REST, "--output-dir", str(out), "--resume")
    assert done.returncode == 0, done.stdout[-3000:]
    assert load_checkpoint(out)[1]["iterations_done"] == 8
    assert same_weights(out, rest_run)
    config = load_checkpoint(alone)[2] | {"output_dir": str(alone)}
    run(RestConfig.from_record(config), "rest", resume=True)
    assert load_checkpoint(alone)[1]["world_size"] == 1
    for g in range(4):
        name = f"grow-{g}.jsonl"
        assert (out / name).read_text() == (rest_run / name).read_text()
        assert (alone / name).read_text() == (rest_run / name).read_text()
    a, b = load_checkpoint(rest_run)[0], load_checkpoint(alone)[0]
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert (diffs <= 1e-5).float().mean() > 0.95 and diffs.max() < 1e-2


# ----------------------------------------------------------------------------- a failure


def test_a_process_that_raises_stops_the_job_with_its_error(tmp_path: Path) -> None:
    """Process 1 raises in its second iteration: the launch ends (non-zero) with that error
    instead of leaving process 0 waiting for it."""
    out = tmp_path / "run"
    args = [
        str(REPO / "tests" / "distributed_helper.py"), "fail", "1", "--algo", "ppo",
        "--env-id", "textgen_env/Reverse-v0", "--total-iterations", "5", "--batch-size", "8",
        "--minibatch-size", "4", "--output-dir", str(out),
    ]  # fmt: skip
    t0 = time.monotonic()
    done = launch(*args, timeout=120)
    assert done.returncode != 0
    assert "RuntimeError: injected failure in process 1" in done.stdout
    assert time.monotonic() - t0 < 120
    assert not (out / "checkpoints").exists()


# ----------------------------------------------------------------------------- refusals


# ----------------------------------------------------------------------------- DeepSpeed ZeRO


@pytest.fixture(scope="module", params=sorted(ZERO_CONFIGS))
def zero_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2-process PPO run of :func:`two_process_run`, under DeepSpeed ZeRO-2 and ZeRO-3
    (its run directory is named for the config)."""
    out = tmp_path_factory.mktemp(request.param) / request.param
    done = launch(*TRAIN, "--output-dir", str(out), config=ZERO_CONFIGS[request.param])
    assert done.returncode == 0, done.stdout[-3000:]
    return out


@pytest.mark.parametrize("zero", sorted(ZERO_CONFIGS))
def test_zero_steps_equal_one_processs_steps(zero: str, tmp_path: Path) -> None:
    """Under ZeRO each process steps its partition of AdamW on the averaged gradient: three
    clipped steps on fixed batches split between 2 processes end at one process's weights and
    AdamW state (gathered into torch's layout) on the whole batches; under ZeRO-3, π's
    partitioned weights gathered for passes outside the engine, as many in each process as it
    likes, leave the steps as they are."""
    result = tmp_path / "zero.json"
    helper = str(REPO / "tests" / "distributed_helper.py")
    done = launch(helper, "zero_steps", str(result), config=ZERO_CONFIGS[zero])
    assert done.returncode == 0, done.stdout[-3000:]
    found = json.loads(result.read_text())
    assert found["world"] == 2 and found["deepspeed"] and found["clipped"]
    assert found["zero3"] == (zero == "zero3") and found["built_whole"]
    assert found["moved"] > 1e-3  # the steps changed π
    # AdamW divides by √v: rounding in the averaged gradient moves weights by ~1e-6 (ZeRO-2)
    # or ~3e-5 (ZeRO-3, which sums the partitions' gradients in another order) of 0.03
    assert found["weights"] < (1e-5 if zero == "zero2" else 1e-4) and found["moments"] < 1e-7
    assert max(found["grad_norms"]) < 1e-5  # relative: the norm each side clipped by
    assert found["steps"] == [3.0, 3.0] and found["groups_equal"] and found["fresh_equal"]


def test_a_zero_run_learns_and_writes_one_run(zero_run: Path, two_process_run: Path) -> None:
    """The PPO run of :func:`two_process_run` under ZeRO-2 and ZeRO-3: it learns as DDP's
    does, one process logs and writes checkpoints, which hold π's whole weights (ZeRO-3
    gathers them) and the optimizer state in torch's AdamW layout (96 steps: 8 an
    iteration)."""
    assert len(list((zero_run / "tb").glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (zero_run / "checkpoints").iterdir()) == [
        "iter-000009", "iter-000012", "latest",
    ]  # fmt: skip
    policy, state, _ = load_checkpoint(zero_run)
    assert state["world_size"] == 2 and float(state["optimizer"]["state"][0]["step"]) == 96
    ddp = load_checkpoint(two_process_run)[0]  # (DDP: every process holds π whole)
    assert {k: v.shape for k, v in policy.items()} == {k: v.shape for k, v in ddp.items()}
    curve = rewards(zero_run)
    first, last = np.mean(curve[:3]), np.mean(curve[-3:])
    assert last > 0.12 and last > first + 0.08, curve


def close_weights(a: Path, b: Path) -> None:
    """The runs' weights are equal up to float rounding, which AdamW's normalized step
    magnifies on the few entries whose gradient is rounding noise."""
    x, y = load_checkpoint(a)[0], load_checkpoint(b)[0]
    diffs = torch.cat([(x[k] - y[k]).abs().flatten() for k in x])
    assert (diffs <= 1e-5).float().mean() > 0.95 and diffs.max() < 1e-2


@pytest.mark.parametrize("zero", sorted(ZERO_CONFIGS))
def test_offline_algorithms_under_zero_end_as_one_process(
    zero: str, alol_data: Path, tmp_path: Path
) -> None:
    """A-LoL (one optimizer for the run) under ZeRO-2 and ZeRO-3 ends as under DDP (2
    processes each: V_ref's episodes are split by process), and ReST-EM (a fresh optimizer
    every Improve step, π put back to the base model every Grow step) as one process: the
    same Grow files, byte for byte; the weights up to float rounding."""
    for name, config in (("alol", ZERO_CONFIGS[zero]), ("alol-ddp", CPU_CONFIG)):
        done = launch(*alol_args(alol_data, tmp_path / name, 4), config=config)
        assert done.returncode == 0, done.stdout[-3000:]
    close_weights(tmp_path / "alol", tmp_path / "alol-ddp")
    rest_em = [*REST, "--restart-from-base", "--output-dir", str(tmp_path / "rest")]
    done = launch(*rest_em, config=ZERO_CONFIGS[zero])
    assert done.returncode == 0, done.stdout[-3000:]
    zero, config = tmp_path / "rest", load_checkpoint(tmp_path / "rest")[2]
    assert config["restart_from_base"] and load_checkpoint(zero)[1]["world_size"] == 2
    alone = run(RestConfig.from_record(config | {"output_dir": str(tmp_path / "rest1")}), "rest")
    for g in range(4):
        name = f"grow-{g}.jsonl"
        assert (zero / name).read_text() == (alone / name).read_text(), name
    close_weights(zero, alone)


def test_zero3_init_is_refused_before_training(tmp_path: Path) -> None:
    """zero3_init_flag would partition π_ref as it is built: one line, non-zero exit, no run."""
    config = tmp_path / "zero3_init.yaml"
    text = ZERO3_CONFIG.read_text()
    config.write_text(text.replace("zero3_init_flag: false", "zero3_init_flag: true"))
    assert "zero3_init_flag: true" in config.read_text()
    done = launch(*TRAIN, "--output-dir", str(tmp_path / "run"), config=config)
    assert done.returncode != 0
    assert "error (process 0 of 2): DeepSpeed's zero3_init_flag partitions every" in done.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()


def rewind(out: Path, to: str) -> None:
    """Make the run in ``out`` look stopped at checkpoint ``to``: later ones removed."""
    checkpoints = out / "checkpoints"
    for later in sorted(p for p in checkpoints.glob("iter-*") if p.name > to):
        shutil.rmtree(later)
    (checkpoints / "latest").write_text(to)


def test_a_zero_run_resumes_to_the_uninterrupted_runs_weights(
    zero_run: Path, tmp_path: Path
) -> None:
    """Resumed under ZeRO-2 from its iteration-9 checkpoint, the run ends where the
    uninterrupted one did: the saved AdamW state goes back into each process's partition."""
    out = tmp_path / "run"
    shutil.copytree(zero_run, out)
    rewind(out, "iter-000009")
    done = launch(*TRAIN, "--output-dir", str(out), "--resume", config=ZERO_CONFIGS[zero_run.name])
    assert done.returncode == 0, done.stdout[-3000:]
    resumed, uninterrupted = load_checkpoint(out), load_checkpoint(zero_run)
    assert resumed[1]["iterations_done"] == 12
    assert max((resumed[0][k] - v).abs().max().item() for k, v in uninterrupted[0].items()) < 1e-6


def test_a_zero_run_continues_in_one_process(zero_run: Path, tmp_path: Path) -> None:
    """The checkpoint's optimizer state is torch's AdamW layout: one process without
    DeepSpeed resumes the run and takes its step count on."""
    before, (policy, state, _) = continued_alone(zero_run, tmp_path / "run", 13)
    assert state["iterations_done"] == 13 and state["world_size"] == 1
    assert float(state["optimizer"]["state"][0]["step"]) == 96 + 8  # 8 steps an iteration
    assert not all(torch.equal(policy[k], v) for k, v in before[0].items())


@pytest.fixture
def two_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment a launcher gives process 0 of 2 (no other process: the checks that
    refuse a run come before the processes join)."""
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))


def tiny(out: Path, **kw: object) -> PPOConfig:
    base: dict = dict(batch_size=4, minibatch_size=2, total_iterations=1, output_dir=str(out))
    return PPOConfig(**(base | kw))


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (dict(batch_size=6, minibatch_size=3), r"minibatch_size 3 does not divide among 2"),
    ],
)
def test_settings_the_processes_cannot_share_are_refused(
    two_processes: None, tmp_path: Path, settings: dict, error: str
) -> None:
    with pytest.raises(RunSetupError, match=error):
        run(tiny(tmp_path, **settings), "ppo")
    assert not any(tmp_path.iterdir())


def refused_online_and_offline(out: Path, error: str) -> None:
    """A PPO run and an A-LoL run into ``out`` are both refused with ``error``, before
    anything is written there."""
    with pytest.raises(RunSetupError, match=error):
        run(tiny(out), "ppo")
    cfg = ALoLConfig(batch_size=4, total_iterations=1, output_dir=str(out))
    with pytest.raises(RunSetupError, match=error):
        run(cfg, "alol")
    assert not any(out.iterdir())


def test_an_fsdp_launch_is_refused(
    two_processes: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """accelerate's FSDP config: refused, not run as DDP (accelerate on CPUs ignores the
    request, docs/scaling.md), by the online and the offline loops."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    refused_online_and_offline(tmp_path, r"asked for FSDP, which this trainer does not run")


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "0"}, r"ZeRO stage 0 is not run by this trainer"),
        (
            {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu"},
            r"offload_optimizer_device 'cpu' is not run",
        ),
        (
            {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "nvme"},
            r"offload_param_device 'nvme' is not run",
        ),
    ],
)
def test_a_deepspeed_setup_this_trainer_does_not_run_is_refused(
    two_processes: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    error: str,
) -> None:
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RunSetupError, match=error):
        run(tiny(tmp_path), "ppo")
    assert not any(tmp_path.iterdir())


def test_deepspeed_is_refused_when_missing(
    two_processes: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "deepspeed" else find_spec(name, *a),
    )
    refused_online_and_offline(tmp_path, r"DeepSpeed, which is not installed here")


def test_a_launch_without_a_launcher_is_refused(
    two_processes: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MASTER_ADDR")
    with pytest.raises(RunSetupError, match=r"no launcher started it \(MASTER_ADDR not set\)"):
        run(tiny(tmp_path), "ppo")


def test_offline_rows_per_step_must_divide(two_processes: None, tmp_path: Path) -> None:
    cfg = ALoLConfig(batch_size=5, total_iterations=1, output_dir=str(tmp_path))
    with pytest.raises(RunSetupError, match=r"batch_size 5 does not divide among 2 processes"):
        run(cfg, "alol")
    cfg = RestConfig(batch_size=4, minibatch_size=3, output_dir=str(tmp_path))
    with pytest.raises(RunSetupError, match=r"minibatch_size 3 does not divide among 2"):
        run(cfg, "rest")
    assert not any(tmp_path.iterdir())
    # ReST's batch_size is each process's Grow chunk: any size
    assert split_fields(RestConfig(batch_size=5, minibatch_size=4)) == ("minibatch_size",)
    assert split_fields(ALoLConfig()) == ("batch_size",)
    assert split_fields(PPOConfig()) == ("batch_size", "minibatch_size")


def test_one_process_started_for_several_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``accelerate launch --cpu --num_processes 2`` starts one process (its simple launcher
    needs mpirun for more): the run says so instead of training alone."""
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(RunSetupError, match=r"asked for several processes but started one"):
        run(tiny(tmp_path), "ppo")
    assert not any(tmp_path.iterdir())


def test_an_mpirun_launch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(RunSetupError, match=r"one of 2 started by mpirun"):
        run(tiny(tmp_path), "ppo")


def test_a_released_replica_refuses_to_run() -> None:
    """After :meth:`Processes.finish` released it, π's DDP wrapper is gone: using it raises
    instead of running a forward pass on a process group that has ended."""
    ac = ActorCritic(tiny_causal_lm(11, seed=0, **TOY_MODEL))
    replica = ReplicatedPolicy(ac, torch.nn.Identity(), summed=lambda v: v)
    assert replica.train() is replica
    replica.release()
    with pytest.raises(RuntimeError, match=r"DDP wrapper was released"):
        replica.train()
    ids = torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(RuntimeError, match=r"DDP wrapper was released"):
        replica(ids, torch.ones_like(ids), 2)
    assert replica.trainable_parameters() == ac.trainable_parameters()  # π itself stays


class _Accelerator:
    """What :meth:`Processes.wait` reads of an accelerate ``Accelerator``."""

    def __init__(self, device: str, waits: list[str]) -> None:
        self.device, self.waits = torch.device(device), waits

    def wait_for_everyone(self) -> None:
        self.waits.append("accelerate")


@pytest.mark.parametrize(("device", "expected"), [("cpu", "plain"), ("cuda:0", "accelerate")])
def test_a_cpu_group_waits_on_a_plain_barrier(
    device: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """accelerate before 1.16 gives its barrier ``device_ids`` on a CPU (gloo) group too, and
    torch then runs it on a visible GPU: on a 1-GPU machine process 1 of 2 CPU processes failed
    (accelerate 1.15). CPU processes wait on torch's plain barrier; GPU ones on accelerate's."""
    waits: list[str] = []
    monkeypatch.setattr(torch.distributed, "barrier", lambda *a, **k: waits.append("plain"))
    Processes(rank=0, world=2, accelerator=_Accelerator(device, waits)).wait()  # type: ignore[arg-type]
    assert waits == [expected]
