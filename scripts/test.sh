#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine: the virtualenv, a PostgreSQL server on
# 127.0.0.1:5432 (started if it is installed but down), headless Chromium for the browser tests,
# then pytest. Extra arguments go to pytest (e.g. scripts/test.sh -k crash).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh

# PostgreSQL for the tests (TEST_PG_ADMIN_URL points elsewhere if you have another server).
if [ -z "${TEST_PG_ADMIN_URL:-}" ] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  else
    echo "error: no PostgreSQL on 127.0.0.1:5432; install and start one, or set TEST_PG_ADMIN_URL" >&2
    exit 1
  fi
fi

# Debian's Chromium for the Playwright browser tests (no browser download needed).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }
  else
    echo "error: the browser tests need Chromium: sudo apt-get install chromium" >&2
    exit 1
  fi
fi

exec .venv/bin/python -m pytest "$@"
