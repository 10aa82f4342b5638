"""The benchmark report, rebuilt from the run JSONs of :mod:`benchmarks.run` alone.

Writes into the suite's folder:

* ``table.md``: the paper's Table 1 layout: one row per algorithm, per task its metrics
  (:data:`COLUMNS`, the task reward first) as mean ± std over seeds; a cell with fewer seeds
  than the suite's says how many, and its column is marked partial. Below it the settings
  every run shared, those each row set, the offline data files the A-LoL rows learned from,
  and the wall time per run.
* ``runs.csv``: one line per run (seed, budget, times, every metric).
* ``curves_<task>.png``: the task reward of π's own training episodes against episodes, one
  line per algorithm (mean over seeds, a band of ± std), with the zero-shot, BC and guide test
  rewards as horizontal lines.
* ``difficulty.md`` and ``difficulty_<task>.png``: the paper's Figure 3: test prompts split
  into groups (:data:`DIFFICULTY`: IMDB by the zero-shot policy's reward on samples of its
  own, CommonGen by
  concepts unseen in training) and each row's mean reward per group.
* ``samples_<task>.md``: every row's generation for the same first test prompts.
"""

from __future__ import annotations

import csv
import itertools
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLUMNS", "DIFFICULTY", "ReportError", "load_records", "write_report"]


class ReportError(ValueError):
    """The report cannot be built (no run results, matplotlib missing)."""


Records = list[dict[str, Any]]

# env id -> (metric key, column header) of the table; the task reward first.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "textgen_env/Positive-v0": (
        ("task_reward", "reward"),
        ("distinct_2", "dist-2"),
        ("mean_length", "words"),
    ),
    "textgen_env/Reverse-v0": (
        ("task_reward", "reward"),
        ("exact_match", "exact"),
        ("mean_chars", "chars"),
    ),
    "textgen_env/Twist-v0": (
        ("task_reward", "reward"),
        ("distinct_2", "dist-2"),
        ("mean_length", "words"),
    ),
    "textgen_env/IMDB-v0": (
        ("task_reward", "VADER"),
        ("perplexity", "perplexity"),
        ("distinct_2", "dist-2"),
    ),
    "textgen_env/CommonGen-v0": (
        ("task_reward", "CIDEr-D"),
        ("rouge_l", "ROUGE-L"),
        ("bleu_4", "BLEU-4"),
        ("meteor", "METEOR"),
        ("bertscore_minilm_f1", "BERTScore (MiniLM)"),
    ),
    "textgen_env/TLDR-v0": (
        ("task_reward", "ROUGE-L"),
        ("rouge_1", "ROUGE-1"),
        ("meteor", "METEOR"),
        ("bertscore_minilm_f1", "BERTScore (MiniLM)"),
    ),
}
# env id -> {metric: (prompt, generation) -> value}: metrics the report adds, as the mean
# over a run's test generations (the evaluator's words and n-grams say nothing on Reverse,
# whose completions are one word).
DERIVED: dict[str, dict[str, Callable[[str, str], float]]] = {
    "textgen_env/Reverse-v0": {
        "exact_match": lambda prompt, text: float(text == prompt.removesuffix("=")[::-1]),
        "mean_chars": lambda prompt, text: float(len(text)),
    },
}
SAMPLE_PROMPTS = 4
"""Test prompts shown in ``samples_<task>.md`` (the first ones, for every row)."""
REFERENCE_LINES = {"zero-shot": ("tab:gray", "--"), "bc": ("tab:brown", "-."), "guide": ("k", ":")}
"""Rows drawn as horizontal lines (their test reward) on the learning curves."""
CURVE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:pink",
                "tab:olive", "tab:cyan")  # fmt: skip
"""The learning curves' colors (not those of :data:`REFERENCE_LINES`), repeated if needed."""


def load_records(folder: Path) -> Records:
    """Every run JSON under ``folder/run_results``."""
    paths = sorted((Path(folder) / "run_results").glob("*/*.json"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths if not p.name.startswith(".")]


def short(task: str) -> str:
    """``textgen_env/IMDB-v0`` -> ``IMDB-v0``."""
    return task.split("/")[-1]


def _ordered(found: set[str], order: Sequence[str]) -> list[str]:
    return [x for x in order if x in found] + sorted(found - set(order))


def _fmt(x: float) -> str:
    return f"{x:.1f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) >= 10 else f"{x:.3f}"


def _mean_std(values: Sequence[float]) -> str:
    """``mean ± sample std``; one value alone (one seed has no spread to show)."""
    if len(values) == 1:
        return _fmt(values[0])
    return f"{_fmt(statistics.mean(values))} ± {_fmt(statistics.stdev(values))}"


# ----------------------------------------------------------------------------- paired gains


PAIRED_WITH = ("zero-shot", "guide")
"""Rows every other row is compared with prompt by prompt (:func:`paired_gain`)."""


def paired_gain(runs: Records, base: Records) -> tuple[float, float, list[float]] | None:
    """``(gain, se, per-seed gains)`` of ``runs`` over ``base`` on the same test prompts,
    paired by seed and prompt: for each seed both have, d_p = the run's reward of prompt p
    minus the base's (each the mean over its samples, :func:`prompt_rewards`); the seed's gain
    is mean_p d_p with standard error std_p(d_p) / √P; pooled over the n seeds, the gain is
    the mean of theirs and se = √(Σ se_s²) / n. The spread between prompts and samples is in
    se; that between training seeds is not (see the per-seed gains). None without a shared
    seed on the same prompts."""
    bases = {r["seed"]: r for r in base}
    gains, ses = [], []
    for r in sorted(runs, key=lambda r: r["seed"]):
        b = bases.get(r["seed"])
        if b is None or b["prompts"] != r["prompts"]:
            continue
        d = prompt_rewards(r) - prompt_rewards(b)  # (P,)
        gains.append(float(d.mean()))
        ses.append(float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"))
    if not gains:
        return None
    se = float(np.sqrt(np.sum(np.square(ses)))) / len(ses)
    return float(np.mean(gains)), se, gains


def _paired_lines(
    by: dict[str, dict[str, Records]], tasks: list[str], rows: list[str], labels: dict[str, str]
) -> list[str]:
    """The table of each row's paired gain over the zero-shot policy and over the guide."""
    lines = []
    for task in tasks:
        bases = [b for b in PAIRED_WITH if by[task].get(b)]
        others = [r for r in rows if r not in PAIRED_WITH and by[task].get(r)]
        if not bases or not others:
            continue
        if not lines:
            lines = [
                "## Paired with zero-shot and the guide",
                "",
                "Each row's task reward minus that of the zero-shot policy (or the guide) on the "
                "same test prompts and seed, prompt by prompt (each the mean over its samples), "
                "pooled over seeds: gain ± standard error over prompts; the seeds' own gains in "
                "brackets. A gain of two standard errors or more is unlikely from the sampling "
                "of prompts and completions alone; the spread between training seeds shows in "
                "the brackets.",
            ]
        lines += [
            "",
            f"{short(task)}:",
            "",
            "| Row | " + " | ".join(f"minus {labels[b]}" for b in bases) + " |",
            "|---|" + "---|" * len(bases),
        ]
        for row in others:
            cells = []
            for b in bases:
                got = paired_gain(by[task][row], by[task][b])
                if got is None:
                    cells.append("—")
                    continue
                gain, se, per_seed = got
                seeds = ", ".join(f"{g:+.3f}" for g in per_seed)
                cells.append(f"{gain:+.3f} ± {se:.3f} ({seeds})")
            lines.append(f"| {labels[row]} | " + " | ".join(cells) + " |")
    return [*lines, ""] if lines else []


# ----------------------------------------------------------------------------- difficulty


def _terciles_by_initial_reward(prompts: list[str], initial: np.ndarray | None) -> list[str] | None:
    """IMDB (Figure 3): thirds of the prompts by the zero-shot policy's mean reward."""
    if initial is None:
        return None
    order = np.argsort(-initial, kind="stable")  # highest initial reward first: easy
    labels = [""] * len(prompts)
    for rank, i in enumerate(order):
        labels[i] = ("easy", "medium", "hard")[min(3 * rank // len(order), 2)]
    return labels


def _unseen_concepts(prompts: list[str], initial: np.ndarray | None) -> list[str]:
    """CommonGen (Figure 3): how many of the prompt's concepts no training prompt has."""
    from textgen_env.tasks.commongen import commongen_prompts

    def concepts(text: str) -> list[str]:
        return text.removeprefix("generate a sentence with:").strip().rstrip(".").split()

    seen = {c for p in commongen_prompts("train") for c in concepts(p.text)}
    counts = [sum(c not in seen for c in concepts(p)) for p in prompts]
    return [f"{min(n, 2)}{'+' if n >= 2 else ''} unseen" for n in counts]


def _reverse_length(prompts: list[str], initial: np.ndarray | None) -> list[str]:
    """Reverse: longer strings are harder to reverse (3-6 letters)."""
    return [
        {3: "3-4 letters", 4: "3-4 letters"}.get(len(p) - 1, f"{len(p) - 1} letters")
        for p in prompts
    ]


Grouping = Callable[[list[str], np.ndarray | None], list[str] | None]
"""(test prompt texts, the zero-shot mean reward of each or None) -> each prompt's group."""
SAME_PROMPTS = "not split: the reward scores the completion alone, whatever the prompt"
# env id -> (how the prompts are grouped, the grouping; None: no breakdown, and why).
DIFFICULTY: dict[str, tuple[str, Grouping | None]] = {
    "textgen_env/IMDB-v0": (
        "by the zero-shot policy's mean reward over seeds, in thirds",
        _terciles_by_initial_reward,
    ),
    "textgen_env/CommonGen-v0": (
        "by the number of concepts no training prompt has",
        _unseen_concepts,
    ),
    "textgen_env/Reverse-v0": ("by the length of the string to reverse", _reverse_length),
    "textgen_env/Positive-v0": (SAME_PROMPTS, None),
    "textgen_env/Twist-v0": (SAME_PROMPTS, None),
    "textgen_env/TLDR-v0": ("not split (the paper's Figure 3 covers IMDB and CommonGen)", None),
}
BUCKET_ORDER = (
    "easy",
    "medium",
    "hard",
    "0 unseen",
    "1 unseen",
    "2+ unseen",
    "3-4 letters",
    "5 letters",
    "6 letters",
)


def splits_by_initial_reward(task: str) -> bool:
    """Whether ``task``'s prompts are grouped by the zero-shot policy's reward (its zero-shot
    runs then sample the test prompts again for the split, ``benchmarks.run.SPLIT_SEED``)."""
    return DIFFICULTY.get(task, ("", None))[1] is _terciles_by_initial_reward


def split_samples(zero: Records) -> np.ndarray | None:
    """The zero-shot rewards the split ranks prompts by, ``(S, P)``: every sample of their own
    (``split_rewards``) when every zero-shot run has them, else the samples the row reports
    (see :func:`split_is_independent`)."""
    if not zero:
        return None
    key = "split_rewards" if split_is_independent(zero) else "rewards"
    return np.concatenate([np.atleast_2d(np.asarray(r[key], dtype=float)) for r in zero])


def _split_rewards(zero: Records) -> np.ndarray | None:
    """Per prompt, the mean of :func:`split_samples`."""
    samples = split_samples(zero)
    return None if samples is None else samples.mean(axis=0)


def split_half_reliability(samples: np.ndarray) -> tuple[float, float] | None:
    """How well ``samples`` ``(S, P)`` rank the P prompts: the correlation ``r`` over prompts
    of the means of the even and of the odd samples, and the Spearman–Brown reliability of
    the mean of all S, ``2r / (1 + r)`` (1: a stable ranking; 0 or below: noise). None for
    fewer than 2 samples or no spread."""
    if samples.shape[0] < 2:
        return None
    a, b = samples[0::2].mean(axis=0), samples[1::2].mean(axis=0)
    if a.std() == 0 or b.std() == 0:
        return None
    r = float(np.corrcoef(a, b)[0, 1])
    return r, (2 * r / (1 + r) if r > -1 else float("-inf"))


def split_is_independent(zero: Records) -> bool:
    """Whether the zero-shot runs ``zero`` carry samples of their own for the split. If not,
    the split selects on the noise of the very samples the zero-shot row reports: its "easy"
    cell is biased up and its "hard" cell down (regression to the mean)."""
    return bool(zero) and all("split_rewards" in r for r in zero)


def difficulty(
    task: str, groups: dict[str, Records]
) -> tuple[list[str], dict[str, dict[str, list[float]]]] | None:
    """``(buckets, {row: {bucket: [mean reward of each seed]}})`` of a task, or None."""
    how = DIFFICULTY.get(task, ("", None))[1]
    runs = [r for rs in groups.values() for r in rs]
    if how is None or not runs:
        return None
    prompts = _split_prompts(groups)
    labels = how(prompts, _split_rewards(_zero_shot_runs(groups)))
    if labels is None:
        return None
    buckets = _ordered(set(labels), BUCKET_ORDER)
    table: dict[str, dict[str, list[float]]] = {}
    for row, rs in groups.items():
        cells: dict[str, list[float]] = defaultdict(list)
        for r in rs:
            if r["prompts"] != prompts:
                continue  # evaluated on other prompts (another --num-samples)
            rewards = prompt_rewards(r)
            for b in buckets:
                cells[b].append(float(rewards[[lab == b for lab in labels]].mean()))
        table[row] = dict(cells)
    sizes = {b: labels.count(b) for b in buckets}
    return [f"{b} ({sizes[b]})" for b in buckets], {
        row: {f"{b} ({sizes[b]})": v for b, v in cells.items()} for row, cells in table.items()
    }


# ----------------------------------------------------------------------------- report


def write_report(
    folder: Path,
    records: Records,
    *,
    title: str,
    about: str,
    row_order: Sequence[str],
    task_order: Sequence[str],
    expected_seeds: int,
) -> list[Path]:
    """Write every output file of the report into ``folder``; returns their paths."""
    if not records:
        raise ReportError(f"no run results in {Path(folder) / 'run_results'}; run the suite first")
    folder = Path(folder)
    records = [_with_derived(r) for r in records]
    tasks = _ordered({r["task"] for r in records}, task_order)
    rows = _ordered({r["row"] for r in records}, row_order)
    by: dict[str, dict[str, Records]] = {t: defaultdict(list) for t in tasks}
    for r in sorted(records, key=lambda r: r["seed"]):
        by[r["task"]][r["row"]].append(r)
    labels = {r["row"]: r["label"] for r in records}
    written = [
        _write_table(folder, records, by, tasks, rows, labels, title, about, expected_seeds),
        _write_csv(folder, records, tasks, rows),
        _write_difficulty_table(folder, by, tasks, rows, labels),
    ]
    written += [_write_samples(folder, task, by[task], rows, labels) for task in tasks]
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError as err:
        raise ReportError(
            "the plots need matplotlib: .venv/bin/pip install -e '.[bench]' (table.md and "
            "runs.csv are written)"
        ) from err
    for task in tasks:
        written.append(_plot_curves(folder, task, by[task], rows, labels))
        path = _plot_difficulty(folder, task, by[task], rows, labels)
        if path is not None:
            written.append(path)
    return written


def prompt_rewards(record: dict[str, Any]) -> np.ndarray:
    """A run's test reward of each prompt, ``(P,)``: the mean over its samples (the first,
    ``rewards``, and the extra ones, ``extra_rewards``, where it has them)."""
    return np.mean([record["rewards"], *record.get("extra_rewards", [])], axis=0)


def samples_per_prompt(record: dict[str, Any]) -> int:
    """How many test samples per prompt a run was scored with."""
    return 1 + len(record.get("extra_rewards", []))


def _with_derived(record: dict[str, Any]) -> dict[str, Any]:
    if samples_per_prompt(record) > 1:  # the task reward: the mean over every sample
        reward = float(prompt_rewards(record).mean())
        record = record | {"metrics": record["metrics"] | {"task_reward": reward}}
    derived = DERIVED.get(record["task"], {})
    if not derived:
        return record
    pairs = list(zip(record["prompts"], record["generations"], strict=True))
    extra = {k: float(np.mean([f(p, g) for p, g in pairs])) for k, f in derived.items()}
    return record | {"metrics": record["metrics"] | extra}


def _write_table(
    folder: Path,
    records: Records,
    by: dict[str, dict[str, Records]],
    tasks: list[str],
    rows: list[str],
    labels: dict[str, str],
    title: str,
    about: str,
    expected: int,
) -> Path:
    seeds = sorted({r["seed"] for r in records})
    head, cells = ["Algorithm"], {row: [labels[row]] for row in rows}
    for task in tasks:
        columns = COLUMNS.get(task, (("task_reward", "reward"),))
        partial = any(len(by[task].get(row, [])) < expected for row in rows)
        for i, (key, name) in enumerate(columns):
            mark = " (partial)" if partial and i == 0 else ""
            head.append(f"{short(task)} {name}{mark}")
            for row in rows:
                values = [r["metrics"][key] for r in by[task].get(row, []) if key in r["metrics"]]
                n = len(by[task].get(row, []))
                cell = _mean_std(values) if values else "—"
                cells[row].append(cell + (f" (n={n})" if values and n < expected else ""))
    ev = records[0]["eval"]
    beams = sorted({(r["task"], r["eval"].get("num_beams", 1)) for r in records if r["config"]})
    beam_note = "".join(
        f" {short(t)}: every row but the guide decodes with beam search of {b} beams "
        "(deterministic), in place of sampling; each of its rows is scored on one sample "
        "per prompt."
        for t, b in beams
        if b > 1
    )
    lines = [
        f"# Results: {title}",
        "",
        about,
        "",
        f"Generated by `python -m benchmarks.run` from the {len(records)} run JSONs in "
        "`run_results/`; do not edit by hand. Test split, π alone, sampling with top-k "
        f"{ev['top_k'] or 'off'} and temperature {ev['temperature']}; {_samples_text(records)}. "
        f"Seeds {', '.join(map(str, seeds))}. Mean ± std over seeds (sample std; "
        f"one seed: its value alone); (n=k): a cell with fewer than {expected} seeds, and its "
        "task is marked partial. "
        "Zero-shot: the initial policy; Guide: the task's guide on the same prompts." + beam_note,
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(cells[row]) + " |" for row in rows),
        "",
        *_settings_lines(records, rows, labels),
        "",
        *_paired_lines(by, tasks, rows, labels),
        *_token_lines(by, tasks, rows, labels),
        *_data_lines(records, tasks),
        *_time_lines(by, tasks, rows, labels),
    ]
    path = folder / "table.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _samples_text(records: Records) -> str:
    """How many samples per test prompt the runs were scored with, and with which seeds."""
    counts = sorted({samples_per_prompt(r) for r in records})
    if counts == [1]:
        return "one sample per prompt (sampling seed = the run's seed)"
    most = max(counts)
    beam_tasks = {r["task"] for r in records if r["eval"].get("num_beams", 1) > 1}
    fewer = sorted(
        {(r["label"], short(r["task"]), samples_per_prompt(r)) for r in records
         if samples_per_prompt(r) < most and r["task"] not in beam_tasks}
    )  # fmt: skip
    text = (
        f"{most} samples per prompt (sampling seeds: the run's seed, then the "
        "`extra_eval_seeds` of its JSON, the same for every row of a seed); the task reward is "
        "their mean, the other metrics (perplexity among them) are those of the first sample"
    )
    if fewer:
        cells = ", ".join(f"{label} on {task} ({k})" for label, task, k in fewer)
        text += (
            f"; runs scored with fewer samples, their checkpoints deleted before the extra samples "
            f"were added (the mean is unbiased all the same, only noisier): {cells}"
        )
    return text


IGNORED = {"env_id", "seed", "output_dir", "init_from", "algo", "data"}
"""Config fields the settings lines leave out (the data file: see :func:`_data_lines`)."""


def _data_lines(records: Records, tasks: list[str]) -> list[str]:
    """The offline data file of each task (A-LoL rows), as the runs' records describe it."""
    files = {r["task"]: r["data"] for r in records if r.get("data")}
    if not files:
        return []
    lines = [
        "## Offline data",
        "",
        "The A-LoL rows of a task learn from one data file, written once by "
        "`agents.make_data` and shared by every seed (ReST grows its own from π):",
        "",
        "| Task | file | written by | rows | reward mean |",
        "|---|---|---|---|---|",
    ]
    for task in tasks:
        if task in files:
            d = files[task]
            how = d["settings"]["source"]
            if how != "references":
                how += f", {d['settings']['samples_per_prompt']} per train prompt"
                if task in GUIDE_EPSILON_TASKS:
                    how += f", ε = {d['settings']['guide_epsilon']}"
            lines.append(
                f"| {short(task)} | `{d['file']}` | {how} | {d['rows']} | "
                f"{_fmt(d['reward_mean'])} |"
            )
    return [*lines, ""]


GUIDE_EPSILON_TASKS = {"textgen_env/Positive-v0", "textgen_env/Reverse-v0", "textgen_env/Twist-v0"}
"""Tasks whose guide is the ε-noisy scripted expert (the real tasks' guide has no ε)."""


def _settings_lines(records: Records, rows: list[str], labels: dict[str, str]) -> list[str]:
    """The config fields every run agrees on, then those each row sets."""
    configs = [r["config"] for r in records if r["config"]]
    values: dict[str, set[str]] = defaultdict(set)
    for c in configs:
        for k, v in c.items():
            if k not in IGNORED:
                values[k].add(json.dumps(v))
    shared = {k: next(iter(v)) for k, v in values.items() if len(v) == 1}
    lines = [
        "## Settings",
        "",
        "Every run (each where its algorithm has the field): "
        + ", ".join(f"{k} {v}" for k, v in sorted(shared.items()))
        + ".",
        "",
        "| Row | algorithm | starts from | its own settings |",
        "|---|---|---|---|",
    ]
    for row in rows:
        rs = [r for r in records if r["row"] == row]
        own: dict[str, set[str]] = defaultdict(set)
        for r in rs:
            for k, v in (r["config"] or {}).items():
                if k not in IGNORED and k not in shared:
                    own[k].add(json.dumps(v))
        text = ", ".join(f"{k} {' / '.join(sorted(v))}" for k, v in sorted(own.items()))
        algo = rs[0]["config"]["algo"] if rs[0]["config"] else rs[0]["algo"]
        lines.append(f"| {labels[row]} | {algo} | {rs[0]['init_from'] or '—'} | {text or '—'} |")
    return lines


def _token_lines(
    by: dict[str, dict[str, Records]], tasks: list[str], rows: list[str], labels: dict[str, str]
) -> list[str]:
    """π's own tokens per training episode of each online row (its ``learner_tokens`` curve:
    the mean over iterations, then over seeds): at equal episodes, a guided row trains π on
    fewer of its own tokens, since the guide writes the rest of its guided episodes."""
    cells: dict[str, list[str]] = {}
    for row in rows:
        for t in tasks:
            means = [
                float(np.mean([v for _, v in r["curves"]["learner_tokens"]]))
                for r in by[t].get(row, [])
                if r.get("curves", {}).get("learner_tokens")
            ]
            cells.setdefault(row, []).append(_mean_std(means) if means else "—")
    kept = [row for row in rows if any(c != "—" for c in cells[row])]
    if not kept:
        return []
    return [
        "## π's own tokens per training episode",
        "",
        "The mean over a run's iterations of π's own generated tokens per episode, mean ± std "
        "over seeds: at the same number of episodes, the guided rows train π on fewer of its "
        "own tokens (the guide writes the rest of a guided episode: its roll-in before the "
        "switch point, or its roll-out after it).",
        "",
        "| Row | " + " | ".join(short(t) for t in tasks) + " |",
        "|---|" + "---|" * len(tasks),
        *(f"| {labels[row]} | " + " | ".join(cells[row]) + " |" for row in kept),
        "",
    ]


def _time_lines(
    by: dict[str, dict[str, Records]], tasks: list[str], rows: list[str], labels: dict[str, str]
) -> list[str]:
    total = sum(r["seconds"] for t in tasks for rs in by[t].values() for r in rs)
    lines = [
        "## Wall time",
        "",
        f"Sum over all runs: {total / 60:.1f} min. Mean seconds per run (train + evaluate):",
        "",
        "| Row | " + " | ".join(short(t) for t in tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for row in rows:
        cells = []
        for t in tasks:
            rs = by[t].get(row, [])
            cells.append(f"{statistics.mean(r['seconds'] for r in rs):.1f}" if rs else "—")
        lines.append(f"| {labels[row]} | " + " | ".join(cells) + " |")
    return lines


def _write_csv(folder: Path, records: Records, tasks: list[str], rows: list[str]) -> Path:
    metrics = sorted({k for r in records for k in r["metrics"]})
    fields = [
        "task",
        "row",
        "label",
        "algo",
        "seed",
        "iterations",
        "episodes",
        "init_from",
        "resumed",
        "train_seconds",
        "eval_seconds",
        "seconds",
        "eval_num_samples",
        "samples_per_prompt",
        "top_k",
        "temperature",
        "num_beams",
        *metrics,
    ]
    path = folder / "runs.csv"
    key = {(t, r): (i, j) for i, t in enumerate(tasks) for j, r in enumerate(rows)}
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in sorted(records, key=lambda r: (*key[(r["task"], r["row"])], r["seed"])):
            line = {k: r.get(k) for k in fields[:12]}
            line |= {
                "eval_num_samples": r["eval"]["num_samples"],
                "samples_per_prompt": samples_per_prompt(r),
                "top_k": r["eval"]["top_k"],
                "temperature": r["eval"]["temperature"],
                "num_beams": r["eval"].get("num_beams", 1),
            }
            line |= {k: r["metrics"].get(k) for k in metrics}
            for k in ("train_seconds", "eval_seconds", "seconds"):
                line[k] = round(line[k], 2)
            writer.writerow(line)
    return path


def _write_difficulty_table(
    folder: Path,
    by: dict[str, dict[str, Records]],
    tasks: list[str],
    rows: list[str],
    labels: dict[str, str],
) -> Path:
    lines = [
        "# Reward by prompt difficulty (the paper's Figure 3)",
        "",
        "Mean test reward of each row on each group of test prompts (group size in brackets), "
        "mean ± std over seeds. Generated from the run JSONs; do not edit by hand.",
    ]
    for task in tasks:
        how = DIFFICULTY.get(task, ("not split", None))[0]
        lines += ["", f"## {short(task)}: {how}", ""]
        split = difficulty(task, by[task])
        if split is None:
            if DIFFICULTY.get(task, ("", None))[1] is not None:
                lines.append("Needs the zero-shot row's runs.")
            continue
        buckets, table = split
        if splits_by_initial_reward(task):
            lines += [_split_note(_zero_shot_runs(by[task])), ""]
        lines += ["| Row | " + " | ".join(buckets) + " |", "|---|" + "---|" * len(buckets)]
        for row in rows:
            if row in table:
                cells = [_mean_std(table[row][b]) if table[row].get(b) else "—" for b in buckets]
                lines.append(f"| {labels[row]} | " + " | ".join(cells) + " |")
    path = folder / "difficulty.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _split_prompts(groups: dict[str, Records]) -> list[str]:
    """The test prompts :func:`difficulty` splits: those of the task's first run."""
    return next(r for rs in groups.values() for r in rs)["prompts"]


def _zero_shot_runs(groups: dict[str, Records]) -> Records:
    """The zero-shot runs evaluated on :func:`_split_prompts` (the split's source)."""
    prompts = _split_prompts(groups)
    return [r for r in groups.get("zero-shot", []) if r["prompts"] == prompts]


def _split_note(zero: Records) -> str:
    """What the IMDB split stands on: whose samples, how many, and how reliable a ranking."""
    samples = split_samples(zero)
    assert samples is not None
    if not split_is_independent(zero):
        return (
            "Split by the samples the zero-shot row reports: its easy and hard cells are "
            'biased apart (a prompt is "easy" partly because its sample was lucky); the other '
            "rows are not."
        )
    seeds = sorted(s for r in zero for s in r["split_eval_seeds"])
    note = (
        f"Split by {samples.shape[0]} samples per prompt of the zero-shot policy of their own "
        f"(evaluation seeds {', '.join(map(str, seeds))}), not the ones the rows report"
    )
    rel = split_half_reliability(samples)
    if rel is None:
        return note + "."
    r, rho = rel
    verdict = (
        "a usable ranking" if rho >= 0.7 else "mostly noise" if rho < 0.4 else "a rough ranking"
    )
    return (
        f"{note}. Split-half correlation of the per-prompt means r = {r:.2f}, reliability of "
        f"the ranking (Spearman–Brown) {rho:.2f}: {verdict}."
    )


def _cell_text(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or "(empty)"


def _write_samples(
    folder: Path, task: str, groups: dict[str, Records], rows: list[str], labels: dict[str, str]
) -> Path:
    lines = [
        f"# {short(task)}: sample generations",
        "",
        f"The first {SAMPLE_PROMPTS} test prompts, each row's run with its lowest seed. "
        "Generated from the run JSONs; do not edit by hand.",
    ]
    first = next(iter(groups.values()))[0]
    for i, prompt in enumerate(first["prompts"][:SAMPLE_PROMPTS]):
        lines += [
            "",
            f"## Prompt {i}: {_cell_text(prompt)}",
            "",
            "| Row | seed | reward | generation |",
            "|---|---|---|---|",
        ]
        for row in rows:
            rs = [r for r in groups.get(row, []) if r["prompts"][i : i + 1] == [prompt]]
            if rs:
                r = rs[0]
                lines.append(
                    f"| {labels[row]} | {r['seed']} | {r['rewards'][i]:.3f} | "
                    f"{_cell_text(r['generations'][i])} |"
                )
    path = folder / f"samples_{short(task)}.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row_colors(rows: Sequence[str]) -> dict[str, str]:
    """Each row's color, the same in every plot: the reference rows their own, the others
    :data:`CURVE_COLORS` in order."""
    others = itertools.cycle(CURVE_COLORS)
    return {
        row: REFERENCE_LINES[row][0] if row in REFERENCE_LINES else next(others) for row in rows
    }


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def _plot_curves(
    folder: Path, task: str, groups: dict[str, Records], rows: list[str], labels: dict[str, str]
) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors = row_colors(rows)
    window, seeds = 1, 0
    for row in rows:
        rs = groups.get(row, [])
        if not rs:
            continue
        if row in REFERENCE_LINES:
            color, style = REFERENCE_LINES[row]
            mean = statistics.mean(r["metrics"]["task_reward"] for r in rs)
            ax.axhline(mean, color=color, linestyle=style, label=f"{labels[row]} (test)")
            continue
        curves = [r["curves"].get("unguided") for r in rs]
        curves = [c for c in curves if c]
        if not curves:
            continue
        batch = rs[0]["config"]["batch_size"]
        window = max(1, rs[0]["iterations"] // 10)
        steps = sorted({s for c in curves for s, _ in c})
        per_seed = []
        for c in curves:
            lookup = dict((int(s), v) for s, v in c)
            series = np.array([lookup.get(int(s), np.nan) for s in steps], dtype=float)
            filled = np.where(np.isnan(series), np.nanmean(series), series)  # no π rows there
            per_seed.append(_smooth(filled, window))
        stack = np.vstack(per_seed)
        mean, std = stack.mean(0), stack.std(0)
        x = (np.asarray(steps) + 1) * batch
        color = colors[row]
        ax.plot(x, mean, color=color, label=labels[row])
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
        seeds = max(seeds, len(curves))
    ax.set_xlabel("training episodes (BC+X: after BC)")
    ax.set_ylabel("task reward of π's own episodes")
    ax.set_title(
        f"{short(task)}: moving average over {window} iterations, mean ± std over {seeds} seeds",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # not when every row shown is an offline one
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    path = folder / f"curves_{short(task)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_difficulty(
    folder: Path, task: str, groups: dict[str, Records], rows: list[str], labels: dict[str, str]
) -> Path | None:
    split = difficulty(task, groups)
    if split is None:
        return None
    import matplotlib.pyplot as plt

    buckets, table = split
    shown = [row for row in rows if row in table]
    colors = row_colors(rows)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / max(len(shown), 1)
    for j, row in enumerate(shown):
        means = [statistics.mean(table[row][b]) if table[row].get(b) else np.nan for b in buckets]
        stds = [
            statistics.stdev(table[row][b]) if len(table[row].get(b, [])) > 1 else 0.0
            for b in buckets
        ]
        x = np.arange(len(buckets)) + (j - (len(shown) - 1) / 2) * width
        ax.bar(x, means, width, yerr=stds, label=labels[row], capsize=2, color=colors[row])
    ax.set_xticks(np.arange(len(buckets)), buckets)
    ax.set_ylabel("mean test reward")
    ax.set_title(f"{short(task)}: {DIFFICULTY[task][0]}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    path = folder / f"difficulty_{short(task)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
