"""The benchmark runner (benchmarks/run.py): a tiny suite end to end (offline rows on one shared
data file included), skipping finished runs, resuming a half-done one, rebuilding a BC
checkpoint that a BC+X row needs, beam-search evaluation, and one-line errors for bad flags."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of scripts, not an installed package
    sys.path.insert(0, str(ROOT))

from agents.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from agents.evaluate import evaluate  # noqa: E402
from agents.trainer import run  # noqa: E402
from benchmarks import report, suites  # noqa: E402
from benchmarks import run as bench  # noqa: E402

TASK = "textgen_env/Positive-v0"


def results(out: Path) -> dict[str, Path]:
    return {p.name: p for p in (out / "run_results" / "Positive-v0").glob("*.json")}


def test_smoke_suite_end_to_end_then_a_rerun_skips_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "smoke"
    # Positive-v0 split like IMDB-v0 (by the zero-shot reward), so that its zero-shot runs
    # sample the test prompts again for the split
    monkeypatch.setitem(report.DIFFICULTY, TASK, report.DIFFICULTY["textgen_env/IMDB-v0"])
    assert bench.main(["--suite", "smoke", "--out", str(out)]) == 0
    rows = ("zero-shot", "guide", "bc", "ppo", "bc+ppo", "alol", "rest", "bc+alol")
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
    assert [s for s, _ in record["curves"]["learner_tokens"]] == [0, 1]
    assert len(record["rewards"]) == len(record["prompts"]) == record["eval"]["num_samples"]
    assert np.isclose(np.mean(record["rewards"]), record["metrics"]["task_reward"])
    # the suite's second sample per prompt: another seed, the task reward only
    assert record["extra_eval_seeds"] == [bench.EXTRA_SEED + 1000 * 1 + 1]
    assert len(record["extra_rewards"][0]) == len(record["rewards"])
    assert record["extra_rewards"][0] != record["rewards"]
    zero = json.loads(saved["zero-shot-s0.json"].read_text())
    assert zero["iterations"] == 0 and zero["prompts"] == record["prompts"]  # same prompts
    # the difficulty split's own samples of the initial policy: other evaluation seeds
    assert zero["split_eval_seeds"] == [bench.SPLIT_SEED, bench.SPLIT_SEED + 1]
    assert zero["eval"]["seed"] == 0 and zero["split_rewards"][0] != zero["split_rewards"][1]
    assert [len(r) for r in zero["split_rewards"]] == [len(zero["rewards"])] * 2
    assert "split_rewards" not in record
    one = json.loads(saved["zero-shot-s1.json"].read_text())["split_eval_seeds"]
    assert one == [bench.SPLIT_SEED + 2, bench.SPLIT_SEED + 3]  # no seed used twice
    note = (out / "difficulty.md").read_text()
    assert "Split by 4 samples per prompt of the zero-shot policy of their own" in note

    # the A-LoL rows of both seeds learn from one data file, written once
    data = out / "data" / "Positive-v0.jsonl"
    alol = [json.loads(saved[f"{r}-s{s}.json"].read_text()) for r in ("alol", "bc+alol")
            for s in (0, 1)]  # fmt: skip
    assert {a["config"]["data"] for a in alol} == {str(data)}
    assert all(a["data"] == alol[0]["data"] for a in alol)
    assert alol[0]["data"]["rows"] == 32 == len(data.read_text().splitlines())
    assert alol[0]["data"]["settings"]["source"] == "guide"
    assert alol[2]["config"]["init_from"].endswith("bc-s0") and alol[0]["episodes"] is None
    rest = json.loads(saved["rest-s0.json"].read_text())
    assert "data" not in rest and [g for g, _ in rest["curves"]["grow"]] == [0]  # grows its own

    table = (out / "table.md").read_text()
    assert "2 samples per prompt" in table and "fewer samples" not in table
    paired = table[table.index("## Paired with zero-shot and the guide") :]
    assert "| Row | minus Zero-shot | minus Guide |" in paired and "| BC+A-LoL | +" in paired
    tokens = table[table.index("## π's own tokens per training episode") :]
    tokens = tokens[: tokens.index("## Wall time")]
    ppo = [json.loads(saved[f"ppo-s{s}.json"].read_text()) for s in (0, 1)]
    means = [np.mean([v for _, v in r["curves"]["learner_tokens"]]) for r in ppo]
    assert f"| PPO | {report._mean_std(means)} |" in tokens
    assert "| A-LoL |" not in tokens  # offline rows log no episodes of π
    # a cell's reward: the mean over seeds of each run's mean over both samples
    bcs = [json.loads(saved[f"bc-s{s}.json"].read_text()) for s in (0, 1)]
    means = [np.mean([b["rewards"], b["extra_rewards"][0]]) for b in bcs]
    assert f"| BC | {report._mean_std(means)} |" in table
    for label in ("Zero-shot", "Guide", "BC", "PPO", "BC+PPO", "A-LoL", "ReST", "BC+A-LoL"):
        assert f"| {label} | " in table
    assert "(partial)" not in table
    assert "| Positive-v0 | `data/Positive-v0.jsonl` | guide, 1 per train prompt" in table
    assert len((out / "runs.csv").read_text().splitlines()) == 1 + 16

    # a rerun trains and evaluates nothing and rewrites no run JSON
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(bench, "run", refuse)
    monkeypatch.setattr(bench, "evaluate", refuse)
    monkeypatch.setattr(bench, "evaluate_guide", refuse)
    monkeypatch.setattr(bench, "make_data", refuse)
    mtimes = {name: p.stat().st_mtime_ns for name, p in saved.items()}
    (out / "table.md").unlink()
    capsys.readouterr()
    assert bench.main(["--suite", "smoke", "--out", str(out)]) == 0
    rerun = capsys.readouterr().out
    assert rerun.count("done before, skipped") == 16
    assert "now differs" not in rerun  # ReST's thresholds: a tuple here, a list in the record
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


def test_a_killed_data_file_is_continued_to_the_same_file(tmp_path: Path) -> None:
    args = ["--suite", "smoke", "--only", "alol", "--out", str(tmp_path)]
    assert bench.main([*args, "--seeds", "0"]) == 0
    data = bench.data_file(tmp_path, TASK)
    whole = data.read_bytes()
    data.with_suffix(".json").unlink()  # not complete: killed while writing
    data.write_bytes(b"".join(whole.splitlines(keepends=True)[:20]))  # a chunk and a bit
    assert bench.main([*args, "--seeds", "1"]) == 0
    assert data.read_bytes() == whole
    info = json.loads(results(tmp_path)["alol-s1.json"].read_text())["data"]
    assert info["rows"] == 32


def test_a_bc_x_row_rebuilds_a_bc_checkpoint_the_run_directory_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--suite", "smoke", "--seeds", "0", "--out", str(tmp_path)]
    assert bench.main([*args, "--only", "bc"]) == 0
    bc_dir = bench.run_path(tmp_path, TASK, "bc", 0)
    shutil.rmtree(bc_dir)  # a fresh clone: run directories stay out of git
    capsys.readouterr()
    assert bench.main([*args, "--only", "bc+ppo"]) == 0
    assert "rebuilding the checkpoint of bc (seed 0)" in capsys.readouterr().out
    assert latest_checkpoint(bc_dir).name == "iter-000002"
    record = json.loads(results(tmp_path)["bc+ppo-s0.json"].read_text())
    assert record["rebuild_seconds"] > 0  # apart from the run's own time
    assert record["seconds"] == (
        record["train_seconds"] + record["eval_seconds"] + record["extra_eval_seconds"]
    )

    # a BC run that no longer reproduces its JSON is refused, not silently replaced
    saved = bench.result_path(tmp_path, TASK, "bc", 0)
    record = json.loads(saved.read_text())
    record["rewards"][0] += 1.0
    saved.write_text(json.dumps(record))
    shutil.rmtree(bc_dir)
    bench.result_path(tmp_path, TASK, "bc+ppo", 0).unlink()
    assert bench.main([*args, "--only", "bc+ppo"]) == 1
    assert "FAILED: the rebuilt bc run of seed 0 is not the saved one" in capsys.readouterr().out
    assert not bc_dir.exists()  # no later BC+X run starts from it


def test_a_suite_may_decode_a_task_with_beam_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = dataclasses.replace(bench.SUITES["smoke"], eval_num_beams={TASK: 2})
    monkeypatch.setitem(bench.SUITES, "smoke", suite)
    assert bench.main(["--suite", "smoke", "--only", "zero-shot,guide", "--seeds", "0",
                       "--out", str(tmp_path)]) == 0  # fmt: skip
    zero = json.loads(results(tmp_path)["zero-shot-s0.json"].read_text())
    guide = json.loads(results(tmp_path)["guide-s0.json"].read_text())
    assert zero["eval"]["num_beams"] == 2 and guide["eval"]["num_beams"] == 1
    assert zero["extra_eval_seeds"] == guide["extra_eval_seeds"] == []  # beams: one sample
    again = evaluate(str(bench.run_path(tmp_path, TASK, "zero-shot", 0)), num_beams=2, seed=7)
    assert [s["generation"] for s in again["samples"]] == zero["generations"]  # deterministic
    assert (
        "Positive-v0: every row but the guide decodes with beam search of 2 beams"
        in (tmp_path / "table.md").read_text()
    )
    assert "num_beams" in (tmp_path / "runs.csv").read_text().splitlines()[0]


def test_saved_runs_get_the_samples_a_suite_now_asks_for_where_their_policy_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    one = dataclasses.replace(bench.SUITES["smoke"], eval_samples=1, keep_checkpoints=False)
    monkeypatch.setitem(bench.SUITES, "smoke", one)
    args = ["--suite", "smoke", "--only", "zero-shot,guide,ppo", "--seeds", "0"]
    assert bench.main([*args, "--out", str(tmp_path / "old")]) == 0
    before = {n: json.loads(p.read_text()) for n, p in results(tmp_path / "old").items()}
    assert all(r["extra_rewards"] == [] for r in before.values())

    monkeypatch.setitem(bench.SUITES, "smoke", dataclasses.replace(one, eval_samples=2))
    capsys.readouterr()
    assert bench.main([*args, "--out", str(tmp_path / "old")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("added 1 test sample(s) per prompt") == 2  # zero-shot and guide
    assert "PPO · seed 0: has 1 test sample(s) per prompt of 2, and its checkpoint is gone" in (
        printed
    )
    after = {n: json.loads(p.read_text()) for n, p in results(tmp_path / "old").items()}
    assert after["ppo-s0.json"] == before["ppo-s0.json"]
    for name in ("zero-shot-s0.json", "guide-s0.json"):  # the first sample kept as it was
        assert {k: v for k, v in after[name].items() if "extra" not in k} == {
            k: v for k, v in before[name].items() if "extra" not in k
        }
    assert not list(bench.run_path(tmp_path / "old", TASK, "zero-shot", 0).glob("*/iter-*"))
    table = (tmp_path / "old" / "table.md").read_text()
    assert "2 samples per prompt" in table
    assert "fewer samples" in table and "PPO on Positive-v0 (1)" in table

    # the added samples are those of runs scored with two samples from the start
    assert bench.main(["--suite", "smoke", "--only", "zero-shot,guide", "--seeds", "0",
                       "--out", str(tmp_path / "new")]) == 0  # fmt: skip
    for name, fresh in results(tmp_path / "new").items():
        fresh_record = json.loads(fresh.read_text())
        assert (
            after[name]["extra_eval_seeds"]
            == fresh_record["extra_eval_seeds"]
            == [bench.EXTRA_SEED + 1]
        )
        assert after[name]["extra_rewards"] == fresh_record["extra_rewards"]


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
    for beams, says in (({TASK: 0}, "must be >= 1"), ({"textgen_env/IMDB-v0": 5}, "not its task")):
        bad = dataclasses.replace(bench.SUITES["smoke"], eval_num_beams=beams)
        with pytest.raises(bench.SuiteError, match=says):
            bench.check_suite("beams", bad)
    bad_data = dataclasses.replace(bench.SUITES["smoke"], data={"samples_per_prompt": 0})
    with pytest.raises(bench.SuiteError, match="data of textgen_env/Positive-v0"):
        bench.check_suite("data", bad_data)
    assert bench.SUITES["paper-small"].eval_num_beams == {"textgen_env/CommonGen-v0": 5}
    for name in suites.OFFLINE_ROWS:
        assert name in bench.SUITES["toy"].rows and name in bench.SUITES["paper-small"].rows


def test_the_data_sources_are_the_references_where_a_task_has_them() -> None:
    import gymnasium as gym

    for task in ("textgen_env/Positive-v0", "textgen_env/Reverse-v0", "textgen_env/Twist-v0"):
        envs = gym.make_vec(task, num_envs=1, vectorization_mode="vector_entry_point")
        has = any(p.references for p in envs.unwrapped.task.prompts)
        assert bench.DATA_SOURCE[task] == ("references" if has else "guide"), task


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


def test_the_split_uses_the_zero_shot_samples_of_its_own_when_every_run_has_them(
    tmp_path: Path,
) -> None:
    prompts = ["p0", "p1", "p2"]
    own = {"row": "zero-shot", "prompts": prompts, "rewards": [0.9, 0.5, 0.1]}
    zero = [
        own | {"seed": 0, "split_rewards": [[0.1, 0.5, 0.9]], "split_eval_seeds": [10000]},
        own | {"seed": 1, "split_rewards": [[0.2, 0.4, 0.6]], "split_eval_seeds": [10001]},
    ]
    split = report.difficulty("textgen_env/IMDB-v0", {"zero-shot": zero})
    assert split is not None
    # p2 is easy by the split's samples (mean 0.75), though its reported samples scored 0.1
    assert split[1]["zero-shot"] == {"easy (1)": [0.1, 0.1], "medium (1)": [0.5, 0.5],
                                     "hard (1)": [0.9, 0.9]}  # fmt: skip
    assert report.split_is_independent(zero)
    # one run without them: the split falls back to the reported samples, and says so
    mixed = [zero[0], own | {"seed": 2}]
    assert not report.split_is_independent(mixed)
    split = report.difficulty("textgen_env/IMDB-v0", {"zero-shot": mixed})
    assert split is not None and split[1]["zero-shot"]["easy (1)"] == [0.9, 0.9]

    def written(runs: list[dict]) -> str:
        task = "textgen_env/IMDB-v0"
        by = {task: {"zero-shot": runs}}
        labels = {"zero-shot": "Zero-shot"}
        return report._write_difficulty_table(
            tmp_path, by, [task], ["zero-shot"], labels
        ).read_text()

    assert (
        "2 samples per prompt of the zero-shot policy of their own (evaluation seeds "
        "10000, 10001)" in " ".join(written(zero).split())
    )
    # two samples in the same order of the prompts: split-half r = 1 (mean 0.15, 0.45, 0.75)
    assert "r = 1.00, reliability of the ranking (Spearman–Brown) 1.00: a usable" in written(zero)
    assert "biased apart" in written(mixed) and "biased apart" not in written(zero)


def test_split_half_reliability_by_hand() -> None:
    # 4 samples of 3 prompts: even samples 0, 2 and odd samples 1, 3
    samples = np.array([[0.0, 1.0, 2.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [0.0, 2.0, 1.0]])
    r, rho = report.split_half_reliability(samples)
    # halves (0, 1, 2) and (0, 2, 1): r = 0.5, Spearman–Brown 2·0.5 / 1.5
    assert r == pytest.approx(0.5) and rho == pytest.approx(2 / 3)
    assert report.split_half_reliability(samples[:1]) is None  # one sample: no halves
    assert report.split_half_reliability(np.ones((2, 3))) is None  # no spread


def test_a_cell_of_one_seed_shows_its_value_alone() -> None:
    """One seed has no spread: no "± 0.000" that would read as a measured std of zero."""
    assert report._mean_std([0.25]) == "0.250"
    assert report._mean_std([0.2, 0.4]) == "0.300 ± 0.141"  # sample std sqrt(0.02)
    assert report._mean_std([11.3, 11.9]) == "11.60 ± 0.424"  # each number to its own size


def test_paired_gain_by_hand() -> None:
    def rec(seed: int, rewards: list[float], *extra: list[float], prompts: str = "ab") -> dict:
        return {"seed": seed, "prompts": list(prompts), "rewards": rewards,
                "extra_rewards": list(extra)}  # fmt: skip

    runs = [
        rec(0, [1.0, 0.0], [0.0, 0.0]),  # prompt means (0.5, 0.0)
        rec(1, [0.4, 0.2]),
        rec(2, [9.0, 9.0]),  # no base run of seed 2: left out
        rec(3, [9.0, 9.0], prompts="xy"),  # other prompts than its base: left out
    ]
    base = [rec(0, [0.0, 0.0]), rec(1, [0.2, 0.2]), rec(3, [0.0, 0.0])]
    gain, se, per_seed = report.paired_gain(runs, base)
    # seed 0: d = (0.5, 0), gain 0.25, se 0.3536/√2 = 0.25; seed 1: d = (0.2, 0), 0.1, 0.1
    assert per_seed == pytest.approx([0.25, 0.1])
    assert gain == pytest.approx(0.175)
    assert se == pytest.approx(np.sqrt(0.25**2 + 0.1**2) / 2)
    assert report.paired_gain(runs[2:], base) is None


def test_a_record_says_the_cpu_and_whether_decoding_was_prepacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which tokens a run samples depends on float rounding, so its record names the CPU model
    and the prepacking switch (docs/benchmarks.md, replay across machines)."""
    monkeypatch.setenv("TEXTGEN_ENV_PREPACK", "0")
    assert bench.main(["--suite", "smoke", "--only", "zero-shot", "--seeds", "0",
                       "--out", str(tmp_path)]) == 0  # fmt: skip
    record = json.loads(results(tmp_path)["zero-shot-s0.json"].read_text())["machine"]
    assert record["prepacked_decoding"] is False
    assert record["cpus"] == os.cpu_count() and record["torch_threads"] >= 1
    assert isinstance(record["cpu"], str)
    monkeypatch.delenv("TEXTGEN_ENV_PREPACK")
    assert bench.machine()["prepacked_decoding"] is True


def test_a_record_names_the_code_it_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A code change can change float rounding (docs/benchmarks.md): the record says the git
    commit of the runner's checkout, or None where there is none."""
    assert bench.main(["--suite", "smoke", "--only", "zero-shot", "--seeds", "0",
                       "--out", str(tmp_path)]) == 0  # fmt: skip
    commit = json.loads(results(tmp_path)["zero-shot-s0.json"].read_text())["code_commit"]
    root = Path(bench.__file__).resolve().parents[1]
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if git.returncode == 0:  # a git checkout (the tests run from one)
        assert commit.removesuffix("+changes") == git.stdout.strip()
    else:
        assert commit is None

    def no_git(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git")

    monkeypatch.setattr(bench.subprocess, "run", no_git)
    assert bench.code_commit() is None


def test_only_a_code_change_marks_a_record_changed(tmp_path: Path) -> None:
    """Edited prose (Markdown) or results leave the commit plain; an edited code file, in any
    folder, adds ``+changes``."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True,
                              check=True)  # fmt: skip
        return done.stdout.strip()

    files = ["README.md", "docs/guide.md", "benchmarks/results/t.json", "agents/a.py"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("one\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git("rev-parse", "HEAD")
    for name in files[:3]:
        (tmp_path / name).write_text("two\n")
    assert bench.code_commit(tmp_path) == head
    (tmp_path / "agents/a.py").write_text("two\n")
    assert bench.code_commit(tmp_path) == head + "+changes"


def test_a_bad_prepack_switch_is_refused_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEXTGEN_ENV_PREPACK", "2")
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--suite", "smoke", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "TEXTGEN_ENV_PREPACK must be 0 or 1, got '2'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
