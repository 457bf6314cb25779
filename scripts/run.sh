#!/usr/bin/env bash
# Set up and run the app: embedded PostgreSQL and the local CPU model unless DATABASE_URL and
# VLLM_BASE_URL say otherwise (environment or .env). Arguments go to app.py. Turn workers as
# the machine's cores allow (TURN_WORKERS=auto), unless the environment or .env says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
if [ -z "${TURN_WORKERS:-}" ] && ! grep -qs '^[[:space:]]*TURN_WORKERS=' .env; then
  export TURN_WORKERS=auto
fi
exec .venv/bin/python app.py "$@"
