"""app.py as a child process, the way the tests, the chaos run, the benchmark, the demo-data
seeder and the screenshot script run the real app: start it, wait until it serves, and stop
it politely or kill it with -9 on purpose. Forked from a process that has imported the app
already where it can be (fork_server.py: a start in 1-2 s instead of 8-10 s)."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from chat_core.config import PROJECT_ROOT
from chat_core.testing import fork_server
from chat_core.testing.fork_server import ForkedProcess, ForkServer


_started: list["AppProcess"] = []  # every app this process started, for _kill_leftovers


def _kill_leftovers() -> None:
    """At this process's exit, kill the apps it started and never stopped (a test that failed
    before its stop(), a script interrupted): nothing else would, since a forked app's parent
    is this process, and they would outlive it, serving and polling their database."""
    for app in _started:
        try:
            if app.proc is not None and app.proc.poll() is None:
                print(f"killing an app left running (its log: {app.log_path})",
                      file=sys.stderr)
                app.proc.kill()
                app.proc.wait()
        except OSError:  # reaped elsewhere meanwhile: the others still get theirs
            continue


atexit.register(_kill_leftovers)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppProcess:
    """One app.py child. `env` goes over this process's environment; a None value removes a
    variable (e.g. DATABASE_URL, to get the embedded database). Its output goes to `log_path`,
    which every error names."""

    def __init__(self, env: Mapping[str, str | None], log_path: Path,
                 root: Path = PROJECT_ROOT, fork: bool = True) -> None:
        """`root`: the source tree whose app.py runs (tests/test_layout_upgrade.py runs an
        older version of the code). `fork`: from the fork server where it can be; False runs
        `python app.py` itself, start to exit as a person would (its interpreter's teardown
        included)."""
        self.root = root
        self.fork = fork
        merged = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.url = f"http://127.0.0.1:{self.env['PORT']}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | ForkedProcess | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90) -> "AppProcess":
        """Start app.py and return once /healthz answers (503 counts: the app is up while its
        LLM server still loads; so does 401: with accounts on, /healthz wants a login)."""
        started = time.monotonic()
        if self.fork and self.root == PROJECT_ROOT and fork_server.available():
            self.proc = ForkServer.shared(self.root).start(self.env, self.root, self.log_path)
        else:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([sys.executable, str(self.root / "app.py")],
                                             env=self.env, cwd=self.root, stdout=log,
                                             stderr=subprocess.STDOUT)
        _started.append(self)
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}; "
                                   f"{self.log_path} ends:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code in (200, 401, 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.proc.kill()  # a test whose fixture fails here never calls stop()
        self.proc.wait()
        raise RuntimeError(f"app.py did not answer within {timeout:.0f} s; "
                           f"{self.log_path} ends:\n{self.log()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit code, or None if never started."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def log(self) -> str:
        """The end of the app's output, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""
