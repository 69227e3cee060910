"""E-mail: configured from one URL, links that work from an inbox, each person's language."""

from __future__ import annotations

import subprocess

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from factories import PASSWORD, make_job, settings_run

from lipsync_site.email_url import CONSOLE, DUMMY, LOCMEM, SMTP, parse_email_url
from tasks_app.models import JobStatus, Profile
from tasks_app.notices import job_email_finished


class TestTheEmailUrl:
    def test_smtp_with_starttls_and_a_percent_encoded_user_and_password(self):
        assert parse_email_url(
            "smtp+tls://studio%40example.com:p%40ss%3Aw%2Frd@mail.example:587"
        ) == {
            "EMAIL_BACKEND": SMTP,
            "EMAIL_HOST": "mail.example",
            "EMAIL_PORT": 587,
            "EMAIL_HOST_USER": "studio@example.com",
            "EMAIL_HOST_PASSWORD": "p@ss:w/rd",
            "EMAIL_USE_TLS": True,
            "EMAIL_USE_SSL": False,
        }

    @pytest.mark.parametrize(
        ("url", "port", "tls", "ssl"),
        [
            ("smtp+tls://mail.example", 587, True, False),
            ("smtp+ssl://mail.example", 465, False, True),
            ("smtps://mail.example", 465, False, True),
            ("smtp://mail.example", 25, False, False),
            ("smtp://mail.example:2525", 2525, False, False),
            ("SMTP+SSL://mail.example:4650/", 4650, False, True),
        ],
    )
    def test_each_smtp_scheme_has_its_encryption_and_default_port(self, url, port, tls, ssl):
        parsed = parse_email_url(url)
        assert (parsed["EMAIL_PORT"], parsed["EMAIL_USE_TLS"], parsed["EMAIL_USE_SSL"]) == (
            port,
            tls,
            ssl,
        )
        assert parsed["EMAIL_HOST_USER"] == parsed["EMAIL_HOST_PASSWORD"] == ""

    def test_an_ipv6_host_and_a_timeout(self):
        parsed = parse_email_url("smtp://[2001:db8::1]:25?timeout=10")
        assert parsed["EMAIL_HOST"] == "2001:db8::1"
        assert parsed["EMAIL_TIMEOUT"] == 10

    @pytest.mark.parametrize(
        ("url", "backend"),
        [("console://", CONSOLE), ("locmem://", LOCMEM), ("dummy://", DUMMY)],
    )
    def test_the_backends_that_send_nothing(self, url, backend):
        assert parse_email_url(url) == {"EMAIL_BACKEND": backend}

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("smtpx://mail.example", "unknown scheme 'smtpx'"),
            ("http://mail.example", "unknown scheme 'http'"),
            ("mail.example:587", "must look like"),
            ("smtp+tls://", "needs a host"),
            ("smtp+tls://user:secret@:587", "needs a host"),
            ("smtp://mail.example:port", "port that is not a number"),
            ("smtp://mail.example:99999", "port that is not a number"),
            ("smtp://mail.example:0", "port that is not a number"),
            ("smtp://mail.example/inbox", "takes no path"),
            ("smtp://mail.example?tls=1", "unknown parameter 'tls'"),
            ("smtp://mail.example?timeout=soon", "timeout must be a whole number"),
            ("smtp://:secret@mail.example", "password without a user name"),
            ("console://mail.example", "takes nothing after it"),
        ],
    )
    def test_anything_else_stops_start_up_naming_the_variable(self, url, reason):
        with pytest.raises(ImproperlyConfigured) as error:
            parse_email_url(url)
        assert str(error.value).startswith("EMAIL_URL ")
        assert reason in str(error.value)
        assert "secret" not in str(error.value)


def settings_with(**variables: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with only ``variables`` set; print the
    e-mail settings."""
    code = (
        "import lipsync_site.settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, "
        "s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL, s.PASSWORD_RESET_ENABLED)"
    )
    return settings_run(
        code, **({"SECRET_KEY": "s3cret", "ALLOWED_HOSTS": "example.com"} | variables)
    )


class TestTheEmailSettings:
    def test_email_url_and_the_sender_configure_smtp_and_offer_password_reset(self):
        result = settings_with(
            EMAIL_URL="smtp+tls://bot:pw@mail.example:587",
            DEFAULT_FROM_EMAIL="Studio <studio@example.com>",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [
            SMTP,
            "mail.example",
            "587",
            "bot",
            "True",
            "Studio",
            "<studio@example.com>",
            "True",
        ]

    def test_without_it_e_mail_goes_to_the_log_and_password_reset_is_off(self):
        result = settings_with()
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == CONSOLE
        assert result.stdout.split()[-1] == "False"

    @pytest.mark.parametrize("url", ["console://", "locmem://", "dummy://"])
    def test_a_backend_that_sends_nothing_does_not_offer_password_reset(self, url):
        result = settings_with(EMAIL_URL=url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[-1] == "False"

    def test_the_older_email_backend_alone_still_works(self):
        result = settings_with(EMAIL_BACKEND=SMTP)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == SMTP
        assert result.stdout.split()[-1] == "True"

    def test_a_malformed_url_stops_start_up_without_showing_the_password(self):
        result = settings_with(EMAIL_URL="smtp+tls://bot:hunter2@mail.example:port")
        assert result.returncode != 0
        assert "EMAIL_URL has a port that is not a number" in result.stderr
        assert "hunter2" not in result.stderr

    def test_both_ways_at_once_are_refused(self):
        result = settings_with(EMAIL_URL="console://", EMAIL_BACKEND=SMTP)
        assert result.returncode != 0
        assert "Set EMAIL_URL or EMAIL_BACKEND, not both." in result.stderr

    def test_a_sender_that_is_not_an_address_is_refused(self):
        result = settings_with(DEFAULT_FROM_EMAIL="the studio")
        assert result.returncode != 0
        assert "DEFAULT_FROM_EMAIL must be an e-mail address" in result.stderr


READY_EN = "Your lip-sync “Spring sale” is ready"
READY_ZH = "你的对口型视频“Spring sale”已完成"


@pytest.fixture
def wants_mail(user):
    user.email = "alice@studio.example"
    user.save()
    Profile.objects.update_or_create(user=user, defaults={"email_when_done": True})
    return user


@pytest.mark.django_db
class TestTheLinksInEmails:
    def test_a_finished_job_links_under_site_url(self, settings, wants_mail, mailoutbox):
        settings.SITE_URL = "https://studio.example"
        settings.DEFAULT_FROM_EMAIL = "studio@studio.example"
        job = make_job(wants_mail, status=JobStatus.SUCCEEDED, text="Spring sale")

        assert job_email_finished(job_id=job.pk)

        assert f"https://studio.example/tasks/{job.pk}/" in mailoutbox[0].body
        assert mailoutbox[0].from_email == "studio@studio.example"

    def test_without_site_url_the_link_is_still_absolute(self, settings, wants_mail, mailoutbox):
        settings.SITE_URL = None
        job = make_job(wants_mail, status=JobStatus.SUCCEEDED, text="Spring sale")

        assert job_email_finished(job_id=job.pk)

        assert f"{settings.DEMO_STUDIO_URL}/tasks/{job.pk}/" in mailoutbox[0].body
        assert f" /tasks/{job.pk}/" not in mailoutbox[0].body

    def test_the_password_reset_link_leads_to_site_url(self, client, settings, user, mailoutbox):
        settings.PASSWORD_RESET_ENABLED = True
        settings.SITE_URL = "https://studio.example"
        user.email = "alice@example.com"
        user.save()

        response = client.post("/accounts/password_reset/", {"email": "alice@example.com"})

        assert response.status_code == 302
        assert "https://studio.example/accounts/reset/" in mailoutbox[0].body
        assert "testserver" not in mailoutbox[0].body

    def test_without_site_url_the_reset_link_names_the_host_asked(
        self, client, settings, user, mailoutbox
    ):
        settings.PASSWORD_RESET_ENABLED = True
        settings.SITE_URL = None
        user.email = "alice@example.com"
        user.save()

        client.post("/accounts/password_reset/", {"email": "alice@example.com"})

        assert "http://testserver/accounts/reset/" in mailoutbox[0].body


def stored_language(person) -> str:
    return Profile.objects.get(user=person).language


@pytest.mark.django_db
class TestThePersonsLanguage:
    def test_the_language_switch_stores_it(self, alice, user):
        response = alice.post("/i18n/setlang/", {"language": "zh-hans", "next": "/tasks/"})

        assert response.status_code == 302
        assert response["Location"] == "/tasks/"
        assert stored_language(user) == "zh-hans"
        alice.post("/i18n/setlang/", {"language": "en", "next": "/tasks/"})
        assert stored_language(user) == "en"

    def test_a_language_the_studio_does_not_speak_is_not_stored(self, alice, user):
        alice.post("/i18n/setlang/", {"language": "zh-hans", "next": "/tasks/"})
        alice.post("/i18n/setlang/", {"language": "klingon", "next": "/tasks/"})
        assert stored_language(user) == "zh-hans"

    def test_logging_in_stores_the_browsers_language_if_none_is_stored(self, user):
        client = Client(HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.5")

        response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})

        assert response.status_code == 302
        assert stored_language(user) == "zh-hans"

    def test_logging_in_keeps_a_language_chosen_before(self, user):
        Profile.objects.update_or_create(user=user, defaults={"language": "en"})
        client = Client(HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")

        client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})

        assert stored_language(user) == "en"

    def test_a_failed_log_in_stores_nothing(self, user):
        client = Client(HTTP_ACCEPT_LANGUAGE="zh-CN")
        client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        assert not Profile.objects.filter(user=user).exclude(language="").exists()

    @pytest.mark.parametrize(("language", "subject"), [("zh-hans", READY_ZH), ("en", READY_EN)])
    def test_the_email_is_written_in_it(self, wants_mail, mailoutbox, language, subject):
        Profile.objects.filter(user=wants_mail).update(language=language)
        job = make_job(wants_mail, status=JobStatus.SUCCEEDED, text="Spring sale")

        assert job_email_finished(job_id=job.pk)

        assert mailoutbox[0].subject == subject

    def test_without_one_the_email_is_in_the_studios_default(self, wants_mail, mailoutbox):
        job = make_job(wants_mail, status=JobStatus.SUCCEEDED, text="Spring sale")
        assert job_email_finished(job_id=job.pk)
        assert mailoutbox[0].subject == READY_EN
        assert django_settings.LANGUAGE_CODE == "en"
