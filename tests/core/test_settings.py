"""Configuration from the environment: defaults, every bad variable named at once, keys checked."""

from __future__ import annotations

import pytest

from knock_mcp.errors import ConfigurationError
from knock_mcp.settings import (
    DEFAULT_ATTEMPT_TIMEOUT,
    DEFAULT_BASE_URL,
    DEFAULT_CALL_DEADLINE,
    DEFAULT_MAX_RETRIES,
    load_settings,
)


def test_defaults_without_a_key() -> None:
    settings = load_settings({})
    assert settings.api_key is None
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.branch is None
    assert settings.attempt_timeout == DEFAULT_ATTEMPT_TIMEOUT
    assert settings.max_retries == DEFAULT_MAX_RETRIES
    assert settings.call_deadline == DEFAULT_CALL_DEADLINE


def test_every_variable_is_read() -> None:
    settings = load_settings(
        {
            "KNOCK_API_KEY": " sk_test_abc\n",
            "KNOCK_BASE_URL": "https://proxy.example.com/knock/",
            "KNOCK_BRANCH": "feature-x",
            "KNOCK_TIMEOUT": "7.5",
            "KNOCK_MAX_RETRIES": "0",
            "KNOCK_MCP_CALL_DEADLINE": "20",
        }
    )
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "sk_test_abc"
    assert settings.base_url == "https://proxy.example.com/knock"
    assert settings.branch == "feature-x"
    assert settings.attempt_timeout == 7.5
    assert settings.max_retries == 0
    assert settings.call_deadline == 20


def test_the_key_is_never_in_the_settings_repr() -> None:
    settings = load_settings({"KNOCK_API_KEY": "sk_test_topsecret"})
    assert "sk_test_topsecret" not in repr(settings)
    assert "sk_test_topsecret" not in str(settings)


def test_a_public_key_asks_for_a_secret_key() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({"KNOCK_API_KEY": "pk_test_public"})
    message = str(raised.value)
    assert "KNOCK_API_KEY" in message
    assert "secret key (sk_...)" in message
    assert "pk_test_public" not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KNOCK_BASE_URL", "api.knock.app"),
        ("KNOCK_BASE_URL", "ftp://api.knock.app"),
        ("KNOCK_BASE_URL", "http://api.knock.app"),
        ("KNOCK_BASE_URL", "https://user:pass@api.knock.app"),
        ("KNOCK_BASE_URL", "https://api.knock.app/?x=1"),
        ("KNOCK_TIMEOUT", "soon"),
        ("KNOCK_TIMEOUT", "0"),
        ("KNOCK_TIMEOUT", "nan"),
        ("KNOCK_MAX_RETRIES", "-1"),
        ("KNOCK_MAX_RETRIES", "2.5"),
        ("KNOCK_MAX_RETRIES", "99"),
        ("KNOCK_MCP_CALL_DEADLINE", "forever"),
        ("KNOCK_API_KEY", "sk_test abc"),
        ("KNOCK_API_KEY", "sk_test_abc\u200b"),
        ("KNOCK_API_KEY", "\ufeffsk_test_abc"),
        ("KNOCK_BRANCH", "feature\u00e9"),
        ("KNOCK_BRANCH", "two words"),
        ("KNOCK_BASE_URL", "http://localhost:99999"),
    ],
)
def test_a_bad_value_is_named(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({variable: value})
    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith(variable)
    if variable == "KNOCK_API_KEY":
        assert value.strip() not in str(raised.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1234/", "http://[::1]:9000"])
def test_plain_http_is_allowed_on_loopback_only(url: str) -> None:
    assert load_settings({"KNOCK_BASE_URL": url}).base_url == url.rstrip("/")


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({"KNOCK_API_KEY": "pk_live_x", "KNOCK_TIMEOUT": "x", "KNOCK_MAX_RETRIES": "y"})
    named = [problem.split()[0] for problem in raised.value.problems]
    assert named == ["KNOCK_API_KEY", "KNOCK_TIMEOUT", "KNOCK_MAX_RETRIES"]
