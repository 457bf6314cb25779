"""Logging for every process of the app (the web process, turn workers)."""

from __future__ import annotations

import logging

from chat_core.secrets_mask import install_log_masking


def configure_logging(level: str, process: str = "") -> None:
    """Root logging, with secrets masked in every record (secrets_mask.py): the explicit masking
    at each call site is the rule, this is the net for what a library logs on its own.
    `process` names a turn worker in each of its lines."""
    tag = f"[{process}] " if process else ""
    logging.basicConfig(level=level.upper(),
                        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
    install_log_masking()
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
