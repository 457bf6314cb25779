#!/usr/bin/env bash
# Create .venv (if missing) and install requirements.txt into it. Safe to run again: pip skips
# what is installed. Used by scripts/run.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
pip install --quiet --upgrade pip

# llama.cpp (the local CPU model) is compiled from source. Built for the compiling machine's
# own CPU (pip's default), it used instructions that a virtual machine reported but refused
# (Illegal instruction on the first token). So it is built portable (AVX2, no -march=native),
# once per machine, into a wheel folder outside the project that every clone reuses.
LLAMA=$(grep -Eo '^llama-cpp-python\[server\]==[0-9.]+' requirements.txt | cut -d= -f3)
WHEELS=${DURABLE_CHAT_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/durable-chat/wheels-portable}
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA"-*.whl >/dev/null 2>&1; then
  echo "Building llama.cpp for the local model (once per machine, about 5 minutes)..." >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF" pip wheel --quiet --no-deps --no-cache-dir -w "$WHEELS" \
    "llama-cpp-python==$LLAMA"
fi
pip install --quiet --find-links "$WHEELS" -r requirements.txt
