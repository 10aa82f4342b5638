"""The paper's three tasks (IMDB, CommonGen, TL;DR): data loading, prompts, envs, default guide.

Everything runs offline on the shipped splits, on small in-memory data sets shaped like the hub
ones, and with the SmolLM2 tokenizer and model from the converted cache.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import gymnasium as gym
import numpy as np
import pytest
from transformers import PreTrainedTokenizerFast

import textgen_env  # noqa: F401  (registers the ids)
from textgen_env.models import default_model_dir, load_tokenizer, tiny_hf_tokenizer
from textgen_env.oracles import roll_in, roll_out
from textgen_env.rewards.overlap import CiderD, RougeL
from textgen_env.rewards.sentiment import VaderSentiment
from textgen_env.state import Prompt
from textgen_env.tasks import commongen, default_guide, guide_template, imdb, task_module, tldr
from textgen_env.tasks.data import DATA_DIR, SPLITS, default_tokenizer, load_records
from textgen_env.vector import TextGenVectorEnv

REAL_IDS = ["textgen_env/IMDB-v0", "textgen_env/CommonGen-v0", "textgen_env/TLDR-v0"]
DEFAULT_REWARD = {
    "textgen_env/IMDB-v0": VaderSentiment,
    "textgen_env/CommonGen-v0": CiderD,
    "textgen_env/TLDR-v0": RougeL,
}


def _file_rows(task: str, split: str) -> list[dict]:
    with (DATA_DIR / task / f"{split}.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------- data
@pytest.mark.parametrize("task", ["imdb", "commongen", "tldr"])
@pytest.mark.parametrize("split", SPLITS)
def test_load_records_reads_the_shipped_split(task: str, split: str) -> None:
    """The default source is the shipped JSONL file, row for row."""
    rows = load_records(task, split)
    assert isinstance(rows, datasets.Dataset)
    assert rows.to_list() == _file_rows(task, split)


def test_load_records_from_a_local_file(tmp_path: Path) -> None:
    """A ``.jsonl`` path is loaded as the data (the split name is then irrelevant)."""
    path = _write_jsonl(tmp_path / "mine.jsonl", [{"text": "A fine film.", "label": 1}])
    assert load_records("imdb", "test", source=path).to_list() == [
        {"text": "A fine film.", "label": 1}
    ]
    assert load_records("imdb", "whatever", source=str(path)).num_rows == 1


def test_load_records_errors(tmp_path: Path) -> None:
    """Unknown task or split, a missing or empty file and a bad source are clear errors."""
    with pytest.raises(ValueError, match="unknown task"):
        load_records("squad", "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_records("imdb", "valid")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_records("imdb", "train", source=tmp_path / "missing.jsonl")
    with pytest.raises(TypeError, match="source"):
        load_records("imdb", "train", source=3)  # type: ignore[arg-type]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        load_records("tldr", "train", source=empty)


# ---------------------------------------------------------------------------- prompts
def test_imdb_prompts_from_shipped_and_hub_shaped_rows() -> None:
    """Shipped rows map to ``Prompt(text, label=label)``; hub reviews lose ``<br />`` tags."""
    rows = _file_rows("imdb", "test")
    prompts = imdb.imdb_prompts("test")
    assert prompts == tuple(Prompt(r["text"], label=r["label"]) for r in rows)
    hub = datasets.Dataset.from_dict(
        {"text": ["Loved it.<br /><br />Truly.", "Meh <br/>film."], "label": [1, -1]}
    )
    assert imdb.records_to_prompts(hub) == (
        Prompt("Loved it. Truly.", label=1),
        Prompt("Meh film.", label=None),
    )


def test_commongen_prompts_from_shipped_and_hub_shaped_rows() -> None:
    """Shipped rows keep their references; hub rows (one target each) are grouped by set."""
    rows = _file_rows("commongen", "validation")
    prompts = commongen.commongen_prompts("validation")
    assert len(prompts) == len(rows)
    for prompt, row in zip(prompts, rows, strict=True):
        assert prompt.text == "generate a sentence with: " + " ".join(row["concepts"]) + "."
        assert prompt.references == tuple(row["references"])
    hub = datasets.Dataset.from_dict(
        {
            "concept_set_idx": [0, 0, 1, 0, 2],
            "concepts": [["dog", "ball"], ["dog", "ball"], ["sun", "sky"], ["dog", "ball"],
                         ["cat", "mat"]],
            "target": ["The dog chases a ball.", "A dog drops the ball.", "The sun lit the sky.",
                       "Dogs love balls.", ""],
        }
    )  # fmt: skip
    assert commongen.records_to_prompts(hub) == (
        Prompt(
            "generate a sentence with: dog ball.",
            ("The dog chases a ball.", "A dog drops the ball.", "Dogs love balls."),
        ),
        Prompt("generate a sentence with: sun sky.", ("The sun lit the sky.",)),
        Prompt("generate a sentence with: cat mat."),  # the hub's hidden test targets are ""
    )
    clash = [
        {"concept_set_idx": 0, "concepts": ["a", "b"], "target": "x"},
        {"concept_set_idx": 0, "concepts": ["c"], "target": "y"},
    ]
    with pytest.raises(ValueError, match="two concept lists"):
        commongen.records_to_prompts(clash)


def test_tldr_prompts_from_shipped_and_carperai_shaped_rows() -> None:
    """Shipped rows are formatted as the paper's prompt; CarperAI rows are used as given."""
    row = _file_rows("tldr", "test")[0]
    prompt = tldr.tldr_prompts("test")[0]
    assert prompt.text == (
        f"SUBREDDIT: r/{row['subreddit']}\nTITLE: {row['title']}\nPOST: {row['post']}\nTL;DR:"
    )
    assert prompt.references == (row["summary"],)
    carper = datasets.Dataset.from_dict(
        {
            "prompt": ["SUBREDDIT: r/cats\nTITLE: Help\nPOST: My cat hides.\nTL;DR:"],
            "label": [" cat hides, what do I do?"],
        }
    )
    assert tldr.records_to_prompts(carper) == (
        Prompt(carper[0]["prompt"], references=("cat hides, what do I do?",)),
    )


@pytest.mark.parametrize(
    ("module", "rows", "error", "match"),
    [
        (imdb, [{"label": 1}], ValueError, "no field 'text'"),
        (imdb, [{"text": 5}], TypeError, "must be str"),
        (imdb, "a review", TypeError, "iterable of dicts"),
        (imdb, [], ValueError, "no IMDB rows"),
        (commongen, [{"concepts": ["a"]}], ValueError, "neither 'references' nor 'target'"),
        (commongen, [{"concepts": [], "target": "x"}], ValueError, "non-empty list"),
        (tldr, [{"title": "t"}], ValueError, "neither 'post' nor 'prompt'"),
        (tldr, [{"prompt": "p", "label": ""}], ValueError, "empty prompt or summary"),
    ],
)
def test_bad_rows_are_clear_errors(
    module: object, rows: object, error: type[Exception], match: str
) -> None:
    """Rows of the wrong shape raise an error that names the problem."""
    with pytest.raises(error, match=match):
        module.records_to_prompts(rows)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------- envs
def test_load_tokenizer_default_and_pad_fallback(tmp_path: Path) -> None:
    """The default tokenizer comes from the converted cache; a missing pad becomes EOS."""
    tokenizer = load_tokenizer()
    assert len(tokenizer) == 49152 and tokenizer.eos_token_id is not None
    assert tokenizer.name_or_path == str(default_model_dir())
    assert tokenizer is not load_tokenizer()  # a fresh copy each call ...
    assert default_tokenizer() is default_tokenizer()  # ... the tasks' default is shared
    raw = tiny_hf_tokenizer(["hello", "world"])
    no_pad = PreTrainedTokenizerFast(tokenizer_object=raw.backend_tokenizer, eos_token="<eos>")
    no_pad.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.pad_token == "<eos>" and loaded.encode("hello world") == [3, 4]
    with pytest.raises(ValueError, match="empty"):
        load_tokenizer(" ")
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(TypeError):
        load_tokenizer(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("env_id", REAL_IDS)
def test_random_episode_gets_the_default_reward(env_id: str) -> None:
    """A random episode ends with a finite reward equal to the default reward of its text."""
    env = gym.make(env_id, split="validation")
    task = env.unwrapped.task
    assert task.tokenizer is default_tokenizer() and task.vocab_size == 49152
    assert isinstance(task.reward_fn, DEFAULT_REWARD[env_id])
    assert task.task_id == env_id.removeprefix("textgen_env/") + "/validation"
    env.action_space.seed(3)
    for seed in range(2):
        _, info = env.reset(seed=seed)
        done, reward = False, 0.0
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
        state = env.unwrapped.get_state()
        prompt = task.prompts[info["prompt_index"]]
        text = task.decode([state.generated_ids])[0]
        expected = task.reward_fn([prompt.text], [text], [prompt.references])[0]
        assert math.isfinite(reward) and reward == pytest.approx(expected)


@pytest.mark.parametrize("env_id", REAL_IDS)
def test_make_vec_and_paper_defaults(env_id: str) -> None:
    """The vector entry point builds the same task; horizons are the paper's."""
    horizon = {"IMDB-v0": 48, "CommonGen-v0": 20, "TLDR-v0": 50}
    envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", split="test")
    assert isinstance(envs.unwrapped, TextGenVectorEnv)
    task = envs.unwrapped.task
    name = env_id.removeprefix("textgen_env/")
    assert task.max_new_tokens == horizon[name] and task.task_id == f"{name}/test"
    assert task.num_prompts == len(_file_rows(task_module(env_id).__name__.split(".")[-1], "test"))
    obs, _ = envs.reset(seed=0)
    assert obs["input_ids"].shape == (3, task.max_prompt_tokens + task.max_new_tokens)


def test_imdb_keeps_the_opening_of_a_long_review(tmp_path: Path) -> None:
    """IMDB truncates on the right: the first 64 tokens of a long review are the prompt."""
    tokenizer = default_tokenizer()
    review = "The opening scene is quiet and slow. " * 30
    path = _write_jsonl(tmp_path / "long.jsonl", [{"text": review.strip(), "label": 1}])
    env = imdb.make_imdb_env("test", source=path)
    ids = tokenizer.encode(review.strip(), add_special_tokens=False)
    assert len(ids) > 64
    assert env.unwrapped.task.prompt_ids[0] == tuple(ids[:64])


def test_tldr_shortens_the_post_and_keeps_header_and_cue(tmp_path: Path) -> None:
    """A long TL;DR post is cut so the prompt fits, keeping SUBREDDIT/TITLE and ``TL;DR:``."""
    tokenizer = default_tokenizer()
    post = " ".join(f"sentence number {i} of a very long story." for i in range(200))
    row = {"subreddit": "tifu", "title": "A long day", "post": post, "summary": "long day."}
    path = _write_jsonl(tmp_path / "long.jsonl", [row])
    task = tldr.make_tldr_env("test", source=path).unwrapped.task
    text = task.prompts[0].text
    assert text.startswith("SUBREDDIT: r/tifu\nTITLE: A long day\nPOST: sentence number 0")
    assert text.endswith("\nTL;DR:") and "number 199" not in text
    assert len(tokenizer.encode(text, add_special_tokens=False)) <= 320
    assert tokenizer.decode(list(task.prompt_ids[0])) == text  # no further truncation
    short = tldr.tldr_prompts("test")
    assert tldr.fit_prompts(short, tokenizer) == short  # the shipped prompts all fit
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        tldr.fit_prompts(short, tokenizer, 0)


def test_commongen_over_budget_is_an_error() -> None:
    """Cutting a CommonGen prompt would drop concepts, so a prompt over budget is refused."""
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        commongen.make_commongen_env("test", max_prompt_tokens=5)
    with pytest.raises(ValueError, match="no references"):
        commongen.default_reward([Prompt("generate a sentence with: a b.")])


# ------------------------------------------------------------------------------ guide
def test_default_guide_arguments(smollm2: tuple) -> None:
    """Unknown tasks and a model without its tokenizer are refused."""
    model, tokenizer = smollm2
    with pytest.raises(ValueError, match="not one of the real tasks"):
        default_guide("textgen_env/Reverse-v0", tokenizer, model, tokenizer)
    with pytest.raises(ValueError, match="both model and tokenizer"):
        default_guide("textgen_env/IMDB-v0", tokenizer, model)
    assert guide_template("IMDB-v0/test") == imdb.GUIDE_TEMPLATE


@pytest.mark.parametrize("env_id", REAL_IDS)
def test_default_guide_rolls_in_and_out(env_id: str, smollm2: tuple) -> None:
    """SmolLM2 told the task rolls in 2 tokens and rolls out 2 episodes to a finite return."""
    model, tokenizer = smollm2
    maker = getattr(task_module(env_id), f"make_{env_id.split('/')[1][:-3].lower()}_vector_env")
    envs = maker(2, "test", max_new_tokens=6)  # the env keeps its own default tokenizer
    guide = default_guide(env_id, envs.task.tokenizer, model, tokenizer)
    assert not guide.fast and guide.use_chat_template and guide.sampling["top_k"] == 50
    start = [envs.task.initial_state(i) for i in range(2)]
    context = guide.contexts(start)[0]
    head = guide_template(env_id).split("{prompt}")[0]
    assert context.startswith("<|im_start|>") and head in context
    assert context.endswith("<|im_start|>assistant\n")
    rng = np.random.default_rng(0)
    mid = roll_in(envs, guide, start, [2, 2], rng)
    assert all(len(s.generated_ids) in (1, 2) for s in mid)
    final, returns = roll_out(envs, guide, mid, rng)
    assert all(envs.task.is_terminal(s) for s in final)
    for end, middle in zip(final, mid, strict=True):
        assert end.generated_ids[: len(middle.generated_ids)] == middle.generated_ids
    assert np.isfinite(returns).all()
