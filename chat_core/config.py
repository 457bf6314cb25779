"""Settings from the environment and a `.env` file, validated once at start-up.

The seed's variables keep their meaning: DATABASE_URL, VLLM_BASE_URL, PORT. A real environment
variable wins over the same name in `.env`, as with the seed. Every other knob has a default that
works on a laptop, so an empty environment is a valid configuration.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from dotenv import dotenv_values

from chat_core.secrets_mask import MASK, mask_url, remember_secrets

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Bump when the turn workflow's sequence of steps changes in a way that old checkpoints cannot
# replay. DBOS only recovers workflows of the running application_version, so this must be a
# fixed string: DBOS's default (a hash of the source) would orphan in-flight turns on any edit.
WORKFLOW_VERSION = "chat-turn-1"
MAX_TURN_WORKERS = 64


class ConfigError(ValueError):
    """A setting is malformed; the message names the variable and how to fix it."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    vllm_base_url: str | None = None
    port: int = 8080
    host: str = "127.0.0.1"
    llm_model: str | None = None
    llm_api_key: str = "EMPTY"
    data_dir: Path = PROJECT_ROOT / "data"
    executor_id: str = ""
    app_version: str = WORKFLOW_VERSION
    # Input limits, enforced on the server for every entry point.
    max_message_chars: int = 32_000
    max_body_bytes: int = 1_000_000
    max_idempotency_key_chars: int = 200
    # LLM call: attempts with exponential backoff while the server is unreachable or answers 5xx.
    # Defaults: 5 attempts, waits of 1, 2, 4, 8 s, so a turn gives up after about 15 s of outage.
    llm_max_attempts: int = 5
    llm_retry_interval_sec: float = 1.0
    llm_retry_backoff: float = 2.0
    llm_connect_timeout_sec: float = 5.0
    # Longest silence allowed between two streamed chunks (and before the first one).
    llm_read_timeout_sec: float = 120.0
    # Cap on LLM requests in flight from this process; see docs/operations.md.
    llm_max_concurrency: int = 64
    # Cap on LLM requests in flight from all processes on this database together (0: none).
    llm_global_concurrency: int = 0
    # When those caps are reached, waiting turns get the LLM round-robin across people (first
    # come first served within a person); off (LLM_FAIR_SHARE=0): in arrival order.
    llm_fair_share: bool = True
    # With the fair share, a waiting turn of someone holding two places fewer than another
    # person takes one of theirs: that turn yields and later continues its reply from its text
    # (vLLM's continue_final_message; LLM_PREEMPT=0 for a server without it). Never with the
    # local model, which cannot continue a reply.
    llm_preempt: bool = True
    # Context window used when the server does not report max_model_len.
    llm_context_tokens: int | None = None
    default_temperature: float = 0.7
    default_max_tokens: int = 1024
    default_top_p: float = 1.0
    default_system_prompt: str = ""
    # How often a streaming reply's partial text is written to its row, for readers in other
    # processes and for a stopped reply. Live readers in this process see every token.
    stream_checkpoint_sec: float = 1.0
    # A turn waits at most this long for an earlier turn of its conversation to finish.
    turn_order_wait_sec: float = 900.0
    # Turns let through their steps before the LLM request at once, in arrival order, so that
    # in a burst the first to arrive is the first to the LLM (turns/start_order.py); 0: all.
    turn_start_concurrency: int = 4
    # Send a new message's LLM request as the turn is accepted, before its durable steps, and
    # let its LLM step adopt it (turns/head_start.py): in a burst, the first tokens come sooner.
    turn_head_start: bool = True
    # Serve on uvloop's event loop and uvicorn's httptools parser (web/event_loop.py): about an
    # eighth less CPU per token (docs/performance.md). FAST_IO=0: asyncio's loop and h11.
    fast_io: bool = True
    # Processes that run the turns, besides the web process (turns/worker_pool.py): past one
    # core's worth of turns and tokens (docs/performance.md#turn-workers-2026-12-01). 0: the
    # web process runs them itself; "auto": by the machine's cores (opt-in: operations.md).
    turn_workers: int = 0
    db_pool_max: int = 20
    # "user:password[,user2:password2]": one account each (required by --share unless
    # SHARE_INVITE is set); any of the SHARE_* accounts settings turns login on.
    share_auth: str = ""
    # "user[,user2]": the hosts, who see and steer everyone's data (default: the first
    # SHARE_AUTH user).
    share_admins: str = ""
    # An invite code: with it, a visitor can sign up with a name and password of their own.
    share_invite: str = ""
    # Text (or the path of a file with it) shown before first use; each person's acceptance is
    # recorded with its time.
    share_notice: str = ""
    # Per person: turns being generated at once, and turns accepted per minute.
    share_max_in_flight: int = 4
    share_max_turns_per_minute: int = 20
    # How long a browser session lasts without a new login.
    share_session_days: float = 14.0
    # Extra names the app is reached under ("chat.example.org,10.0.0.5"), besides loopback, the
    # listen address (or the machine's names when listening on 0.0.0.0) and the share tunnel.
    allowed_hosts: str = ""
    # Reverse proxies whose X-Forwarded-For is believed ("10.0.0.2"): behind one, every client
    # would otherwise share the proxy's address and its budget of failed logins.
    trusted_proxies: str = ""
    log_level: str = "INFO"
    dbos_log_level: str = "WARNING"

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def accounts_enabled(self) -> bool:
        """Login is required whenever accounts are configured, with or without --share."""
        return bool(self.share_auth or self.share_invite)

    @property
    def uses_local_llm(self) -> bool:
        return self.vllm_base_url is None

    @property
    def vllm_base_urls(self) -> list[str]:
        """VLLM_BASE_URL's servers in order (the first is the default); empty: the local model."""
        return server_urls(self.vllm_base_url)

    def redacted(self) -> dict[str, object]:
        """Settings safe to log: passwords in URLs and the API key are masked."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url" and value:
                value = mask_url(value)
            if f.name == "vllm_base_url" and value:
                value = ",".join(mask_url(u) for u in server_urls(value))
            if f.name == "llm_api_key":
                value = "***" if value and value != "EMPTY" else value
            if f.name in ("share_auth", "share_invite") and value:
                value = "***"
            out[f.name] = value
        return out


# One masking function for the whole app (secrets_mask.py); the old name stays for callers.
redact_url = mask_url


def _env_name(field_name: str) -> str:
    return field_name.upper()


# Extra names accepted for some settings, after the canonical one.
_ALIASES = {
    "llm_api_key": ("OPENAI_API_KEY",),
    "host": ("GRADIO_SERVER_NAME",),
}


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = None
) -> Settings:
    """Build Settings from `environ` (default os.environ) over the `.env` file (default ./.env).

    Empty values count as unset, so `VLLM_BASE_URL=` in .env means "use the local model".
    """
    environ = os.environ if environ is None else environ
    env_file = PROJECT_ROOT / ".env" if env_file is None else env_file
    file_values: dict[str, str | None] = {}
    if env_file.is_file():
        file_values = dotenv_values(env_file)

    def lookup(name: str) -> str | None:
        for source in (environ, file_values):
            value = source.get(name)
            if value is not None and value.strip() != "":
                return value.strip()
        return None

    values: dict[str, object] = {}
    defaults = Settings()
    for f in fields(Settings):
        raw = None
        for name in (_env_name(f.name),) + _ALIASES.get(f.name, ()):
            raw = lookup(name)
            if raw is not None:
                break
        if raw is None:
            continue
        values[f.name] = _parse(f.name, raw, getattr(defaults, f.name))

    settings = Settings(**values)  # type: ignore[arg-type]
    if not settings.executor_id:
        # Stable across restarts of the same process slot, distinct per port, so that two
        # processes on one database never recover (steal) each other's turns.
        settings = replace(settings, executor_id=f"{socket.gethostname()}-{settings.port}")
    _validate(settings)
    remember_secrets(secret_values(settings))
    return settings


def secret_values(settings: Settings) -> list[str]:
    """The values that are secret wherever they appear: the LLM API key, the SHARE_AUTH
    passwords and the credentials in the configured URLs (also as a driver may quote them,
    undecoded or misparsed). mask_secrets hides them in logs, error messages and pages."""
    passwords = [item.partition(":")[2].strip() for item in settings.share_auth.split(",")]
    return [settings.llm_api_key, *passwords, settings.share_invite,
            *url_credentials(settings.database_url),
            *(c for u in settings.vllm_base_urls for c in url_credentials(u))]


def server_urls(value: str | None) -> list[str]:
    """The comma-separated server URLs of VLLM_BASE_URL, each without a trailing slash. Split
    only where a URL starts after the comma: a comma inside a password stays in its URL (the
    piece before it would otherwise be shown, password and all, in the error about it)."""
    parts = re.split(r",(?=\s*[A-Za-z][A-Za-z0-9+.-]*://)", value or "")
    return [u.strip().rstrip("/") for u in parts if u.strip()]


def url_credentials(url: str | None) -> list[str]:
    """The secret part of a URL's user info: the password, or for an http(s) URL with only a
    user part, that part (`http://TOKEN@host` is how some servers take a key)."""
    if not url or "@" not in url.partition("://")[2].split("/", 1)[0]:
        return []
    userinfo = url.partition("://")[2].split("/", 1)[0].rsplit("@", 1)[0]
    user, sep, password = userinfo.partition(":")
    if sep:
        return [password]
    return [user] if url.lower().startswith(("http://", "https://")) else []


def auto_turn_workers(cores: int | None = None) -> int:
    """TURN_WORKERS=auto (what scripts/run.sh sets): none below 4 cores, where the web
    process, PostgreSQL and the LLM server's own process already share them and a worker
    would only add the relay's cost (docs/performance.md#turn-workers-2026-12-01); above,
    one per 4 cores, at most 8."""
    cores = cores or _usable_cores()
    return 0 if cores < 4 else min(cores // 4, 8)


def _usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _parse(name: str, raw: str, default: object) -> object:
    env = _env_name(name)
    if name == "turn_workers" and raw.lower() == "auto":
        return auto_turn_workers()
    if name in ("database_url", "vllm_base_url", "llm_model", "llm_context_tokens"):
        if name == "llm_context_tokens":
            return _parse_int(env, raw, minimum=256)
        return ",".join(server_urls(raw)) if name == "vllm_base_url" else raw
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return _parse_int(env, raw, minimum=0)
    if isinstance(default, float):
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{env} must be a number, got {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{env} must not be negative, got {raw!r}")
        return value
    if isinstance(default, Path):
        return Path(raw).expanduser().resolve()
    return raw


def _parse_int(env: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{env} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{env} must be at least {minimum}, got {value}")
    return value


def _validate(s: Settings) -> None:
    if not 0 < s.port < 65536:
        raise ConfigError(f"PORT must be between 1 and 65535, got {s.port}")
    if s.database_url is not None:
        scheme = urlsplit(s.database_url).scheme
        if scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
            raise ConfigError(
                f"DATABASE_URL must be a PostgreSQL URL (postgresql://user@host:5432/dbname), "
                f"got scheme {scheme!r}; unset it to use the embedded database"
            )
    if s.vllm_base_url is not None:
        urls = server_urls(s.vllm_base_url)
        if not urls:
            raise ConfigError("VLLM_BASE_URL names no server; write it as http://gpu-a:5000 or "
                              "http://gpu-a:5000,http://gpu-b:5000, or unset it to use the "
                              "local CPU model")
        for url in urls:
            _check_server_url("VLLM_BASE_URL", url)
        if len(set(urls)) != len(urls):
            raise ConfigError(f"VLLM_BASE_URL names a server twice ({_shown_url(','.join(urls))!r});"
                              " list each server once, or unset it to use the local CPU model")
    if s.llm_max_attempts < 1:
        raise ConfigError("LLM_MAX_ATTEMPTS must be at least 1")
    if s.turn_workers > MAX_TURN_WORKERS:
        raise ConfigError(f"TURN_WORKERS must be at most {MAX_TURN_WORKERS} (one per core is "
                          f"plenty), got {s.turn_workers}")
    if s.turn_start_concurrency < 0:
        raise ConfigError("TURN_START_CONCURRENCY must be 0 (no limit) or more")
    if s.llm_max_concurrency < 1:
        raise ConfigError("LLM_MAX_CONCURRENCY must be at least 1")
    if s.max_message_chars < 1:
        raise ConfigError("MAX_MESSAGE_CHARS must be at least 1")
    if s.stream_checkpoint_sec <= 0:
        raise ConfigError("STREAM_CHECKPOINT_SEC must be greater than 0")


def _check_server_url(env: str, url: str) -> None:
    """An LLM server URL the HTTP client can use: checked here, because the client would
    otherwise fail later with a long traceback and no word on which setting is wrong. Messages
    show the URL masked (a password in it stays hidden)."""
    shown = _shown_url(url)
    fix = "; unset it to use the local CPU model"
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ConfigError(f"{env} must not contain spaces or control characters, got "
                          f"{shown!r}; write it as http://host:5000{fix}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise ConfigError(f"{env} is not a valid URL ({exc}){fix}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{env} must look like http://host:5000, got {shown!r}{fix}")
    host_port = parts.netloc.rpartition("@")[2]
    if not parts.hostname:
        raise ConfigError(f"{env} names no host, got {shown!r}; write it as "
                          f"http://host:5000{fix}")
    port_sep, port = host_port.rpartition("]")[2].partition(":")[1:]
    if port_sep and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"{env} {shown!r} has port {port!r}; the port must be a number "
                          f"from 1 to 65535, as in http://host:5000{fix}")


def _shown_url(url: str) -> str:
    """A malformed URL as an error message may show it: each comma-separated item masked
    (mask_url), and the user part before an "@" hidden also where the scheme is missing and
    mask_url sees no URL (`user:password@host:5000`)."""
    items = []
    for item in server_urls(url) or [url]:
        shown = mask_url(item)
        if "@" in shown and "://" not in shown:
            shown = f"{MASK}@{shown.rpartition('@')[2]}"
        items.append(shown)
    return ",".join(items)


def settings_field_names() -> list[str]:
    """Environment variable names understood by load_settings, for the README and --help."""
    return [_env_name(f.name) for f in fields(Settings)]


__all__ = ["Settings", "ConfigError", "load_settings", "redact_url", "PROJECT_ROOT"]
