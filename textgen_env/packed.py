"""Decoding on CPU with prepacked weights: :func:`prepacked_linears`.

A decoding step multiplies a few rows (one new token per sequence) by every weight matrix of
the model. torch's CPU ``F.linear`` hands that to MKL's ``sgemm``, which repacks the weight
into its blocked layout on every call: for so few rows the repacking costs more than the
product. oneDNN can pack a weight once and reuse it (``torch.ops.mkldnn``'s
``_reorder_linear_weight`` and ``_linear_pointwise``, the ops torch's inductor uses for frozen
CPU graphs). Measured on the 2-core CPU (issue #9), SmolLM2-135M, fp32, 16 rows: all its linear
weights times 16 rows 79 ms with ``F.linear`` (6.8 GB/s of weights where the machine reads 29
GB/s), 39 ms prepacked; one decoding step 108-114 ms → 68-70 ms; the prefill (many rows) is
unchanged.

The packed copies exist only inside the ``with`` block (they cost one more copy of the weights
meanwhile). They hold the weights as they are when the block starts, so the block must not
change them. Results differ from ``F.linear``'s by float rounding (about 1e-6 relative).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["prepacked_linears"]


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

    Nothing is packed (the block runs as without it) under CPU autocast, where the layers'
    inputs are cast to bf16, or where torch has no oneDNN. The model's own parameters are
    untouched; each packed layer's ``forward`` is replaced inside the block and restored after.

    Args:
        model: Any module (a Hugging Face LM, possibly wrapped by peft: its base layers are
            plain ``nn.Linear``).
        rows: The number of rows a call will mostly multiply (a hint for oneDNN's layout).
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    patched: list[nn.Linear] = []
    if _can_pack() and not torch.is_autocast_enabled("cpu"):
        for module in model.modules():
            if not _packable(module):
                continue
            weight = module.weight.detach()  # (out, in)
            bias = None if module.bias is None else module.bias.detach()
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

            def forward(x: torch.Tensor, packed=packed, bias=bias) -> torch.Tensor:
                return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

            module.forward = forward  # type: ignore[method-assign]
            patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward
