"""benchmarks/offline.py: the evidence table says which data and thread count each seed had."""

from __future__ import annotations

from benchmarks import offline


def run(row: str, seed: int, reward: float, **extra: object) -> dict:
    metrics = {"task_reward": reward, "perplexity": 11.0}
    return {"row": row, "seed": seed, "train_seconds": 10.0, "metrics": metrics, **extra}


def test_by_seeds_names_each_value_with_its_seeds() -> None:
    runs = [
        run("initial", 0, 0.2, data_reward_mean=0.414793, torch_threads=2),
        run("initial", 1, 0.2, data_reward_mean=0.414793, torch_threads=2),
        run("initial", 2, 0.1, data_reward_mean=0.4183705),
    ]
    assert offline._by_seeds(runs, "data_reward_mean", "{:.3f}") == (
        "0.415 (2 runs of seeds 0, 1), 0.418 (1 run of seed 2)"
    )
    assert offline._by_seeds(runs, "torch_threads", "{}") == (
        "2 (2 runs of seeds 0, 1), not recorded (1 run of seed 2)"
    )
    assert offline._by_seeds(runs[:2], "torch_threads", "{}") == "2"
    # a seed whose rows ran on two days appears under both values, each with its count
    later = [run("alol", 2, 0.5, torch_threads=2), run("rest", 2, 0.5, torch_threads=2)]
    assert offline._by_seeds(runs + later, "torch_threads", "{}") == (
        "2 (4 runs of seeds 0, 1, 2), not recorded (1 run of seed 2)"
    )


def test_table_means_and_sample_std_over_seeds() -> None:
    results = {
        "data": {"rows": 400, "source": "guide", "reward_mean": 0.5},
        "runs": [
            run("initial", 0, 0.2, data_reward_mean=0.5, torch_threads=2),
            run("initial", 1, 0.4, data_reward_mean=0.5, torch_threads=2),
            run("rest", 0, 0.6, data_reward_mean=0.5, torch_threads=2),
        ],
    }
    lines = offline._table("imdb", results).splitlines()
    assert lines[2] == "Data: 400 rows from guide, reward mean 0.500; torch threads 2."
    # mean 0.3, sample std sqrt(0.02) = 0.141; a single seed shows std 0
    assert "| initial | 2 | 0.300 ± 0.141 | 11.000 ± 0.000 | 10 |" in lines
    assert "| rest | 1 | 0.600 ± 0.000 | 11.000 ± 0.000 | 10 |" in lines
