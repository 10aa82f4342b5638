"""The benchmark suites as literal tables (issue #14): which rows, tasks, seeds and settings.

:data:`ROWS` maps a row name to its algorithm, its config overrides and, for BC+X rows, the
row whose checkpoint starts training; :data:`SUITES` maps a suite name to its tasks, seeds,
rows, the settings of every run (a row's config is, later winning: the suite's ``shared`` <
``per_algo[algo]`` < ``per_task[env id]`` < the row's overrides) and how runs are evaluated;
:data:`DATA_SOURCE` says who writes each task's offline data file. :mod:`benchmarks.run`
builds the runs' configs from these tables, checks them and runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.cli import PRESETS

__all__ = [
    "DATA_SOURCE",
    "GUIDE",
    "OFFLINE_ROWS",
    "PAPER_ROWS",
    "ROWS",
    "SUITES",
    "ZERO_SHOT",
    "Row",
    "Suite",
]

ZERO_SHOT = "zero-shot"
"""A row's "algorithm" for the initial policy: a run of 0 iterations, then evaluated."""
GUIDE = "guide"
"""A row's "algorithm" for the task's guide, scored on the same prompts (no training)."""


@dataclass(frozen=True)
class Row:
    """One row of the results table."""

    label: str
    """As the table prints it."""
    algo: str
    """``--algo`` name (:data:`agents.algorithms.ALGORITHMS`), :data:`ZERO_SHOT` or
    :data:`GUIDE`."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields this row sets (after the suite's settings)."""
    init_from: str | None = None
    """Row whose checkpoint (same task, same seed) starts training and becomes π_ref (BC+X)."""


# Row name -> row. The BC of BC+X is the "bc" row of the same task and seed. The A-LoL rows
# learn from the suite's shared data file of the task (see `data_file`); ReST grows its own.
ROWS: dict[str, Row] = {
    "zero-shot": Row("Zero-shot", ZERO_SHOT),
    "guide": Row("Guide", GUIDE),
    "bc": Row("BC", "bc"),
    "ppo": Row("PPO", "ppo"),
    "ppo_pp": Row("PPO++", "ppo_pp"),
    "aggrevated": Row("AggreVaTeD", "aggrevated"),
    "lols": Row("LOLS", "lols"),
    "d2lols": Row("D2LOLS", "d2lols"),
    "bc+ppo": Row("BC+PPO", "ppo", init_from="bc"),
    "bc+ppo_pp": Row("BC+PPO++", "ppo_pp", init_from="bc"),
    "bc+d2lols": Row("BC+D2LOLS", "d2lols", init_from="bc"),
    "alol": Row("A-LoL", "alol"),
    "alol_seq": Row("A-LoL seq", "alol_seq"),
    "rest": Row("ReST", "rest"),
    "bc+alol": Row("BC+A-LoL", "alol", init_from="bc"),
    "bc+alol_seq": Row("BC+A-LoL seq", "alol_seq", init_from="bc"),
    "bc+rest": Row("BC+ReST", "rest", init_from="bc"),
}
PAPER_ROWS = tuple(ROWS)
OFFLINE_ROWS = ("alol", "alol_seq", "rest", "bc+alol", "bc+alol_seq", "bc+rest")
# Env id -> who writes the offline data file: the references where the task has them, else
# the task's guide (the data an A-LoL run makes itself when given no --data file).
DATA_SOURCE: dict[str, str] = {
    "textgen_env/Positive-v0": "guide",
    "textgen_env/Reverse-v0": "references",
    "textgen_env/Twist-v0": "guide",
    "textgen_env/IMDB-v0": "guide",
    "textgen_env/CommonGen-v0": "references",
    "textgen_env/TLDR-v0": "references",
}


@dataclass(frozen=True)
class Suite:
    """A benchmark: which runs, with which settings, evaluated how."""

    about: str
    """One paragraph for the top of ``table.md``: the budget and what it is meant to show."""
    tasks: tuple[str, ...]
    """Env ids, run in this order."""
    seeds: tuple[int, ...]
    """Default seeds (``--seeds`` replaces them); a cell with fewer is marked partial."""
    rows: tuple[str, ...]
    """Names in :data:`ROWS`, run in this order (a BC+X row after its BC row)."""
    shared: dict[str, Any]
    """Config fields of every run (the same β_KL, learning rate and sampling for all)."""
    per_algo: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``--algo`` name -> fields of that algorithm's runs (budget, β, τ)."""
    per_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Env id -> fields of that task's runs."""
    eval_batch_size: int = 64
    """Episodes per evaluation batch."""
    eval_num_samples: int | None = None
    """Evaluate the first N test prompts (None: all)."""
    eval_samples: int = 1
    """Samples per test prompt of each run: the first with the run's seed (every metric), the
    others with :data:`benchmarks.run.EXTRA_SEED` seeds (the task reward only); the table's
    reward is their mean. A task decoded with beam search takes one (it is deterministic)."""
    eval_num_beams: dict[str, int] = field(default_factory=dict)
    """Env id -> beams of a deterministic beam search at evaluation, in place of sampling
    (every policy row of that task; the guide row samples as the runs see it)."""
    data: dict[str, Any] = field(default_factory=dict)
    """:class:`agents.make_data.MakeDataConfig` fields of the offline data file of each task
    (source: :data:`DATA_SOURCE`; the guide's ε: ``shared``'s ``guide_epsilon``)."""
    threads: int | None = None
    """torch threads (None: torch's default). One is much faster for the tiny toy LMs."""
    split_samples: int = 4
    """Samples per test prompt of the zero-shot policy's extra evaluations that split the
    prompts by difficulty (report.DIFFICULTY), per seed; their mean over seeds ranks them."""
    keep_checkpoints: bool = True
    """Keep a finished run's checkpoints (False: delete them once its JSON is saved, except
    the newest of a run that BC+X rows start from; a SmolLM2 checkpoint with its optimizer is
    about 1.6 GB)."""


# The toy suite: cpu-small (agents/cli.py) for 40 iterations of 256 episodes. τ is 20% of the
# run in AggreVaTeD: D2LOLS switches to PPO++ after 8 iterations; LOLS runs PPO++ on 80% of
# its iterations (the paper's Table 2 found that split best). β: the paper's (PPO++ roll-in
# 0.2, AggreVaTeD roll-out 0.8), the same wherever an algorithm uses them. BC clones the
# ε = 0.3 scripted guide's own roll-outs (Positive and Twist have no references) for 10
# iterations, 4 epochs each; BC+X then runs X's full budget from it.
# The offline rows: A-LoL (and A-LoL seq) take TOY_ALOL steps of 64 rows from the task's data
# file (Reverse: its 512 references; Positive, Twist: 4 episodes of the ε = 0.3 guide per train
# prompt); ReST grows 4 episodes per train prompt from π 3 times, each followed by the 4
# Improve steps of the default schedule (12 iterations), 2 epochs each.
TOY_ITERATIONS = 40
TOY_GUIDED = {"ppo_pp_beta": 0.2, "aggrevated_beta": 0.8}
TOY_ALOL = {"batch_size": 64, "total_iterations": 300, "value_steps": 300, "checkpoint_every": 100}
# paper-small: SmolLM2-135M-Instruct and its prompted guide, from issue #14's data point (--preset
# paper --batch-size 16 --minibatch-size 8 --update-epochs 1: 25 iterations = 400 episodes; 881 s
# of training for PPO's seed 0 on 2 CPU cores, where issue #14's check took about 12 minutes;
# guided rows cost more, the guide writes part of each batch). Same β_KL 0.05 (fixed), learning
# rate 1e-5 and top-k 50 for every row; D2LOLS: 5 of 25 iterations in AggreVaTeD (20%). BC: 25
# iterations of 16 demonstrations (the references; IMDB has none, so the prompted guide's
# roll-outs). The offline rows as in the IMDB evidence of benchmarks/offline.py: A-LoL 60 steps of
# 16 rows (IMDB: 2 guide episodes per train prompt; CommonGen, TL;DR: the references); ReST one
# Grow of 2 episodes per train prompt, then 4 Improve steps. CommonGen is decoded with beam search
# of 5 at evaluation (as the paper scored it); the other tasks sample with top-k 50.
PAPER_ITERATIONS = 25
PAPER_ALOL = {"total_iterations": 60, "checkpoint_every": 30}
SUITES: dict[str, Suite] = {
    "toy": Suite(
        about=(
            "Toy tasks with a tiny random LM (2 layers, 64 wide) and the ε = 0.3 scripted "
            f"guide; the `cpu-small` preset for {TOY_ITERATIONS} iterations of 256 episodes "
            "(BC: 10 iterations); 30-40 minutes on 2 CPU cores."
        ),
        tasks=("textgen_env/Positive-v0", "textgen_env/Reverse-v0", "textgen_env/Twist-v0"),
        seeds=(0, 1, 2, 3, 4),
        rows=PAPER_ROWS,
        shared=PRESETS["cpu-small"]["all"]
        | {"total_iterations": TOY_ITERATIONS, "guide_epsilon": 0.3, "temperature": 1.0},
        per_algo={
            "bc": {"total_iterations": 10, "epochs": 4, "demonstrations": "guide"},
            "ppo_pp": {"beta": TOY_GUIDED["ppo_pp_beta"]},
            "aggrevated": {"beta": TOY_GUIDED["aggrevated_beta"]},
            "lols": {"tau": 0.8, **TOY_GUIDED},
            "d2lols": {"tau": TOY_ITERATIONS // 5, **TOY_GUIDED},
            "alol": TOY_ALOL,
            "alol_seq": TOY_ALOL,
            "rest": {"total_iterations": 12, "minibatch_size": 64, "improve_epochs": 2},
        },
        data={"samples_per_prompt": 4, "batch_size": 64, "seed": 0},
        threads=1,
    ),
    "paper-small": Suite(
        about=(
            "IMDB-v0, CommonGen-v0 and TLDR-v0 with SmolLM2-135M-Instruct and its prompted "
            f"guide; {PAPER_ITERATIONS} iterations of 16 episodes per run (each row's wall time "
            "on 2 CPU cores is listed below the table); IMDB-v0 runs first."
        ),
        tasks=("textgen_env/IMDB-v0", "textgen_env/CommonGen-v0", "textgen_env/TLDR-v0"),
        seeds=(0, 1, 2),
        rows=PAPER_ROWS,
        shared=PRESETS["paper"]["all"]
        | {
            "batch_size": 16,
            "minibatch_size": 8,
            "update_epochs": 1,
            "total_iterations": PAPER_ITERATIONS,
            "kl_coef": 0.05,
            "temperature": 1.0,
            "checkpoint_every": 5,
            "log_samples_every": 5,
        },
        per_algo={
            "bc": {"demonstrations": "reference"},
            "ppo_pp": {"beta": 0.2},
            "aggrevated": {"beta": 0.8},
            "lols": {"tau": 0.8, "ppo_pp_beta": 0.2, "aggrevated_beta": 0.8},
            "d2lols": {"tau": PAPER_ITERATIONS // 5, "ppo_pp_beta": 0.2, "aggrevated_beta": 0.8},
            "alol": PAPER_ALOL,
            "alol_seq": PAPER_ALOL,
            "rest": {"total_iterations": 4, "samples_per_prompt": 2, "minibatch_size": 16},
        },
        per_task={"textgen_env/IMDB-v0": {"demonstrations": "guide"}},
        data={"samples_per_prompt": 2, "batch_size": 16, "seed": 0},
        eval_batch_size=30,
        eval_samples=3,
        eval_num_beams={"textgen_env/CommonGen-v0": 5},
        keep_checkpoints=False,
    ),
    # The pipeline end to end in seconds (the tests run it): 2 iterations of 16 episodes.
    "smoke": Suite(
        about="Pipeline check: 2 iterations of 16 episodes on Positive-v0 (no learning).",
        tasks=("textgen_env/Positive-v0",),
        seeds=(0, 1),
        rows=("zero-shot", "guide", "bc", "ppo", "bc+ppo", "alol", "rest", "bc+alol"),
        shared={
            "batch_size": 16,
            "minibatch_size": 8,
            "update_epochs": 1,
            "top_k": 0,
            "temperature": 1.0,
            "learning_rate": 1e-3,
            "total_iterations": 2,
            "guide_epsilon": 0.3,
            "checkpoint_every": 1,
            "log_samples_every": 0,
        },
        per_algo={
            "bc": {"demonstrations": "guide"},
            "alol": {"value_samples": 1, "value_steps": 5},
            "rest": {"total_iterations": 4, "max_prompts": 16, "samples_per_prompt": 1},
        },
        data={"samples_per_prompt": 1, "max_prompts": 32, "batch_size": 16, "seed": 0},
        eval_batch_size=48,
        eval_samples=2,
        threads=1,
        split_samples=2,
    ),
}
