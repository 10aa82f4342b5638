"""Shared model fixtures (the offline default SmolLM2, loaded once, and a tiny random LM) and the
guard that fails a test on a deprecation warning caused by our own code."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Generator
from types import FrameType
from typing import TextIO

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from textgen_env.models import load_causal_lm, tiny_causal_lm, tiny_hf_tokenizer

# Tiny models dominate the suite: on 2 cores one torch thread is 5-20x faster for them
# (no thread hand-off per small matmul); the few SmolLM2 tests pay a little for it.
torch.set_num_threads(1)

# Deprecations caused by our own code fail the tests. pyproject's `filterwarnings` turns every
# FutureWarning/DeprecationWarning attributed to a `textgen_env`/`agents` module into an error.
# Some reach us through call plumbing and are attributed to it instead: transformers'
# `deprecate_kwarg` warns with stacklevel=2, which lands on torch's `Module._call_impl` (the
# caller of the decorated forward), not on our code that passed the deprecated keyword. The hook
# below steps out of such plumbing frames and raises the warning (as the "error" action would)
# when the first frame beyond them is ours. A warning raised inside a library's own logic stays
# a warning, even when our code is further up the stack.
OWN_PACKAGES = ("textgen_env", "agents")
PLUMBING = frozenset(  # (module, function) frames that only pass a call on
    {
        ("torch.nn.modules.module", "_wrapped_call_impl"),  # Module.__call__
        ("torch.nn.modules.module", "_call_impl"),
        ("transformers.utils.generic", "wrapper"),  # decorators of model forwards
        ("transformers.utils.deprecation", "wrapped_func"),  # deprecate_kwarg
        ("peft.peft_model", "forward"),  # peft wrappers forward **kwargs to the base model
        ("peft.tuners.tuners_utils", "forward"),
    }
)


def _frame_key(frame: FrameType) -> tuple[str, str]:
    return frame.f_globals.get("__name__", ""), frame.f_code.co_name


def blamed_on_us(filename: str, lineno: int, frame: FrameType | None) -> bool:
    """Whether the warning attributed to ``filename:lineno`` comes from our packages: the
    innermost frame of ``frame``'s stack at that place is ours, or is plumbing (`PLUMBING`)
    whose first caller outside the plumbing is ours."""
    while frame is not None and (frame.f_code.co_filename, frame.f_lineno) != (filename, lineno):
        frame = frame.f_back
    while frame is not None and _frame_key(frame) in PLUMBING:
        frame = frame.f_back
    return frame is not None and _frame_key(frame)[0].partition(".")[0] in OWN_PACKAGES


@pytest.hookimpl(wrapper=True, trylast=True)  # inside pytest's own per-test warning capture
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Raise our own deprecations that plumbing hid from the `filterwarnings` entries.

    `warnings.showwarning` sees every warning the filters let through (not those recorded by
    `pytest.warns` or `warnings.catch_warnings(record=True)`), while the warning's stack is
    still live."""
    shown = warnings.showwarning

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DeprecationWarning | FutureWarning) and blamed_on_us(
            filename, lineno, sys._getframe(1)
        ):
            raise message if isinstance(message, Warning) else category(message)
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    try:
        return (yield)
    finally:
        warnings.showwarning = shown


TINY_SYMBOLS = ("the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", ".")


@pytest.fixture(scope="session")
def smollm2() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct and its tokenizer, converted on first use and shared by all tests.

    Treat it as read-only: do not train it or change its tokenizer.
    """
    return load_causal_lm()


@pytest.fixture
def tiny_lm() -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A fresh seeded tiny Llama LM over :data:`TINY_SYMBOLS` with its word-level tokenizer."""
    tokenizer = tiny_hf_tokenizer(TINY_SYMBOLS)
    return tiny_causal_lm(len(tokenizer), seed=0), tokenizer
