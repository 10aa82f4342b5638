"""The paper-style benchmark (issue #14): every algorithm × tasks × seeds, resumable.

``python -m benchmarks.run --suite SUITE [--seeds 0,1,2] [--only ROW,...] [--tasks ID,...]
[--out DIR] [--report-only]``

The suites are the literal tables of :mod:`benchmarks.suites` (:data:`ROWS`, :data:`SUITES`).
A row's config is, later winning: the suite's ``shared`` settings < ``per_algo[algo]`` <
``per_task[env id]`` < the row's overrides (fields an algorithm's config lacks are ignored,
as in ``agents.cli.PRESETS``); :func:`check_suite` checks that every row can be built.

Each run goes through the public entry points only: :func:`agents.trainer.run` trains it into
its run directory ``<out>/rundirs/<task>/<row>-s<seed>``, then :func:`agents.evaluate.evaluate`
samples π alone ``eval_samples`` times per test prompt (paper-small: 3), with the run's own
sampling settings (the suite's, the same for every row), the first time with the run's seed as
the sampling seed (every metric), then with :data:`EXTRA_SEED` seeds (the task reward only), or
decodes once with beam search where the suite says so for a task (``eval_num_beams``:
paper-small's CommonGen-v0, 5 beams). A run saved with fewer samples than its suite now asks
for gets the missing ones next time, where its policy is still at hand. The
"Zero-shot" row is a run of 0 iterations (the initial policy); the "Guide" row is the task's
guide (the one the runs learn from) scored by :func:`agents.evaluate.evaluate_guide` on the
same test prompts with the same seed. The A-LoL rows learn from one offline data file per task
(:data:`DATA_SOURCE`: the references where the task has them, else the guide's episodes),
written once under ``<out>/data/`` by :func:`agents.make_data.make_data` and shared by every
seed; ReST grows its own data from π.

Runs go task by task, then seed by seed, then row by row, so the first task is complete
first. A finished run (trained and evaluated) is saved at once as one JSON,
``<out>/run_results/<task>/<row>-s<seed>.json`` (written atomically), and skipped next time;
a run killed mid-way continues from its last checkpoint (``resume=True``), and a BC run whose
checkpoint a BC+X row needs but whose run directory is gone is trained again and checked
against its JSON (runs are reproducible). Every run's JSON holds its config, metrics, test
generations and learning curve (read from its TensorBoard log), so the report
(:mod:`benchmarks.report`: ``table.md``, ``runs.csv``, curves, the prompt-difficulty
breakdown, sample generations) is rebuilt from the JSONs alone (``--report-only``); the run
directories stay out of git.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import textgen_env  # noqa: F401  (registers ids)
from agents.algorithms import ALGORITHMS, OfflineAlgorithm
from agents.checkpoint import CheckpointError, checkpoint_dirs, default_mode
from agents.cli import OneLineErrors
from agents.config import TrainConfig
from agents.evaluate import METRICS, evaluate, evaluate_guide
from agents.make_data import MakeDataConfig, make_data
from agents.offline_data import DataFileError
from agents.rundir import RunSetupError
from agents.trainer import TrainingDiverged, run
from benchmarks import report
from benchmarks.hardware import cpu_model
from benchmarks.suites import DATA_SOURCE, GUIDE, ROWS, SUITES, ZERO_SHOT, Row, Suite
from textgen_env.errors import GuideError
from textgen_env.packed import prepacking_enabled

SPLIT_SEED = 10_000
"""The zero-shot row's extra evaluations, whose rewards split the prompts by difficulty, use
evaluation seeds ``SPLIT_SEED + split_samples · seed + j``: no run is evaluated with them."""
EXTRA_SEED = 20_000
"""Sample j >= 1 of a run's test prompts (:attr:`Suite.eval_samples`) uses evaluation seed
``EXTRA_SEED + 1000 · seed + j``; sample 0 the run's seed. Every row of a seed shares them
(common random numbers), and raising ``eval_samples`` later only adds seeds."""
SAMPLING = ("top_k", "temperature")
"""Settings evaluation samples with (the run's own): only a suite's ``shared`` may set them."""
RESULTS = Path(__file__).parent / "results"


class SuiteError(ValueError):
    """A suite table is inconsistent, or a run cannot start from what the runner holds."""


# ----------------------------------------------------------------------------- configs


def train_algo(row: Row) -> str:
    """The ``--algo`` a row trains with (the zero-shot row: a 0-iteration PPO run)."""
    return "ppo" if row.algo == ZERO_SHOT else row.algo


def settings(suite: Suite, row: Row, task: str) -> dict[str, Any]:
    """The config fields of ``row``'s runs on ``task`` (before seed and output directory)."""
    algo = train_algo(row) if row.algo != GUIDE else GUIDE
    values = suite.shared | suite.per_algo.get(algo, {}) | suite.per_task.get(task, {})
    values = values | row.overrides | {"env_id": task}
    if row.algo == ZERO_SHOT:
        values["total_iterations"] = 0  # the initial policy, saved as a checkpoint
    return values


def build_config(
    suite: Suite, row: Row, task: str, seed: int, run_dir: Path, data: Path | None = None
) -> TrainConfig:
    """The config of one run (fields its algorithm's config lacks are dropped); ``data`` is
    the offline data file of the rows that learn from one."""
    cls = ALGORITHMS[train_algo(row)].config
    names = {f.name for f in dataclasses.fields(cls)}
    values = settings(suite, row, task) | {"seed": seed, "output_dir": str(run_dir)}
    if data is not None:
        values["data"] = str(data)
    return cls(**{k: v for k, v in values.items() if k in names})


def uses_data(row: Row) -> bool:
    """Whether ``row``'s runs learn from the suite's offline data file (the A-LoL family)."""
    algo = ALGORITHMS.get(train_algo(row))
    return algo is not None and "data" in {f.name for f in dataclasses.fields(algo.config)}


def data_config(suite: Suite, task: str, out: Path) -> MakeDataConfig:
    """How the task's offline data file is made (:data:`DATA_SOURCE`, ``suite.data``)."""
    epsilon = suite.shared.get("guide_epsilon", TrainConfig.guide_epsilon)
    return MakeDataConfig(
        env_id=task,
        out=str(data_file(out, task)),
        source=DATA_SOURCE[task],
        guide_epsilon=epsilon,
        **suite.data,
    )


def check_suite(name: str, suite: Suite) -> None:
    """Raise :class:`SuiteError` unless every row of ``suite`` can be built and compared."""
    missing = [k for k in SAMPLING if k not in suite.shared]
    if missing:
        raise SuiteError(f"suite {name}: `shared` must set {', '.join(missing)} (every row "
                         "samples with them)")  # fmt: skip
    for key in suite.rows:
        if key not in ROWS:
            raise SuiteError(f"suite {name}: unknown row {key!r}")
        row = ROWS[key]
        if row.algo not in (*ALGORITHMS, ZERO_SHOT, GUIDE):
            raise SuiteError(f"row {key}: unknown algorithm {row.algo!r}")
        if row.init_from is not None and (
            row.init_from not in suite.rows
            or suite.rows.index(row.init_from) > suite.rows.index(key)
        ):
            raise SuiteError(
                f"suite {name}: row {key} starts from row {row.init_from}, which "
                "must come before it"
            )
        sets_sampling = [
            k
            for d in (*suite.per_algo.values(), *suite.per_task.values(), row.overrides)
            for k in d
            if k in SAMPLING
        ]
        if sets_sampling:
            raise SuiteError(
                f"suite {name}: {', '.join(sorted(set(sets_sampling)))} must be the "
                "same for every row (set them in `shared` only)"
            )
        if row.algo != GUIDE:
            for task in suite.tasks:
                try:
                    build_config(suite, row, task, 0, Path("unused"))
                except (TypeError, ValueError) as err:
                    raise SuiteError(f"suite {name}, row {key}, {task}: {err}") from err
    unknown = [t for t in suite.tasks if t not in METRICS]
    if unknown:
        raise SuiteError(f"suite {name}: unknown task(s) {', '.join(unknown)}")
    if (
        isinstance(suite.eval_samples, bool)
        or not isinstance(suite.eval_samples, int)
        or (not 1 <= suite.eval_samples <= 999)
    ):
        raise SuiteError(f"suite {name}: eval_samples must be an integer in [1, 999], got "
                         f"{suite.eval_samples!r}")  # fmt: skip
    for task, beams in suite.eval_num_beams.items():
        if task not in suite.tasks or isinstance(beams, bool) or not isinstance(beams, int):
            raise SuiteError(f"suite {name}: eval_num_beams {task}: {beams!r} (not its task?)")
        if beams < 1:
            raise SuiteError(f"suite {name}: eval_num_beams {task} must be >= 1, got {beams}")
    if any(uses_data(ROWS[key]) for key in suite.rows):
        for task in suite.tasks:
            if task not in DATA_SOURCE:
                raise SuiteError(f"suite {name}: DATA_SOURCE has no entry for {task}")
            try:
                data_config(suite, task, Path("unused"))
            except (TypeError, ValueError) as err:
                raise SuiteError(f"suite {name}, data of {task}: {err}") from err


# ----------------------------------------------------------------------------- one run


def short(task: str) -> str:
    """``textgen_env/IMDB-v0`` -> ``IMDB-v0``."""
    return task.split("/")[-1]


def result_path(out: Path, task: str, row: str, seed: int) -> Path:
    """Where a finished run's JSON goes."""
    return out / "run_results" / short(task) / f"{row}-s{seed}.json"


def run_path(out: Path, task: str, row: str, seed: int) -> Path:
    """The run directory (checkpoints, TensorBoard log) of a run."""
    return out / "rundirs" / short(task) / f"{row}-s{seed}"


def data_file(out: Path, task: str) -> Path:
    """The task's offline data file, shared by every seed and row that learns from one."""
    return out / "data" / f"{short(task)}.jsonl"


def prepare_data(out: Path, suite: Suite, task: str) -> dict[str, Any]:
    """Write the task's offline data file once (:func:`agents.make_data.make_data`, which
    continues a file a killed process left) and return what it holds; its summary
    (``<task>.json`` beside it) marks it complete, so later runs reuse it as it is."""
    cfg = data_config(suite, task, out)
    summary = data_file(out, task).with_suffix(".json")
    if summary.exists():
        return json.loads(summary.read_text(encoding="utf-8"))
    print(f"  writing the offline data of {short(task)} ({cfg.source}) to {cfg.out}", flush=True)
    t0 = time.perf_counter()
    try:
        rows = make_data(cfg, progress=False)
    except DataFileError as err:
        raise SuiteError(f"offline data {cfg.out}: {err}") from err
    rewards = [r.reward for r in rows]
    info = {
        "file": os.path.relpath(cfg.out, out),
        "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out",)},
        "rows": len(rows),
        "reward_mean": sum(rewards) / len(rewards),
        "seconds": time.perf_counter() - t0,
    }
    write_json(summary, info)
    return info


def train(cfg: TrainConfig, algo: str, init_from: str | None) -> bool:
    """Train into ``cfg.output_dir``, continuing a run a killed process left there; returns
    whether it resumed. A directory without an intact checkpoint starts over."""
    out = Path(cfg.output_dir)
    if checkpoint_dirs(out):
        try:
            run(cfg, algo, resume=True)  # keeps the run's own init_from
            return True
        except CheckpointError as err:
            print(f"  no intact checkpoint in {out} ({err}); starting over", flush=True)
    run(cfg, algo, init_from=init_from, overwrite=True)
    return False


def read_curves(run_dir: Path) -> dict[str, list[list[float]]]:
    """``{"unguided": [[iteration, reward], ...], "all": ...}`` from a run's TensorBoard log:
    the task reward of π's own episodes, and of every episode of the batch (guided ones
    included); ``"learner_tokens"``: π's own tokens per episode of the batch (the PPO
    family: a guide's roll-in or roll-out writes the rest); ReST's ``"grow"``: the mean
    reward of each Grow step's episodes (step = Grow step). A resumed run logged again the
    iterations after its last checkpoint; the last value of each iteration wins."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))
    curves = {}
    for name, tag in (
        ("unguided", "charts/task_reward_unguided"),
        ("all", "charts/task_reward"),
        ("learner_tokens", "charts/learner_tokens"),
        ("grow", "grow/reward_mean"),
    ):
        if tag in tags:
            latest = {e.step: e.value for e in sorted(acc.Scalars(tag), key=lambda e: e.wall_time)}
            curves[name] = [[step, latest[step]] for step in sorted(latest)]
    return curves


def train_row(out: Path, suite: Suite, task: str, key: str, seed: int) -> dict[str, Any]:
    """Train one run into its run directory (continuing a killed one); returns the training
    part of its record. The guide row trains nothing."""
    row = ROWS[key]
    if row.algo == GUIDE:
        return {"config": None, "iterations": 0, "episodes": 0, "resumed": False,
                "train_seconds": 0.0, "curves": {}, "run_dir": None}  # fmt: skip
    donor = None
    part: dict[str, Any] = {}
    if row.init_from is not None:
        donor_dir = run_path(out, task, row.init_from, seed)
        if not checkpoint_dirs(donor_dir):
            t0 = time.perf_counter()
            rebuild(out, suite, task, row.init_from, seed)
            part["rebuild_seconds"] = time.perf_counter() - t0  # not this run's time
        donor = str(donor_dir)
    data = None
    if uses_data(row):  # written once, its time in its summary
        part["data"] = prepare_data(out, suite, task)
        data = data_file(out, task)
    t0 = time.perf_counter()
    rdir = run_path(out, task, key, seed)
    cfg = build_config(suite, row, task, seed, rdir, data)
    resumed = train(cfg, train_algo(row), donor)
    online = not isinstance(ALGORITHMS[train_algo(row)], OfflineAlgorithm)
    return part | {
        "config": {"algo": train_algo(row), **dataclasses.asdict(cfg), "init_from": donor},
        "iterations": cfg.total_iterations,
        # training episodes of an online run (an offline run's data are counted apart)
        "episodes": cfg.total_iterations * cfg.batch_size if online else None,
        "resumed": resumed,
        "train_seconds": time.perf_counter() - t0,
        "curves": read_curves(rdir),
        "run_dir": os.path.relpath(rdir, out),
    }


def evaluate_row(
    out: Path,
    suite: Suite,
    task: str,
    key: str,
    seed: int,
    eval_seed: int | None = None,
    perplexity: bool = True,
) -> dict[str, Any]:
    """Score one run on the test split (:func:`agents.evaluate.evaluate`, or
    :func:`agents.evaluate.evaluate_guide` for the guide row, which samples as the runs see
    it) with evaluation seed ``eval_seed`` (default: the run's seed); returns the evaluator's
    result (``perplexity`` False: without that metric)."""
    common = {
        "split": "test",
        "batch_size": suite.eval_batch_size,
        "seed": seed if eval_seed is None else eval_seed,
        "num_samples": suite.eval_num_samples,
        "perplexity": perplexity,
    }
    if ROWS[key].algo == GUIDE:
        epsilon = suite.shared.get("guide_epsilon", TrainConfig.guide_epsilon)
        return evaluate_guide(task, guide_epsilon=epsilon, **common)
    beams = suite.eval_num_beams.get(task, 1)
    return evaluate(str(run_path(out, task, key, seed)), num_beams=beams, **common)


def extra_seeds(suite: Suite, task: str, seed: int) -> list[int]:
    """The evaluation seeds of a run's samples after the first (:data:`EXTRA_SEED`)."""
    k = 1 if suite.eval_num_beams.get(task, 1) > 1 else suite.eval_samples
    return [EXTRA_SEED + 1000 * seed + j for j in range(1, k)]


def missing_seeds(suite: Suite, record: dict[str, Any]) -> list[int]:
    """The extra evaluation seeds the suite asks for that ``record`` has not been scored with."""
    have = set(record.get("extra_eval_seeds", []))
    return [s for s in extra_seeds(suite, record["task"], record["seed"]) if s not in have]


def add_samples(out: Path, suite: Suite, record: dict[str, Any]) -> dict[str, Any]:
    """Score the run of ``record`` with the extra seeds it lacks (its policy must still be in
    its run directory, or be the guide); returns the record with ``extra_eval_seeds`` and
    ``extra_rewards`` (one list of rewards per seed, prompts in order) grown."""
    task, key, seed = record["task"], record["row"], record["seed"]
    seeds, rewards = list(record.get("extra_eval_seeds", [])), list(record.get("extra_rewards", []))
    t0 = time.perf_counter()
    for s in missing_seeds(suite, record):
        result = evaluate_row(out, suite, task, key, seed, eval_seed=s, perplexity=False)
        if [x["prompt"] for x in result["samples"]] != record["prompts"]:
            raise SuiteError(f"{key} seed {seed}: evaluated on other prompts than its record")
        seeds.append(s)
        rewards.append([x["reward"] for x in result["samples"]])
    seconds = record.get("extra_eval_seconds", 0.0) + time.perf_counter() - t0
    return record | {"extra_eval_seeds": seeds, "extra_rewards": rewards,
                     "extra_eval_seconds": seconds}  # fmt: skip


def rebuild(out: Path, suite: Suite, task: str, key: str, seed: int) -> None:
    """Train a finished run again whose checkpoint a BC+X row needs but its run directory
    lacks (run directories stay out of git), and check that it is the saved run: runs are
    reproducible, so its test generations and rewards must equal those of its JSON (else
    the rebuilt run is deleted and :class:`SuiteError` raised)."""
    saved_path = result_path(out, task, key, seed)
    if not saved_path.exists():
        raise SuiteError(f"row {key}'s run of seed {seed} is not in {saved_path}")
    print(f"  rebuilding the checkpoint of {key} (seed {seed}): its run directory has none")
    train_row(out, suite, task, key, seed)
    result = evaluate_row(out, suite, task, key, seed)
    if not suite.keep_checkpoints:
        prune_checkpoints(run_path(out, task, key, seed), donor=True)
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    got = [s["generation"] for s in result["samples"]], [s["reward"] for s in result["samples"]]
    if got != (saved["generations"], saved["rewards"]):
        shutil.rmtree(run_path(out, task, key, seed))  # no BC+X may start from it
        raise SuiteError(
            f"the rebuilt {key} run of seed {seed} is not the saved one (its test generations "
            f"differ): delete {saved_path} to run it, and the rows that start from it, again"
        )


def machine() -> dict[str, Any]:
    """What a run's record says of the machine: float rounding, and with it which tokens a
    run samples, differs between CPU models and with prepacked decoding (docs/benchmarks.md).
    ``prepacked_decoding`` is the ``TEXTGEN_ENV_PREPACK`` switch; a torch without oneDNN never
    packs, whatever it says."""
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "prepacked_decoding": prepacking_enabled(),
    }


CHECKOUT = Path(__file__).resolve().parents[1]  # the runner's own checkout
NOT_CODE = (".", ":!benchmarks/results", ":!*.md")  # git pathspec: all files but results, prose


def code_commit(root: Path = CHECKOUT) -> str | None:
    """The git commit the checkout at ``root`` (the runner's) is at, with ``+changes`` when
    tracked files other than results and Markdown prose differ from it; ``None`` outside a git
    checkout. A code change can change float rounding, and with it the tokens a run samples
    (docs/benchmarks.md), so a record names its code."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        head, changed = (
            git("rev-parse", "HEAD"),
            git("status", "--porcelain", "--untracked-files=no", "--", *NOT_CODE),
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if changed else "")


def execute(
    out: Path, suite_name: str, suite: Suite, task: str, key: str, seed: int
) -> dict[str, Any]:
    """Train (unless the row needs no training) and evaluate one run; save and return its
    record. Raises the trainer's and evaluator's errors."""
    row = ROWS[key]
    record: dict[str, Any] = {
        "suite": suite_name,
        "task": task,
        "row": key,
        "label": row.label,
        "algo": row.algo,
        "seed": seed,
        "init_from": row.init_from,
    }
    record |= train_row(out, suite, task, key, seed)
    t0 = time.perf_counter()
    result = evaluate_row(out, suite, task, key, seed)
    samples = result["samples"]
    record |= {
        "eval": {
            "split": "test",
            "seed": seed,
            "batch_size": suite.eval_batch_size,
            "num_samples": result["num_samples"],
            **{k: suite.shared[k] for k in SAMPLING},
            "num_beams": result["decoding"]["num_beams"],
        },
        "metrics": result["metrics"],
        "eval_seconds": time.perf_counter() - t0,
        "prompts": [s["prompt"] for s in samples],
        "generations": [s["generation"] for s in samples],
        "rewards": [s["reward"] for s in samples],
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "code_commit": code_commit(),
    }
    if row.algo == ZERO_SHOT and report.splits_by_initial_reward(task):
        # The difficulty split (report.DIFFICULTY, the paper's Figure 3) groups prompts by the
        # initial policy's reward. Measured on the samples this row reports, it would select
        # on their noise (a prompt lands in "easy" partly because its one sample was lucky),
        # so the split gets samples of its own, from other evaluation seeds; several, since
        # one VADER sample per prompt hardly tells prompts apart (two such samples of the
        # same prompts correlated at -0.09 on IMDB-v0).
        seeds = [SPLIT_SEED + suite.split_samples * seed + j for j in range(suite.split_samples)]
        splits = [evaluate_row(out, suite, task, key, seed, eval_seed=s) for s in seeds]
        record["split_eval_seeds"] = seeds
        record["split_rewards"] = [[s["reward"] for s in r["samples"]] for r in splits]
    record = add_samples(out, suite, record)
    record["seconds"] = (
        record["train_seconds"] + record["eval_seconds"] + record["extra_eval_seconds"]
    )
    write_json(result_path(out, task, key, seed), record)
    return record


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    default_mode(tmp)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the suite


def prune_checkpoints(run_dir: Path, donor: bool) -> None:
    """Delete a finished run's checkpoints; a run that BC+X rows start from keeps its newest
    (the TensorBoard log stays)."""
    for ckpt in checkpoint_dirs(run_dir)[1 if donor else 0 :]:
        shutil.rmtree(ckpt, ignore_errors=True)


def changed_settings(out: Path, suite: Suite, task: str, key: str, seed: int) -> list[str]:
    """Config fields in which a saved run differs from what the suite's table now says (a
    table edited since: delete the run's JSON to run it again)."""
    saved = json.loads(result_path(out, task, key, seed).read_text(encoding="utf-8"))["config"]
    if ROWS[key].algo == GUIDE or saved is None:
        return []
    # through JSON as the record was written, so that a tuple field compares with its list
    now = json.loads(
        json.dumps(dataclasses.asdict(build_config(suite, ROWS[key], task, seed, Path())))
    )
    # a field added to the configs since keeps the run's behaviour at its default: not listed;
    # the run directory and data file are where the runner put them, not settings
    return sorted(
        k for k, v in now.items() if k not in ("output_dir", "data") and saved.get(k, v) != v
    )


def complete_samples(out: Path, suite: Suite, task: str, key: str, seed: int, where: str) -> None:
    """Give a saved run the extra test samples the suite now asks for (:func:`add_samples`)
    where its policy can be had: the guide, a kept checkpoint, or the zero-shot policy
    (trained again: 0 iterations, checked against its record by :func:`rebuild`). A run whose
    checkpoint is gone keeps the samples it has (the report says so); deleting its JSON runs
    it again."""
    path = result_path(out, task, key, seed)
    record = json.loads(path.read_text(encoding="utf-8"))
    missing = missing_seeds(suite, record)
    if not missing:
        return
    rdir = run_path(out, task, key, seed)
    if ROWS[key].algo == ZERO_SHOT and not checkpoint_dirs(rdir):
        rebuild(out, suite, task, key, seed)
    if ROWS[key].algo != GUIDE and not checkpoint_dirs(rdir):
        print(f"{where}: has {1 + len(record.get('extra_eval_seeds', []))} test sample(s) per "
              f"prompt of {1 + len(extra_seeds(suite, task, seed))}, and its checkpoint is gone: "
              f"delete {path} to run it again", flush=True)  # fmt: skip
        return
    write_json(path, add_samples(out, suite, record))
    print(f"{where}: added {len(missing)} test sample(s) per prompt", flush=True)
    if not suite.keep_checkpoints:
        prune_checkpoints(rdir, donor=key in {ROWS[r].init_from for r in suite.rows})


def plan(suite: Suite, rows: Sequence[str], tasks: Sequence[str], seeds: Sequence[int]):
    """``[(task, row, seed), ...]`` in run order; a BC+X row brings its BC row along."""
    needed = set(rows) | {ROWS[r].init_from for r in rows if ROWS[r].init_from}
    ordered = [r for r in suite.rows if r in needed]
    return [(t, r, s) for t in tasks for s in seeds for r in ordered]


def run_suite(
    out: Path, suite_name: str, rows: Sequence[str], tasks: Sequence[str], seeds: Sequence[int]
) -> int:
    """Run every missing run of the plan; returns how many failed (each is reported)."""
    suite = SUITES[suite_name]
    todo = plan(suite, rows, tasks, seeds)
    out.mkdir(parents=True, exist_ok=True)
    ignore = out / ".gitignore"
    if not ignore.exists():  # checkpoints and TensorBoard logs stay out of git
        ignore.write_text("rundirs/\n")
    failed: set[tuple[str, str, int]] = set()
    donors = {ROWS[r].init_from for r in suite.rows}
    begin = time.perf_counter()
    for i, (task, key, seed) in enumerate(todo, 1):
        where = f"[{i}/{len(todo)}] {short(task)} · {ROWS[key].label} · seed {seed}"
        if result_path(out, task, key, seed).exists():
            changed = changed_settings(out, suite, task, key, seed)
            note = f" (the table now differs in {', '.join(changed)})" if changed else ""
            print(f"{where}: done before, skipped{note}", flush=True)
            try:
                complete_samples(out, suite, task, key, seed, where)
            except (RunSetupError, CheckpointError, GuideError, SuiteError) as err:
                print(f"{where}: FAILED to add samples: {' '.join(str(err).split())}", flush=True)
                failed.add((task, key, seed))
            continue
        if (task, ROWS[key].init_from, seed) in failed:
            print(f"{where}: skipped, its {ROWS[key].init_from} run failed", flush=True)
            failed.add((task, key, seed))
            continue
        try:
            record = execute(out, suite_name, suite, task, key, seed)
        except (RunSetupError, CheckpointError, TrainingDiverged, GuideError, SuiteError) as err:
            print(f"{where}: FAILED: {' '.join(str(err).split())}", flush=True)
            failed.add((task, key, seed))
            continue
        resumed = " (resumed)" if record["resumed"] else ""
        print(
            f"{where}: reward {record['metrics']['task_reward']:.3f}; "
            f"{record['iterations']} it{resumed} in {record['train_seconds']:.1f} s, "
            f"eval {record['eval_seconds']:.1f} s",
            flush=True,
        )
        if not suite.keep_checkpoints:
            prune_checkpoints(run_path(out, task, key, seed), donor=key in donors)
    print(
        f"{len(todo)} runs planned, {len(failed)} failed; wall time "
        f"{time.perf_counter() - begin:.0f} s",
        flush=True,
    )
    return len(failed)


def write_outputs(out: Path, suite_name: str) -> list[Path]:
    """Rebuild the report from the run JSONs in ``out``."""
    suite = SUITES[suite_name]
    records = report.load_records(out)
    return report.write_report(
        out,
        records,
        title=f"{suite_name} suite",
        about=suite.about,
        row_order=suite.rows,
        task_order=suite.tasks,
        expected_seeds=len(suite.seeds),
    )


def _parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the missing runs, write the report; returns the exit
    status (1 when a run failed). A bad flag ends in one line on stderr and status 2."""
    parser = OneLineErrors(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--suite", required=True, help=f"one of {', '.join(SUITES)}")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
    parser.add_argument("--only", help="comma-separated rows (default: all of the suite's)")
    parser.add_argument("--tasks", help="comma-separated env ids or names (default: all)")
    parser.add_argument("--out", help="output folder (default: benchmarks/results/<suite>)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild the report from the saved run JSONs",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.suite not in SUITES:
        parser.error(f"unknown suite {args.suite!r}; choose from {', '.join(SUITES)}")
    suite = SUITES[args.suite]
    try:
        check_suite(args.suite, suite)
        prepacking_enabled()  # every record says it: a bad value is refused before any run
    except (SuiteError, ValueError) as err:
        parser.error(str(err))
    rows = list(suite.rows)
    if args.only is not None:
        rows = _parse_list(args.only)
        bad = [r for r in rows if r not in suite.rows]
        if bad or not rows:
            parser.error(
                f"--only: unknown row(s) {', '.join(bad) or '(none given)'} of suite "
                f"{args.suite}; choose from {', '.join(suite.rows)}"
            )
    tasks = list(suite.tasks)
    if args.tasks is not None:
        names = {short(t): t for t in suite.tasks} | {t: t for t in suite.tasks}
        wanted = _parse_list(args.tasks)
        bad = [t for t in wanted if t not in names]
        if bad or not wanted:
            parser.error(
                f"--tasks: unknown task(s) {', '.join(bad) or '(none given)'} of suite "
                f"{args.suite}; choose from {', '.join(map(short, suite.tasks))}"
            )
        tasks = [names[t] for t in wanted]
    seeds = list(suite.seeds)
    if args.seeds is not None:
        items = _parse_list(args.seeds)
        if not items or not all(s.isdigit() for s in items):
            parser.error(f"--seeds must be comma-separated integers >= 0, got {args.seeds!r}")
        seeds = [int(s) for s in items]
    out = Path(args.out) if args.out else RESULTS / args.suite
    if suite.threads:
        torch.set_num_threads(suite.threads)
    failed = 0 if args.report_only else run_suite(out, args.suite, rows, tasks, seeds)
    try:
        written = write_outputs(out, args.suite)
    except report.ReportError as err:
        parser.error(str(err))
    for path in written:
        print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
