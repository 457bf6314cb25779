"""app.py processes forked from one that has imported the app already.

An app start is 8-10 s here, nearly all of it importing Gradio, DBOS and the rest
(docs/performance.md, "Start-up"); the test suite, the chaos run and the benchmarks start the
app dozens of times. A fork server imports it once; each start is then a fork of that process
running app.py's `main()` with its own environment, working directory and log, the way
`python app.py` would.

Each app is a grandchild of the fork server's parent: the server forks a child, which forks
the app and exits, and the parent (made a child subreaper, Linux's PR_SET_CHILD_SUBREAPER)
inherits the orphan. So the parent waits for the app, gets its exit status and signals it as
it would a child it started itself (`ForkedProcess`, the part of subprocess.Popen that
AppProcess uses). Nothing of the app may read its environment at import time: the server
imported it with another (the crash points read CHAT_FAULT_FILE when reached).

A subreaper also inherits what an app leaves behind when it dies (its local model server, once
that exits by itself): those stay zombies until the subreaper ends, as a check that a process
has ended must allow for (tests/test_local_model.py). Linux only; elsewhere, for another
source tree, or with APP_FORK_SERVER=0, AppProcess runs `python app.py`.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
READY = "ready"
IMPORT_TIMEOUT_SEC = 180.0
FORK_TIMEOUT_SEC = 30.0


def available() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("APP_FORK_SERVER", "1") != "0"


class ForkedProcess:
    """A forked app: pid, poll, wait, send_signal, kill, returncode, as subprocess.Popen's."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(["app.py"], timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The process that has imported the app, and forks an app for each `start()`."""

    _lock = threading.Lock()
    _server: "ForkServer | None" = None

    def __init__(self, root: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from chat_core.testing.fork_server import serve; serve()"],
            cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._unread = b""  # read from the pipe itself: select() sees no buffered lines
        self.requests = 0
        if self._reply(IMPORT_TIMEOUT_SEC) != READY:
            self.close()
            raise RuntimeError("the app's fork server did not start; run `python app.py` to "
                               "see why, or set APP_FORK_SERVER=0")
        atexit.register(self.close)

    def _reply(self, timeout: float) -> str:
        """The server's next line, or "" if none came within `timeout` (the server is then
        killed) or it ended."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._unread:
            ready, _, _ = select.select([self.proc.stdout], [], [],
                                        max(0.0, deadline - time.monotonic()))
            chunk = os.read(self.proc.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                self.close()
                return ""
            self._unread += chunk
        line, self._unread = self._unread.split(b"\n", 1)
        return line.decode().strip()

    @classmethod
    def shared(cls, root: Path) -> "ForkServer":
        with cls._lock:
            if cls._server is None or cls._server.proc.poll() is not None:
                cls._server = cls(root)
            return cls._server

    def start(self, env: dict[str, str], cwd: Path, log_path: Path) -> ForkedProcess:
        assert self.proc.stdin is not None
        with self._lock:
            self.requests += 1
            number = str(self.requests)
            self.proc.stdin.write(json.dumps({"number": number, "env": env, "cwd": str(cwd),
                                              "log": str(log_path)}) + "\n")
            self.proc.stdin.flush()
            # Each reply names its request: one left unread by a start interrupted earlier
            # (its app then untracked) is skipped, never taken for this one's.
            while True:
                reply = self._reply(FORK_TIMEOUT_SEC).split()
                if len(reply) != 2 or reply[0] == number:
                    break
        if len(reply) != 2 or not reply[1].isdigit():
            raise RuntimeError(f"the app's fork server failed to fork an app: {reply!r}; set "
                               "APP_FORK_SERVER=0 to run python app.py instead")
        return ForkedProcess(int(reply[1]))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- the server's side ------------------------------------------------------------------------

def serve() -> None:
    """Import the app, then fork one for each request line until stdin closes (its parent
    closed it, or ended)."""
    import app  # noqa: F401  (the whole app, as app.serve() would import it)
    import chat_core.runtime  # noqa: F401
    import chat_core.ui.page  # noqa: F401
    import chat_core.web.app  # noqa: F401
    import chat_core.web.share_link  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    print(READY, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        read_end, write_end = os.pipe()
        middle = os.fork()
        if middle == 0:
            os.close(read_end)
            _middle(request, write_end)
        os.close(write_end)
        with os.fdopen(read_end) as pid:
            app_pid = pid.read().strip()
        # Said once the middle child is gone: the app is the subreaper's by then.
        os.waitpid(middle, 0)
        print(request["number"], app_pid or "failed", flush=True)


def _middle(request: dict[str, Any], write_end: int) -> None:
    """The child between the server and the app: forks the app, hands its pid to the server
    and exits, so the app is inherited by the subreaper that asked for it."""
    try:
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            _run_app(request)
        os.write(write_end, str(pid).encode())
    finally:
        os._exit(0)


def _run_app(request: dict[str, Any]) -> None:
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        sys.stdout.reconfigure(write_through=True)  # as PYTHONUNBUFFERED
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        random.seed()  # not the server's sequence, shared by every fork
        sys.argv = ["app.py"]
        import app
        code = app.main([])
    except SystemExit as exc:  # as the interpreter maps it
        code = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
    finally:
        # What the interpreter does at exit, but its teardown of every module: wait for the
        # threads that are not daemons, run the atexit handlers.
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1
