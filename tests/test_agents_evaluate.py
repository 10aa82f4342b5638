"""``python -m agents.evaluate``: a run end to end, beam search, the guide scored like a policy,
and every expected error as one line on stderr with exit status 2 (``--debug``: the
traceback), checked before the policy is built."""

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

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents.evaluate as evaluate_module
from agents.algorithms import ALGORITHMS
from agents.checkpoint import CheckpointError, latest_checkpoint
from agents.evaluate import BeamSearchPolicy, check_env_ids, evaluate, evaluate_guide, main
from agents.ppo import PPOConfig
from agents.saved_policy import load_policy
from agents.trainer import run
from textgen_env.guides import ScriptedGuide
from textgen_env.models import tiny_causal_lm, tiny_hf_tokenizer
from textgen_env.oracles import roll_out
from textgen_env.tasks.toy import reverse_expert

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


def test_perplexity_can_be_left_out(imdb_run: Path, tmp_path: Path) -> None:
    """IMDB-v0 measures perplexity under π_ref unless asked not to; the samples and the
    other metrics are the same either way."""
    prompts = write(tmp_path / "p.jsonl", '{"text": "the movie"}\n{"text": "was good"}\n')
    full = evaluate(str(imdb_run), prompts=prompts, batch_size=2)
    lean = evaluate(str(imdb_run), prompts=prompts, batch_size=2, perplexity=False)
    assert full["metrics"]["perplexity"] > 1 and "perplexity" not in lean["metrics"]
    assert full["samples"] == lean["samples"]
    assert full["metrics"] == lean["metrics"] | {"perplexity": full["metrics"]["perplexity"]}


# ----------------------------------------------------------------------------- beam search

REVERSE = "textgen_env/Reverse-v0"


def reverse_envs(batch_size: int) -> Any:
    return gym.make_vec(
        REVERSE, num_envs=batch_size, split="test", vectorization_mode="vector_entry_point"
    ).unwrapped


def test_beam_search_is_deterministic_and_scored_through_the_task_reward(toy_run: Path) -> None:
    first = evaluate(str(toy_run), num_samples=10, batch_size=4, seed=0, num_beams=3)
    again = evaluate(str(toy_run), num_samples=10, batch_size=4, seed=9, num_beams=3)
    assert first["decoding"] == {"num_beams": 3}
    assert first["samples"] == again["samples"]  # the seed changes nothing
    sampled = evaluate(str(toy_run), num_samples=10, batch_size=4, seed=0)
    assert [s["generation"] for s in sampled["samples"]] != [
        s["generation"] for s in first["samples"]
    ]

    # each row is transformers' own beam search of that prompt alone, scored by the task
    ac, tokenizer, _ = load_policy(toy_run)
    task = reverse_envs(1).task
    for i in (0, 7):
        prompt = torch.tensor([task.initial_state(i).prompt_ids])
        out = ac.model.generate(
            prompt, num_beams=3, do_sample=False, max_new_tokens=task.max_new_tokens,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )[0, prompt.shape[1] :].tolist()  # fmt: skip
        if tokenizer.eos_token_id in out:
            out = out[: out.index(tokenizer.eos_token_id) + 1]
        sample = first["samples"][i]
        assert sample["generation"] == task.decode([out])[0]
        assert sample["reward"] == pytest.approx(task.score(np.array([i]), [out])[0])
    rewards = [s["reward"] for s in first["samples"]]
    assert first["metrics"]["task_reward"] == pytest.approx(np.mean(rewards))


def test_one_beam_is_greedy_decoding(toy_run: Path) -> None:
    """BeamSearchPolicy with one beam = sampling with top-k 1, through the same roll-out."""
    greedy = evaluate(str(toy_run), num_samples=8, batch_size=8, seed=2, top_k=1)
    assert greedy["decoding"] == {"num_beams": 1, "top_k": 1, "temperature": 1.0}
    ac, tokenizer, _ = load_policy(toy_run)
    envs = reverse_envs(8)
    envs.reset(seed=0)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    beam = BeamSearchPolicy(ac.model, num_beams=1, eos_token_id=eos, pad_token_id=pad,
                            vocab_limit=len(tokenizer))  # fmt: skip
    final, returns = roll_out(envs, beam, [envs.task.initial_state(i) for i in range(8)])
    assert [s["generation"] for s in greedy["samples"]] == envs.task.decode(
        [s.generated_ids for s in final]
    )
    assert [s["reward"] for s in greedy["samples"]] == returns.tolist()


@pytest.mark.parametrize("flag", [["--top-k", "5"], ["--temperature", "0.7"]])
def test_beams_with_a_sampling_option_are_refused(
    flag: list[str], capsys: pytest.CaptureFixture[str], no_policy_build: None
) -> None:
    message = cli_error(["--checkpoint", "no-such-run", "--num-beams", "4", *flag], capsys)
    assert message.startswith("num_beams 4 (--num-beams) decodes deterministically")
    assert f"sampling option(s) {flag[0]}" in message


def test_a_bad_sampling_option_is_named(toy_run: Path) -> None:
    with pytest.raises(ValueError, match="temperature"):
        evaluate(str(toy_run), temperature=0.0)


# ----------------------------------------------------------------------------- the guide


def direct_guide_rollout(guide: ScriptedGuide, n: int, batch_size: int, seed: int) -> list[float]:
    envs = reverse_envs(batch_size)
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    rewards: list[float] = []
    for lo in range(0, n, batch_size):
        states = [envs.task.initial_state(i) for i in range(lo, min(lo + batch_size, n))]
        rewards += roll_out(envs, guide, states, rng)[1].tolist()
    return rewards


def test_a_scripted_guide_is_scored_as_its_direct_roll_out() -> None:
    vocab = reverse_envs(1).task.vocab_size
    noisy = ScriptedGuide(reverse_expert, vocab_size=vocab, epsilon=0.5)
    result = evaluate_guide(REVERSE, guide=noisy, num_samples=20, batch_size=8, seed=4)
    assert result["algo"] == "guide" and result["guide"] == "ScriptedGuide"
    assert result["num_samples"] == 20 and len(result["samples"]) == 20
    fresh = ScriptedGuide(reverse_expert, vocab_size=vocab, epsilon=0.5)
    expected = direct_guide_rollout(fresh, 20, 8, seed=4)
    assert [s["reward"] for s in result["samples"]] == expected
    assert result["metrics"]["task_reward"] == pytest.approx(np.mean(expected))
    assert result["metrics"]["task_reward_std"] == pytest.approx(np.std(expected))
    assert 0 < np.mean(expected) < 1
    # the default guide is the run's: the scripted expert with the given ε
    default = evaluate_guide(REVERSE, guide_epsilon=0.5, num_samples=20, batch_size=8, seed=4)
    assert default["samples"] == result["samples"]
    # the noiseless expert reverses every string
    expert = evaluate_guide(REVERSE, guide_epsilon=0.0, batch_size=64)
    assert expert["num_samples"] == 128 and expert["metrics"]["task_reward"] == 1.0
    assert all(s["generation"] == s["references"][0] for s in expert["samples"])


def test_a_guide_with_an_epsilon_is_refused() -> None:
    guide = ScriptedGuide(reverse_expert, vocab_size=reverse_envs(1).task.vocab_size)
    with pytest.raises(ValueError, match="guide_epsilon sets the default guide's noise"):
        evaluate_guide(REVERSE, guide=guide, guide_epsilon=0.1)
    with pytest.raises(ValueError, match="unknown env id 'textgen_env/Nope-v0'"):
        evaluate_guide("textgen_env/Nope-v0")


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
    ("flag", "name"),
    [
        ("--num-samples", "num_samples"),
        ("--batch-size", "batch_size"),
        ("--num-beams", "num_beams"),
    ],
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
