"""``make demo`` (agents.demo): its plot, its argument checks, and the whole pipeline with a
one-iteration budget on SmolLM2 and two test prompts."""

from __future__ import annotations

import json

import pytest

from agents import demo


def test_plot_writes_a_png(tmp_path):
    rows = {"zero-shot": (0.2, 0.05, 11.0), "ppo_pp": (0.4, 0.05, 11.5), "guide": (0.45, 0.04, 9.0)}
    path = tmp_path / "demo.png"
    demo.plot(path, [(0, 0.1), (1, 0.3), (2, 0.35)], rows, episodes=16)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_is_mean_standard_error_and_perplexity():
    result = {"num_samples": 4, "metrics": {"task_reward": 0.5, "task_reward_std": 0.2,
                                            "perplexity": 12.0}}  # fmt: skip
    assert demo.summary(result) == pytest.approx((0.5, 0.1, 12.0))


@pytest.mark.parametrize("flag", ["--iterations", "--eval-prompts"])
def test_counts_below_one_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main([flag, "0"])
    assert exc.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_one_iteration_end_to_end(tmp_path, capsys):
    demo.main(["--iterations", "1", "--eval-prompts", "2", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "[4/4]" in out and "before ▸ after" in out
    record = json.loads((tmp_path / "demo.json").read_text())
    assert set(record["rows"]) == {"zero-shot", "PPO++", "guide"}
    assert [step for step, _ in record["curve"]] == [0]
    # the same prompts before and after, in the test split's order
    before, after = record["samples"]["before"], record["samples"]["after"]
    assert [s["prompt"] for s in before] == [s["prompt"] for s in after] and len(before) == 2
    assert (tmp_path / "demo.png").exists()
    assert (tmp_path / "zero-shot").is_dir() and (tmp_path / "ppo_pp").is_dir()


def test_a_chosen_folder_holding_runs_is_not_replaced(tmp_path, capsys):
    (tmp_path / "zero-shot").mkdir()
    with pytest.raises(SystemExit) as exc:
        demo.main(["--output-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert "--overwrite replaces them" in capsys.readouterr().err
    assert (tmp_path / "zero-shot").is_dir()
