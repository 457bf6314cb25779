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

_FAULT_FILE = os.environ.get("CHAT_FAULT_FILE")


def crash_point(name: str) -> None:
    if _FAULT_FILE is None:
        return
    try:
        with open(_FAULT_FILE, encoding="utf-8") as f:
            armed = f.read().strip()
    except FileNotFoundError:
        return
    if armed != name:
        return
    os.unlink(_FAULT_FILE)
    sys.stderr.write(f"fault injection: crashing at {name}\n")
    sys.stderr.flush()
    os._exit(137)
