"""The allocator setting (agents.allocator)."""

from __future__ import annotations

import ctypes
import platform

import pytest

from agents import allocator


def test_glibc_takes_the_setting() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert allocator.mmap_large_blocks() is True


def test_without_mallopt_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_libc(name: object) -> object:
        raise OSError("no C library here")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert allocator.mmap_large_blocks() is False
