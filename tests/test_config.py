"""Settings: the seed's variables, .env files, defaults, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_core.config import ConfigError, auto_turn_workers, load_settings, redact_url


def test_defaults_need_nothing(tmp_path: Path) -> None:
    s = load_settings({}, env_file=tmp_path / "missing.env")
    assert s.uses_embedded_database and s.uses_local_llm
    assert s.port == 8080
    assert s.executor_id.endswith("-8080")


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=postgresql://u@db:5432/chat_app\nPORT=9000\n"
                        "VLLM_BASE_URL=http://gpu:5000/\nLLM_MODEL=from-file\n")
    s = load_settings({"PORT": "9100"}, env_file=env_file)
    assert s.database_url == "postgresql://u@db:5432/chat_app"
    assert s.port == 9100
    assert s.vllm_base_url == "http://gpu:5000"
    assert s.llm_model == "from-file"


def test_empty_value_means_unset(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("VLLM_BASE_URL=\n")
    assert load_settings({"DATABASE_URL": "  "}, env_file=env_file).uses_local_llm
    assert load_settings({"DATABASE_URL": "  "}, env_file=env_file).uses_embedded_database


@pytest.mark.parametrize("env,words", [
    ({"PORT": "abc"}, "PORT must be a whole number"),
    ({"PORT": "70000"}, "PORT must be between"),
    ({"DATABASE_URL": "mysql://x"}, "PostgreSQL URL"),
    ({"VLLM_BASE_URL": "localhost:5000"}, "http://host:5000"),
    ({"LLM_MAX_ATTEMPTS": "0"}, "LLM_MAX_ATTEMPTS"),
    ({"LLM_RETRY_INTERVAL_SEC": "soon"}, "must be a number"),
    ({"STREAM_CHECKPOINT_SEC": "0"}, "greater than 0"),
])
def test_bad_values_name_the_variable(tmp_path: Path, env: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_settings(env, env_file=tmp_path / "missing.env")


def test_passwords_never_appear_in_redacted_settings(tmp_path: Path) -> None:
    s = load_settings({"DATABASE_URL": "postgresql://app:s3cret@db:5432/chat",
                       "LLM_API_KEY": "sk-very-secret"}, env_file=tmp_path / "x.env")
    text = repr(s.redacted())
    assert "s3cret" not in text and "sk-very-secret" not in text
    assert "postgresql://app:***@db:5432/chat" in text
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize("url,words", [
    ("http://gpu-box:50x0", "port '50x0'; the port must be a number from 1 to 65535"),
    ("http://gpu-box:0", "port '0'"),
    ("http://gpu-box:65536", "port '65536'"),
    ("http://gpu-box:٥٠٠٠", "port"),  # digits, but not ASCII ones
    ("http://gpu box:5000", "must not contain spaces"),
    ("http://gpu-box:5000/v 1", "must not contain spaces"),
    ("http://gpu-box:5000/v1\x7f", "control characters"),
    ("ftp://gpu-box:5000", "must look like http://host:5000"),
    ("http://:5000", "names no host"),
    ("http://[::1:5000", "not a valid URL"),
    ("http://gpu-a:5000,http://gpu-a:5000/", "names a server twice"),
    ("http://gpu-a:5000,ftp://gpu-b:5000", "must look like http://host:5000"),
])
def test_malformed_llm_url_is_a_settings_error(tmp_path: Path, url: str, words: str) -> None:
    """A VLLM_BASE_URL the HTTP client cannot use is reported at start-up, with the fix,
    instead of a traceback from the client at the first request."""
    with pytest.raises(ConfigError) as error:
        load_settings({"VLLM_BASE_URL": url}, env_file=tmp_path / "missing.env")
    assert words in str(error.value)
    assert str(error.value).startswith("VLLM_BASE_URL ")
    assert "\n" not in str(error.value)
    assert "local CPU model" in str(error.value) or "single URL" in str(error.value)


@pytest.mark.parametrize("url", ["http://gpu-box:5000", "https://gpu-box/v1", "http://[::1]:8000",
                                 "http://10.0.0.5:5000/v1/", "HTTP://Gpu-Box:1"])
def test_well_formed_llm_urls_are_accepted(tmp_path: Path, url: str) -> None:
    assert load_settings({"VLLM_BASE_URL": url}, env_file=tmp_path / "missing.env"
                         ).vllm_base_url == url.rstrip("/")


def test_llm_url_error_hides_the_password(tmp_path: Path) -> None:
    for url in ("http://user:s3cret-pw@gpu-box:50x0", "http://user:s3cret-pw@gpu box:5000",
                "http://s3cret-pw@gpu-box:50x0", "user:s3cret-pw@gpu-box:5000",
                "http://u:s3cret-pw@gpu-a:5000,http://u:s3cret-pw@gpu-b:50x0"):
        with pytest.raises(ConfigError) as error:
            load_settings({"VLLM_BASE_URL": url}, env_file=tmp_path / "missing.env")
        assert "s3cret-pw" not in str(error.value) and "***" in str(error.value)


def test_a_comma_in_a_server_password_stays_in_its_url_and_is_never_shown(tmp_path: Path) -> None:
    """Only a comma before a URL separates servers: a password holding one is not cut in two,
    and a URL that is wrong for another reason is shown with its password masked."""
    settings = load_settings({"VLLM_BASE_URL": "http://alice:s3cr,et@gpu-b:5000,https://c"},
                             env_file=tmp_path / "missing.env")
    assert settings.vllm_base_url == "http://alice:s3cr,et@gpu-b:5000,https://c"
    with pytest.raises(ConfigError) as error:
        load_settings({"VLLM_BASE_URL": "http://alice:longsecret,@gpu-b:50x0"},
                      env_file=tmp_path / "missing.env")
    assert "longsecret" not in str(error.value) and "50x0" in str(error.value)


def test_turn_workers_auto_follows_the_cores_and_bad_values_are_refused(tmp_path: Path) -> None:
    assert [auto_turn_workers(c) for c in (1, 2, 3, 4, 8, 16, 64)] == [0, 0, 0, 1, 2, 4, 8]
    missing = tmp_path / "missing.env"
    assert load_settings({}, env_file=missing).turn_workers == 0  # python app.py: in-process
    assert load_settings({"TURN_WORKERS": "AUTO"}, env_file=missing).turn_workers == \
        auto_turn_workers()
    for bad, words in (("two", "whole number"), ("-1", "at least 0"), ("65", "at most 64")):
        with pytest.raises(ConfigError, match=words):
            load_settings({"TURN_WORKERS": bad}, env_file=missing)
