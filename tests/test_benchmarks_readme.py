"""README figures rendered from benchmarks/results/ (benchmarks/readme.py, issue #14)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import readme
from benchmarks.readme import GIB, MarkerError, MissingResultsError

STALE = "README.md block {} is stale: run python -m benchmarks.readme"

# The results files the blocks read (paper-small/table.md is optional: copied when present).
SOURCES = (
    "demo.json",
    "perf.json",
    "env_throughput.json",
    "agent_perf.json",
    "policy_vs_guide.json",
    *readme.LEARNING_FILES,
    *(f"before_issue8/{name}" for name in readme.LEARNING_FILES),
    *dict.fromkeys(file for file, _, _ in readme.OFFLINE_TASKS),
)


def flat(text: str) -> str:
    """A wrapped paragraph as one line."""
    return " ".join(text.split())


@pytest.fixture
def copies(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of README.md and of the results files the blocks read, in ``tmp_path``."""
    results = tmp_path / "results"
    table = readme.PAPER_SMALL_TABLE
    for name in (*SOURCES, *((table,) if (readme.RESULTS / table).exists() else ())):
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(readme.RESULTS / name, results / name)
    path = tmp_path / "README.md"
    shutil.copy(readme.README, path)
    return path, results


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = readme.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- the repository


def test_committed_readme_is_in_sync_with_the_results(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--check")
    assert (code, out, err) == (0, "", "")


def test_blocks_are_known_and_each_appears_once_in_the_readme() -> None:
    lines = readme.README.read_text(encoding="utf-8").split("\n")
    for name in readme.BLOCKS:
        start, end = readme.find_block(lines, name, "README.md")
        assert start < end


# ----------------------------------------------------------------------------- render functions


def test_ratio_and_seed_range() -> None:
    assert readme.ratio(21.12, 27.90) == "0.76×"
    assert readme.seed_range([2, 0, 1, 4, 3]) == "0–4"
    assert readme.seed_range([0, 2]) == "0, 2"


def test_wrap_never_starts_a_line_with_a_list_sign() -> None:
    text = "word " * 18 + "64 prompt + 48 new tokens, a - b"
    wrapped = readme.wrap(text)
    assert flat(wrapped) == flat(text)
    assert all(len(line) <= readme.WIDTH for line in wrapped.split("\n"))
    assert not any(line.startswith(("+ ", "- ")) for line in wrapped.split("\n"))


def test_render_demo() -> None:
    demo = {
        "minutes": 11.64,
        "eval": {"num_samples": 60, "split": "test", "seeds": [0, 1, 2]},
        "rows": {
            "zero-shot": {"task_reward": 0.2483, "se": 0.0671, "perplexity": 11.27},
            "PPO++": {"task_reward": 0.4117, "se": 0.0602, "perplexity": 11.92},
            "guide": {"task_reward": 0.3684, "se": 0.0669, "perplexity": 16.74},
        },
        "gain": {"task_reward": 0.1634, "se": 0.0457},
    }
    assert flat(readme.render_demo({"demo.json": demo})) == (
        "`make demo` scores the zero-shot SmolLM2, its prompted guide and the PPO++-trained "
        "policy on the same 60 test prompts, 3 samples each, and writes `runs/demo/demo.png`. "
        "Last run: **11.6 min** end to end, VADER 0.248 ± 0.067 → **0.412 ± 0.060** (± SE "
        "over the 60 prompts), a gain of **+0.163 ± 0.046** (paired by prompt), guide "
        "0.368 ± 0.067, perplexity 11.3 → 11.9 (numbers in "
        "[demo.json](benchmarks/results/demo.json))."
    )


def small_perf() -> dict[str, Any]:
    return {
        "machine": {"cores": 2, "matmul_gflops": {"float32": 133.4}},
        "trl_ppo": {"seconds": 27.90, "peak_rss_bytes": 10 * GIB},
        "iterations": {
            "ppo fp32": {"seconds": 21.12, "peak_rss_bytes": 6 * GIB},
            "ppo_pp fp32 (β 0.5)": {"seconds": 26.67, "peak_rss_bytes": 6 * GIB},
            "aggrevated fp32 (β 0.5)": {"seconds": 29.35, "peak_rss_bytes": 6 * GIB},
            "ppo activation checkpointing": {"seconds": 25.43, "peak_rss_bytes": 4 * GIB},
            "ppo bf16 autocast": {"seconds": 7.05, "peak_rss_bytes": 5 * GIB},
            "ppo LoRA r=8": {"seconds": 19.53, "peak_rss_bytes": int(5.5 * GIB)},
        },
        "rollout_vs_generate": {
            "time_ratio_median": 0.8705,
            "per_token_ratio_median": 0.7447,
            "env_rollout_seconds": [6.9, 7.0, 7.5],
        },
    }


def test_render_perf() -> None:
    table, sentence = readme.render_perf({"perf.json": small_perf()}).split("\n\n")
    assert table.split("\n") == [
        "| | s/iteration | peak RSS |",
        "| --- | --- | --- |",
        "| TRL 1.12 PPO (its defaults, activation checkpointing) | 27.90 | 10.00 GiB |",
        "| ours, PPO fp32 | 21.12 (0.76×) | 6.00 GiB (0.60×) |",
        "| ours, PPO fp32, `--activation-checkpointing` | 25.43 (0.91×) | 4.00 GiB (0.40×) |",
        "| ours, PPO `--bf16` autocast | 7.05 (0.25×) | 5.00 GiB (0.50×) |",
        "| ours, PPO `--lora-rank 8` | 19.53 (0.70×) | 5.50 GiB (0.55×) |",
    ]
    # 7.05 / 27.90 = 0.2527: shown as 0.25×, so it meets the 0.25× target as shown.
    assert flat(sentence) == (
        "Measured on a 2-core VM whose fp32 matmul ran at 133 GFLOPS in this run. "
        "Met: peak RSS ≤ 0.4× TRL's with activation checkpointing (0.40×), bf16 ≤ 0.25× (0.25×). "
        "Not met: fp32 time ≤ 0.5× (0.76×), fp32 time ≤ 0.5× with activation checkpointing "
        "(0.91×), roll-out ≤ 0.8× `generate` (0.87×)."
    )


def test_env_bullet() -> None:
    env = {
        "num_envs": 64,
        "reverse_steps_per_s": 550_489.0,
        "imdb_shaped_steps_per_s": 569_549.0,
        "tiny_model_rollout": {"env_share_median": 0.0228},
    }
    assert flat(readme.env_bullet(env)) == (
        "* Env only, N=64: **550k steps/s** (Reverse-v0), **570k steps/s** (IMDB-shaped: 64 "
        "prompt + 48 new tokens, 49,152-token vocabulary); the env is **2.3%** of a tiny-model "
        "roll-out."
    )


@pytest.mark.parametrize(
    ("guide_is_reference", "ending"),
    [(True, "reference, which is the guide."), (False, "reference.")],
)
def test_rollout_bullet(guide_is_reference: bool, ending: str) -> None:
    perf = small_perf()
    agents = {
        "models_in_memory": {"distinct_lm_objects": 2, "guide_is_reference": guide_is_reference}
    }
    # 26.67 / 21.12 = 1.263 and 29.35 / 21.12 = 1.390.
    assert flat(readme.rollout_bullet(perf, agents)) == (
        "* Roll-out through the env with the agent's KV-cached sampling vs `model.generate` "
        "(SmolLM2, batch 16, 48 tokens, top-k 50): time ratio **0.87** (median of 3; per token "
        "0.74; `perf.md`). A guided iteration costs **1.26×** (PPO++) / **1.39×** (AggreVaTeD) a "
        "PPO iteration on IMDB-v0 (β 0.5, batch 16, `perf.md`): the prompted guide's roll-ins "
        "and roll-outs go through its text hand-off. A guided IMDB run holds **2** LMs: policy "
        f"(+ value head) and {ending}"
    )


def test_policy_vs_guide_bullet_bolds_the_better_of_the_two() -> None:
    def task(policy: float, guide: float) -> dict[str, Any]:
        return {"policy": {"mean": policy}, "guide": {"mean": guide}}

    pvg = {
        "split": "test",
        "results": {
            "textgen_env/IMDB-v0": task(0.2464, 0.4559),
            "textgen_env/CommonGen-v0": task(0.3, 0.2801),
            "textgen_env/TLDR-v0": task(0.1154, 0.1399),
        },
    }
    assert flat(readme.policy_vs_guide_bullet(pvg)) == (
        "* Unprompted SmolLM2 policy vs. prompted guide, test splits: IMDB VADER 0.246 vs "
        "**0.456**; CommonGen CIDEr-D **0.300** vs 0.280; TL;DR ROUGE-L 0.115 vs **0.140**."
    )


def learning_run(env_id: str, seeds: list[int], iterations: int, best: str) -> dict[str, Any]:
    """A learning_toy.py result where every row ends at 0.1 ± 0.01 except ``best`` (0.9 ± 0.02)."""
    algorithms = {key: {"final_mean": 0.1, "final_std": 0.01} for key in readme.LEARNING_ROWS}
    algorithms[best] = {"final_mean": 0.9, "final_std": 0.02}
    return {
        "env_id": env_id,
        "seeds": seeds,
        "iterations": iterations,
        "preset": {"all": {"batch_size": 256}},
        "guide_epsilon": 0.3,
        "random_return": 0.0013,
        "guide_return": 0.5539,
        "algorithms": algorithms,
    }


def test_learning_bullet() -> None:
    runs = [
        learning_run("textgen_env/Twist-v0", [0, 1, 2, 3, 4], 50, "lols β=0.6"),
        learning_run("textgen_env/Positive-v0", [0, 1, 2], 50, "ppo"),
        learning_run("textgen_env/Reverse-v0", [0, 1, 2], 80, "d2lols"),
    ]
    text, table = readme.learning_bullet(runs).split("\n\n")
    assert flat(text) == (
        "* Toy learning (`learning_toy.py`: π alone on the test split, `cpu-small` = 256 "
        "episodes per iteration, ε=0.3 scripted guide). Final test return, mean ± std over seeds "
        "(Twist 0–4, the others 0–2):"
    )
    lines = table.split("\n")
    assert lines[:4] == [
        "  | | Twist-v0, 50 it | Positive-v0, 50 it | Reverse-v0, 80 it |",
        "  | --- | --- | --- | --- |",
        "  | random policy | 0.001 | 0.001 | 0.001 |",
        "  | scripted guide ε=0.3 | 0.554 | 0.554 | 0.554 |",
    ]
    assert lines[4] == "  | PPO | 0.100 ± 0.010 | **0.900 ± 0.020** | 0.100 ± 0.010 |"
    assert (
        lines[10] == "  | LOLS, PPO++ β 0.6 | **0.900 ± 0.020** | 0.100 ± 0.010 | 0.100 ± 0.010 |"
    )
    assert lines[11] == "  | D2LOLS | 0.100 ± 0.010 | 0.100 ± 0.010 | **0.900 ± 0.020** |"
    assert len(lines) == 4 + len(readme.LEARNING_ROWS)


def test_seeds_note_with_one_set_of_seeds() -> None:
    runs = [{"env_id": "textgen_env/Twist-v0", "seeds": [0, 1, 2]}] * 2
    assert readme.seeds_note(runs) == "seeds 0–2"


def test_render_before_issue8() -> None:
    def run_of(env_id: str, ppo: float, aggrevated: float, d2lols: float) -> dict[str, Any]:
        means = {"ppo": ppo, "aggrevated": aggrevated, "d2lols": d2lols}
        return {
            "env_id": env_id,
            "algorithms": {key: {"final_mean": mean} for key, mean in means.items()},
        }

    results = {}
    for i, name in enumerate(readme.LEARNING_FILES):
        env_id = f"textgen_env/Task{i}-v0"
        results[f"before_issue8/{name}"] = run_of(env_id, 0.3, 0.2, 0.1)
        results[name] = run_of(env_id, 0.3, 0.25, 0.5 + i / 10)
    assert readme.render_before_issue8(results).split("\n") == [
        "  | final test return, before → after | Task0-v0 | Task1-v0 | Task2-v0 |",
        "  | --- | --- | --- | --- |",
        "  | PPO | 0.300 → 0.300 | 0.300 → 0.300 | 0.300 → 0.300 |",
        "  | AggreVaTeD | 0.200 → 0.250 | 0.200 → 0.250 | 0.200 → 0.250 |",
        "  | D2LOLS | 0.100 → 0.500 | 0.100 → 0.600 | 0.100 → 0.700 |",
    ]


PAPER_SMALL = """# Results: paper-small suite

SmolLM2 on the real tasks.

Generated by `python -m benchmarks.run` from the 4 run JSONs. Seeds 0, 1, 2.

| Algorithm | IMDB-v0 VADER (partial) | IMDB-v0 perplexity | CommonGen-v0 CIDEr-D |
|---|---|---|---|
| Zero-shot | 0.246 ± 0.010 | 11.300 ± 0.100 | — |
| PPO | 0.400 ± 0.020 (n=2) | 12.000 ± 0.200 | 0.500 ± 0.010 |

## Settings

| Row | algorithm |
|---|---|
| PPO | ppo |
"""


def test_render_paper_small_before_the_suite_has_run() -> None:
    assert readme.render_paper_small({}) == (
        "`--suite paper-small` has not been run yet (no `paper-small/table.md` in the results)."
    )


def test_render_paper_small_keeps_the_imdb_columns() -> None:
    link = "[benchmarks/results/paper-small/table.md](benchmarks/results/paper-small/table.md)"
    assert readme.render_paper_small({"paper-small/table.md": PAPER_SMALL}) == "\n".join(
        [
            f"`--suite paper-small`, the IMDB-v0 columns of {link}:",
            "",
            "SmolLM2 on the real tasks.",
            "",
            "Generated by `python -m benchmarks.run` from the 4 run JSONs. Seeds 0, 1, 2.",
            "",
            "| Algorithm | IMDB-v0 VADER (partial) | IMDB-v0 perplexity |",
            "|---|---|---|",
            "| Zero-shot | 0.246 ± 0.010 | 11.300 ± 0.100 |",
            "| PPO | 0.400 ± 0.020 (n=2) | 12.000 ± 0.200 |",
            "",
            "![IMDB-v0 learning curves (paper-small)]"
            "(benchmarks/results/paper-small/curves_IMDB-v0.png)",
        ]
    )


def test_render_paper_small_without_imdb_columns() -> None:
    text = PAPER_SMALL.replace("IMDB-v0", "TLDR-v0")
    assert readme.render_paper_small({"paper-small/table.md": text}).endswith(
        "has no IMDB-v0 columns yet."
    )


def test_render_offline_one_column_per_task_and_metric() -> None:
    def runs(*rows: tuple[str, int, dict[str, float]]) -> dict[str, Any]:
        return {"runs": [{"row": r, "seed": s, "metrics": m} for r, s, m in rows]}

    results = {
        "offline_toy.json": runs(
            ("initial", 0, {"task_reward": 0.1}),
            ("bc+alol", 0, {"task_reward": 0.7}),
            ("bc+alol", 1, {"task_reward": 0.9}),
        ),
        "offline_imdb.json": runs(
            ("initial", 0, {"task_reward": 0.2, "perplexity": 11.0}),
            ("bc+alol", 0, {"task_reward": 0.5, "perplexity": 10.5}),
        ),
        "offline_commongen.json": runs(("nll (BC)", 2, {"task_reward": 0.95})),
    }
    text = readme.render_offline(results)
    table = text[text.index("| row |") :].splitlines()
    assert table[0] == (
        "| row | Reverse-v0 reward | IMDB-v0 VADER | IMDB-v0 perplexity | CommonGen-v0 CIDEr-D |"
    )
    assert table[2:] == [
        "| initial π | 0.100 (1) | 0.200 (1) | 11.00 (1) | — |",
        "| BC (`nll`) | — | — | — | 0.950 (1) |",  # rows keep benchmarks.offline's order
        "| BC+A-LoL | 0.800 ± 0.141 (2) | 0.500 (1) | 10.50 (1) | — |",  # sample std
    ]
    assert "[commongen](benchmarks/results/offline_commongen.md)" in flat(text)


# ----------------------------------------------------------------------------- --check


def edit_json(path: Path, keys: tuple[str, ...], value: float) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    inner = data
    for key in keys[:-1]:
        inner = inner[key]
    assert inner[keys[-1]] != value
    inner[keys[-1]] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def test_copies_are_in_sync(copies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path, results = copies
    assert run(capsys, "--check", "--readme", str(path), "--results", str(results)) == (0, "", "")


@pytest.mark.parametrize(
    ("file", "keys", "value", "block"),
    [
        ("demo.json", ("minutes",), 13.0, "demo"),
        ("perf.json", ("trl_ppo", "seconds"), 30.0, "perf"),
        ("env_throughput.json", ("reverse_steps_per_s",), 600_000.0, "measured"),
        ("learning_twist.json", ("algorithms", "ppo", "final_std"), 0.5, "measured"),
        ("before_issue8/learning_reverse.json", ("algorithms", "ppo", "final_mean"), 0.5,
         "before-issue8"),
    ],
)  # fmt: skip
def test_a_changed_number_makes_exactly_its_block_stale(
    copies: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    file: str,
    keys: tuple[str, ...],
    value: float,
    block: str,
) -> None:
    path, results = copies
    edit_json(results / file, keys, value)
    before = path.read_text(encoding="utf-8")
    args = ("--readme", str(path), "--results", str(results))
    assert run(capsys, "--check", *args) == (1, STALE.format(block) + "\n", "")
    assert path.read_text(encoding="utf-8") == before  # --check changes nothing

    code, out, _ = run(capsys, *args)
    assert code == 0
    assert f"({block})" in out
    assert run(capsys, "--check", *args) == (0, "", "")
    after = path.read_text(encoding="utf-8")
    assert after != before
    # Only the lines inside that block changed.
    start, end = readme.find_block(after.split("\n"), block, "README.md")
    outside = after.split("\n")[:start] + after.split("\n")[end:]
    old_start, old_end = readme.find_block(before.split("\n"), block, "README.md")
    assert outside == before.split("\n")[:old_start] + before.split("\n")[old_end:]


# ----------------------------------------------------------------------------- errors


def test_a_missing_marker_is_a_marker_error(
    copies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, results = copies
    text = path.read_text(encoding="utf-8").replace("<!-- /results:perf -->\n", "")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MarkerError, match="block perf"):
        readme.render_readme(text, readme.ResultsFolder(results))

    code, out, err = run(capsys, "--check", "--readme", str(path), "--results", str(results))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "block perf" in err
    assert "Traceback" not in err
    assert path.read_text(encoding="utf-8") == text


def test_a_duplicated_marker_is_a_marker_error(copies: tuple[Path, Path]) -> None:
    path, results = copies
    text = path.read_text(encoding="utf-8") + "\n<!-- results:demo -->\n"
    with pytest.raises(MarkerError, match="2 line '<!-- results:demo -->'"):
        readme.render_readme(text, readme.ResultsFolder(results))


def test_an_unknown_block_is_a_marker_error(copies: tuple[Path, Path]) -> None:
    path, results = copies
    text = path.read_text(encoding="utf-8") + "\n<!-- results:demos -->\n"
    with pytest.raises(MarkerError, match="unknown block 'demos'"):
        readme.render_readme(text, readme.ResultsFolder(results))


def test_a_missing_results_file_names_the_block_and_the_file(
    copies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, results = copies
    (results / "agent_perf.json").unlink()
    with pytest.raises(MissingResultsError, match=r"block measured needs .*agent_perf\.json"):
        readme.render_readme(path.read_text(encoding="utf-8"), readme.ResultsFolder(results))

    code, out, err = run(capsys, "--readme", str(path), "--results", str(results))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "agent_perf.json" in err
    assert "measured" in err


def test_a_results_file_without_a_field_or_not_json_is_one_line(
    copies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, results = copies
    args = ("--check", "--readme", str(path), "--results", str(results))
    (results / "demo.json").write_text('{"minutes": 1.0}', encoding="utf-8")
    code, out, err = run(capsys, *args)
    assert (code, out) == (2, "")
    assert err == "error: README block demo: a results file has no field 'rows'\n"

    (results / "demo.json").write_text("{", encoding="utf-8")
    code, out, err = run(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and "demo.json is not valid JSON" in err
    assert err.count("\n") == 1


def test_render_paper_small_shows_the_imdb_paired_gains() -> None:
    paired = "\n".join(
        [
            "## Paired with zero-shot and the guide",
            "",
            "Each row minus zero-shot, prompt by prompt.",
            "",
            "CommonGen-v0:",
            "",
            "| Row | minus Zero-shot |",
            "|---|---|",
            "| PPO | +0.900 ± 0.100 (+0.900) |",
            "",
            "IMDB-v0:",
            "",
            "| Row | minus Zero-shot |",
            "|---|---|",
            "| PPO | +0.150 ± 0.050 (+0.100, +0.200) |",
            "",
            "## Wall time",
            "",
            "| Row | IMDB-v0 |",
        ]
    )
    text = readme.render_paper_small({"paper-small/table.md": PAPER_SMALL + "\n" + paired})
    assert text.endswith(
        "| PPO | 0.400 ± 0.020 (n=2) | 12.000 ± 0.200 |\n\n"
        "Each row minus zero-shot, prompt by prompt.\n\n"
        "| Row | minus Zero-shot |\n|---|---|\n| PPO | +0.150 ± 0.050 (+0.100, +0.200) |\n\n"
        "![IMDB-v0 learning curves (paper-small)]"
        "(benchmarks/results/paper-small/curves_IMDB-v0.png)"
    )
