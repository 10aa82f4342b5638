"""Offline data files (agents.offline_data, agents.make_data): round trip, bad rows, replay
through the env, resumable sampling."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import textgen_env  # noqa: F401
from agents.build import scripted_guide
from agents.make_data import main as make_data_main
from agents.offline_data import (
    DataFileError,
    Row,
    append_rows,
    read_rows,
    replay,
    sample_rows,
    write_samples,
)

ENV = "textgen_env/Reverse-v0"


@pytest.fixture
def envs():
    return gym.make_vec(ENV, num_envs=4, vectorization_mode="vector_entry_point")


def _guide(envs):
    return scripted_guide(ENV, envs.unwrapped.task.vocab_size, 0.3)


def test_round_trip_keeps_every_field(envs, tmp_path):
    task = envs.unwrapped.task
    rows = [
        Row(0, task.prompts[0].text, "cba", 0.5, None, {"source": "x"}),
        Row(1, task.prompts[1].text, "ab", -1.0, (2, 3), {"grow_step": 2}),
    ]
    path = tmp_path / "d.jsonl"
    append_rows(path, rows[:1])
    append_rows(path, rows[1:])
    back = read_rows(path, task)
    assert back == rows
    assert [r.meta for r in back] == [{"source": "x"}, {"grow_step": 2}]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reward": None}, "reward must be a finite number"),
        ({"reward": math.nan}, "reward must be a finite number"),
        ({"response": ""}, "response must be a non-empty string"),
        ({"response": "  "}, "response must be a non-empty string"),
        ({"prompt": "zzz="}, "is not prompt 0 of"),
        ({"prompt_index": 10_000}, "is not a prompt of"),
        ({"response_ids": [1, 10_000]}, "response_ids must be a list of token ids"),
    ],
)
def test_bad_rows_name_the_file_and_line(envs, tmp_path, change, message):
    task = envs.unwrapped.task
    good = {"prompt_index": 0, "prompt": task.prompts[0].text, "response": "a", "reward": 1.0}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good | change) + "\n")
    with pytest.raises(DataFileError, match=message) as info:
        read_rows(path, task)
    assert f"{path} line 2" in str(info.value)


def test_missing_fields_empty_file_and_cut_last_line(envs, tmp_path):
    task = envs.unwrapped.task
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt_index": 0, "prompt": task.prompts[0].text}) + "\n")
    with pytest.raises(DataFileError, match=r"line 1: missing field.*response, reward"):
        read_rows(path, task)
    path.write_text("\n")
    with pytest.raises(DataFileError, match="no rows"):
        read_rows(path, task)
    row = Row(0, task.prompts[0].text, "ab", 0.1)
    path.write_text(row.to_json() + "\n" + row.to_json()[:20])  # a killed writer's last line
    with pytest.raises(DataFileError, match="line 2: not JSON"):
        read_rows(path, task)
    assert read_rows(path, task, drop_partial_tail=True) == [row]


def test_an_episode_of_only_eos_is_a_row_with_empty_ids(envs, tmp_path):
    task = envs.unwrapped.task
    path = tmp_path / "d.jsonl"
    append_rows(path, [Row(0, task.prompts[0].text, "", 0.0, ())])
    (row,) = read_rows(path, task)
    data = replay(envs, [row])
    assert data.mask.sum().item() == 1 and data.tokens[0, 0].item() == task.eos_token_id


def test_replay_gives_the_env_layout_and_rewards(envs):
    task = envs.unwrapped.task
    rows = sample_rows(envs, _guide(envs), [0, 1, 2, 3], np.random.default_rng(0))
    rows += sample_rows(envs, _guide(envs), [4, 5], np.random.default_rng(1))  # a short chunk
    data = replay(envs, rows)
    assert data.rewards.tolist() == pytest.approx([r.reward for r in rows])
    assert data.input_ids.shape == (6, task.max_prompt_tokens + task.max_new_tokens)
    for i, row in enumerate(rows):
        n = len(row.response_ids)
        gen = data.tokens[i, : data.mask[i].sum()].tolist()
        episode = [*row.response_ids, task.eos_token_id][: task.max_new_tokens]
        assert gen == episode and len(gen) == min(n + 1, task.max_new_tokens)
    # The text alone (no ids) replays to the same tokens and rewards.
    text_only = [Row(r.prompt_index, r.prompt, r.response, r.reward) for r in rows if r.response]
    again = replay(envs, text_only)
    assert again.rewards.tolist() == pytest.approx([r.reward for r in text_only])


def test_write_samples_resumes_to_the_same_file(envs, tmp_path):
    guide = _guide(envs)
    whole = tmp_path / "whole.jsonl"
    write_samples(whole, envs, guide, range(5), 2, 7, {"source": "guide"}, progress=False)
    assert len(read_rows(whole, envs.unwrapped.task)) == 10
    # Killed after one chunk and a half (and a cut line): the rerun writes the same file.
    cut = tmp_path / "cut.jsonl"
    lines = whole.read_text().split("\n")
    cut.write_text("\n".join(lines[:6]) + "\n" + lines[6][:15])
    write_samples(cut, envs, guide, range(5), 2, 7, {"source": "guide"}, progress=False)
    assert cut.read_text() == whole.read_text()
    with pytest.raises(DataFileError, match="another command"):
        write_samples(cut, envs, guide, range(6, 9), 2, 7, {}, progress=False)


def test_make_data_cli(tmp_path, capsys):
    out = tmp_path / "rev.jsonl"
    args = ["--env-id", ENV, "--out", str(out), "--max-prompts", "3", "--batch-size", "4"]
    make_data_main(args)
    assert "12 rows" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        make_data_main([*args[:-4], "--samples-per-prompt", "0"])
    assert info.value.code == 2
    assert "samples_per_prompt must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make_data_main(["--env-id", "textgen_env/Nope-v0", "--out", str(out)])
    assert "unknown env id" in capsys.readouterr().err
