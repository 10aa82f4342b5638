"""``python -m agents.export``: causal, seq2seq and LoRA policies exported as Hugging Face
folders that transformers alone loads (in a Python that cannot import this project) with the
policy's logits; the tokenizer of a real task; adapter-only; refused output folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from agents.build import build_tokenizer_and_model
from agents.checkpoint import latest_checkpoint
from agents.export import README, export, main
from agents.ppo import PPOConfig
from agents.saved_policy import load_policy
from agents.trainer import run
from textgen_env.models import tiny_causal_lm, tiny_hf_tokenizer

PROG = "python -m agents.export"
INPUT_IDS = [[2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2]]
DECODER_IDS = [[0, 3, 4], [0, 5, 6]]  # T5 starts decoding from pad (0)


def tiny_run(out: Path, **kw: Any) -> Path:
    """A run that wrote its initial policy (``total_iterations=0``), whose LM tensors (or, for
    LoRA, adapter tensors: they start at zero) are then moved off their initial values, so an
    export of the initial model instead of the checkpoint's would show."""
    cfg = PPOConfig(total_iterations=0, batch_size=4, minibatch_size=2, output_dir=str(out), **kw)
    run_dir = run(cfg, "ppo")
    file = latest_checkpoint(run_dir) / "policy.safetensors"
    state = load_file(file)
    gen = torch.Generator().manual_seed(1)
    lora = any("lora_" in name for name in state)
    for name, tensor in state.items():
        if name.startswith("model.") and (not lora or "lora_B" in name):
            state[name] = tensor + 0.05 * torch.randn(tensor.shape, generator=gen)
    save_file(state, file)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny runs on textgen_env/Reverse-v0 (causal, T5, LoRA) and one on textgen_env/IMDB-v0
    whose policy is a tiny local Hugging Face LM with a word-level HF tokenizer."""
    root = tmp_path_factory.mktemp("runs")
    folder = root / "tiny-lm"
    tokenizer = tiny_hf_tokenizer(("the", "movie", "was", "good", "bad", "."))
    tiny_causal_lm(len(tokenizer), seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {
        "causal": tiny_run(root / "causal"),
        "seq2seq": tiny_run(root / "seq2seq", seq2seq=True),
        "lora": tiny_run(root / "lora", lora_rank=4),
        "imdb": tiny_run(root / "imdb", env_id="textgen_env/IMDB-v0", model=str(folder)),
    }


def policy_logits(run_dir: Path) -> np.ndarray:
    """The logits of the checkpoint's ``ac.model`` on INPUT_IDS (and DECODER_IDS for T5)."""
    ac, _, _ = load_policy(str(run_dir))
    kwargs = {"input_ids": torch.tensor(INPUT_IDS)}
    if ac.seq2seq:
        kwargs["decoder_input_ids"] = torch.tensor(DECODER_IDS)
    with torch.no_grad():
        return ac.model(**kwargs).logits.numpy()


OUTSIDE = """
import importlib.util, json, sys
sys.path += {site}
for ours in ("agents", "textgen_env"):
    assert importlib.util.find_spec(ours) is None, ours + " is importable"
import numpy as np, torch, transformers

torch.set_num_threads({threads})  # the tests' own (conftest): the same arithmetic on any CPU
model = getattr(transformers, {auto!r}).from_pretrained({folder!r}).eval()
kwargs = {{"input_ids": torch.tensor({input_ids})}}
if {seq2seq}:
    kwargs["decoder_input_ids"] = torch.tensor({decoder_ids})
with torch.no_grad():
    np.save("logits.npy", model(**kwargs).logits.numpy())
if {text!r}:
    tokenizer = transformers.AutoTokenizer.from_pretrained({folder!r})
    json.dump(tokenizer({text!r})["input_ids"], open("ids.json", "w"))
"""


def load_outside(folder: Path, tmp_path: Path, seq2seq: bool = False, text: str = "") -> Path:
    """Load ``folder`` with transformers' Auto classes in a Python that cannot import our
    packages (isolated, no site: the editable install's finder is not loaded; only the venv's
    site-packages folder is on the path); it writes logits.npy (and ids.json of ``text``) into
    the returned folder."""
    work = tmp_path / "outside"
    work.mkdir()
    site = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    code = OUTSIDE.format(
        site=site,
        auto="AutoModelForSeq2SeqLM" if seq2seq else "AutoModelForCausalLM",
        folder=str(folder),
        input_ids=INPUT_IDS,
        decoder_ids=DECODER_IDS,
        seq2seq=seq2seq,
        text=text,
        threads=torch.get_num_threads(),
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", textwrap.dedent(code)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return work


def assert_same_logits(run_dir: Path, work: Path, exact: bool = True) -> None:
    expected, got = policy_logits(run_dir), np.load(work / "logits.npy")
    if exact:
        np.testing.assert_array_equal(got, expected)
    else:  # merging LoRA adds B·A·scale into each weight: float rounding differs
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- exports


def test_a_causal_toy_policy(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    main(["--checkpoint", str(runs["causal"]), "--output", str(out)])
    assert capsys.readouterr().out == (
        "wrote LlamaForCausalLM without a tokenizer (textgen_env/Reverse-v0 uses its own toy "
        f"vocabulary, see README.txt) to {out} (the value head is not part of it)\n"
    )
    assert {"config.json", "model.safetensors", README} <= {p.name for p in out.iterdir()}
    assert not (out / "tokenizer.json").exists()
    readme = (out / README).read_text()
    assert "Tokenizer: none. textgen_env/Reverse-v0 uses its own toy vocabulary" in readme
    assert '["<pad>", "<eos>", "a", "b", "c", "d", "e", "f", "g", "h", "="]' in readme
    assert "value head" in readme
    assert not any("value_head" in k for k in load_file(out / "model.safetensors"))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # a folder like any other, not private
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o666 & ~umask}
    assert_same_logits(runs["causal"], load_outside(out, tmp_path))


def test_a_seq2seq_toy_policy(runs: dict[str, Path], tmp_path: Path) -> None:
    out = export(runs["seq2seq"], tmp_path / "export")
    assert json.loads((out / "config.json").read_text())["architectures"] == [
        "T5ForConditionalGeneration"
    ]
    assert_same_logits(runs["seq2seq"], load_outside(out, tmp_path, seq2seq=True))


def test_a_lora_policy_is_merged(runs: dict[str, Path], tmp_path: Path) -> None:
    out = export(runs["lora"], tmp_path / "export")
    assert not (out / "adapter_config.json").exists()
    assert not any("lora" in k for k in load_file(out / "model.safetensors"))
    assert "with its LoRA adapter merged into the weights" in (out / README).read_text()
    assert_same_logits(runs["lora"], load_outside(out, tmp_path), exact=False)
    # the merge worked on a copy: the policy still has its adapter (checked by loading again)
    assert load_policy(str(runs["lora"]))[0].is_lora


def test_a_lora_adapter_only(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "adapter"
    main(["--checkpoint", str(runs["lora"]), "--output", str(out), "--adapter-only"])
    assert capsys.readouterr().out.startswith(
        "wrote the LoRA adapter (peft) of a LlamaForCausalLM without a tokenizer"
    )
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", README} <= names
    assert "model.safetensors" not in names
    assert "Base model: the seeded random textgen_env.models.tiny_causal_lm" in (
        (out / README).read_text()
    )
    # onto the run's (seeded, frozen) base model, the adapter gives the policy's logits
    ac, _, config = load_policy(str(runs["lora"]))
    cfg = PPOConfig(**{k: v for k, v in config.items() if k in PPOConfig.__dataclass_fields__})
    _, base = build_tokenizer_and_model(cfg, ac.model.config.vocab_size)
    model = PeftModel.from_pretrained(base, out).eval()
    with torch.no_grad():
        got = model(input_ids=torch.tensor(INPUT_IDS)).logits.numpy()
    np.testing.assert_allclose(got, policy_logits(runs["lora"]), rtol=1e-6, atol=1e-6)


def test_a_real_task_policy_comes_with_its_tokenizer(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    main(["--checkpoint", str(runs["imdb"]), "--output", str(out)])
    assert capsys.readouterr().out == (
        f"wrote LlamaForCausalLM with its tokenizer to {out} (the value head is not part of it)\n"
    )
    text = "the movie was good ."
    work = load_outside(out, tmp_path, text=text)
    assert_same_logits(runs["imdb"], work)
    _, tokenizer, _ = load_policy(str(runs["imdb"]))
    assert json.loads((work / "ids.json").read_text()) == tokenizer(text)["input_ids"]


# ----------------------------------------------------------------------------- the output folder


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line, expect exit status 2 and one line on stderr; return that line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: "), lines
    return lines[0].removeprefix(f"{PROG}: error: ")


def test_a_non_empty_folder_is_refused_and_overwrite_replaces_an_export(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    export(runs["lora"], out, merge_lora=False)
    argv = ["--checkpoint", str(runs["causal"]), "--output", str(out)]
    assert cli_error(argv, capsys) == (
        f"export folder {out} is not empty (--overwrite replaces a previous export)"
    )
    assert (out / "adapter_config.json").exists()  # untouched
    main([*argv, "--overwrite"])
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "adapter_config.json" not in names  # replaced whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_overwrite_leaves_a_folder_that_is_not_an_export_alone(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    argv = ["--checkpoint", str(runs["causal"]), "--output", str(out), "--overwrite"]
    assert cli_error(argv, capsys) == (
        f"export folder {out} is not empty and holds no previous export (no README.txt from "
        "agents.export), so --overwrite leaves it alone; choose another folder"
    )
    assert (out / "notes.txt").read_text() == "keep me"


def test_an_empty_folder_is_used(runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert (export(runs["causal"], tmp_path / "empty") / "model.safetensors").is_file()


def test_output_that_is_a_file_or_below_one(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "file"
    file.write_text("")
    argv = ["--checkpoint", str(runs["causal"]), "--output"]
    assert cli_error([*argv, str(file)], capsys) == f"export folder {file} is a file"
    assert cli_error([*argv, str(file / "sub")], capsys) == (
        f"cannot write export folder {file / 'sub'}: {file} is not a directory"
    )


def test_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing"
    argv = ["--checkpoint", str(missing), "--output", str(tmp_path / "out")]
    assert cli_error(argv, capsys) == f"checkpoint {missing} does not exist"
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main([*argv, "--debug"])


def test_a_run_trained_on_cuda_exports_on_the_cpu(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(runs["causal"], copy)
    config_file = latest_checkpoint(copy) / "config.json"
    config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {"device": "cuda"}))
    out = export(copy, tmp_path / "export")
    assert_same_logits(runs["causal"], load_outside(out, tmp_path))
