"""``python -m agents.evaluate``: a run end to end, and every expected error as one line on
stderr with exit status 2 (``--debug``: the traceback), checked before the policy is built."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import agents.evaluate as evaluate_module
from agents.algorithms import ALGORITHMS
from agents.checkpoint import CheckpointError, latest_checkpoint
from agents.evaluate import check_env_ids, evaluate, main
from agents.ppo import PPOConfig
from agents.trainer import run
from textgen_env.models import tiny_causal_lm, tiny_hf_tokenizer

REPO = Path(__file__).resolve().parents[1]
PROG = "python -m agents.evaluate"
OBJECT = "a JSON object with the task's fields"


def tiny_run(out: Path, **kw: Any) -> Path:
    """A run that wrote only its initial policy (``total_iterations=0``)."""
    cfg = PPOConfig(total_iterations=0, batch_size=4, minibatch_size=2, output_dir=str(out), **kw)
    return run(cfg, "ppo")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal LM on textgen_env/Reverse-v0 (the toy task's own vocabulary)."""
    return tiny_run(tmp_path_factory.mktemp("toy") / "run")


@pytest.fixture(scope="module")
def imdb_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real-task run (textgen_env/IMDB-v0) whose policy is a tiny local Hugging Face LM."""
    folder = tmp_path_factory.mktemp("tiny-lm")
    tokenizer = tiny_hf_tokenizer(("the", "movie", "was", "good", "bad", "."))
    tiny_causal_lm(len(tokenizer), seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path_factory.mktemp("imdb") / "run"
    return tiny_run(out, env_id="textgen_env/IMDB-v0", model=str(folder))


@pytest.fixture
def no_policy_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the policy is built: the error must come before that."""

    def refuse(*args: object) -> None:
        raise AssertionError("the policy was built before the error was found")

    monkeypatch.setattr(evaluate_module, "restore_policy", refuse)


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line, expect exit status 2 and one line on stderr; return that line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: ")
    return lines[0].removeprefix(f"{PROG}: error: ")


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# ----------------------------------------------------------------------------- a run


def test_evaluates_a_toy_run_and_writes_json(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "eval.json"  # its folder is created
    main(["--checkpoint", str(toy_run), "--num-samples", "3", "--batch-size", "2",
          "--output", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "textgen_env/Reverse-v0 · test · 3 prompts · ppo" in printed
    assert f"wrote {out}" in printed
    result = json.loads(out.read_text())
    assert result["num_samples"] == 3 and len(result["samples"]) == 3
    assert set(result["metrics"]) >= {"task_reward", "task_reward_std"}
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not a private temporary file


def test_a_prompt_file_with_blank_lines_evaluates(imdb_run: Path, tmp_path: Path) -> None:
    prompts = write(tmp_path / "p.jsonl", '{"text": "the movie was good"}\n\n{"text": "bad"}\n')
    result = evaluate(str(imdb_run), prompts=prompts, batch_size=2)
    assert [s["prompt"] for s in result["samples"]] == ["the movie was good", "bad"]
    assert result["split"] == prompts


def test_a_json_array_prompt_file_evaluates(imdb_run: Path, tmp_path: Path) -> None:
    prompts = write(tmp_path / "p.json", '[{"text": "the movie"},\n {"text": "was good"}]\n')
    assert evaluate(str(imdb_run), prompts=prompts, batch_size=2)["num_samples"] == 2


# ----------------------------------------------------------------------------- --prompts


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"text": "good"}\nnot json\n', "line 2 is not valid JSON (Expecting value at column 1)"),
        ('{"text": "good"}\n\n[1, 2]\n', f"line 3 is an array, not {OBJECT}"),
        ('"good"\n', f"line 1 is a string, not {OBJECT}"),
        ('{"text": "good"}\n{"txt": "good"}\n', "line 2 has no field 'text' (fields: ['txt'])"),
        ('{"text": 5}\n', "line 1 field 'text' must be str, got int"),
        ('{"text": "  "}\n', "line 1 has an empty text"),
        ('[{"text": "good"}, 3]\n', "item 2 is a number, not a JSON object"),
        ("\n\n", "holds no prompts"),
    ],
)  # fmt: skip
def test_a_bad_prompt_line_is_named(
    text: str,
    problem: str,
    imdb_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_policy_build: None,
) -> None:
    prompts = write(tmp_path / "prompts.jsonl", text)
    message = cli_error(["--checkpoint", str(imdb_run), "--prompts", prompts], capsys)
    assert message == f"prompt file {prompts} {problem}"


def test_prompt_lines_are_checked_against_the_evaluated_task(
    imdb_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_policy_build: None
) -> None:
    prompts = write(tmp_path / "p.jsonl", '{"text": "the movie"}\n')
    message = cli_error(
        ["--checkpoint", str(imdb_run), "--env-id", "textgen_env/CommonGen-v0",
         "--prompts", prompts], capsys,
    )  # fmt: skip
    assert message == f"prompt file {prompts} line 1 has no field 'concepts' (fields: ['text'])"


def test_a_missing_prompt_file(
    imdb_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_policy_build: None
) -> None:
    missing = tmp_path / "nothere.jsonl"
    message = cli_error(["--checkpoint", str(imdb_run), "--prompts", str(missing)], capsys)
    assert message == f"prompt file {missing} does not exist"


def test_prompts_for_a_toy_task(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_policy_build: None
) -> None:
    prompts = write(tmp_path / "p.jsonl", '{"text": "abc"}\n')
    message = cli_error(["--checkpoint", str(toy_run), "--prompts", prompts], capsys)
    assert message == "textgen_env/Reverse-v0 generates its prompts; --prompts needs a data task"


# ----------------------------------------------------------------------------- --output


@pytest.fixture
def no_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the evaluation starts: --output must be checked before it."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the evaluation ran before --output was checked")

    monkeypatch.setattr(evaluate_module, "evaluate", refuse)


def test_output_that_is_a_directory(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_evaluation: None
) -> None:
    message = cli_error(["--checkpoint", str(toy_run), "--output", str(tmp_path)], capsys)
    assert message == (
        f"cannot write --output {tmp_path}: it is a directory (name a file, e.g. "
        f"{tmp_path / 'eval.json'})"
    )


def test_output_below_a_file(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_evaluation: None
) -> None:
    (tmp_path / "file").write_text("")
    output = tmp_path / "file" / "sub" / "eval.json"
    message = cli_error(["--checkpoint", str(toy_run), "--output", str(output)], capsys)
    assert message == f"cannot write --output {output}: {tmp_path / 'file'} is not a directory"


@pytest.fixture
def unwritable_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder this user cannot create files in: a mode-555 one, or (as root, who ignores
    modes) sysfs."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        for candidate in (folder, Path("/sys")):
            try:
                tempfile.TemporaryFile(dir=candidate).close()
            except OSError:
                yield candidate
                return
        pytest.skip("no folder that this user cannot write to")
    finally:
        folder.chmod(0o755)


def test_output_in_a_folder_that_is_not_writable(
    toy_run: Path,
    unwritable_folder: Path,
    capsys: pytest.CaptureFixture[str],
    no_evaluation: None,
) -> None:
    output = unwritable_folder / "eval.json"
    message = cli_error(["--checkpoint", str(toy_run), "--output", str(output)], capsys)
    assert message.startswith(
        f"cannot write --output {output}: {unwritable_folder} is not writable ("
    )


# ----------------------------------------------------------------------------- --env-id


def test_a_toy_policy_on_another_toy_task(
    toy_run: Path, capsys: pytest.CaptureFixture[str], no_policy_build: None
) -> None:
    message = cli_error(
        ["--checkpoint", str(toy_run), "--env-id", "textgen_env/Positive-v0"], capsys
    )
    assert message == (
        "the policy was trained on textgen_env/Reverse-v0 and cannot be evaluated on "
        "textgen_env/Positive-v0: each toy task has its own vocabulary, so a toy task's policy "
        "runs only on its own task and a real task's policy only on the real tasks"
    )


def test_a_toy_policy_on_a_real_task_and_back(
    toy_run: Path, imdb_run: Path, capsys: pytest.CaptureFixture[str], no_policy_build: None
) -> None:
    message = cli_error(["--checkpoint", str(toy_run), "--env-id", "textgen_env/TLDR-v0"], capsys)
    assert message.startswith(
        "the policy was trained on textgen_env/Reverse-v0 and cannot be evaluated on "
        "textgen_env/TLDR-v0: "
    )
    message = cli_error(["--checkpoint", str(imdb_run), "--env-id", "textgen_env/Twist-v0"], capsys)
    assert message.startswith(
        "the policy was trained on textgen_env/IMDB-v0 and cannot be evaluated on "
        "textgen_env/Twist-v0: "
    )


def test_real_task_policies_run_on_every_real_task() -> None:
    for trained_on in ("IMDB-v0", "CommonGen-v0", "TLDR-v0"):
        for env_id in ("IMDB-v0", "CommonGen-v0", "TLDR-v0"):
            check_env_ids(f"textgen_env/{trained_on}", f"textgen_env/{env_id}")  # no error
    check_env_ids("textgen_env/Twist-v0", "textgen_env/Twist-v0")


def test_an_unknown_env_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before the checkpoint is even read (this one does not exist).
    argv = ["--checkpoint", str(tmp_path / "nothing"), "--env-id", "textgen_env/Nope-v0"]
    assert cli_error(argv, capsys) == (
        "unknown env id 'textgen_env/Nope-v0'; choose from textgen_env/CommonGen-v0, "
        "textgen_env/IMDB-v0, textgen_env/Positive-v0, textgen_env/Reverse-v0, "
        "textgen_env/TLDR-v0, textgen_env/Twist-v0"
    )


def test_an_unknown_split_of_a_real_task(
    imdb_run: Path, capsys: pytest.CaptureFixture[str], no_policy_build: None
) -> None:
    message = cli_error(["--checkpoint", str(imdb_run), "--split", "dev"], capsys)
    assert message == (
        "unknown split 'dev' of textgen_env/IMDB-v0; use one of train, validation, test"
    )


# ----------------------------------------------------------------------------- --checkpoint


def test_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing"
    assert cli_error(["--checkpoint", str(missing)], capsys) == (
        f"checkpoint {missing} does not exist"
    )
    with pytest.raises(FileNotFoundError):
        evaluate(str(missing))


@pytest.mark.parametrize("kind", ["empty folder", "file"])
def test_not_a_checkpoint(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "thing"
    if kind == "file":
        path.write_text("{}")
    else:
        path.mkdir()
    assert cli_error(["--checkpoint", str(path)], capsys) == (
        f"no checkpoint found at {path} (expected a run directory or iter-*)"
    )


def copy_run(run_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of ``run_dir`` and its newest checkpoint folder."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy, latest_checkpoint(copy)


def test_a_damaged_checkpoint(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy, ckpt = copy_run(toy_run, tmp_path)
    (ckpt / "policy.safetensors").write_bytes(b"\x00" * 10)
    message = cli_error(["--checkpoint", str(copy)], capsys)
    assert message.startswith(f"no intact checkpoint at {copy}: {ckpt / 'policy.safetensors'}: ")
    with pytest.raises(CheckpointError):
        evaluate(str(copy))


def test_a_damaged_newest_checkpoint_is_one_warning_line(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy, ckpt = copy_run(toy_run, tmp_path)
    newer = ckpt.with_name("iter-000001")
    shutil.copytree(ckpt, newer)
    (newer / "config.json").write_text("{")
    main(["--checkpoint", str(copy), "--num-samples", "2", "--batch-size", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{PROG}: warning: using iter-000000: the newer checkpoint is damaged "
        f"({newer / 'config.json'}: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))"
    ]


def test_a_checkpoint_of_an_unknown_algorithm(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy, ckpt = copy_run(toy_run, tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(config | {"algo": "magic"}))
    assert cli_error(["--checkpoint", str(copy)], capsys) == (
        f"checkpoint {copy} was written by an unknown algorithm 'magic' "
        f"(known: {', '.join(sorted(ALGORITHMS))})"
    )


def test_a_checkpoint_that_does_not_fit_its_config(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy, ckpt = copy_run(toy_run, tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(config | {"seq2seq": True}))
    message = cli_error(["--checkpoint", str(copy)], capsys)
    assert message.startswith(f"checkpoint {copy} does not fit the policy its config describes: ")


# ----------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("flag", "name"), [("--num-samples", "num_samples"), ("--batch-size", "batch_size")]
)
def test_counts_below_one(
    flag: str, name: str, toy_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before the checkpoint is read.
    message = cli_error(["--checkpoint", "no-such-run", flag, "0"], capsys)
    assert message == f"{name} ({flag}) must be an integer >= 1, got 0"
    with pytest.raises(ValueError, match=f"{name} "):
        evaluate(str(toy_run), **{name: 0})


# ----------------------------------------------------------------------------- --debug


def test_debug_raises_the_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["--checkpoint", str(tmp_path / "nothing"), "--debug"])


def test_the_command_line_prints_one_line_or_with_debug_the_traceback(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "agents.evaluate", "--checkpoint", str(tmp_path / "nothing")]
    plain = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2
    assert plain.stderr == f"{PROG}: error: checkpoint {tmp_path / 'nothing'} does not exist\n"
    debug = subprocess.run(
        [*argv, "--debug"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback")
    assert "FileNotFoundError: checkpoint" in debug.stderr


# ----------------------------------------------------------------------------- --device


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_run_on_a_machine_without_cuda(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy, ckpt = copy_run(toy_run, tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(config | {"device": "cuda"}))
    assert cli_error(["--checkpoint", str(copy)], capsys) == (
        "device 'cuda': no CUDA device is available here (the run's device; --device cpu "
        "evaluates on the CPU)"
    )
    main(["--checkpoint", str(copy), "--device", "cpu", "--num-samples", "2", "--batch-size", "2"])
    assert "2 prompts" in capsys.readouterr().out
