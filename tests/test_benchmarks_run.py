"""The benchmark runner (benchmarks/run.py): a tiny suite end to end, skipping finished runs,
resuming a half-done one, and one-line errors for bad flags."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of scripts, not an installed package
    sys.path.insert(0, str(ROOT))

from agents.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from agents.trainer import run  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import run as bench  # noqa: E402

TASK = "textgen_env/Positive-v0"


def results(out: Path) -> dict[str, Path]:
    return {p.name: p for p in (out / "run_results" / "Positive-v0").glob("*.json")}


def test_smoke_suite_end_to_end_then_a_rerun_skips_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "smoke"
    assert bench.main(["--suite", "smoke", "--out", str(out)]) == 0
    rows = ("zero-shot", "guide", "bc", "ppo", "bc+ppo")
    saved = results(out)
    assert sorted(saved) == sorted(f"{r}-s{s}.json" for r in rows for s in (0, 1))
    for name in ("table.md", "runs.csv", "difficulty.md", "samples_Positive-v0.md"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves_Positive-v0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / ".gitignore").read_text() == "rundirs/\n"  # checkpoints stay out of git

    record = json.loads(saved["bc+ppo-s1.json"].read_text())
    assert record["init_from"] == "bc" and record["iterations"] == 2 and not record["resumed"]
    assert record["config"]["init_from"].endswith("bc-s1")
    assert [s for s, _ in record["curves"]["unguided"]] == [0, 1]  # from TensorBoard
    assert len(record["rewards"]) == len(record["prompts"]) == record["eval"]["num_samples"]
    assert np.isclose(np.mean(record["rewards"]), record["metrics"]["task_reward"])
    zero = json.loads(saved["zero-shot-s0.json"].read_text())
    assert zero["iterations"] == 0 and zero["prompts"] == record["prompts"]  # same prompts
    table = (out / "table.md").read_text()
    for label in ("Zero-shot", "Guide", "BC", "PPO", "BC+PPO"):
        assert f"| {label} | " in table
    assert "(partial)" not in table
    assert len((out / "runs.csv").read_text().splitlines()) == 1 + 10

    # a rerun trains and evaluates nothing and rewrites no run JSON
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(bench, "run", refuse)
    monkeypatch.setattr(bench, "evaluate", refuse)
    monkeypatch.setattr(bench, "evaluate_guide", refuse)
    mtimes = {name: p.stat().st_mtime_ns for name, p in saved.items()}
    (out / "table.md").unlink()
    capsys.readouterr()
    assert bench.main(["--suite", "smoke", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 10
    assert {name: p.stat().st_mtime_ns for name, p in results(out).items()} == mtimes
    assert (out / "table.md").read_text() == table  # rebuilt from the JSONs alone

    # --report-only with one seed missing: its cells and column say so
    saved["ppo-s1.json"].unlink()
    assert bench.main(["--suite", "smoke", "--out", str(out), "--report-only"]) == 0
    table = (out / "table.md").read_text()
    assert "Positive-v0 reward (partial)" in table and "(n=1)" in table


def test_a_half_done_run_resumes_and_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    suite, row = bench.SUITES["smoke"], bench.ROWS["ppo"]
    parted, straight = tmp_path / "parted", tmp_path / "straight"
    rdir = bench.run_path(parted, TASK, "ppo", 0)
    cfg = bench.build_config(suite, row, TASK, 0, rdir)
    run(dataclasses.replace(cfg, total_iterations=1), "ppo")  # killed after iteration 1
    assert latest_checkpoint(rdir).name == "iter-000001"

    args = ["--suite", "smoke", "--only", "ppo", "--seeds", "0"]
    assert bench.main([*args, "--out", str(parted)]) == 0
    assert bench.main([*args, "--out", str(straight)]) == 0
    resumed = json.loads(results(parted)["ppo-s0.json"].read_text())
    fresh = json.loads(results(straight)["ppo-s0.json"].read_text())
    assert resumed["resumed"] and not fresh["resumed"]
    assert load_checkpoint(rdir, trainer=False)[2]["resumed"][0]["at_iteration"] == 1
    assert resumed["metrics"] == fresh["metrics"]  # resume reproduces the run
    assert resumed["curves"] == fresh["curves"]


def test_a_bc_x_row_brings_its_bc_run_along_and_pruning_keeps_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = dataclasses.replace(bench.SUITES["smoke"], keep_checkpoints=False)
    assert bench.plan(suite, ["bc+ppo"], [TASK], [3]) == [(TASK, "bc", 3), (TASK, "bc+ppo", 3)]
    monkeypatch.setitem(bench.SUITES, "smoke", suite)
    assert bench.main(["--suite", "smoke", "--only", "bc+ppo", "--seeds", "3",
                       "--out", str(tmp_path)]) == 0  # fmt: skip
    assert sorted(results(tmp_path)) == ["bc+ppo-s3.json", "bc-s3.json"]
    bc, bc_ppo = (bench.run_path(tmp_path, TASK, row, 3) for row in ("bc", "bc+ppo"))
    assert [p.name for p in (bc / "checkpoints").glob("iter-*")] == ["iter-000002"]
    assert not list((bc_ppo / "checkpoints").glob("iter-*")) and (bc_ppo / "tb").is_dir()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--suite", "nope"], "unknown suite 'nope'"),
        (["--suite", "smoke", "--only", "ppo,nope"], "--only: unknown row(s) nope"),
        (["--suite", "smoke", "--seeds", "0,x"], "--seeds must be"),
        (["--suite", "smoke", "--seeds", "-1"], "--seeds must be"),
        (["--suite", "smoke", "--tasks", "IMDB-v0"], "--tasks: unknown task(s) IMDB-v0"),
        (["--seeds", "0"], "the following arguments are required: --suite"),
    ],
)
def test_bad_flags_give_one_line_and_status_2(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.run: error: ") and says in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run_results").exists()


def test_report_only_without_results_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--suite", "smoke", "--out", str(tmp_path), "--report-only"])
    assert exit_info.value.code == 2
    assert "no run results in" in capsys.readouterr().err


def test_every_suite_table_builds_its_configs() -> None:
    """Every row's config can be built for every task; sampling is the same for all rows."""
    for name, suite in bench.SUITES.items():
        bench.check_suite(name, suite)
    bad = dataclasses.replace(bench.SUITES["smoke"], per_algo={"ppo": {"top_k": 5}}, rows=("ppo",))
    with pytest.raises(bench.SuiteError, match="top_k must be the same for every row"):
        bench.check_suite("bad", bad)
    late_bc = dataclasses.replace(bench.SUITES["smoke"], rows=("bc+ppo", "bc"))
    with pytest.raises(bench.SuiteError, match="must come before it"):
        bench.check_suite("late", late_bc)


def test_imdb_prompts_split_in_thirds_by_the_zero_shot_reward() -> None:
    prompts = [f"p{i}" for i in range(6)]

    def rec(row: str, seed: int, rewards: list[float]) -> dict:
        return {"row": row, "seed": seed, "prompts": prompts, "rewards": rewards}

    groups = {
        "zero-shot": [rec("zero-shot", 0, [0.9, 0.1, 0.5, 0.8, 0.2, 0.4])],
        "ppo": [rec("ppo", 0, [1.0, 0.0, 0.5, 1.0, 0.0, 0.5]), rec("ppo", 1, [0.0] * 6)],
    }
    split = report.difficulty("textgen_env/IMDB-v0", groups)
    assert split is not None
    buckets, table = split
    assert buckets == ["easy (2)", "medium (2)", "hard (2)"]  # by zero-shot: 0,3 | 2,5 | 1,4
    assert table["ppo"] == {"easy (2)": [1.0, 0.0], "medium (2)": [0.5, 0.0],
                            "hard (2)": [0.0, 0.0]}  # fmt: skip
    assert report.difficulty("textgen_env/Positive-v0", groups) is None
