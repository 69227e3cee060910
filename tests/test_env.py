"""Settings from the environment: strict readers, and a loud failure when something is missing."""

from __future__ import annotations

import subprocess

import pytest
from django.core.exceptions import ImproperlyConfigured
from factories import settings_run

from lipsync_site.env import envbool, envint, envlist, envstr, envurl

NAME = "STUDIO_TEST_VARIABLE"


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)

    def set_value(value: str) -> None:
        monkeypatch.setenv(NAME, value)

    return set_value


class TestEnvstr:
    def test_unset_or_blank_gives_the_default(self, env):
        assert envstr(NAME, "fallback") == "fallback"
        env("   ")
        assert envstr(NAME, "fallback") == "fallback"
        assert envstr(NAME) is None

    def test_a_value_is_trimmed(self, env):
        env("  hello ")
        assert envstr(NAME) == "hello"


class TestEnvbool:
    @pytest.mark.parametrize("value", ["1", "true", "True", "YES", "on", " on "])
    def test_true_values(self, env, value):
        env(value)
        assert envbool(NAME, False) is True

    @pytest.mark.parametrize("value", ["0", "false", "FALSE", "no", "off"])
    def test_false_values(self, env, value):
        env(value)
        assert envbool(NAME, True) is False

    @pytest.mark.parametrize("default", [True, False])
    def test_unset_or_empty_gives_the_default(self, env, default):
        assert envbool(NAME, default) is default
        env("")
        assert envbool(NAME, default) is default

    @pytest.mark.parametrize("value", ["maybe", "2", "y", "enabled", "tru"])
    def test_anything_else_stops_start_up_naming_the_variable(self, env, value):
        env(value)
        with pytest.raises(ImproperlyConfigured, match=NAME):
            envbool(NAME, False)


class TestEnvint:
    def test_a_whole_number(self, env):
        env("42")
        assert envint(NAME, 1) == 42

    def test_unset_gives_the_default(self, env):
        assert envint(NAME, 7) == 7

    def test_a_negative_number_is_fine_without_a_minimum(self, env):
        env("-3")
        assert envint(NAME, 1) == -3

    @pytest.mark.parametrize("value", ["1.5", "ten", "5s", "0x10"])
    def test_a_value_that_is_not_a_whole_number_stops_start_up(self, env, value):
        env(value)
        with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be a whole number"):
            envint(NAME, 1)

    def test_a_value_below_the_minimum_stops_start_up(self, env):
        env("0")
        with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be at least 1"):
            envint(NAME, 5, minimum=1)

    def test_the_minimum_itself_is_accepted(self, env):
        env("1")
        assert envint(NAME, 5, minimum=1) == 1


class TestEnvlist:
    def test_a_comma_separated_list_is_split_and_trimmed(self, env):
        env(" example.com, www.example.com,,localhost ")
        assert envlist(NAME, []) == ["example.com", "www.example.com", "localhost"]

    def test_unset_gives_the_default(self, env):
        assert envlist(NAME, ["a"]) == ["a"]

    def test_a_single_value(self, env):
        env("example.com")
        assert envlist(NAME, []) == ["example.com"]


class TestEnvurl:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("https://api-singapore.klingai.com", "https://api-singapore.klingai.com"),
            ("https://reseller.example/kling/", "https://reseller.example/kling"),
            ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ],
    )
    def test_an_http_url_loses_its_trailing_slash(self, env, value, expected):
        env(value)
        assert envurl(NAME) == expected

    def test_unset_gives_the_default_or_none(self, env):
        assert envurl(NAME) is None
        assert envurl(NAME, "https://example.com/") == "https://example.com"

    @pytest.mark.parametrize(
        "value",
        ["ftp://example.com", "example.com", "http://", "https:/example.com", "javascript:x"],
    )
    def test_anything_but_an_http_url_stops_start_up(self, env, value):
        env(value)
        with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be an http"):
            envurl(NAME)


def import_settings(**variables: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with only ``variables`` set."""
    return settings_run(**variables)


class TestImportingTheSettings:
    def test_without_a_secret_key_and_debug_off_it_fails_loudly(self):
        result = import_settings(ALLOWED_HOSTS="example.com")

        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr
        assert "SECRET_KEY must be set" in result.stderr

    def test_debug_off_explicitly_without_a_secret_key_fails_too(self):
        result = import_settings(DEBUG="0", ALLOWED_HOSTS="example.com")
        assert "SECRET_KEY must be set" in result.stderr

    def test_without_allowed_hosts_and_debug_off_it_fails_loudly(self):
        result = import_settings(SECRET_KEY="s3cret")

        assert result.returncode != 0
        assert "ALLOWED_HOSTS must be set" in result.stderr

    def test_a_malformed_value_stops_it_and_names_the_variable(self):
        result = import_settings(
            SECRET_KEY="s3cret", ALLOWED_HOSTS="example.com", KLING_READ_TIMEOUT="soon"
        )

        assert result.returncode != 0
        assert "KLING_READ_TIMEOUT must be a whole number" in result.stderr

    def test_an_access_key_without_its_secret_stops_it(self):
        result = import_settings(
            SECRET_KEY="s3cret", ALLOWED_HOSTS="example.com", KLING_ACCESS_KEY="ak"
        )

        assert result.returncode != 0
        assert "KLING_ACCESS_KEY and KLING_SECRET_KEY must be set together" in result.stderr

    def test_with_debug_on_it_imports_with_a_development_key(self):
        result = import_settings(DEBUG="1")
        assert result.returncode == 0, result.stderr

    def test_with_the_required_values_it_imports(self):
        result = import_settings(SECRET_KEY="s3cret", ALLOWED_HOSTS="example.com")
        assert result.returncode == 0, result.stderr

    def test_live_mode_refuses_the_built_in_development_key(self):
        result = import_settings(DEBUG="1", KLING_API_KEY="sk-live")

        assert result.returncode != 0
        assert "Live Kling mode needs its own SECRET_KEY" in result.stderr
        assert "sk-live" not in result.stderr

    def test_live_mode_with_its_own_key_imports(self):
        result = import_settings(DEBUG="1", SECRET_KEY="s3cret", KLING_API_KEY="sk-live")
        assert result.returncode == 0, result.stderr

    def test_a_live_base_url_over_plain_http_is_refused(self):
        live = {"SECRET_KEY": "s3cret", "ALLOWED_HOSTS": "example.com", "KLING_API_KEY": "sk"}

        refused = import_settings(**live, KLING_API_BASE_URL="http://kling.example")
        allowed = import_settings(
            **live, KLING_API_BASE_URL="http://127.0.0.1:9", KLING_ALLOW_HTTP="1"
        )

        assert refused.returncode != 0
        assert "KLING_API_BASE_URL must start with https://" in refused.stderr
        assert allowed.returncode == 0, allowed.stderr
