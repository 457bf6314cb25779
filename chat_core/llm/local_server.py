"""Entry point of the local model server child process: llama.cpp's server, plus a watchdog
that ends this process when the app that started it is gone (even after kill -9 of the app).

    python -m chat_core.llm.local_server --parent-pid PID <llama_cpp.server arguments>
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(0)
        time.sleep(0.5)


def _drop_settings_from_environment() -> None:
    """llama.cpp's server reads every setting from an environment variable of the same name
    too (PORT, HOST, MODEL, ...), and those win over its command line. The app's own PORT and
    HOST must not leak into it."""
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    names = {n.lower() for n in ServerSettings.model_fields} | {
        n.lower() for n in ModelSettings.model_fields}
    for key in list(os.environ):
        if key.lower() in names:
            del os.environ[key]


def main() -> None:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--parent-pid":
        parent = int(args[1])
        args = args[2:]
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _drop_settings_from_environment()
    sys.argv = ["llama_cpp.server", *args]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
