"""The OpenAI-compatible backend: inside a running event loop (Jupyter), malformed replies, the ledger at a kill, URLs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fake_openai import FakeOpenAI

from dlm.errors import DLMError
from dlm.io import URL_SECRETS_ENV, redact_url, url_secrets
from dlm.llm.backends import GenerationParams, LLMError, UsageLedger
from dlm.llm.factory import make_backend

MESSAGES = [[{"role": "user", "content": f"Write 2 different questions about clause {i}."}] for i in range(5)]


def answers(url: str) -> tuple[list[str], int]:
    backend = make_backend("openai", "gpt-test", base_url=url, max_in_flight=2)
    replies = backend.complete_many(MESSAGES, GenerationParams(max_tokens=64, seed=1))
    return replies, backend.usage.requests


def test_openai_backend_works_inside_a_running_event_loop_as_outside():
    with FakeOpenAI(faults={2: "500"}) as server:
        plain = answers(server.url)

    async def in_a_kernel():  # a Jupyter kernel's cells run while its event loop runs
        return answers(server_two.url)

    with FakeOpenAI(faults={2: "500"}) as server_two:
        nested = asyncio.run(in_a_kernel())
    assert nested == plain  # same replies, same requests (the 500 retried once) either way
    assert plain[1] == 6


def test_an_html_or_torn_200_reply_is_asked_again_and_the_result_is_unchanged():
    with FakeOpenAI() as server:
        clean = answers(server.url)[0]
    with FakeOpenAI(faults={1: "html200", 3: "badjson"}) as server:
        backend = make_backend("openai", "gpt-test", base_url=server.url, max_in_flight=1)
        replies = backend.complete_many(MESSAGES, GenerationParams(max_tokens=64, seed=1))
    assert replies == clean
    assert backend.usage.errors == {"malformed reply": 2} and backend.usage.requests == 7


def test_a_server_that_only_sends_html_fails_with_a_message_that_tells_the_truth():
    with FakeOpenAI(faults={n: "html200" for n in range(1, 20)}) as server:
        backend = make_backend("openai", "gpt-test", base_url=server.url, max_in_flight=1)
        with pytest.raises(LLMError) as err:
            backend.complete_many(MESSAGES[:1], GenerationParams(max_tokens=64, seed=1), attempts=3)
        assert server.count == 3  # asked three times, as the message says
    assert "1 malformed reply" in str(err.value) and "asked up to 3 times" in str(err.value)


KILLED_CLIENT = """
import sys
from dlm.llm.backends import GenerationParams, UsageLedger
from dlm.llm.factory import make_backend
backend = make_backend("openai", "gpt-test", base_url=sys.argv[1], max_in_flight=4, ledger=UsageLedger(sys.argv[2]))
backend.complete_many([[{"role": "user", "content": f"q{i}"}] for i in range(4)], GenerationParams(seed=1))
"""


def test_requests_in_flight_at_a_kill_are_in_the_ledger_as_sent_with_unknown_outcome(tmp_path):
    ledger = tmp_path / "usage.jsonl"
    with FakeOpenAI(latency=3) as server:  # replies come after the kill
        proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, server.url, str(ledger)],
                                env={**os.environ, "OPENAI_API_KEY": "sk-test"})
        deadline = time.time() + 60
        while server.count < 1 and time.time() < deadline:  # the first request is on the wire
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert server.count == 1
    totals = UsageLedger(ledger).totals()["gpt-test"]
    assert totals["sent_outcome_unknown"] == 4 and totals["requests"] == 0


def test_a_settled_batch_leaves_nothing_unknown(tmp_path):
    ledger = UsageLedger(tmp_path / "usage.jsonl")
    with FakeOpenAI() as server:
        backend = make_backend("openai", "gpt-test", base_url=server.url, ledger=ledger)
        backend.complete_many(MESSAGES, GenerationParams(max_tokens=64, seed=1))
    totals = ledger.totals()["gpt-test"]
    assert totals["sent_outcome_unknown"] == 0 and totals["requests"] == 5 and totals["prompt_tokens"] == 250


CANARY_USER, CANARY_QUERY = "alice:PW-CANARY-7d1", "QUERY-CANARY-9c2"


@pytest.mark.parametrize("url, redacted", [
    ("http://alice:pw@host:8000/v1", "http://***@host:8000/v1"),
    ("https://a:p@ss@host/v1?api-key=K1&api-version=2", "https://***@host/v1?api-key=***&api-version=2"),
    ("https://host/v1?API_KEY=K&Key=2;token=3&sig=4&x=5", "https://host/v1?API_KEY=***&Key=***;token=***&sig=***&x=5"),
    ("https://host/v1?access_token=a&signature=b&password=c&secret=d&monkey=e",
     "https://host/v1?access_token=***&signature=***&password=***&secret=***&monkey=e"),
    ("--base-url=http://u:p@h/v1 and http://h2/?token=t", "--base-url=http://***@h/v1 and http://h2/?token=***"),
    ("no url here", "no url here"),
])
def test_urls_lose_userinfo_and_credential_query_values(url, redacted):
    assert redact_url(url) == redacted
    assert redact_url(redacted) == redacted  # redacting twice changes nothing


def test_a_redacted_base_url_reaches_the_server_with_its_credentials_and_is_stored_nowhere(tmp_path, monkeypatch):
    with FakeOpenAI() as server:
        real = server.url.replace("http://", f"http://{CANARY_USER}@") + f"?api-key={CANARY_QUERY}"
        secrets = url_secrets([real])
        monkeypatch.setenv(URL_SECRETS_ENV, json.dumps(secrets))
        hidden = redact_url(real)
        assert list(secrets) == [hidden] and CANARY_QUERY not in hidden and "alice" not in hidden
        backend = make_backend("openai", "gpt-test", cache_dir=tmp_path / "cache", base_url=hidden,
                               ledger=UsageLedger(tmp_path / "usage.jsonl"))
        assert backend.complete_many(MESSAGES[:2], GenerationParams(max_tokens=64, seed=1))
    assert server.count == 2 and server.queries == [f"api-key={CANARY_QUERY}"] * 2
    assert any(h.startswith("Basic ") for h in server.auth_headers)  # the userinfo was used
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 3 and not any(c.encode() in p.read_bytes() for p in files for c in (CANARY_USER, CANARY_QUERY))


def test_a_redacted_url_without_its_secret_is_one_line_error(monkeypatch):
    monkeypatch.delenv(URL_SECRETS_ENV, raising=False)
    backend = make_backend("openai", "gpt-test", base_url="http://***@127.0.0.1:9/v1")
    with pytest.raises(DLMError, match=URL_SECRETS_ENV):
        backend.complete_many(MESSAGES[:1], GenerationParams())


def test_two_urls_that_differ_only_in_credentials_are_refused():
    with pytest.raises(DLMError, match="differ only in their credentials"):
        url_secrets(["http://a:1@h/v1", "http://b:2@h/v1"])
