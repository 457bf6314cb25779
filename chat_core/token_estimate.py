"""Token counts without the model's tokenizer.

Used where the server reports no usage (llama.cpp streams none) and to fit history into the
context window before asking the server. The rule: one token per 3 bytes of UTF-8, plus a fixed
cost per message for the chat template's role markers. Llama-family tokenizers average about 4
characters per token on English text and about one token per character on CJK text (3 bytes in
UTF-8), so this errs on the side of too many tokens: history fitted with it is never too long for
the server, at the price of leaving some of the window unused.
"""

from __future__ import annotations

from typing import Iterable, Mapping

BYTES_PER_TOKEN = 3
PER_MESSAGE_TOKENS = 8  # role header and end-of-turn markers of common chat templates
REPLY_PRIMER_TOKENS = 8  # the assistant header the template appends before generation


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode("utf-8", "surrogatepass")) // BYTES_PER_TOKEN)


def estimate_message_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    return REPLY_PRIMER_TOKENS + sum(
        PER_MESSAGE_TOKENS + estimate_tokens(m.get("content") or "") for m in messages
    )
