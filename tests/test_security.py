"""Deployment checks, security headers, no inline code, rate limits, and secrets kept secret."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from html.parser import HTMLParser

import httpx
import jwt
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.template.loader import render_to_string
from django.test import Client
from django.urls import resolve, reverse
from django.utils import timezone
from django.views.debug import ExceptionReporter
from django_tasks_db.models import DBTaskResult
from factories import PASSWORD, TEXT_FORM, make_job

from tasks_app.kling import (
    JwtAuth,
    KlingClient,
    KlingError,
    LipSyncRequest,
    TextSpeech,
    VideoSource,
)
from tasks_app.kling_setup import kling_client
from tasks_app.models import Job, JobEvent, JobStatus

pytestmark = pytest.mark.django_db


# --- manage.py check --deploy -------------------------------------------------------------------

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "q8#Vz!2mR@x7$Lp9&Kd4*Wn6^Tb1(Hs3)Jf5_Gc0+Ye8=Ua2-Mi7~Oe4|Rt9",
    "ALLOWED_HOSTS": "studio.example.com",
    "BEHIND_TLS_PROXY": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_PRELOAD": "1",
}


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the deploy checks in a fresh process that sees only ``env`` (and PATH)."""
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=django_settings.BASE_DIR,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestTheDeployChecks:
    def test_production_settings_pass_every_deploy_check(self):
        assert len(PRODUCTION_ENV["SECRET_KEY"]) >= 50

        result = check_deploy(PRODUCTION_ENV)

        assert result.returncode == 0, result.stdout + result.stderr
        assert "System check identified no issues (0 silenced)." in result.stdout

    def test_the_check_does_fail_when_hsts_is_left_off(self):
        env = {k: v for k, v in PRODUCTION_ENV.items() if not k.startswith("SECURE_HSTS")}

        result = check_deploy(env)

        assert result.returncode != 0
        assert "security.W004" in result.stdout + result.stderr


# --- Headers and inline code ---------------------------------------------------------------------


class PageScanner(HTMLParser):
    """Finds code in a page that a strict Content-Security-Policy would block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.scripts = 0
        self._script: dict | None = None
        self._body: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        for name, value in attributes.items():
            if name.startswith(("on", "hx-on")):
                self.problems.append(f"<{tag} {name}=...> (inline event handler)")
            is_link = name in ("href", "src", "action", "formaction")
            if is_link and (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag == "script":
            self.scripts += 1
            self._script, self._body = attributes, []

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._body.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag != "script" or self._script is None:
            return
        body = "".join(self._body).strip()
        if self._script.get("src"):
            if body:
                self.problems.append("a <script src> with code inside")
        elif self._script.get("type") != "application/json":
            self.problems.append(f"inline <script>: {body[:80]!r}")
        self._script = None


def inline_code(page: str) -> list[str]:
    scanner = PageScanner()
    scanner.feed(page)
    scanner.close()
    return scanner.problems


def assert_security_headers(response) -> None:
    policy = response.headers["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in policy
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.fixture
def jobs_in_every_state(user, kling, run_job, worker):
    done = run_job(make_job(user, text="Done <b>bold</b>"))
    failed = run_job(make_job(user, video_id="noface123"))
    pending = make_job(user)
    assert (done.status, failed.status) == (JobStatus.SUCCEEDED, JobStatus.FAILED)
    return {"done": done, "failed": failed, "pending": pending}


class TestPagesAreSafeToServe:
    def test_every_page_has_the_headers_and_no_inline_code(self, alice, jobs_in_every_state):
        done, failed, pending = (jobs_in_every_state[k] for k in ("done", "failed", "pending"))
        pages = {  # name: (url, the status it answers)
            "history": (reverse("tasks:list"), 200),
            "history, filtered": (reverse("tasks:list") + "?status=failed&q=%3Cscript%3E", 200),
            "new job": (reverse("tasks:create"), 200),
            "new job from a failed one": (reverse("tasks:create") + f"?from={failed.pk}", 200),
            "finished job": (done.get_absolute_url(), 200),
            "failed job": (failed.get_absolute_url(), 200),
            "waiting job": (pending.get_absolute_url(), 200),
            "account": (reverse("account"), 200),
            "password change": (reverse("password_change"), 200),
            "not found": ("/tasks/999999/", 404),
        }
        for name, (url, status) in pages.items():
            response = alice.get(url)
            assert response.status_code == status, name
            assert_security_headers(response)
            assert inline_code(response.content.decode()) == [], name

        # A finished job's poll answers 286, htmx's "stop polling".
        for job, status in ((done, 286), (failed, 286), (pending, 200)):
            poll = alice.get(job.get_absolute_url(), headers={"HX-Request": "true"})
            assert poll.status_code == status, job.status
            assert_security_headers(poll)
            assert inline_code(poll.content.decode()) == []
        live = alice.get(reverse("tasks:live") + f"?id={pending.pk}")
        assert live.status_code == 200
        assert inline_code(live.content.decode()) == []

    def test_a_form_with_errors_has_no_inline_code(self, alice, kling):
        response = alice.post(
            reverse("tasks:create"), TEXT_FORM | {"text": "<script>x</script>" * 9}
        )

        assert response.status_code == 400
        assert_security_headers(response)
        assert inline_code(response.content.decode()) == []

    def test_the_login_and_error_pages_have_no_inline_code(self, client):
        login = client.get(reverse("login"))

        assert_security_headers(login)
        assert inline_code(login.content.decode()) == []
        assert inline_code(render_to_string("500.html")) == []
        assert inline_code(render_to_string("404.html")) == []

    def test_the_admin_pages_have_the_policy_and_no_inline_code(self, client, jobs_in_every_state):
        login = client.get(reverse("admin:login"))
        assert login.status_code == 200
        assert_security_headers(login)
        assert inline_code(login.content.decode()) == []
        root = get_user_model().objects.create_superuser("root", password=PASSWORD)
        client.force_login(root)
        done = jobs_in_every_state["done"]
        pages = [
            reverse("admin:index"),
            reverse("admin:tasks_app_job_changelist"),
            reverse("admin:tasks_app_job_change", args=[done.pk]),
            reverse("admin:tasks_app_team_add"),
        ]
        for url in pages:
            response = client.get(url)
            assert response.status_code == 200, url
            assert_security_headers(response)
            assert inline_code(response.content.decode()) == [], url

    def test_the_scanner_does_catch_inline_code(self):
        assert inline_code("<script>alert(1)</script>")
        assert inline_code('<a href="javascript:alert(1)">x</a>')
        assert inline_code('<button onclick="go()">x</button>')
        assert inline_code('<script src="/a.js">alert(1)</script>')
        assert not inline_code('<script src="/a.js" defer></script>')
        assert not inline_code('<script type="application/json">{"a": 1}</script>')


# --- Log-in rate limiting ----------------------------------------------------------------------

TOO_MANY = "Too many failed log-ins for this account or from this address"


def log_in(client: Client, username: str, password: str, path: str | None = None, **headers):
    data = {"username": username, "password": password}
    return client.post(path or reverse("login"), data, **headers)


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def assert_paused(response) -> None:
    body = response.content.decode()
    assert response.status_code == 429
    assert TOO_MANY in body
    assert "paused for 15 minutes" in body
    assert "Try again after" in body


class TestLogInRateLimiting:
    def test_after_five_failures_even_the_right_password_is_refused_kindly(self, client, user):
        for _ in range(4):
            response = log_in(client, "alice", "wrong password")
            assert response.status_code == 200
            assert TOO_MANY not in response.content.decode()
        assert_paused(log_in(client, "alice", "wrong password"))  # the fifth

        response = log_in(client, "alice", PASSWORD)

        assert_paused(response)
        assert not is_logged_in(client)

    @pytest.mark.parametrize(
        "names",
        [
            ("alice", "ALICE", "Alice", "aLiCe", "alicE"),
            # Full-width and mathematical letters that Django's NFKC turns into "alice".
            ("\uff41lice", "\U0001d41alice", "\uff41lice", "\U0001d41alice", "\uff41lice"),
        ],
    )
    def test_the_account_is_counted_however_its_name_is_written(self, client, user, names):
        for name in names:
            log_in(client, name, "wrong password")

        response = log_in(client, "alice", PASSWORD)

        assert_paused(response)
        assert not is_logged_in(client)

    def test_a_success_clears_no_failure(self, client, user, teammate):
        for _ in range(4):
            log_in(client, "alice", "wrong password")
        # The guesser logs in to their own account from the same address...
        assert log_in(client, "carol", PASSWORD).status_code == 302
        client.post(reverse("logout"))

        # ...which must not buy them more guesses at Alice's.
        log_in(client, "alice", "wrong password")
        response = log_in(client, "alice", PASSWORD)

        assert_paused(response)
        assert not is_logged_in(client)

    def test_failures_for_someone_else_do_not_lock_this_account(self, client, user, teammate):
        for _ in range(5):
            log_in(client, "carol", "wrong password")

        assert log_in(client, "alice", PASSWORD).status_code == 302

    def test_one_address_guessing_many_accounts_is_stopped(self, client, user, settings):
        settings.LOGIN_FAILURES_PER_IP = 3
        for name in ("dave", "erin", "frank"):
            log_in(client, name, "guess")

        response = log_in(client, "alice", PASSWORD)

        assert_paused(response)
        assert not is_logged_in(client)

    def test_another_address_is_not_stopped_by_the_first_ones_guesses(self, client, user, settings):
        settings.LOGIN_FAILURES_PER_IP = 3
        for name in ("dave", "erin", "frank"):
            log_in(client, name, "guess", REMOTE_ADDR="192.0.2.7")

        assert log_in(client, "alice", PASSWORD, REMOTE_ADDR="192.0.2.8").status_code == 302

    def test_the_admin_log_in_is_guarded_too(self, client, db):
        get_user_model().objects.create_superuser("root", password=PASSWORD)
        admin_login = reverse("admin:login")
        for _ in range(4):
            assert log_in(client, "root", "wrong", admin_login).status_code == 200
        assert_paused(log_in(client, "root", "wrong", admin_login))

        response = log_in(client, "root", PASSWORD, admin_login)

        assert_paused(response)
        assert not is_logged_in(client)


class TestTheClientAddressBehindProxies:
    """Which address the per-address limit counts: ``TRUSTED_PROXY_COUNT``."""

    def guess_three_times_from(self, client, forwarded_for: str) -> None:
        for name in ("dave", "erin", "frank"):
            log_in(client, name, "guess", HTTP_X_FORWARDED_FOR=forwarded_for)

    def test_without_proxies_a_forged_header_does_not_escape_the_limit(
        self, client, user, settings
    ):
        settings.LOGIN_FAILURES_PER_IP = 3
        self.guess_three_times_from(client, "198.51.100.1")

        response = log_in(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.2")

        assert_paused(response)

    def test_behind_one_proxy_each_client_has_its_own_limit(self, client, user, settings):
        # As settings.py sets them for TRUSTED_PROXY_COUNT=1.
        settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
        settings.AXES_IPWARE_PROXY_COUNT = 0
        settings.IPWARE_STRICT = False
        settings.LOGIN_FAILURES_PER_IP = 3
        self.guess_three_times_from(client, "198.51.100.1")

        other = log_in(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.2")
        assert other.status_code == 302
        client.post(reverse("logout"))
        # What the client puts before the proxy's entry is not believed.
        same = log_in(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.5, 198.51.100.1")
        assert_paused(same)


class TestPasswordReset:
    def test_without_real_e_mail_it_is_not_offered(self, client, user):
        assert client.get(reverse("password_reset")).status_code == 404
        assert client.post(reverse("password_reset"), {"email": "a@example.com"}).status_code == 404
        assert "Forgot your password?" not in client.get(reverse("login")).content.decode()

    def test_with_e_mail_it_sends_a_link_a_few_times_an_hour(
        self, client, user, settings, mailoutbox
    ):
        settings.PASSWORD_RESET_ENABLED = True
        settings.PASSWORD_RESETS_PER_HOUR = 2
        user.email = "alice@example.com"
        user.save()
        assert "Forgot your password?" in client.get(reverse("login")).content.decode()

        answers = [
            client.post(reverse("password_reset"), {"email": "ALICE@example.com"}) for _ in range(3)
        ]

        assert [a.status_code for a in answers] == [302, 302, 200]
        assert "Too many reset requests" in answers[2].content.decode()
        assert len(mailoutbox) == 2
        assert "/accounts/reset/" in mailoutbox[0].body

    def test_one_client_cannot_probe_many_addresses(self, client, user, settings, mailoutbox):
        settings.PASSWORD_RESET_ENABLED = True
        settings.PASSWORD_RESETS_PER_HOUR = 2
        answers = [
            client.post(reverse("password_reset"), {"email": f"guess{n}@example.com"})
            for n in range(3)
        ]

        assert [a.status_code for a in answers] == [302, 302, 200]


# --- The per-person submission limit -------------------------------------------------------------


class TestSubmissionRateLimit:
    def test_one_too_many_gets_a_friendly_message_and_keeps_the_input(
        self, alice, kling, settings, worker
    ):
        settings.SUBMISSIONS_PER_MINUTE = 2
        for i in range(2):
            data = TEXT_FORM | {"text": f"Line {i}"}
            assert alice.post(reverse("tasks:create"), data).status_code == 302

        data = TEXT_FORM | {"text": "One line too many", "voice_id": "ai_shatang"}
        response = alice.post(reverse("tasks:create"), data)

        assert response.status_code == 400
        page = response.content.decode()
        assert "You have started 2 lip-syncs in the last minute" in page
        assert "Wait a minute and submit again; your entries are kept below." in page
        assert re.search(r'<textarea name="text"[^>]*>\s*One line too many</textarea>', page)
        assert '<option value="ai_shatang" selected>' in page
        assert Job.objects.count() == 2
        worker()
        assert kling.create_calls == 2

    def test_a_minute_later_the_same_entries_go_through(self, alice, kling, settings):
        settings.SUBMISSIONS_PER_MINUTE = 1
        alice.post(reverse("tasks:create"), TEXT_FORM)
        assert alice.post(reverse("tasks:create"), TEXT_FORM).status_code == 400

        Job.objects.update(created_at=timezone.now() - timedelta(seconds=61))
        response = alice.post(reverse("tasks:create"), TEXT_FORM)

        assert response.status_code == 302
        assert Job.objects.count() == 2


# --- Secrets never shown, logged or stored ----------------------------------------------------

API_KEY = "sk-live-VERY-SECRET-123"
ACCESS_KEY = "ak-live-VERY-SECRET-ACCESS-456"
SECRET_KEY = "sk-live-VERY-SECRET-SIGNING-789-0123456"
WEBHOOK_SECRET = "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"


def minted_token(at: int) -> str:
    """The JWT the studio mints at second ``at`` (Kling's scheme, as JwtAuth makes it)."""
    claims = {"iss": ACCESS_KEY, "exp": at + 1800, "nbf": at - 5}
    return jwt.encode(claims, SECRET_KEY, algorithm="HS256")


def a_request(text: str = "Hello") -> LipSyncRequest:
    speech = TextSpeech(text=text, voice_id="genshin_vindi2", voice_language="en")
    return LipSyncRequest(video=VideoSource(video_id="860327812345678901"), speech=speech)


class Evidence:
    """Everything a person, an admin or an operator could read."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, where: str, text: object) -> None:
        self.texts[f"{where} #{len(self.texts)}"] = str(text)

    def response(self, where: str, response) -> None:
        # The admin's CSV export streams its answer.
        body = b"".join(response.streaming_content) if response.streaming else response.content
        self.add(where, body.decode(errors="replace"))
        self.add(f"{where} headers", dict(response.headers))

    def leaks(self, secrets: list[str]) -> list[tuple[str, str]]:
        return [
            (where, secret)
            for where, text in self.texts.items()
            for secret in secrets
            if secret in text
        ]


@pytest.fixture(params=["api-key", "access-key"])
def auth_mode(request, start_kling, sim_clock, settings):
    """The studio signed in to Kling one way or the other; returns (mode, simulator)."""
    timing = {"submitted_seconds": 3, "processing_seconds": 10}
    if request.param == "api-key":
        sim = start_kling(now=sim_clock, api_key=API_KEY, **timing)
    else:
        sim = start_kling(
            now=sim_clock, api_key=None, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **timing
        )
        settings.KLING_API_KEY = None
        settings.KLING_ACCESS_KEY = ACCESS_KEY
        settings.KLING_SECRET_KEY = SECRET_KEY
    assert kling_client().auth_mode == request.param
    return request.param, sim


def revoke_the_studios_credentials(sim) -> None:
    """Kling stops accepting what the studio signs in with (the key was rotated after a leak)."""
    import dataclasses

    if sim.config.api_key is not None:
        sim.config = dataclasses.replace(sim.config, api_key="sk-live-NEW-KEY-000")
    else:
        sim.config = dataclasses.replace(sim.config, secret_key="sk-live-NEW-SIGNING-000")


class TestSecretsStaySecret:
    def test_no_page_log_record_error_or_stored_text_contains_a_key_or_token(
        self, auth_mode, alice, admin_client, sim_clock, worker, caplog
    ):
        mode, sim = auth_mode
        caplog.set_level(logging.DEBUG)
        started = int(time.time())
        evidence = Evidence()

        # A whole job, and one Kling fails, seen from every page along the way.
        urls = []
        for video_id in ("860327812345678901", "noface-clip-1"):
            response = alice.post(reverse("tasks:create"), TEXT_FORM | {"video_id": video_id})
            assert response.status_code == 302
            urls.append(response.url)
        worker()
        sim_clock.advance(4)
        worker(all_scheduled=True)
        for url in urls:
            evidence.response("poll", alice.get(url, headers={"HX-Request": "true"}))
        sim_clock.advance(11)
        worker(all_scheduled=True)
        jobs = [Job.objects.get(pk=resolve(url).kwargs["pk"]) for url in urls]
        assert [job.status for job in jobs] == [JobStatus.SUCCEEDED, JobStatus.FAILED]
        assert sim.query_count > 0

        # Kling revokes the studio's credentials: the next job fails, in plain words.
        revoke_the_studios_credentials(sim)
        response = alice.post(reverse("tasks:create"), TEXT_FORM | {"text": "After revoking"})
        worker()
        refused = Job.objects.get(pk=resolve(response.url).kwargs["pk"])
        assert refused.status == JobStatus.FAILED
        assert "Kling refused the studio's key" in refused.status_detail
        assert refused.error_code == 1002
        jobs.append(refused)

        # Every page a person or an admin can open.
        for job in jobs:
            evidence.response("job page", alice.get(job.get_absolute_url()))
            evidence.response("job video", alice.get(reverse("tasks:video", args=[job.pk])))
            evidence.response(
                "admin change", admin_client.get(f"/admin/tasks_app/job/{job.pk}/change/")
            )
        for url in (
            reverse("tasks:list"),
            reverse("tasks:create"),
            reverse("account"),
            reverse("tasks:live") + "?" + "&".join(f"id={job.pk}" for job in jobs),
        ):
            evidence.response(url, alice.get(url))
        for url in ("/admin/", "/admin/tasks_app/job/", "/admin/tasks_app/job/?q=Kling"):
            evidence.response(url, admin_client.get(url))
        pks = [str(job.pk) for job in jobs]
        for action in ("export_csv", "refresh_from_kling"):
            evidence.response(
                action,
                admin_client.post(
                    "/admin/tasks_app/job/",
                    {"action": action, "_selected_action": pks},
                    follow=action != "export_csv",
                ),
            )
        worker(all_scheduled=True)

        # Every error the client raises with the revoked credentials, and its error report.
        client = kling_client()
        task_id = jobs[0].kling_task_id
        assert task_id is not None
        for call in (
            lambda: client.create_task(a_request()),
            lambda: client.get_task(task_id),
            lambda: client.list_tasks(),
        ):
            with pytest.raises(KlingError) as raised:
                call()
            err = raised.value
            assert err.http_status == 401
            for text in (str(err), repr(err), err.user_message, err.detail, err.kling_message):
                evidence.add("KlingError", text)
            reporter = ExceptionReporter(None, type(err), err, raised.tb)
            evidence.add("error report (text)", reporter.get_traceback_text())
            evidence.add("error report (html)", reporter.get_traceback_html())
        evidence.add("client repr", repr(client))

        # What was stored and logged.
        for job in Job.objects.all():
            for name in ("status_detail", "error_detail", "kling_status_msg", "kling_request_id"):
                evidence.add(f"job.{name}", getattr(job, name))
        for job in Job.objects.all():
            evidence.add("job.status_message", job.status_message)
        for event in JobEvent.objects.all():
            evidence.add("event note", (event.note, event.note_message))
        for result in DBTaskResult.objects.all():
            evidence.add("task result", (result.args_kwargs, result.return_value, result.traceback))
        evidence.add("log text", caplog.text)
        for record in caplog.records:
            evidence.add("log record", (record.getMessage(), record.args, record.exc_text))
        assert any(record.name == "kling" for record in caplog.records)  # the client did log

        if mode == "api-key":
            secrets = [API_KEY]
        else:
            tokens = [minted_token(at) for at in range(started - 2, int(time.time()) + 2)]
            signatures = [token.rsplit(".", 1)[1] for token in tokens]
            secrets = [ACCESS_KEY, SECRET_KEY, *tokens, *signatures]
        assert evidence.leaks(secrets) == []
        # The evidence is the real thing: it holds what the studio said and stored.
        everything = "\n".join(evidence.texts.values())
        for expected in ("Kling refused the studio's key", "code 1002", refused.kling_request_id):
            assert expected in everything
        assert len(evidence.texts) > 40

    def test_the_recomputed_token_is_the_one_the_client_sends(self):
        sent: list[str] = []

        def kling(request: httpx.Request) -> httpx.Response:
            sent.append(request.headers["Authorization"])
            return httpx.Response(200, json={"code": 0, "message": "SUCCEED", "data": []})

        auth = JwtAuth(ACCESS_KEY, SECRET_KEY, clock=lambda: 1_800_000_000.5)
        base = "https://kling.example"
        with KlingClient(base_url=base, auth=auth, transport=httpx.MockTransport(kling)) as c:
            c.list_tasks()

        assert sent == [f"Bearer {minted_token(1_800_000_000)}"]
        assert "<hidden>" in repr(auth) and SECRET_KEY not in repr(auth)

    def test_settings_shown_in_an_error_report_are_hidden(self, settings):
        settings.KLING_API_KEY = API_KEY
        settings.KLING_ACCESS_KEY = ACCESS_KEY
        settings.KLING_SECRET_KEY = SECRET_KEY
        settings.KLING_WEBHOOK_SECRET = WEBHOOK_SECRET
        try:
            raise RuntimeError("boom")
        except RuntimeError as exc:
            reporter = ExceptionReporter(None, type(exc), exc, exc.__traceback__)
            report = reporter.get_traceback_text() + reporter.get_traceback_html()

        assert "KLING_API_KEY" in report
        for secret in (API_KEY, ACCESS_KEY, SECRET_KEY, WEBHOOK_SECRET):
            assert secret not in report
