"""README figures rendered from ``benchmarks/results/``: ``python -m benchmarks.readme``.

Issue #14: README.md quotes measured figures only inside generated blocks, each between the
marker lines ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``. :data:`BLOCKS` maps
each block's NAME to the function that renders its text from the results files; the command
rewrites the text between every block's markers, and ``--check`` changes nothing and exits 1,
naming each stale block, when the README no longer matches the files.

The blocks and their sources (file names relative to ``benchmarks/results/``):

* ``demo``: the ``make demo`` paragraph (wall time, VADER before → after ± SE, the paired
  gain, guide, perplexity), from ``demo.json``;
* ``perf``: the performance table against TRL and which of issue #9's targets are met, from
  ``perf.json``;
* ``measured``: env throughput (``env_throughput.json``), roll-out vs ``generate`` and the
  guided iteration cost (``perf.json``), LMs in memory (``agent_perf.json``), policy vs guide
  (``policy_vs_guide.json``) and the toy learning table (``learning_twist.json``,
  ``learning_positive.json``, ``learning_reverse.json``);
* ``before-issue8``: the toy learning figures before and after the agents redesign, from
  ``before_issue8/learning_*.json`` and ``learning_*.json``;
* ``paper-small``: the IMDB-v0 columns of ``paper-small/table.md`` (written by
  ``python -m benchmarks.run --suite paper-small``), or a sentence saying it has not been run;
* ``offline``: the offline algorithms against BC on the same data, one column per task, from
  ``offline_toy.json``, ``offline_imdb.json`` and ``offline_commongen.json``.

Every render function takes a mapping from file name to its content (parsed JSON, or the text
of a ``.md`` file) and returns Markdown; :class:`ResultsFolder` is that mapping over a folder,
reading a file when a render function asks for it. A missing or duplicated marker raises
:class:`MarkerError`, a missing results file :class:`MissingResultsError`, a results file that
is not JSON or lacks a field :class:`ReadmeError`; at the command line each is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = Path(__file__).resolve().parent / "results"
GIB = 2**30
WIDTH = 96  # README line width

Results = Mapping[str, Any]
"""File name (relative to the results folder) -> parsed JSON, or text for a ``.md`` file."""


class ReadmeError(Exception):
    """The README cannot be rendered: a marker or a results file is wrong or missing."""


class MarkerError(ReadmeError):
    """A block's marker lines are missing, duplicated, out of order or unknown."""


class MissingResultsError(ReadmeError, KeyError):
    """A results file a block needs does not exist (a KeyError, so ``Mapping.get`` works)."""

    def __init__(self, path: Path, block: str | None = None) -> None:
        super().__init__(path)
        self.path, self.block = path, block

    def __str__(self) -> str:
        who = f"README block {self.block} needs" if self.block else "missing results file:"
        return f"{who} {self.path}, which does not exist"


class ResultsFolder(Mapping[str, Any]):
    """The results files of a folder, each read when first asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._cache:
            path = self.folder / name
            if not path.is_file():
                raise MissingResultsError(path)
            text = path.read_text(encoding="utf-8")
            try:
                self._cache[name] = json.loads(text) if path.suffix == ".json" else text
            except json.JSONDecodeError as error:
                raise ReadmeError(f"{path} is not valid JSON: {error}") from None
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        for path in sorted(self.folder.rglob("*")):
            if path.suffix in (".json", ".md") and path.is_file():
                yield path.relative_to(self.folder).as_posix()

    def __len__(self) -> int:
        return sum(1 for _ in self)


# ----------------------------------------------------------------------------- helpers


def ratio(value: float, reference: float) -> str:
    """``value / reference`` as the README writes a ratio: two decimals and ×."""
    return f"{value / reference:.2f}×"


def wrap(text: str, bullet: bool = False) -> str:
    """One paragraph (or ``* `` list item) broken into README-width lines.

    A line never starts with ``+``, ``-``, ``*`` or ``>`` and a space, which Markdown would read
    as a list or a quote: such a sign stays on the line of the word before it.
    """
    glued = re.sub(r" ([-+*>]) ", "\xa0\\1 ", text)
    return textwrap.fill(
        glued,
        width=WIDTH,
        initial_indent="* " if bullet else "",
        subsequent_indent="  " if bullet else "",
        break_long_words=False,
        break_on_hyphens=False,
    ).replace("\xa0", " ")


def bold_if(text: str, condition: bool) -> str:
    return f"**{text}**" if condition else text


def seed_range(seeds: Sequence[int]) -> str:
    """``0–4`` for consecutive seeds, else the seeds separated by commas."""
    ordered = sorted(seeds)
    if len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}–{ordered[-1]}"
    return ", ".join(map(str, ordered))


def short(env_id: str) -> str:
    """``textgen_env/Twist-v0`` -> ``Twist-v0``."""
    return env_id.split("/")[-1]


# ----------------------------------------------------------------------------- demo


def render_demo(results: Results) -> str:
    demo = results["demo.json"]
    rows, n, k = demo["rows"], demo["eval"]["num_samples"], len(demo["eval"]["seeds"])
    trained = next(name for name in rows if name not in ("zero-shot", "guide"))
    before, after, guide, gain = rows["zero-shot"], rows[trained], rows["guide"], demo["gain"]
    return wrap(
        f"`make demo` scores the zero-shot SmolLM2, its prompted guide and the {trained}-trained "
        f"policy on the same {n} {demo['eval']['split']} prompts, {k} samples each, and writes "
        f"`runs/demo/demo.png`. Last run: **{demo['minutes']:.1f} min** end to end, "
        f"VADER {before['task_reward']:.3f} ± {before['se']:.3f} → "
        f"**{after['task_reward']:.3f} ± {after['se']:.3f}** (± SE over the {n} prompts), "
        f"a gain of **{gain['task_reward']:+.3f} ± {gain['se']:.3f}** (paired by prompt), "
        f"guide {guide['task_reward']:.3f} ± {guide['se']:.3f}, "
        f"perplexity {before['perplexity']:.1f} → {after['perplexity']:.1f} "
        "(numbers in [demo.json](benchmarks/results/demo.json))."
    )


# ----------------------------------------------------------------------------- perf

# perf.json's iteration rows shown in the README, in order, with their README labels.
PERF_ROWS: dict[str, str] = {
    "ppo fp32": "ours, PPO fp32",
    "ppo activation checkpointing": "ours, PPO fp32, `--activation-checkpointing`",
    "ppo bf16 autocast": "ours, PPO `--bf16` autocast",
    "ppo LoRA r=8": "ours, PPO `--lora-rank 8`",
}


def perf_targets(perf: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Issue #9's targets: (what, the measured ratio, the target ratio)."""
    trl, it = perf["trl_ppo"], perf["iterations"]
    checkpointing = it["ppo activation checkpointing"]
    return [
        (
            "peak RSS ≤ 0.4× TRL's with activation checkpointing",
            checkpointing["peak_rss_bytes"] / trl["peak_rss_bytes"],
            0.4,
        ),
        ("fp32 time ≤ 0.5×", it["ppo fp32"]["seconds"] / trl["seconds"], 0.5),
        # The issue asks for both in one configuration: the time of the row with that memory.
        (
            "fp32 time ≤ 0.5× with activation checkpointing",
            checkpointing["seconds"] / trl["seconds"],
            0.5,
        ),
        ("bf16 ≤ 0.25×", it["ppo bf16 autocast"]["seconds"] / trl["seconds"], 0.25),
        ("roll-out ≤ 0.8× `generate`", perf["rollout_vs_generate"]["time_ratio_median"], 0.8),
    ]


def render_perf(results: Results) -> str:
    perf = results["perf.json"]
    trl, machine = perf["trl_ppo"], perf["machine"]
    lines = [
        "| | s/iteration | peak RSS |",
        "| --- | --- | --- |",
        "| TRL 1.12 PPO (its defaults, activation checkpointing) | "
        f"{trl['seconds']:.2f} | {trl['peak_rss_bytes'] / GIB:.2f} GiB |",
    ]
    for key, label in PERF_ROWS.items():
        row = perf["iterations"][key]
        lines.append(
            f"| {label} | {row['seconds']:.2f} ({ratio(row['seconds'], trl['seconds'])}) | "
            f"{row['peak_rss_bytes'] / GIB:.2f} GiB "
            f"({ratio(row['peak_rss_bytes'], trl['peak_rss_bytes'])}) |"
        )
    met = perf_targets(perf)
    verdicts = [
        f"{title}: " + ", ".join(f"{what} ({value:.2f}×)" for what, value, _ in group) + "."
        for title, group in (
            ("Met", [m for m in met if round(m[1], 2) <= m[2]]),
            ("Not met", [m for m in met if round(m[1], 2) > m[2]]),
        )
        if group
    ]
    lines += [
        "",
        wrap(
            f"Measured on a {machine['cores']}-core VM whose fp32 matmul ran at "
            f"{machine['matmul_gflops']['float32']:.0f} GFLOPS in this run. " + " ".join(verdicts)
        ),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- measured

# env id -> (task, metric) as the policy-vs-guide bullet names them.
POLICY_VS_GUIDE: dict[str, tuple[str, str]] = {
    "textgen_env/IMDB-v0": ("IMDB", "VADER"),
    "textgen_env/CommonGen-v0": ("CommonGen", "CIDEr-D"),
    "textgen_env/TLDR-v0": ("TL;DR", "ROUGE-L"),
}

# The toy learning files, one column each, in the README's order.
LEARNING_FILES = ("learning_twist.json", "learning_positive.json", "learning_reverse.json")

# learning_toy.py's variants -> the README's row labels, in the README's order.
LEARNING_ROWS: dict[str, str] = {
    "ppo": "PPO",
    "ppo_pp": "PPO++ (β 0.2)",
    "ppo_pp β=0.6": "PPO++ β 0.6 (TRIL)",
    "aggrevated": "AggreVaTeD",
    "aggrevated λ=0": "AggreVaTeD, λ 0 on guided rows (paper's Q^g − V^g)",
    "lols": "LOLS",
    "lols β=0.6": "LOLS, PPO++ β 0.6",
    "d2lols": "D2LOLS",
    "d2lols λ=0": "D2LOLS, λ 0 on guided rows",
}


def env_bullet(env: dict[str, Any]) -> str:
    return wrap(
        f"Env only, N={env['num_envs']}: **{env['reverse_steps_per_s'] / 1000:.0f}k steps/s** "
        f"(Reverse-v0), **{env['imdb_shaped_steps_per_s'] / 1000:.0f}k steps/s** (IMDB-shaped: "
        "64 prompt + 48 new tokens, 49,152-token vocabulary); the env is "
        f"**{env['tiny_model_rollout']['env_share_median']:.1%}** of a tiny-model roll-out.",
        bullet=True,
    )


def rollout_bullet(perf: dict[str, Any], agents: dict[str, Any]) -> str:
    rg, it = perf["rollout_vs_generate"], perf["iterations"]
    ppo = it["ppo fp32"]["seconds"]
    models = agents["models_in_memory"]
    reference = "reference, which is the guide" if models["guide_is_reference"] else "reference"
    return wrap(
        "Roll-out through the env with the agent's KV-cached sampling vs `model.generate` "
        "(SmolLM2, batch 16, 48 tokens, top-k 50): time ratio "
        f"**{rg['time_ratio_median']:.2f}** (median of {len(rg['env_rollout_seconds'])}; "
        f"per token {rg['per_token_ratio_median']:.2f}; `perf.md`). A guided iteration costs "
        f"**{ratio(it['ppo_pp fp32 (β 0.5)']['seconds'], ppo)}** (PPO++) / "
        f"**{ratio(it['aggrevated fp32 (β 0.5)']['seconds'], ppo)}** (AggreVaTeD) a "
        "PPO iteration on IMDB-v0 (β 0.5, batch 16, `perf.md`): the prompted guide's "
        "roll-ins and roll-outs go through its text hand-off. A guided IMDB run holds "
        f"**{models['distinct_lm_objects']}** LMs: policy (+ value head) and {reference}.",
        bullet=True,
    )


def policy_vs_guide_bullet(pvg: dict[str, Any]) -> str:
    parts = []
    for env_id, (task, metric) in POLICY_VS_GUIDE.items():
        res = pvg["results"][env_id]
        policy, guide = res["policy"]["mean"], res["guide"]["mean"]
        parts.append(
            f"{task} {metric} {bold_if(f'{policy:.3f}', policy > guide)} vs "
            f"{bold_if(f'{guide:.3f}', guide > policy)}"
        )
    return wrap(
        f"Unprompted SmolLM2 policy vs. prompted guide, {pvg['split']} splits: "
        + "; ".join(parts)
        + ".",
        bullet=True,
    )


def seeds_note(runs: Sequence[dict[str, Any]]) -> str:
    """``seeds 0–2``, or ``Twist 0–4, the others 0–2`` when the tasks used different seeds."""
    groups: dict[str, list[str]] = {}
    for run in runs:
        groups.setdefault(seed_range(run["seeds"]), []).append(short(run["env_id"]).split("-")[0])
    if len(groups) == 1:
        return f"seeds {next(iter(groups))}"
    most = max(groups, key=lambda seeds: len(groups[seeds]))
    named = [f"{' and '.join(tasks)} {seeds}" for seeds, tasks in groups.items() if seeds != most]
    return ", ".join(named) + f", the others {most}"


def learning_cell(algorithm: dict[str, Any], best: bool) -> str:
    return bold_if(f"{algorithm['final_mean']:.3f} ± {algorithm['final_std']:.3f}", best)


def learning_bullet(runs: Sequence[dict[str, Any]]) -> str:
    (batch,) = {run["preset"]["all"]["batch_size"] for run in runs}
    (epsilon,) = {run["guide_epsilon"] for run in runs}
    head = " | ".join(f"{short(run['env_id'])}, {run['iterations']} it" for run in runs)
    best = [max(run["algorithms"][key]["final_mean"] for key in LEARNING_ROWS) for run in runs]
    lines = [
        wrap(
            "Toy learning (`learning_toy.py`: π alone on the test split, `cpu-small` = "
            f"{batch} episodes per iteration, ε={epsilon:g} scripted guide). Final test return, "
            f"mean ± std over seeds ({seeds_note(runs)}):",
            bullet=True,
        ),
        "",
        f"  | | {head} |",
        "  | --- |" + " --- |" * len(runs),
        "  | random policy | " + " | ".join(f"{run['random_return']:.3f}" for run in runs) + " |",
        f"  | scripted guide ε={epsilon:g} | "
        + " | ".join(f"{run['guide_return']:.3f}" for run in runs)
        + " |",
    ]
    for key, label in LEARNING_ROWS.items():
        cells = [
            learning_cell(run["algorithms"][key], run["algorithms"][key]["final_mean"] == top)
            for run, top in zip(runs, best, strict=True)
        ]
        lines.append(f"  | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_measured(results: Results) -> str:
    return "\n".join(
        [
            env_bullet(results["env_throughput.json"]),
            rollout_bullet(results["perf.json"], results["agent_perf.json"]),
            policy_vs_guide_bullet(results["policy_vs_guide.json"]),
            learning_bullet([results[name] for name in LEARNING_FILES]),
        ]
    )


# ----------------------------------------------------------------------------- before-issue8

# The rows the before/after comparison shows (the algorithms issue #8 changed, and PPO).
BEFORE_ISSUE8_ROWS = ("ppo", "aggrevated", "d2lols")


def render_before_issue8(results: Results) -> str:
    now = [results[name] for name in LEARNING_FILES]
    before = [results[f"before_issue8/{name}"] for name in LEARNING_FILES]
    lines = [
        "  | final test return, before → after | "
        + " | ".join(short(run["env_id"]) for run in now)
        + " |",
        "  | --- |" + " --- |" * len(now),
    ]
    for key in BEFORE_ISSUE8_ROWS:
        cells = [
            f"{old['algorithms'][key]['final_mean']:.3f} → "
            f"{new['algorithms'][key]['final_mean']:.3f}"
            for old, new in zip(before, now, strict=True)
        ]
        lines.append(f"  | {LEARNING_ROWS[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- paper-small

PAPER_SMALL_TABLE = "paper-small/table.md"
PAPER_SMALL_TASK = "IMDB-v0"


def table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def paired_section(lines: list[str]) -> list[str]:
    """The paragraph and the task's table of the "Paired with" section of ``table.md``, or
    nothing when it has none for the task."""
    start = next((i for i, line in enumerate(lines) if line.startswith("## Paired with")), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    section = lines[start + 1 : end]
    head = f"{PAPER_SMALL_TASK}:"
    if head not in section:
        return []
    at = section.index(head) + 2
    table = []
    for line in section[at:]:
        if not line.startswith("|"):
            break
        table.append(line)
    intro = next((line for line in section if line.strip()), "")
    return [intro, "\n".join(table)] if table else []


def render_paper_small(results: Results) -> str:
    link = f"[benchmarks/results/{PAPER_SMALL_TABLE}](benchmarks/results/{PAPER_SMALL_TABLE})"
    text = results.get(PAPER_SMALL_TABLE)
    if text is None:
        return (
            f"`--suite paper-small` has not been run yet (no `{PAPER_SMALL_TABLE}` in the results)."
        )
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| Algorithm |")), None)
    if start is None:
        return f"{link} holds no results table yet."
    head = table_cells(lines[start])
    keep = [0] + [i for i, name in enumerate(head) if name.startswith(f"{PAPER_SMALL_TASK} ")]
    if len(keep) == 1:
        return f"{link} has no {PAPER_SMALL_TASK} columns yet."
    rows = [lines[start]]
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    # The paragraphs between the title and the table say how to read it (seeds, mean ± std).
    about = [line for line in lines[1:start] if line.strip()]
    table = ["| " + " | ".join(table_cells(row)[i] for i in keep) + " |" for row in rows[:1]]
    table.append("|" + "---|" * len(keep))
    table += ["| " + " | ".join(table_cells(row)[i] for i in keep) + " |" for row in rows[1:]]
    return "\n\n".join(
        [
            f"`--suite paper-small`, the {PAPER_SMALL_TASK} columns of {link}:",
            *about,
            "\n".join(table),
            *paired_section(lines),
            # written by benchmarks.report beside the table for every task with runs
            f"![{PAPER_SMALL_TASK} learning curves (paper-small)]"
            f"(benchmarks/results/paper-small/curves_{PAPER_SMALL_TASK}.png)",
        ]
    )


# ----------------------------------------------------------------------------- offline

# The offline evidence files of benchmarks/offline.py: (file, column title, metric).
OFFLINE_TASKS = (
    ("offline_toy.json", "Reverse-v0 reward", "task_reward"),
    ("offline_imdb.json", "IMDB-v0 VADER", "task_reward"),
    ("offline_imdb.json", "IMDB-v0 perplexity", "perplexity"),
    ("offline_commongen.json", "CommonGen-v0 CIDEr-D", "task_reward"),
)
# benchmarks/offline.py's rows, in its order, with their README labels.
OFFLINE_ROWS = {
    "initial": "initial π",
    "nll (BC)": "BC (`nll`)",
    "bc+nll": "BC, twice the steps",
    "alol": "A-LoL",
    "bc+alol": "BC+A-LoL",
    "bc+alol_seq": "BC+A-LoL seq",
    "bc+alol_ref_free": "BC+A-LoL ref-free",
    "bc+alol_kl": "BC+A-LoL KL",
    "bc+wbc": "BC+wBC",
    "bc+rlol": "BC+R-LoL",
    "rest": "ReST",
    "bc+rest": "BC+ReST",
}


def mean_std_cell(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± std (n)``; one value alone (no spread to show)."""
    if not values:
        return "—"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f} (1)"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f} ({len(values)})"


def render_offline(results: Results) -> str:
    cells: dict[str, dict[str, list[float]]] = {row: {} for row in OFFLINE_ROWS}
    for name, title, metric in OFFLINE_TASKS:
        for run in results[name]["runs"]:
            if run["row"] in cells and metric in run["metrics"]:
                cells[run["row"]].setdefault(title, []).append(run["metrics"][metric])
    titles = [title for _, title, _ in OFFLINE_TASKS]
    lines = ["| row | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    for row, label in OFFLINE_ROWS.items():
        if cells[row]:
            values = [mean_std_cell(cells[row].get(t, []), 2 if "perplexity" in t else 3)
                      for t in titles]  # fmt: skip
            lines.append(f"| {label} | " + " | ".join(values) + " |")
    links = ", ".join(
        f"[{file.removeprefix('offline_').removesuffix('.json')}]"
        f"(benchmarks/results/{file.removesuffix('.json')}.md)"
        for file in dict.fromkeys(file for file, _, _ in OFFLINE_TASKS)
    )
    return "\n\n".join(
        [
            wrap(
                "`python -m benchmarks.offline --task toy|imdb|commongen`: test split, mean ± std "
                "over seeds (their number in brackets); the `BC+` rows start from the same "
                'seed\'s BC policy, which is also their π_ref; "BC, twice the steps" is their '
                f"compute-matched control. Per task, with its data file and train times: {links}."
            ),
            "\n".join(lines),
        ]
    )


# ----------------------------------------------------------------------------- README

BLOCKS: dict[str, Callable[[Results], str]] = {
    "demo": render_demo,
    "perf": render_perf,
    "measured": render_measured,
    "before-issue8": render_before_issue8,
    "paper-small": render_paper_small,
    "offline": render_offline,
}


def find_block(lines: Sequence[str], name: str, readme: str) -> tuple[int, int]:
    """The line indices of the block's opening and closing markers."""
    found = []
    for marker in (f"<!-- results:{name} -->", f"<!-- /results:{name} -->"):
        at = [i for i, line in enumerate(lines) if line.strip() == marker]
        if len(at) != 1:
            count = "no" if not at else f"{len(at)}"
            raise MarkerError(
                f"{readme} has {count} line {marker!r}: block {name} needs exactly one"
            )
        found.append(at[0])
    if found[0] > found[1]:
        raise MarkerError(f"{readme}: block {name} closes before it opens")
    return found[0], found[1]


def check_markers(lines: Sequence[str], readme: str) -> None:
    """Refuse markers of blocks :data:`BLOCKS` does not know (a typo would be skipped)."""
    for i, line in enumerate(lines, 1):
        text = line.strip()
        if text.startswith(("<!-- results:", "<!-- /results:")):
            name = text.removeprefix("<!-- /results:").removeprefix("<!-- results:")
            name = name.removesuffix(" -->")
            if name not in BLOCKS:
                raise MarkerError(f"{readme} line {i}: unknown block {name!r} in {text!r}")


def render_block(name: str, results: Results) -> str:
    try:
        return BLOCKS[name](results)
    except MissingResultsError as missing:
        raise MissingResultsError(missing.path, block=name) from None
    except KeyError as field:
        raise ReadmeError(f"README block {name}: a results file has no field {field}") from None


def render_readme(text: str, results: Results, readme: str = "README.md") -> tuple[str, list[str]]:
    """The README with every block rendered from ``results``, and the names of changed blocks."""
    lines = text.split("\n")
    check_markers(lines, readme)
    stale = []
    for name in BLOCKS:
        start, end = find_block(lines, name, readme)
        new = render_block(name, results).split("\n")
        if lines[start + 1 : end] != new:
            stale.append(name)
            lines[start + 1 : end] = new
    return "\n".join(lines), stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.readme",
        description="Render README.md's result blocks from benchmarks/results/.",
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a block is stale"
    )
    parser.add_argument("--readme", type=Path, default=README, help="default: README.md")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="default: benchmarks/results/"
    )
    args = parser.parse_args(argv)
    name = args.readme.name
    try:
        text = args.readme.read_text(encoding="utf-8")
        new, stale = render_readme(text, ResultsFolder(args.results), name)
    except (ReadmeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        for block in stale:
            print(f"{name} block {block} is stale: run python -m benchmarks.readme")
        return 1 if stale else 0
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
    print(
        f"{name}: {len(stale)} of {len(BLOCKS)} blocks rewritten"
        + (f" ({', '.join(stale)})" if stale else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
