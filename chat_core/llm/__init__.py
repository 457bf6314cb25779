"""Talking to the language model: the OpenAI-compatible client, the local CPU model, the cross-process concurrency slots, and fitting a conversation into the context window."""
