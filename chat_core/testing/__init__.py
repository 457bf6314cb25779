"""Test and benchmark helpers that ship with the project: a scriptable OpenAI-compatible LLM emulator and a helper that runs the app as a real process."""
