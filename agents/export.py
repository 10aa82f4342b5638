"""``python -m agents.export --checkpoint RUN --output DIR``: a trained policy's LM as a
standard Hugging Face model folder.

The folder has the ``save_pretrained`` layout (``config.json``, ``model.safetensors``,
``generation_config.json``), so ``AutoModelForCausalLM.from_pretrained(DIR)`` (or
``AutoModelForSeq2SeqLM`` for a T5 policy) loads it with transformers alone, without this
project installed. A real task's policy speaks a Hugging Face tokenizer, which is saved
beside it (``AutoTokenizer.from_pretrained(DIR)``); a toy task's tiny LM speaks the task's own
toy vocabulary, so only the model is written and ``README.txt`` lists that vocabulary.

A LoRA policy is merged into its base weights by default (``merge_and_unload`` on a copy), or
with ``--adapter-only`` (``merge_lora=False``) written as the peft adapter alone
(``adapter_config.json``, ``adapter_model.safetensors``), to load onto the same base model.

Not exported: the value head (its V^π and V^g outputs only serve training) and the separate
critic copy of ``--separate-critic`` runs. Every export writes a ``README.txt`` saying what the
folder holds and how to load it.

The export is written into a temporary folder and renamed into place. An existing non-empty
output folder is refused; ``--overwrite`` (``overwrite=True``) replaces a previous export, but
never a folder that is not one. Expected errors print one line (``--debug``: the traceback).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
from transformers import PreTrainedTokenizerBase

from agents.build import TOY_MODEL, TOY_SEQ2SEQ_MODEL, is_toy
from agents.checkpoint import default_mode
from agents.cli_errors import add_debug_flag, check_writable, reported_errors
from agents.config import TrainConfig
from agents.policy import ActorCritic
from agents.saved_policy import read_checkpoint, restore_policy

__all__ = ["README", "export", "main"]

README = "README.txt"
MARKER = "Exported by python -m agents.export"
"""The first line of every export's README.txt: ``--overwrite`` replaces only such folders."""


def _is_export(folder: Path) -> bool:
    """Whether ``folder`` holds a previous export (its README.txt starts with MARKER)."""
    try:
        with (folder / README).open(encoding="utf-8") as fh:
            return fh.readline().strip() == MARKER
    except (OSError, UnicodeDecodeError):
        return False


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse an output that is a file, a non-empty folder (unless ``overwrite`` and it holds
    a previous export) or in a place that cannot be written. Checked before the policy loads.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"export folder {out} is a file")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"export folder {out} is not empty (--overwrite replaces a previous export)"
            )
        if not _is_export(out):
            raise FileExistsError(
                f"export folder {out} is not empty and holds no previous export (no {README} "
                "from agents.export), so --overwrite leaves it alone; choose another folder"
            )
    check_writable(out, "export folder")


def _base_model(cfg: TrainConfig) -> str:
    """What a LoRA adapter of this run goes onto, for README.txt."""
    if cfg.model is not None:
        return cfg.model
    if is_toy(cfg.env_id):
        kind, size = (
            ("tiny_seq2seq_lm", TOY_SEQ2SEQ_MODEL) if cfg.seq2seq else ("tiny_causal_lm", TOY_MODEL)
        )
        args = ", ".join(f"{k}={v}" for k, v in size.items())
        return (
            f"the seeded random textgen_env.models.{kind}(vocab_size, seed={cfg.seed}, {args}), "
            "which only this project builds"
        )
    return (
        "the offline SmolLM2-135M-Instruct of textgen_env.models.default_model_dir() "
        "(dequantized from its 4-bit GGUF, so not the hub weights bit for bit)"
    )


def _hf_tokenizer(cfg: TrainConfig, tokenizer: Any) -> PreTrainedTokenizerBase | None:
    """The tokenizer to save beside the model: the run's Hugging Face tokenizer on a real
    task; ``None`` on a toy task, whose env speaks the task's own vocabulary."""
    if is_toy(cfg.env_id) or not isinstance(tokenizer, PreTrainedTokenizerBase):
        return None
    return tokenizer


def _toy_vocabulary(env_id: str) -> tuple[list[str], str]:
    """A toy task's vocabulary (the position is the token id) and what one token is."""
    toy = gym.make(env_id).unwrapped.task.tokenizer
    return list(toy.vocab), "one character" if toy.separator == "" else "one word"


def _readme(
    cfg: TrainConfig,
    config: dict[str, Any],
    checkpoint: str | os.PathLike[str],
    ac: ActorCritic,
    model_class: str,
    adapter: bool,
    tokenizer: PreTrainedTokenizerBase | None,
) -> tuple[str, str]:
    """README.txt's text and the one-line summary the command line prints."""
    auto = "AutoModelForSeq2SeqLM" if ac.seq2seq else "AutoModelForCausalLM"
    lines = [
        MARKER,
        "",
        f"Source: checkpoint {Path(checkpoint).absolute()} ({config['algo']} on {cfg.env_id}).",
    ]
    if adapter:
        what = f"the LoRA adapter (peft) of a {model_class}"
        lines += [
            f"Holds: {what}, not the base weights. Load it onto its base model:",
            f"  base = transformers.{auto}.from_pretrained(<base>)",
            "  model = peft.PeftModel.from_pretrained(base, <this folder>)",
            f"Base model: {_base_model(cfg)}.",
        ]
    else:
        merged = " with its LoRA adapter merged into the weights" if ac.is_lora else ""
        what = f"{model_class}{' (LoRA merged)' if ac.is_lora else ''}"
        lines += [
            f"Holds: a {model_class}{merged}. Load it with",
            f"  transformers.{auto}.from_pretrained(<this folder>)",
        ]
    if tokenizer is not None:
        lines.append("Tokenizer: saved here; transformers.AutoTokenizer.from_pretrained(<folder>).")
        summary = f"{what} with its tokenizer"
    elif is_toy(cfg.env_id):
        vocab, unit = _toy_vocabulary(cfg.env_id)
        lines += [
            f"Tokenizer: none. {cfg.env_id} uses its own toy vocabulary (each token is {unit};",
            "the position in this list is the token id):",
            f"  {json.dumps(vocab, ensure_ascii=False)}",
        ]
        summary = (
            f"{what} without a tokenizer ({cfg.env_id} uses its own toy vocabulary, see {README})"
        )
    else:
        lines.append("Tokenizer: none (the run's tokenizer is not a Hugging Face tokenizer).")
        summary = f"{what} without a tokenizer (the run's is not a Hugging Face one)"
    lines += [
        "Not included: the value head (V^pi, V^g) and any separate critic; they only serve",
        "training.",
    ]
    return "\n".join(lines) + "\n", summary


def _write(
    ac: ActorCritic, tokenizer: PreTrainedTokenizerBase | None, folder: Path, merge_lora: bool
) -> str:
    """Save the policy's LM (or its adapter) and ``tokenizer`` into ``folder``; return the
    LM's class name."""
    model = ac.model
    if ac.is_lora and merge_lora:
        model = copy.deepcopy(model).merge_and_unload()  # the policy itself keeps its adapter
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    base = model.get_base_model() if ac.is_lora and not merge_lora else model
    return type(base).__name__


def _place(tmp: Path, out: Path) -> None:
    """Move the finished export ``tmp`` to ``out``, replacing an empty or previous export."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old / out.name, out)  # put the previous one back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def export_policy(
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    merge_lora: bool = True,
    overwrite: bool = False,
) -> tuple[Path, str]:
    """:func:`export`, also returning a one-line summary of what was written."""
    out = Path(output_dir)
    _check_output(out, overwrite)
    policy_state, config, cfg = read_checkpoint(checkpoint)
    cfg = dataclasses.replace(cfg, device="cpu")  # exporting needs no accelerator
    ac, tokenizer = restore_policy(cfg, policy_state, checkpoint)
    final = Path(os.path.abspath(out))  # "." and ".." resolved, symbolic links kept
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        adapter = ac.is_lora and not merge_lora
        hf_tokenizer = _hf_tokenizer(cfg, tokenizer)
        model_class = _write(ac, hf_tokenizer, tmp, merge_lora)
        text, summary = _readme(cfg, config, checkpoint, ac, model_class, adapter, hf_tokenizer)
        (tmp / README).write_text(text, encoding="utf-8")
        for path in [tmp, *tmp.iterdir()]:  # shareable like any folder the user makes
            default_mode(path)
        _place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, summary


def export(
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    merge_lora: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the policy LM of ``checkpoint`` (a run directory or ``iter-*`` folder) as a
    Hugging Face model folder at ``output_dir`` (see the module doc); return that folder.

    Args:
        checkpoint: The run directory or checkpoint folder (its newest intact checkpoint).
        output_dir: The folder to create; it may exist if empty.
        merge_lora: A LoRA policy is merged into its base (``True``) or only its adapter is
            written (``False``). Ignored for a policy without LoRA.
        overwrite: Replace ``output_dir`` when it holds a previous export.

    Raises:
        FileExistsError: ``output_dir`` is not empty (and not a previous export to overwrite).
        NotADirectoryError: ``output_dir``, or a folder above it, is a file.
        PermissionError: ``output_dir`` cannot be created there.
        FileNotFoundError: There is no checkpoint at ``checkpoint``.
        CheckpointError: Every checkpoint there is damaged, or it does not fit its config.
    """
    return export_policy(checkpoint, output_dir, merge_lora=merge_lora, overwrite=overwrite)[0]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, export and print one line saying what was written."""
    parser = argparse.ArgumentParser(prog="python -m agents.export", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    parser.add_argument("--output", required=True, help="the Hugging Face model folder to write")
    parser.add_argument(
        "--adapter-only",
        action="store_true",
        help="LoRA policies: write the peft adapter instead of merging it into the base",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous export in --output"
    )
    add_debug_flag(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    with reported_errors(parser, debug=args.debug):
        out, summary = export_policy(
            args.checkpoint,
            args.output,
            merge_lora=not args.adapter_only,
            overwrite=args.overwrite,
        )
        print(f"wrote {summary} to {out} (the value head is not part of it)")


if __name__ == "__main__":
    main()
