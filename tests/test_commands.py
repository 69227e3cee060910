"""The management commands: checking the Kling connection, and making the demo account."""

from __future__ import annotations

import io
import socket

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from tasks_app.models import Team


def run(name: str, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def check_fails() -> str:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("kling_check", stdout=out, stderr=err)
    text = str(failure.value)
    assert out.getvalue() == ""
    return text + err.getvalue()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestKlingCheck:
    def test_it_says_ok_with_the_base_url_and_the_api_key_mode(self, start_kling, settings):
        kling = start_kling(api_key="sk-live-check-1234")

        out, _err = run("kling_check")

        assert out.startswith("OK: ")
        assert kling.api_url in out
        assert "api-key auth" in out
        assert "sk-live-check-1234" not in out
        assert kling.list_count == 1

    def test_it_says_ok_with_the_access_key_mode(self, start_kling, settings):
        kling = start_kling(
            api_key=None,
            access_key="ak-check",
            secret_key="secret-check-5678-long-enough-for-hs256",
        )
        settings.KLING_ACCESS_KEY = "ak-check"
        settings.KLING_SECRET_KEY = "secret-check-5678-long-enough-for-hs256"

        out, _err = run("kling_check")

        assert "OK: " in out
        assert "access-key auth" in out
        assert "secret-check-5678-long-enough-for-hs256" not in out
        assert [r.auth for r in kling.requests] == ["jwt"]

    def test_it_says_so_in_demo_mode(self, start_kling, settings):
        start_kling()
        settings.KLING_DEMO = True
        out, _err = run("kling_check")
        assert "demo mode" in out

    def test_a_wrong_key_fails_and_says_to_check_the_key(self, start_kling, settings):
        start_kling(api_key="the-right-key")
        settings.KLING_API_KEY = "sk-wrong-key-9876"

        message = check_fails()

        assert "the key was refused" in message
        assert "KLING_API_KEY" in message
        assert "sk-wrong-key-9876" not in message

    def test_a_wrong_secret_fails_and_never_shows_it(self, start_kling, settings):
        start_kling(
            api_key=None, access_key="ak-check", secret_key="the-right-secret-long-enough-for-hs256"
        )
        settings.KLING_ACCESS_KEY = "ak-check"
        settings.KLING_SECRET_KEY = "wrong-secret-4321-long-enough-for-hs256!"

        message = check_fails()

        assert "the key was refused" in message
        assert "access-key" in message
        assert "wrong-secret-4321-long-enough-for-hs256!" not in message

    def test_an_unreachable_host_fails_and_says_so(self, settings):
        settings.KLING_API_BASE_URL = f"http://127.0.0.1:{closed_port()}"
        settings.KLING_API_KEY = "sk-unreachable-1111"
        settings.KLING_CONNECT_TIMEOUT = 1

        message = check_fails()

        assert "could not be reached" in message
        assert settings.KLING_API_BASE_URL in message
        assert "sk-unreachable-1111" not in message

    def test_a_wrong_base_url_fails_and_says_to_check_it(self, start_kling, settings):
        kling = start_kling(api_key="sk-path-2222")
        settings.KLING_API_BASE_URL = kling.url + "/wrong"

        message = check_fails()

        assert "endpoint was not found" in message
        assert "KLING_API_BASE_URL" in message
        assert "sk-path-2222" not in message

    def test_a_base_url_that_answers_garbage_fails_and_says_so(self, start_kling, settings):
        kling = start_kling(api_key="sk-garbage-3333")
        kling.inject_raw("GET", "/lip-sync", body=b"<html>Welcome to nginx</html>", http_status=200)

        message = check_fails()

        assert "not Kling's" in message
        assert "sk-garbage-3333" not in message


class TestDemoSetup:
    def test_it_makes_the_demo_account_and_prints_the_login(self, db):
        out, _err = run("demo_setup")

        demo = get_user_model().objects.get(username="demo")
        assert demo.check_password("lipsync-demo")
        assert "Log in as 'demo' with password 'lipsync-demo'" in out
        assert "http://127.0.0.1:8000/" in out

    def test_running_it_again_makes_no_second_account(self, db):
        run("demo_setup")
        out, _err = run("demo_setup", "--port", "9000")

        demo = get_user_model().objects.get(username="demo")
        assert demo.memberships.count() == 1
        assert Team.objects.count() == 1
        assert "'demo'" in out
        assert "http://127.0.0.1:9000/" in out

    def test_in_live_mode_it_makes_no_account_and_says_how_to_make_one(self, db, settings):
        settings.KLING_DEMO = False

        out, _err = run("demo_setup")

        assert not get_user_model().objects.exists()
        assert "lipsync-demo" not in out
        assert "manage.py createsuperuser" in out
        assert "live Kling" in out

    def test_it_does_not_reset_a_changed_password(self, db):
        run("demo_setup")
        demo = get_user_model().objects.get(username="demo")
        demo.set_password("my own password")
        demo.save()

        out, _err = run("demo_setup")

        demo.refresh_from_db()
        assert demo.check_password("my own password")
        assert "unless you changed it" in out
