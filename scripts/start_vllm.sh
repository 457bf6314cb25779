#!/usr/bin/env bash
# Start the seed's GPU server: vLLM serving Llama 3.1 8B Instruct with an OpenAI-compatible API,
# sized for one 32 GB RTX 5090. Then run the app against it:
#
#     scripts/start_vllm.sh                 # terminal 1 (first run downloads ~16 GB of weights)
#     VLLM_BASE_URL=http://127.0.0.1:5000 python app.py     # terminal 2
#
# Install once, in its own virtualenv (vLLM pins its own torch):
#     python3 -m venv .venv-gpu && .venv-gpu/bin/pip install -r requirements-gpu.txt
#     .venv-gpu/bin/hf auth login   # Llama 3.1 is gated: accept its licence on huggingface.co first
#
# Every setting below can be overridden by an environment variable of the same name; anything
# after the script's name is passed to `vllm serve` as is (e.g. --enforce-eager).
#
#   VLLM_MODEL              meta-llama/Meta-Llama-3.1-8B-Instruct
#       The seed's model. The app uses whatever model the server lists first, so another model
#       needs no change in the app.
#   VLLM_HOST / VLLM_PORT   127.0.0.1 / 5000
#       The seed's port. Use VLLM_HOST=0.0.0.0 only when the app runs on another machine, and then
#       set VLLM_API_KEY too: vLLM has no other access control.
#   MAX_MODEL_LEN           16384
#       Longest prompt + reply, in tokens. Llama 3.1 supports 131072, but every token of context
#       reserves KV cache (128 KiB per token for the 8B model in bf16), so a long limit lets one
#       conversation crowd out the others. The app reads this limit from /v1/models and fits the
#       history into it, dropping the oldest turns first.
#   GPU_MEMORY_UTILIZATION  0.90
#       Share of the card vLLM may take: 0.90 x 32 GB = 28.8 GB, of which the weights take 16 GB
#       and CUDA graphs and activations about 2 GB, leaving about 10 GB, i.e. about 80,000 tokens
#       of KV cache. Lower it if the card also drives a display; raise to 0.95 on a headless box.
#   MAX_NUM_SEQS            512
#       Sequences decoded together per step; the seed's "512+ concurrent requests". With about
#       80,000 cached tokens, 512 conversations average 150 tokens each before vLLM starts
#       pausing some. Keep the app's LLM_MAX_CONCURRENCY (per app process) summed over all app
#       processes at or below this, so that requests wait in the app (visible, durable) rather
#       than inside vLLM.
#   MAX_NUM_BATCHED_TOKENS  8192
#       Prompt tokens processed per step (chunked prefill): higher favours throughput, lower keeps
#       time per token steady for everyone while a long prompt is read.
#   DTYPE                   bfloat16      (the 5090, Blackwell, runs bf16 natively)
#   KV_CACHE_DTYPE          auto          (fp8 halves KV memory, doubling concurrent context)
#   VLLM_API_KEY            unset         (if set, give the app the same value as LLM_API_KEY)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

VLLM_MODEL=${VLLM_MODEL:-meta-llama/Meta-Llama-3.1-8B-Instruct}
VLLM_HOST=${VLLM_HOST:-127.0.0.1}
VLLM_PORT=${VLLM_PORT:-5000}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-16384}
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.90}
MAX_NUM_SEQS=${MAX_NUM_SEQS:-512}
MAX_NUM_BATCHED_TOKENS=${MAX_NUM_BATCHED_TOKENS:-8192}
DTYPE=${DTYPE:-bfloat16}
KV_CACHE_DTYPE=${KV_CACHE_DTYPE:-auto}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  cat >&2 <<'EOF'
error: no NVIDIA GPU found (nvidia-smi is missing or lists no GPU).
vLLM needs a CUDA GPU. Without one, run the app with no VLLM_BASE_URL: it starts the local CPU
model (SmolLM2-135M through llama.cpp) by itself. scripts/start_local_llm.py runs that server by
hand.
EOF
  exit 1
fi

VLLM_BIN=${VLLM_BIN:-}
if [ -z "$VLLM_BIN" ]; then
  for candidate in "$(dirname "$0")/../.venv-gpu/bin/vllm" "$(command -v vllm || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then VLLM_BIN=$candidate; break; fi
  done
fi
if [ -z "$VLLM_BIN" ]; then
  cat >&2 <<'EOF'
error: vllm is not installed.
Install it in its own virtualenv (it brings its own torch build):
    python3 -m venv .venv-gpu && .venv-gpu/bin/pip install -r requirements-gpu.txt
or point VLLM_BIN at an existing `vllm` executable.
EOF
  exit 1
fi

echo "GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -n 1)"
echo "Serving $VLLM_MODEL on http://$VLLM_HOST:$VLLM_PORT (max_model_len=$MAX_MODEL_LEN," \
     "max_num_seqs=$MAX_NUM_SEQS, gpu_memory_utilization=$GPU_MEMORY_UTILIZATION)"
echo "Then: VLLM_BASE_URL=http://$VLLM_HOST:$VLLM_PORT python app.py"

args=(serve "$VLLM_MODEL"
  --host "$VLLM_HOST" --port "$VLLM_PORT"
  --max-model-len "$MAX_MODEL_LEN"
  --gpu-memory-utilization "$GPU_MEMORY_UTILIZATION"
  --max-num-seqs "$MAX_NUM_SEQS"
  --max-num-batched-tokens "$MAX_NUM_BATCHED_TOKENS"
  --dtype "$DTYPE"
  --kv-cache-dtype "$KV_CACHE_DTYPE")
if [ -n "${VLLM_API_KEY:-}" ]; then args+=(--api-key "$VLLM_API_KEY"); fi
exec "$VLLM_BIN" "${args[@]}" "$@"
