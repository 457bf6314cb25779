"""Crash points for the crash-recovery tests and scripts/chaos.py.

If CHAT_FAULT_FILE names a file whose content is a crash point's name, the process exits with
status 137 (as if killed with -9) when it reaches that point; the file is deleted first, so the
restarted process runs on. Without CHAT_FAULT_FILE this is one dictionary lookup per point.

Points:
    save_user_message:committed  the user message's transaction committed, step not checkpointed
    read_history:done            history read, step not checkpointed
    call_llm:streaming           a few tokens of the reply streamed
    save_reply:committed         the reply's final row committed, step not checkpointed
    comparison_round:one_started a comparison's first side's turn started, the second's not
"""

from __future__ import annotations

import os
import sys


def crash_point(name: str) -> None:
    # Read at each point, not at import: a process forked from one that imported the app
    # already (chat_core/testing/fork_server.py) has its own environment.
    path = os.environ.get("CHAT_FAULT_FILE")
    if path is None:
        return
    try:
        with open(path, encoding="utf-8") as f:
            armed = f.read().strip()
    except FileNotFoundError:
        return
    if armed != name:
        return
    os.unlink(path)
    sys.stderr.write(f"fault injection: crashing at {name}\n")
    sys.stderr.flush()
    os._exit(137)
