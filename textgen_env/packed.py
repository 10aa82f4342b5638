"""Decoding on CPU with prepacked weights: :func:`prepacked_linears`.

A decoding step multiplies a few rows (one new token per sequence) by every weight matrix of
the model. torch's CPU ``F.linear`` hands that to MKL's ``sgemm``, which repacks the weight
into its blocked layout on every call: for so few rows the repacking costs more than the
product. oneDNN can pack a weight once and reuse it (``torch.ops.mkldnn``'s
``_reorder_linear_weight`` and ``_linear_pointwise``, the ops torch's inductor uses for frozen
CPU graphs). Measured on the 2-core CPU (issue #9), SmolLM2-135M, fp32, 16 rows: all its linear
weights times 16 rows 79 ms with ``F.linear`` (6.8 GB/s of weights where the machine reads 29
GB/s), 39 ms prepacked; one decoding step 108-114 ms → 68-70 ms; the prefill (many rows) is
unchanged. Under CPU bf16 autocast the layers are packed as a bf16 copy of the weight, the
copy autocast would make: the same products (bit for bit on SmolLM2: the same logits and
tokens), and ``sample()`` of 48 tokens for 16 rows 5.5-6.2 s → 4.2-5.3 s (two runs each).

The packed copies exist only inside the ``with`` block (they cost one more copy of the weights
meanwhile). They hold the weights as they are when the block starts, so the block must not
change them. Results differ from ``F.linear``'s by float rounding (about 1e-6 relative), and
one rounding difference at a near-tie can flip a sampled token: set the environment variable
``TEXTGEN_ENV_PREPACK=0`` to decode with plain ``F.linear``, as the code before commit a6fab9b
did (to replay a run made with it token for token).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["PREPACK_ENV", "prepacked_linears", "prepacking_enabled"]

PREPACK_ENV = "TEXTGEN_ENV_PREPACK"
"""The environment variable that turns prepacking off when set to ``0``."""


def prepacking_enabled() -> bool:
    """Whether :func:`prepacked_linears` may pack (``TEXTGEN_ENV_PREPACK`` is not ``0``; read at
    each call). A value other than ``0`` or ``1`` is a :class:`ValueError`."""
    value = os.environ.get(PREPACK_ENV, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{PREPACK_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def _can_pack() -> bool:
    """Whether this torch build has oneDNN's packed linear ops."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


def _packable(module: nn.Module) -> bool:
    """A plain fp32 ``nn.Linear`` on CPU whose ``forward`` nobody replaced already."""
    return (
        type(module) is nn.Linear
        and module.weight.device.type == "cpu"
        and module.weight.dtype == torch.float32
        and "forward" not in module.__dict__
    )


@contextmanager
def prepacked_linears(model: nn.Module, rows: int) -> Iterator[int]:
    """Run the fp32 ``nn.Linear`` layers of ``model`` on CPU through oneDNN with their weights
    packed once, for the duration of the block; yields how many layers it packed.

    Under CPU bf16 autocast (when the block starts) a bf16 copy of each weight is packed and
    the layer casts its input to bf16, as autocast's ``F.linear`` does; under other autocast
    dtypes, where torch has no oneDNN, or with ``TEXTGEN_ENV_PREPACK=0`` nothing is packed (the
    block runs as without it). The model's own parameters are untouched; each packed layer's
    ``forward`` is replaced inside the block and restored after.

    Args:
        model: Any module (a Hugging Face LM, possibly wrapped by peft: its base layers are
            plain ``nn.Linear``).
        rows: The number of rows a call will mostly multiply (a hint for oneDNN's layout).
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    patched: list[nn.Linear] = []
    # Under CPU bf16 autocast, F.linear casts its input, weight and bias to bf16 and returns
    # bf16: the packed layer does the same with a bf16 copy of the weight packed once.
    autocast = torch.is_autocast_enabled("cpu")
    dtype = torch.get_autocast_dtype("cpu") if autocast else torch.float32
    if prepacking_enabled() and _can_pack() and dtype in (torch.float32, torch.bfloat16):
        for module in model.modules():
            if not _packable(module):
                continue
            weight = module.weight.detach().to(dtype)  # (out, in)
            bias = None if module.bias is None else module.bias.detach().to(dtype)
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

            def forward(x: torch.Tensor, packed=packed, bias=bias) -> torch.Tensor:
                x = x.to(packed.dtype)  # autocast's cast of the input (bf16); else a no-op
                return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

            module.forward = forward  # type: ignore[method-assign]
            patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward
