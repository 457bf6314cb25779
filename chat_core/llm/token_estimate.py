"""Token counts without the model's tokenizer.

Two rules, for two purposes (measured against SmolLM2's tokenizer through llama.cpp; see
tests/test_local_model.py):

- `upper_bound_tokens`: one token per UTF-8 byte. Byte-level BPE tokenizers (Llama 3, SmolLM2,
  GPT) never produce more tokens than bytes, so history fitted with it always fits. It is the
  fallback when the server offers no tokenizer; it over-counts English about four times.
- `estimate_tokens`: one token per 3 bytes. Close to real counts for English prose and code, but
  it undercounts digits, random strings and CJK on small vocabularies, so it is used only to
  fill in usage numbers a server did not report (marked tokens_estimated).

Each message also costs the chat template's role markers, and the prompt a fixed amount for the
template's preamble (Llama 3.1 adds a dated system header of about 25 tokens).
"""

from __future__ import annotations

from typing import Iterable, Mapping

BYTES_PER_TOKEN = 3
PER_MESSAGE_TOKENS = 8
PROMPT_OVERHEAD_TOKENS = 64


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def upper_bound_tokens(text: str) -> int:
    return utf8_len(text)


def estimate_tokens(text: str) -> int:
    return -(-utf8_len(text) // BYTES_PER_TOKEN)


def estimate_message_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    return PROMPT_OVERHEAD_TOKENS + sum(
        PER_MESSAGE_TOKENS + estimate_tokens(m.get("content") or "") for m in messages
    )
