"""The OpenAI-compatible backend from synchronous code and from inside a running event loop (Jupyter)."""

from __future__ import annotations

import asyncio

from fake_openai import FakeOpenAI

from dlm.llm.backends import GenerationParams
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
