"""`APIGuide` against a real OpenAI-compatible server: ``transformers serve`` on 127.0.0.1
serving the offline SmolLM2 folder (started once for the module, stopped at its end), with a
fault-injecting proxy (:mod:`tests.openai_server`) in front of it for the failure cases.

Covered: roll-in and roll-out through the served guide (what is sent, ``max_tokens`` never
above what is asked), the chat endpoint, the reply cache, the usage counts, a short D2LOLS
run on IMDB-v0 whose guide is the server (TensorBoard scalars, no API key anywhere), and the
faults: server down at start, server dying mid-run (then ``--resume``), slow answers past the
timeout (nothing left running), malformed and empty answers, HTTP 429 with Retry-After, and a
wrong model name.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai_server import Fault, FaultProxy, Server, ServerUnavailable, free_port
from openai_server import start_transformers_serve as start_server
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import agents.trainer as trainer_module
from agents.build import api_prompt_template, check_setup
from agents.checkpoint import latest_checkpoint, load_checkpoint
from agents.d2lols import D2LOLSConfig
from agents.rundir import RunSetupError
from agents.train import main as train_main
from agents.trainer import run
from textgen_env.errors import GuideError, GuideTimeoutError
from textgen_env.guides import APIGuide
from textgen_env.guides.api import check_server
from textgen_env.models import default_model_dir, load_tokenizer, tiny_causal_lm
from textgen_env.oracles import roll_in, roll_out
from textgen_env.tasks import guide_template
from textgen_env.tasks.imdb import make_imdb_vector_env
from textgen_env.vector import TextGenVectorEnv

pytestmark = pytest.mark.slow  # a real server and model (about 6 s to start, then ~1 s a request)

IMDB = "textgen_env/IMDB-v0"
SECRET = "sk-test-secret-never-stored"
JSON = (("Content-Type", "application/json"),)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``transformers serve`` for the converted SmolLM2 folder, on a free loopback port."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    try:
        served = start_server(default_model_dir(), log, timeout_s=90)
    except ServerUnavailable as err:
        pytest.skip(f"no OpenAI-compatible server on this machine: {err}")
    try:
        yield served
    finally:
        served.stop()
    assert served.process.poll() is not None


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    """A pass-through proxy to the server (set ``rule`` to inject faults)."""
    with FaultProxy(server.root) as p:
        yield p


@pytest.fixture(scope="module")
def envs() -> TextGenVectorEnv:
    """IMDB test prompts with a 6-token horizon and SmolLM2's tokenizer (the env default)."""
    return make_imdb_vector_env(2, "test", max_new_tokens=6)


def imdb_template(envs: TextGenVectorEnv) -> str:
    """The task's guide template as a SmolLM2 user turn (what the in-process guide sees)."""
    cfg = D2LOLSConfig(env_id=IMDB, guide_api_base="http://x", guide_api_model="m")
    return api_prompt_template(cfg, envs.task.tokenizer)


def guide_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("APIGuide")]


def posts(proxy: FaultProxy) -> list[dict[str, Any]]:
    return [r.body for r in proxy.posts() if r.body is not None]


# ----------------------------------------------------------------- the served guide
def test_roll_in_and_roll_out_through_the_served_guide(
    envs: TextGenVectorEnv, server: Server, proxy: FaultProxy
) -> None:
    """The server writes a 2- and a 3-token roll-in, then finishes both episodes; every
    request asks for at most the tokens the oracle asked for, and the usage is counted."""
    tok = envs.task.tokenizer
    template = imdb_template(envs)
    assert template.startswith("<|im_start|>") and template.endswith("<|im_start|>assistant\n")
    assert guide_template(IMDB).split("{prompt}")[0] in template
    guide = APIGuide(proxy.base_url, server.model, tok, prompt_template=template)
    start = [envs.task.initial_state(i) for i in range(2)]
    rng = np.random.default_rng(0)
    mid = roll_in(envs, guide, start, [2, 3], rng)
    assert [len(s.generated_ids) for s in mid] in ([2, 3], [1, 3], [2, 1], [1, 1])
    final, returns = roll_out(envs, guide, mid, rng)
    assert all(envs.task.is_terminal(s) for s in final)
    for end, middle in zip(final, mid, strict=True):
        assert end.generated_ids[: len(middle.generated_ids)] == middle.generated_ids
    assert np.isfinite(returns).all()
    sent = posts(proxy)
    assert len(sent) >= 4 and all(b["model"] == server.model for b in sent)
    assert sorted(b["max_tokens"] for b in sent[:2]) == [2, 3]  # roll-in: exactly k
    left = sorted(6 - len(s.generated_ids) for s in mid if not envs.task.is_terminal(s))
    assert sorted(b["max_tokens"] for b in sent[2:4]) == left  # roll-out: the room left
    prompt = tok.decode(start[0].prompt_ids, skip_special_tokens=True)
    assert template.replace("{prompt}", prompt) in {b["prompt"] for b in sent[:2]}
    completion = tok.decode(mid[0].generated_ids, skip_special_tokens=True)
    assert any(b["prompt"].endswith(completion) for b in sent[2:])
    assert {"seed", "temperature", "top_p"} <= set(sent[0])
    usage = guide.usage()
    assert usage["requests"] == len(sent) and usage["cache_hits"] == 0
    assert usage["retries"] == usage["errors"] == usage["failed_requests"] == 0
    assert usage["prompt_tokens"] > 100 and 0 < usage["completion_tokens"] <= 2 + 3 + sum(left)
    assert 0 < usage["seconds"] <= usage["request_seconds"] + 0.1
    assert proxy.most_open == 2  # the two states' requests went out together
    guide.close()
    assert guide_threads() == []


def test_chat_endpoint_and_the_reply_cache(
    envs: TextGenVectorEnv, server: Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The chat endpoint answers a user turn; a second guide with the same seed and cache
    folder replays the replies from disk without a request. The key is stored nowhere."""
    tok = envs.task.tokenizer
    start = [envs.task.initial_state(i) for i in range(2)]
    kw: dict[str, Any] = dict(
        endpoint="chat", prompt_template=guide_template(IMDB), api_key=SECRET,
        cache_dir=tmp_path / "cache", max_concurrency=1,
    )  # fmt: skip
    first = APIGuide(proxy.base_url, server.model, tok, **kw)
    assert SECRET not in repr(first) and SECRET not in str(vars(first))
    out = first.act(start, [4, 4], np.random.default_rng(1))
    assert all(len(t) == 4 or (t and t[-1] == tok.eos_token_id) for t in out)
    sent = posts(proxy)
    assert len(sent) == 2 and [m["role"] for m in sent[0]["messages"]] == ["user"]
    assert proxy.log[-1].path == "/v1/chat/completions"
    files = sorted((tmp_path / "cache").glob("*.json"))
    assert len(files) == 2 and not list((tmp_path / "cache").glob(".tmp-*"))
    entry = json.loads(files[0].read_text())
    assert entry["request"]["endpoint"] == "chat" and entry["request"]["max_tokens"] == 4
    assert all(SECRET not in f.read_text() for f in files)

    again = APIGuide(proxy.base_url, server.model, tok, **kw)
    assert again.act(start, [4, 4], np.random.default_rng(1)) == out
    assert len(posts(proxy)) == 2  # nothing sent
    assert again.usage()["cache_hits"] == 2 and again.usage()["requests"] == 0
    other = again.act(start, [4, 4], np.random.default_rng(2))  # other seeds: new requests
    assert len(posts(proxy)) == 4 and len(other) == 2
    assert proxy.most_open == 1  # max_concurrency=1: one request at a time
    first.close()
    again.close()


def test_check_server_and_a_wrong_model_name(
    envs: TextGenVectorEnv, server: Server, proxy: FaultProxy
) -> None:
    """check_server lists the model; a wrong name or a closed port is a clear GuideError;
    a request for an unknown model fails at once (HTTP 400 is not retried)."""
    assert server.model in check_server(server.base_url, server.model)
    with pytest.raises(GuideError, match=r"does not serve model 'nope'; it serves '/"):
        check_server(server.base_url, "nope")
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(GuideError, match=f"no OpenAI-compatible server answers at {down}"):
        check_server(down, server.model, timeout_s=2)
    guide = APIGuide(proxy.base_url, "nope", envs.task.tokenizer, max_retries=3)
    state = envs.task.initial_state(0)
    with pytest.raises(GuideError, match=r"\(model 'nope'\) answered HTTP 400: .*'nope'"):
        guide.act([state], [2], np.random.default_rng(0))
    assert len(proxy.posts()) == 1
    assert guide.usage()["failed_requests"] == 1 and guide.usage()["retries"] == 0


# ----------------------------------------------------------------------------- faults
def test_slow_answers_time_out_and_leave_nothing_running(
    envs: TextGenVectorEnv, server: Server, proxy: FaultProxy
) -> None:
    """Answers slower than the timeout: each attempt's connection is closed, the error comes
    after the retries, no guide thread or request is left, and the env is untouched."""
    proxy.rule = lambda method, path, body, n: Fault(delay_s=30) if method == "POST" else None
    guide = APIGuide(
        proxy.base_url, server.model, envs.task.tokenizer, timeout_s=0.3, max_retries=1
    )
    envs.reset(seed=0)
    states = list(envs.get_states())
    began = time.perf_counter()
    with pytest.raises(GuideTimeoutError, match=r"no answer from .* within 0.3 s \(2 attempt"):
        roll_out(envs, guide, states, np.random.default_rng(0))
    assert time.perf_counter() - began < 5
    assert guide_threads() == []
    assert proxy.wait_idle(2.0) and proxy.abandoned == 4  # 2 states x 2 attempts, all closed
    assert list(envs.get_states()) == states
    usage = guide.usage()
    assert (usage["requests"], usage["retries"], usage["errors"]) == (2, 2, 4)
    assert usage["failed_requests"] == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>not json</html>", "malformed answer"),
        (b'{"id": "x", "choices": []}', "no choice with text"),
        (b'{"id": "x", "choices": [{"index": 0, "text": null}]}', "its text is None"),
    ],
)
def test_malformed_answers_fail_at_once(
    envs: TextGenVectorEnv, server: Server, proxy: FaultProxy, body: bytes, message: str
) -> None:
    proxy.rule = lambda method, path, b, n: Fault(status=200, body=body, headers=JSON)
    guide = APIGuide(proxy.base_url, server.model, envs.task.tokenizer, max_retries=2)
    with pytest.raises(GuideError, match=message):
        guide.act([envs.task.initial_state(0)], [3], np.random.default_rng(0))
    assert len(proxy.posts()) == 1  # not retried


def test_an_empty_completion_ends_the_episode(
    envs: TextGenVectorEnv, server: Server, proxy: FaultProxy
) -> None:
    empty = b'{"id": "x", "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}'
    proxy.rule = lambda method, path, b, n: Fault(status=200, body=empty, headers=JSON)
    guide = APIGuide(proxy.base_url, server.model, envs.task.tokenizer)
    out = guide.act([envs.task.initial_state(0)], [3], np.random.default_rng(0))
    assert out == [(envs.task.tokenizer.eos_token_id,)]


def test_rate_limit_with_retry_after_is_honoured(
    envs: TextGenVectorEnv, server: Server, proxy: FaultProxy
) -> None:
    """HTTP 429 with Retry-After: 1 on the first request: the retry comes a second later."""
    limited = Fault(status=429, headers=(*JSON, ("Retry-After", "1")), body=b'{"error": {}}')
    proxy.rule = lambda method, path, b, n: limited if method == "POST" and n == 0 else None
    guide = APIGuide(proxy.base_url, server.model, envs.task.tokenizer, max_retries=1)
    out = guide.act([envs.task.initial_state(0)], [2], np.random.default_rng(0))
    assert len(out[0]) in (1, 2)
    first, second = proxy.posts()[:2]
    assert second.at - first.at >= 1.0
    usage = guide.usage()  # (a reply whose text re-encodes shorter gets a second request)
    assert (usage["retries"], usage["errors"]) == (1, 1) and usage["requests"] >= 1
    proxy.rule = lambda method, path, b, n: limited  # always limited: the error says so
    with pytest.raises(GuideError, match=r"answered HTTP 429 on all 2 attempt"):
        guide.act([envs.task.initial_state(0)], [2], np.random.default_rng(0))


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random LM with SmolLM2's tokenizer: the policy trains in seconds while the
    served SmolLM2 guides it (their texts share one vocabulary)."""
    folder = tmp_path_factory.mktemp("tiny-smollm2-vocab")
    tok = load_tokenizer()
    ids = {"eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    tiny_causal_lm(len(tok), seed=0, hidden_size=32, **ids).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def api_config(out: Path, base_url: str, model: str, policy: str, **kw: Any) -> D2LOLSConfig:
    base: dict[str, Any] = dict(
        env_id=IMDB, model=policy, total_iterations=1, batch_size=2, minibatch_size=2,
        update_epochs=1, checkpoint_every=1, log_samples_every=0, output_dir=str(out),
        guide_api_base=base_url, guide_api_model=model, guide_api_max_retries=1,
    )  # fmt: skip
    return D2LOLSConfig(**(base | kw))


def test_server_down_at_start_is_refused_before_models_load(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the policy was built before the error was found")

    monkeypatch.setattr(trainer_module, "build_policy", refuse)
    down = f"http://127.0.0.1:{free_port()}/v1"
    cfg = api_config(tmp_path / "run", down, server.model, "unused")
    with pytest.raises(RunSetupError, match=f"guide server: no OpenAI-compatible server .*{down}"):
        run(cfg, "d2lols")
    wrong = api_config(tmp_path / "run", server.base_url, "nope", "unused")
    with pytest.raises(RunSetupError, match="does not serve model 'nope'"):
        run(wrong, "d2lols")
    check_setup(cfg)  # evaluation and export never ask the guide server
    argv = ["--algo", "d2lols", "--env-id", IMDB, "--output-dir", str(tmp_path / "cli")]
    with pytest.raises(SystemExit) as exc:
        train_main([*argv, "--guide-api-base", down, "--guide-api-model", "m"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m agents.train: error: guide server:")


def test_guided_training_survives_the_server_dying_and_resumes(
    server: Server,
    proxy: FaultProxy,
    tiny_policy: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    """D2LOLS on IMDB-v0 with the served guide: one iteration trains and logs the guide's
    usage; the server then dies (connections dropped): the resumed run retries, stops with
    one line naming the URL and leaves the checkpoint intact; healed, --resume continues."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "run"
    extra = json.dumps({"generation_config": json.dumps({"do_sample": True, "top_k": 50})})
    cfg = api_config(out, proxy.base_url, server.model, tiny_policy, guide_api_extra_body=extra)
    run(cfg, "d2lols")
    sent = posts(proxy)
    assert sent and all(json.loads(b["generation_config"])["do_sample"] for b in sent)
    assert all(b["max_tokens"] <= 47 for b in sent)
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"guide/requests", "guide/latency_s", "guide/errors", "time/guide"} <= tags
    assert acc.Scalars("guide/requests")[0].value == len(sent)
    assert acc.Scalars("guide/errors")[0].value == 0
    assert 0 < acc.Scalars("time/guide")[0].value <= acc.Scalars("time/generation")[0].value

    proxy.rule = lambda method, path, body, n: Fault(drop=True) if method == "POST" else None
    argv = ["--algo", "d2lols", "--resume", "--output-dir", str(out), "--total-iterations", "2"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        train_main(argv)
    assert exc.value.code == 1
    stderr = capsys.readouterr().err  # progress bars, then the one error line
    err = [line for line in stderr.splitlines() if line.startswith("python -m agents.train")]
    assert len(err) == 1 and "Traceback" not in stderr
    reach = f"python -m agents.train: error: APIGuide: cannot reach {proxy.base_url}"
    assert err[0].startswith(reach)
    assert "(2 attempt(s))" in err[0]
    assert latest_checkpoint(out).name.endswith("1") and guide_threads() == []
    assert load_checkpoint(out)[1]["iterations_done"] == 1

    proxy.rule = None  # the server is back
    train_main(argv)
    assert load_checkpoint(out)[1]["iterations_done"] == 2
    for path in out.rglob("*"):  # the key is in no checkpoint, config or event file
        assert not path.is_file() or SECRET.encode() not in path.read_bytes()
