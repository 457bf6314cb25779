#!/usr/bin/env bash
# Set up and run the app: embedded PostgreSQL and the local CPU model unless DATABASE_URL and
# VLLM_BASE_URL say otherwise (environment or .env). Arguments go to app.py. Turns run in the
# app's process unless TURN_WORKERS says otherwise: turn workers are opt-in for now
# (docs/operations.md, "Several processes").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
exec .venv/bin/python app.py "$@"
