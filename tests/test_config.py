"""Settings: the seed's variables, .env files, defaults, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_core.config import ConfigError, load_settings, redact_url


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
