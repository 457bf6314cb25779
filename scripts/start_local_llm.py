"""Run the local CPU model server by hand: the same llama.cpp server and SmolLM2-135M-Instruct
that the app starts when VLLM_BASE_URL is unset, on a fixed port.

    python scripts/start_local_llm.py --port 5055
    VLLM_BASE_URL=http://127.0.0.1:5055 python app.py

Useful to keep the model loaded across app restarts, or to share one model server between
several app processes. Stop it with Ctrl+C.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chat_core.llm.local_model import CONTEXT_TOKENS, MODEL_ALIAS, model_path  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-ctx", type=int, default=CONTEXT_TOKENS,
                        help="context window in tokens (SmolLM2 was trained with 8192)")
    args = parser.parse_args()
    try:
        path = model_path()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Serving {MODEL_ALIAS} on http://{args.host}:{args.port} (context {args.n_ctx} tokens)")
    print(f"Then: VLLM_BASE_URL=http://{args.host}:{args.port} LLM_CONTEXT_TOKENS={args.n_ctx} "
          "python app.py", flush=True)
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    os.execve(sys.executable, [
        sys.executable, "-m", "chat_core.llm.local_server",
        "--model", str(path), "--model_alias", MODEL_ALIAS, "--host", args.host,
        "--port", str(args.port), "--n_ctx", str(args.n_ctx), "--n_threads", str(args.threads),
    ], env)


if __name__ == "__main__":
    sys.exit(main())
