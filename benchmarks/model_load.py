"""Time loading the offline default model (SmolLM2-135M-Instruct): first use and cached.

The first load converts the bundled GGUF into a fresh temporary cache folder; the cached loads
reuse that folder (in the same process, so library imports are already paid for). Prints the
figures and writes them as JSON (default ``benchmarks/results/model_load.json``).

Usage: ``python benchmarks/model_load.py [--repeats 3] [--output PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from textgen_env.models import default_model_dir, load_causal_lm

RESULTS = Path(__file__).resolve().parent / "results" / "model_load.json"


def _timed_load(cache: Path) -> float:
    """Seconds for one ``load_causal_lm(cache_dir=cache)``, model and tokenizer."""
    start = time.perf_counter()
    model, tokenizer = load_causal_lm(cache_dir=cache)
    elapsed = time.perf_counter() - start
    del model, tokenizer
    return elapsed


def run(repeats: int) -> dict[str, object]:
    """Measure the first (converting) load and ``repeats`` cached loads in a fresh cache.

    Args:
        repeats: Number of cached loads; their median is reported.

    Returns:
        The figures and the machine they were taken on.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    with tempfile.TemporaryDirectory(prefix="textgen_env_bench_") as tmp:
        cache = Path(tmp)
        start = time.perf_counter()
        folder = default_model_dir(cache)
        conversion_s = time.perf_counter() - start
        first_load_s = conversion_s + _timed_load(cache)
        cached = [_timed_load(cache) for _ in range(repeats)]
        size_mb = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
    return {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantized to float32)",
        "conversion_s": round(conversion_s, 2),
        "first_load_s": round(first_load_s, 2),
        "cached_load_median_s": round(statistics.median(cached), 2),
        "cached_load_runs_s": [round(t, 2) for t in cached],
        "cache_size_mb": round(size_mb, 1),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def main() -> None:
    """Parse arguments, run the benchmark, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="number of cached loads")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args()
    results = run(args.repeats)
    print(
        f"conversion {results['conversion_s']} s, first load (incl. conversion) "
        f"{results['first_load_s']} s, cached load median {results['cached_load_median_s']} s "
        f"(runs {results['cached_load_runs_s']})"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
