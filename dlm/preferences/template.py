"""The plain-text dialogue template used for the base model: in preference data, training and evaluation.

Llama 3.1 8B *base* has no chat template, and the Instruct special tokens are untrained in it, so
turns are written as plain text:

    System: <system prompt>
    User: <message>
    Assistant: <reply>
    User: <message>
    Assistant:

A completion starts with a space (" <reply>") so that the prompt's tokens are a prefix of
prompt + completion under byte-level BPE, and ends with EOS. Generation stops at EOS or at the
next "\nUser:".
"""

from __future__ import annotations

from typing import Any

ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}
STOP_STRINGS = ("\nUser:",)

# The same rendering as a Jinja chat template, saved with the tokenizer so that any tool
# (TRL, vLLM, transformers pipelines) formats conversations identically.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ 'System: ' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ 'User: ' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ 'Assistant: ' + message['content'] }}"
    "{%- if not loop.last -%}{{ '\\n' }}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
)


def render_prompt(messages: list[dict[str, str]]) -> str:
    """Text of a conversation up to and including the cue for the assistant's next reply."""
    lines = []
    for m in messages:
        if m["role"] not in ROLE_NAMES:
            raise ValueError(f"unknown role {m['role']!r}")
        lines.append(f"{ROLE_NAMES[m['role']]}: {m['content']}")
    return "\n".join(lines) + "\nAssistant:" if lines else "Assistant:"


def render_completion(text: str) -> str:
    """A reply as it follows the prompt: one leading space (EOS is added by the tokenizer side)."""
    return " " + text.strip()


def as_prompt_text(prompt: Any) -> str:
    """A chat-format prompt rendered with the dialogue template; a string is taken as already rendered."""
    return prompt if isinstance(prompt, str) else render_prompt(prompt)


def as_completion_text(completion: Any) -> str:
    """A completion as text after the prompt (leading space); TRL appends EOS to plain-text completions."""
    if isinstance(completion, str):
        return completion
    return render_completion("".join(m["content"] for m in completion))


def truncate_at_stop(text: str) -> str:
    """Cut generated text at the template's next user turn."""
    for stop in STOP_STRINGS:
        cut = text.find(stop)
        if cut >= 0:
            text = text[:cut]
    return text.strip()
