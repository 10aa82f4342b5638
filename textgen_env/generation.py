"""Small KV-cached batched sampling loops for causal and encoder-decoder language models.

:func:`sample` continues a left-padded batch of contexts of a decoder-only (causal) LM, one token
per forward pass, reusing the key/value cache the model returns. :func:`sample_seq2seq` does the
same for an encoder-decoder LM (e.g. T5): the encoder runs once, the decoder continues given
prefixes. Every row has its own token budget and stops at its own EOS; once at most half of
the rows are still running, the finished ones are dropped from the batch (and from the cache)
so the remaining rows run faster. Not sooner (issue #9): a decoding step reads every weight
whatever the number of rows, so one row fewer saves little, and on CPU a matrix product with
15 rows can take twice as long as with 16 (MKL, measured: the 576 x 49,152 LM head 70 ms at 15
rows, 35 ms at 16); until then finished rows ride along and their outputs stay fixed.
:func:`sample_next` is the pure per-step token choice (greedy, temperature, top-k, top-p), so
other loops (e.g. RL agents that also need log-probabilities) can reuse it.

The loops run under ``torch.no_grad()``, not ``torch.inference_mode()`` (issue #9): under
bf16 autocast, torch keeps the bf16 copy of each trainable weight for the whole autocast
region only outside inference mode. In inference mode every step cast every weight again:
measured on the 2-core CPU, SmolLM2's 576 x 49,152 LM head for 16 rows took 65 ms per step
under autocast in inference mode, 17 ms under ``no_grad`` (13 ms with bf16 weights, 39 ms
in fp32).

On CPU both loops run π's fp32 linear layers with their weights packed once for oneDNN
(:func:`textgen_env.packed.prepacked_linears`, issue #9): a decoding step multiplies a few rows
by every weight, and MKL's ``sgemm`` repacks the weight on every such call (SmolLM2, 16 rows:
one decoding step 110 ms → 69 ms). Under bf16 autocast the packed copies are bf16.

Shapes in comments: ``B`` rows, ``T`` context columns, ``V`` vocabulary entries.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutput

from textgen_env.packed import prepacked_linears

__all__ = [
    "decoder_start_token_id",
    "first_attended_column",
    "is_encoder_decoder",
    "sample",
    "sample_next",
    "sample_seq2seq",
]


def first_attended_column(attention_mask: torch.Tensor) -> int:
    """The first column of ``attention_mask`` ``(B, T)`` that some row attends to (``T`` if
    none does). The columns before it are padding in every row: a forward pass without them
    gives every row the same outputs, since positions count attended tokens only."""
    attended = attention_mask.bool().any(0)  # (T,)
    return int(attended.long().argmax()) if bool(attended.any()) else attention_mask.shape[1]


def _check_sampling(top_k: int, top_p: float, temperature: float, do_sample: bool) -> None:
    """Raise ``ValueError``/``TypeError`` on sampling parameters outside their domains."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0 = off), got {top_k!r}")
    if not isinstance(top_p, int | float) or not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if not isinstance(temperature, int | float) or not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if not isinstance(do_sample, bool):
        raise TypeError(f"do_sample must be a bool, got {type(do_sample).__name__}")


def sample_next(
    logits: torch.Tensor,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
    temperature: float = 1.0,
    do_sample: bool = True,
    generator: torch.Generator | None = None,
) -> torch.LongTensor:
    """Choose one token per row from next-token logits.

    Args:
        logits: ``(B, V)`` unnormalised scores; ``-inf`` entries are never chosen.
        top_k: Keep only the ``top_k`` highest-scoring tokens (0 keeps all; ties with the
            ``top_k``-th score are kept).
        top_p: Nucleus sampling: keep the smallest set of most likely tokens whose probability
            mass reaches ``top_p`` (1.0 keeps all; the most likely token is always kept).
        temperature: Divides the logits before the softmax (> 0).
        do_sample: ``False`` returns the arg-max (the other parameters are then ignored).
        generator: Random source of the multinomial draw (on the logits' device), for
            reproducible sampling.

    Returns:
        ``(B,)`` int64 token ids.
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError("logits must be a 2-D tensor of shape (B, V)")
    _check_sampling(top_k, top_p, temperature, do_sample)
    if not do_sample:
        return logits.argmax(dim=-1)
    scores = logits.float()  # (B, V); no copy when already float32
    if temperature != 1.0:
        scores = scores / temperature  # (B, V)
    vocab = scores.shape[-1]
    if 0 < top_k < vocab and top_p == 1.0:
        # Draw among the k best only (issue #9): softmax and the multinomial's exponential
        # noise over k entries instead of V. The (k+1)-th score tells whether a tie with the
        # k-th lies outside them; only then does the full-vocabulary path below run.
        best, ids = torch.topk(scores, top_k + 1, dim=-1)  # (B, k+1) each, sorted
        if bool((best[:, top_k] < best[:, top_k - 1]).all()):
            pick = torch.multinomial(best[:, :top_k].softmax(dim=-1), 1, generator=generator)
            return ids.gather(-1, pick).squeeze(-1)  # (B,)
        if logits.dtype not in (torch.float32, torch.float64):
            # bf16 logits (autocast) tie with the k-th score in most steps (1/16 apart near
            # the top): draw among the 2k best when they hold every tie, not over V (issue
            # #9: 32 ms per step for 16 x 49,152). fp32 logits rarely tie and keep the full
            # path below, so that runs saved before this path replay token for token.
            width = min(vocab, 2 * top_k)
            best, ids = torch.topk(scores, width, dim=-1)  # (B, 2k) each, sorted
            kth = best[:, top_k - 1 : top_k]  # (B, 1)
            if width == vocab or bool((best[:, -1:] < kth).all()):
                kept = best.masked_fill(best < kth, float("-inf"))  # (B, 2k): k best + ties
                pick = torch.multinomial(kept.softmax(dim=-1), 1, generator=generator)
                return ids.gather(-1, pick).squeeze(-1)  # (B,)
    if 0 < top_k < vocab:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)  # (B, V) each
        probs = sorted_scores.softmax(dim=-1)  # (B, V)
        mass_before = probs.cumsum(dim=-1) - probs  # (B, V) mass of strictly better tokens
        drop_sorted = mass_before >= top_p  # (B, V); column 0 is never dropped
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # (B, V)
        scores = scores.masked_fill(drop, float("-inf"))
    probs = scores.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def is_encoder_decoder(model: Any) -> bool:
    """Whether ``model`` (a Hugging Face model, possibly peft-wrapped) is an encoder-decoder."""
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def decoder_start_token_id(model: Any) -> int:
    """The id an encoder-decoder's decoder starts from (config, else generation config).

    Raises:
        ValueError: Neither the config nor the generation config defines it.
    """
    for source in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        start = getattr(source, "decoder_start_token_id", None)
        if start is not None:
            return int(start)
    raise ValueError("the encoder-decoder model defines no decoder_start_token_id")


def _budgets(max_new_tokens: Sequence[int] | int, batch: int) -> list[int]:
    """Per-row budgets from an int or a sequence of ``batch`` ints (all >= 0)."""
    if isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool):
        values = [max_new_tokens] * batch
    else:
        values = list(max_new_tokens)
        if len(values) != batch:
            raise ValueError(f"max_new_tokens has {len(values)} entries for {batch} rows")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"max_new_tokens entries must be ints >= 0, got {v!r}")
        out.append(int(v))
    return out


def _check_vocab_limit(vocab_limit: int | None) -> None:
    """Raise ``ValueError`` unless ``vocab_limit`` is ``None`` or a positive int."""
    if vocab_limit is not None and (
        isinstance(vocab_limit, bool) or not isinstance(vocab_limit, int) or vocab_limit < 1
    ):
        raise ValueError(f"vocab_limit must be a positive int or None, got {vocab_limit!r}")


def _limit(logits: torch.Tensor, vocab_limit: int | None) -> torch.Tensor:
    """``logits`` ``(B, V)`` with ids ``>= vocab_limit`` set to ``-inf`` (a copy if changed)."""
    if vocab_limit is not None and vocab_limit < logits.shape[-1]:
        logits = logits.clone()
        logits[:, vocab_limit:] = float("-inf")
    return logits


def _cache_keyword(model: Any) -> str:
    """The forward keyword that feeds a key/value cache back to ``model``.

    transformers 5.24 renamed the forward argument ``past_key_values`` to ``cache`` (the old
    name still works until 5.40, with a ``FutureWarning``); older versions only know
    ``past_key_values``. The choice follows the forward signature of the underlying Hugging
    Face model; a peft wrapper only forwards ``**kwargs``, so it is looked through with
    ``get_base_model()``. Models whose forward names neither get ``past_key_values``.

    Returns:
        ``"cache"`` or ``"past_key_values"``.
    """
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _returned_cache(out: Any) -> Any:
    """The cache a forward returned: ``out.cache`` (transformers >= 5.24, where reading
    ``out.past_key_values`` logs a deprecation), else ``out.past_key_values``."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


def _packed(model: Any, rows: int, steps: int) -> AbstractContextManager[Any]:
    """:func:`~textgen_env.packed.prepacked_linears` for a loop of ``steps`` one-token passes
    after the first (a call with none, e.g. one new token, gains nothing from packing)."""
    return prepacked_linears(model, rows) if steps > 0 else nullcontext()


def _can_prune(cache: Any) -> bool:
    """Whether rows of ``cache`` can be dropped safely (a plain dynamic key/value cache, or an
    encoder-decoder cache made of two of them)."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache
    except ImportError:  # pragma: no cover - transformers without the 5.x cache classes
        return False
    if isinstance(cache, EncoderDecoderCache):
        return _can_prune(cache.self_attention_cache) and _can_prune(cache.cross_attention_cache)
    layers = getattr(cache, "layers", None)
    return (
        isinstance(cache, DynamicCache)
        and layers is not None
        and all(isinstance(layer, DynamicLayer) for layer in layers)
    )


@torch.no_grad()  # not inference_mode: see the module doc (bf16 autocast)
def sample(
    model: Any,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    max_new_tokens: Sequence[int] | int,
    *,
    eos_token_ids: Sequence[int],
    top_k: int = 0,
    top_p: float = 1.0,
    temperature: float = 1.0,
    do_sample: bool = True,
    generator: torch.Generator | None = None,
    vocab_limit: int | None = None,
) -> list[list[int]]:
    """Continue each row of a batch of contexts with a KV-cached sampling loop.

    The model is called once on the whole context, then once per new token with only that
    token and the cache returned by the previous call (passed as ``cache``, or as
    ``past_key_values`` where the model's forward predates transformers 5.24). Position ids are
    ``attention_mask.cumsum(-1) - 1`` (clipped at 0), so left padding and holes in the mask are
    handled. The model is used as it is: put it in eval mode first if it has dropout.

    Args:
        model: A Hugging Face causal LM, possibly wrapped by peft (any module whose forward
            accepts ``input_ids``, ``attention_mask``, ``position_ids``, ``cache`` or
            ``past_key_values``, ``use_cache`` and returns ``.logits`` ``(B, T, V)`` and
            ``.cache`` or ``.past_key_values``).
        input_ids: ``(B, T)`` context token ids, left-padded.
        attention_mask: ``(B, T)`` 1 for real tokens, 0 for padding; every row with a positive
            budget needs at least one real token.
        max_new_tokens: Budget per row (a sequence of ``B`` ints) or one budget for all rows.
            Rows with budget 0 return ``[]`` and are not run through the model.
        eos_token_ids: Token ids that end a row; the ending token is included in its output.
            May be empty (rows then stop only at their budget).
        top_k: See :func:`sample_next`.
        top_p: See :func:`sample_next`.
        temperature: See :func:`sample_next`.
        do_sample: ``False`` for greedy decoding.
        generator: Random source of the sampling (on the model's device).
        vocab_limit: If given, ids ``>= vocab_limit`` are never produced (e.g. padded
            embedding rows beyond the tokenizer's vocabulary).

    Returns:
        ``B`` lists of new token ids: row ``i`` has ``max_new_tokens[i]`` ids, or fewer if it
        ends with one of ``eos_token_ids``.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        raise ValueError("input_ids must be a 2-D tensor of shape (B, T)")
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must be a tensor shaped like input_ids {tuple(input_ids.shape)}"
        )
    _check_sampling(top_k, top_p, temperature, do_sample)
    _check_vocab_limit(vocab_limit)
    batch = input_ids.shape[0]
    budgets = _budgets(max_new_tokens, batch)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    rows = [i for i in range(batch) if budgets[i] > 0]  # original index of each live row
    if not rows:
        return outputs
    stop = {int(t) for t in eos_token_ids}
    choose = dict(
        top_k=top_k, top_p=top_p, temperature=temperature, do_sample=do_sample, generator=generator
    )

    device = input_ids.device
    keep = torch.tensor(rows, device=device)
    ids = input_ids[keep].long()  # (B', T)
    mask = attention_mask[keep].long()  # (B', T)
    if (mask.sum(-1) == 0).any():
        raise ValueError("every row with a positive budget needs at least one attended token")
    first = first_attended_column(mask)  # columns before it are padding in every row
    ids, mask = ids[:, first:], mask[:, first:]  # (B', T')
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B', T')
    left = [budgets[i] for i in rows]  # tokens each live row may still produce

    cache_kw = _cache_keyword(model)  # "cache" (transformers >= 5.24) or "past_key_values"
    extra = {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        extra["logits_to_keep"] = 1  # only the last position's logits are needed
    with _packed(model, len(rows), max(left) - 1):  # CPU decoding: weights packed (issue #9)
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra
        )
        done = [False] * len(rows)  # kept in the batch but finished (when the cache can't prune)
        while True:
            logits = _limit(out.logits[:, -1, :], vocab_limit)  # (B', V)
            token = sample_next(logits, **choose)  # (B',)
            # The bookkeeping runs on the host: one device-to-host copy per step (issue #9).
            for j, t in enumerate(token.tolist()):
                if not done[j]:
                    outputs[rows[j]].append(t)
                    left[j] -= 1
                    done[j] = left[j] <= 0 or t in stop
            if all(done):
                return outputs
            cache = _returned_cache(out)
            positions = positions[:, -1:] + 1  # (B', 1)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)  # (B', T'+1)
            idx = [j for j, d in enumerate(done) if not d]
            if 2 * len(idx) <= len(done) and _can_prune(cache):  # drop finished rows (see doc)
                alive = torch.tensor(idx, device=device)  # (B'',)
                cache.batch_select_indices(alive)
                rows, left = [rows[j] for j in idx], [left[j] for j in idx]
                done = [False] * len(idx)
                token, mask, positions = token[alive], mask[alive], positions[alive]
            # (otherwise finished rows ride along, flagged in `done`, and their outputs stay fixed)
            out = model(
                input_ids=token[:, None],  # (B', 1)
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{cache_kw: cache},
            )


def _check_prefixes(prefixes: Sequence[Sequence[int]], batch: int) -> list[list[int]]:
    """``decoder_prefixes`` as lists of ints, one per row."""
    if isinstance(prefixes, torch.Tensor | str) or len(prefixes) != batch:
        raise ValueError(f"decoder_prefixes must be a sequence of {batch} token-id sequences")
    out = []
    for i, prefix in enumerate(prefixes):
        ids = list(prefix)
        if any(isinstance(t, bool) or not hasattr(t, "__index__") or t < 0 for t in ids):
            raise ValueError(f"decoder_prefixes[{i}] must hold ints >= 0, got {prefix!r}")
        out.append([int(t) for t in ids])
    return out


@torch.no_grad()  # not inference_mode: see the module doc (bf16 autocast)
def sample_seq2seq(
    model: Any,
    encoder_ids: torch.LongTensor,
    encoder_mask: torch.LongTensor,
    decoder_prefixes: Sequence[Sequence[int]],
    max_new_tokens: Sequence[int] | int,
    *,
    eos_token_ids: Sequence[int],
    top_k: int = 0,
    top_p: float = 1.0,
    temperature: float = 1.0,
    do_sample: bool = True,
    generator: torch.Generator | None = None,
    vocab_limit: int | None = None,
) -> list[list[int]]:
    """Continue decoder prefixes of an encoder-decoder LM with a KV-cached sampling loop.

    The encoder runs once on the batch. Every row's decoder input is
    ``[decoder_start_token_id, *decoder_prefixes[i]]`` followed by its sampled tokens. The
    decoder is never padded, so the result does not depend on the position scheme: the part
    of the prefixes that all rows have is fed in one forward pass, then rows advance in
    lockstep, one decoder position per pass, a row still inside its prefix being fed its next
    prefix token (teacher forcing) while the others sample. Later passes feed one token each
    with the cache of the previous one (see :func:`sample`); finished rows are dropped from
    the batch, the cache and the encoder outputs (as in :func:`sample`, once at most half are
    running). Put the model in eval mode first.

    Args:
        model: A Hugging Face encoder-decoder LM (``get_encoder()``; forward accepts
            ``encoder_outputs``, ``attention_mask``, ``decoder_input_ids``, ``cache`` or
            ``past_key_values``, ``use_cache`` and returns ``.logits`` and ``.cache`` or
            ``.past_key_values``), e.g. T5, possibly wrapped by peft.
        encoder_ids: ``(B, S)`` encoder token ids (padded on either side; the mask decides).
        encoder_mask: ``(B, S)`` 1 for real tokens, 0 for padding; every row with a positive
            budget needs at least one real token.
        decoder_prefixes: ``B`` sequences of decoder token ids already generated (without the
            decoder start token); the new tokens continue them.
        max_new_tokens: Budget per row (a sequence of ``B`` ints) or one budget for all rows.
            Rows with budget 0 return ``[]`` and are not run through the model.
        eos_token_ids: Token ids that end a row; the ending token is included in its output.
        top_k: See :func:`sample_next`.
        top_p: See :func:`sample_next`.
        temperature: See :func:`sample_next`.
        do_sample: ``False`` for greedy decoding.
        generator: Random source of the sampling (on the model's device).
        vocab_limit: If given, ids ``>= vocab_limit`` are never produced.

    Returns:
        ``B`` lists of new token ids (prefixes not included): row ``i`` has
        ``max_new_tokens[i]`` ids, or fewer if it ends with one of ``eos_token_ids``.
    """
    if not isinstance(encoder_ids, torch.Tensor) or encoder_ids.ndim != 2:
        raise ValueError("encoder_ids must be a 2-D tensor of shape (B, S)")
    if not isinstance(encoder_mask, torch.Tensor) or encoder_mask.shape != encoder_ids.shape:
        raise ValueError(
            f"encoder_mask must be a tensor shaped like encoder_ids {tuple(encoder_ids.shape)}"
        )
    _check_sampling(top_k, top_p, temperature, do_sample)
    _check_vocab_limit(vocab_limit)
    batch = encoder_ids.shape[0]
    prefixes = _check_prefixes(decoder_prefixes, batch)
    budgets = _budgets(max_new_tokens, batch)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    rows = [i for i in range(batch) if budgets[i] > 0]  # original index of each live row
    if not rows:
        return outputs
    start = decoder_start_token_id(model)
    cache_kw = _cache_keyword(model)  # "cache" (transformers >= 5.24) or "past_key_values"
    stop = {int(t) for t in eos_token_ids}
    choose = dict(
        top_k=top_k, top_p=top_p, temperature=temperature, do_sample=do_sample, generator=generator
    )

    device = encoder_ids.device
    keep = torch.tensor(rows, device=device)
    enc_mask = encoder_mask[keep].long()  # (B', S)
    if (enc_mask.sum(-1) == 0).any():
        raise ValueError("every row with a positive budget needs at least one encoder token")
    lengths = [len(prefixes[i]) for i in rows]  # one-token passes: prefix gap + budget - 1
    steps = max(lengths) - min(lengths) + max(budgets[i] for i in rows) - 1
    with _packed(model, len(rows), steps):  # CPU decoding: weights packed (issue #9)
        encoded = model.get_encoder()(
            input_ids=encoder_ids[keep].long(), attention_mask=enc_mask, return_dict=True
        )
        hidden = encoded.last_hidden_state  # (B', S, H)
        forced = [[start, *prefixes[i]] for i in rows]  # decoder inputs known in advance
        left = [budgets[i] for i in rows]  # tokens each row may still produce
        step = min(len(f) for f in forced)  # decoder positions fed so far (the same in every row)
        out = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            attention_mask=enc_mask,
            decoder_input_ids=torch.tensor([f[:step] for f in forced], device=device),  # (B', step)
            use_cache=True,
        )
        done = [False] * len(rows)  # kept in the batch but finished (when the cache cannot prune)
        while True:
            logits = out.logits[:, -1, :]  # (B', V)
            nxt = [f[step] if step < len(f) else 0 for f in forced]  # next decoder input per row
            sampling = [j for j, f in enumerate(forced) if step >= len(f) and not done[j]]
            if sampling:  # rows past their prefix choose their next token
                pick = torch.tensor(sampling, device=device)
                tokens = sample_next(_limit(logits[pick], vocab_limit), **choose).tolist()
                for j, t in zip(sampling, tokens, strict=True):
                    outputs[rows[j]].append(t)
                    nxt[j] = t
                    left[j] -= 1
                    done[j] = left[j] <= 0 or t in stop
            if all(done):
                return outputs
            cache = _returned_cache(out)
            idx = [j for j, d in enumerate(done) if not d]
            if 2 * len(idx) <= len(done) and _can_prune(cache):  # drop finished rows (see doc)
                sel = torch.tensor(idx, device=device)
                cache.batch_select_indices(sel)
                hidden, enc_mask = hidden[sel], enc_mask[sel]
                rows, forced = [rows[j] for j in idx], [forced[j] for j in idx]
                left, nxt, done = [left[j] for j in idx], [nxt[j] for j in idx], [False] * len(idx)
            step += 1
            out = model(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                attention_mask=enc_mask,
                decoder_input_ids=torch.tensor(nxt, device=device)[:, None],  # (B', 1)
                use_cache=True,
                **{cache_kw: cache},
            )
