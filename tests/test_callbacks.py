"""Kling's callbacks: a hint to look again, checked by a per-job token and maybe a signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from factories import make_job

from tasks_app import webhooks
from tasks_app.models import Job, JobStatus
from tasks_app.services import callbacks, submitting
from tasks_app.simulator import sign_webhook

pytestmark = pytest.mark.django_db

SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
VECTOR_BODY = (
    b'{"id":"1234567890","status":"succeeded","message":"",'
    b'"create_time":1781080778802,"update_time":1781080794151}'
)
VECTOR_SIGNATURE = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="


def callback_url(job: Job, token: str | None = None) -> str:
    return f"/kling/callback/{job.pk}/{token or job.callback_token}/"


def task_body(job: Job, status: str = "succeed") -> bytes:
    return json.dumps(
        {
            "task_id": job.kling_task_id or "1",
            "task_status": status,
            "task_result": {"videos": [{"id": "9", "url": "https://evil.example/x.mp4"}]},
        }
    ).encode()


def signed_headers(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "HTTP_WEBHOOK_ID": "msg_1",
        "HTTP_WEBHOOK_TIMESTAMP": str(stamp),
        "HTTP_WEBHOOK_SIGNATURE": sign_webhook(secret, "msg_1", stamp, body),
    }


@pytest.fixture
def sent_job(user, kling, worker) -> Job:
    job = make_job(user)
    worker()
    job.refresh_from_db()
    assert job.status == JobStatus.SENT
    return job


class TestTheCallbackEndpoint:
    def test_a_valid_callback_asks_kling_now_and_does_not_trust_the_body(
        self, client, sent_job, kling, worker
    ):
        assert sent_job.next_check_at > timezone.now()
        before = timezone.now()

        response = client.post(
            callback_url(sent_job), task_body(sent_job), content_type="application/json"
        )

        assert response.status_code == 204
        sent_job.refresh_from_db()
        assert before <= sent_job.next_check_at <= timezone.now()
        assert sent_job.status == JobStatus.SENT  # the body's "succeed" changed nothing
        assert sent_job.result_video_url == ""

        queries = kling.query_count
        worker()  # only what is due now: the run the callback scheduled
        sent_job.refresh_from_db()
        assert kling.query_count == queries + 1
        assert sent_job.status == JobStatus.SENT  # Kling says "submitted"

    def test_the_refresh_picks_up_what_kling_says(self, client, sent_job, kling, sim_clock, worker):
        sim_clock.advance(4)

        client.post(callback_url(sent_job), task_body(sent_job, "processing"), "application/json")
        worker()

        sent_job.refresh_from_db()
        assert sent_job.status == JobStatus.PROCESSING

    def test_a_callback_for_a_job_not_yet_sent_changes_nothing(self, client, user):
        job = make_job(user)
        due = job.next_check_at

        response = client.post(callback_url(job), b"{}", content_type="application/json")

        assert response.status_code == 204
        job.refresh_from_db()
        assert job.next_check_at == due

    def test_a_callback_for_a_finished_job_changes_nothing(self, client, user):
        job = make_job(user)
        submitting.job_cancel(job=job)

        response = client.post(callback_url(job), b"{}", content_type="application/json")

        assert response.status_code == 204
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
        assert job.next_check_at is None

    @pytest.mark.parametrize("whose", ["made up", "another job's"])
    def test_a_wrong_token_is_not_found(self, client, user, sent_job, whose):
        token = "0" * 64 if whose == "made up" else make_job(user).callback_token
        due = sent_job.next_check_at

        response = client.post(callback_url(sent_job, token), b"{}", "application/json")

        assert response.status_code == 404
        sent_job.refresh_from_db()
        assert sent_job.next_check_at == due

    def test_a_job_that_does_not_exist_is_not_found(self, client, db):
        assert (
            client.post("/kling/callback/999999/abc/", b"{}", "application/json").status_code == 404
        )

    def test_a_body_that_is_not_json_is_a_bad_request(self, client, sent_job):
        due = sent_job.next_check_at

        response = client.post(callback_url(sent_job), b"<html>", content_type="text/html")

        assert response.status_code == 400
        sent_job.refresh_from_db()
        assert sent_job.next_check_at == due

    def test_json_that_is_not_an_object_is_a_bad_request(self, client, sent_job):
        response = client.post(callback_url(sent_job), b"[1, 2]", content_type="application/json")
        assert response.status_code == 400

    def test_get_is_not_allowed(self, client, sent_job):
        assert client.get(callback_url(sent_job)).status_code == 405

    def test_it_needs_no_login_and_no_csrf_token(self, sent_job):
        from django.test import Client

        strict = Client(enforce_csrf_checks=True)
        response = strict.post(callback_url(sent_job), b"{}", content_type="application/json")
        assert response.status_code == 204

    def test_the_token_is_tied_to_the_secret_key(self, sent_job, settings):
        token = sent_job.callback_token
        settings.SECRET_KEY = "another-secret-key"
        assert sent_job.callback_token != token
        assert not callbacks.job_callback_token_is_valid(job=sent_job, token=token)


class TestSignedCallbacks:
    @pytest.fixture(autouse=True)
    def webhook_secret(self, settings):
        settings.KLING_WEBHOOK_SECRET = SECRET

    def test_a_valid_signature_is_accepted(self, client, sent_job):
        body = task_body(sent_job)

        response = client.post(
            callback_url(sent_job), body, content_type="application/json", **signed_headers(body)
        )

        assert response.status_code == 204
        sent_job.refresh_from_db()
        assert sent_job.next_check_at <= timezone.now()

    def test_one_valid_signature_among_several_is_enough(self, client, sent_job):
        body = task_body(sent_job)
        headers = signed_headers(body)
        headers["HTTP_WEBHOOK_SIGNATURE"] = "v1,AAAA " + headers["HTTP_WEBHOOK_SIGNATURE"]

        response = client.post(callback_url(sent_job), body, "application/json", **headers)

        assert response.status_code == 204

    def test_a_forged_signature_is_forbidden(self, client, sent_job):
        body = task_body(sent_job)
        forged = "whsec_" + "Zm9yZ2VkLXNlY3JldC1mb3JnZWQtc2VjcmV0LTEyMzQ="
        due = sent_job.next_check_at

        response = client.post(
            callback_url(sent_job), body, "application/json", **signed_headers(body, secret=forged)
        )

        assert response.status_code == 403
        sent_job.refresh_from_db()
        assert sent_job.next_check_at == due

    def test_a_body_changed_after_signing_is_forbidden(self, client, sent_job):
        headers = signed_headers(b'{"task_status": "processing"}')
        response = client.post(
            callback_url(sent_job), b'{"task_status": "succeed"}', "application/json", **headers
        )
        assert response.status_code == 403

    @pytest.mark.parametrize(
        "missing", ["HTTP_WEBHOOK_ID", "HTTP_WEBHOOK_TIMESTAMP", "HTTP_WEBHOOK_SIGNATURE"]
    )
    def test_a_missing_header_is_forbidden(self, client, sent_job, missing):
        body = task_body(sent_job)
        headers = signed_headers(body)
        del headers[missing]

        response = client.post(callback_url(sent_job), body, "application/json", **headers)

        assert response.status_code == 403

    def test_no_signature_headers_at_all_is_forbidden(self, client, sent_job):
        response = client.post(callback_url(sent_job), task_body(sent_job), "application/json")
        assert response.status_code == 403

    @pytest.mark.parametrize("offset", [-302, -3600, 330])
    def test_a_timestamp_more_than_five_minutes_off_is_forbidden(self, client, sent_job, offset):
        body = task_body(sent_job)
        headers = signed_headers(body, timestamp=int(time.time()) + offset)

        response = client.post(callback_url(sent_job), body, "application/json", **headers)

        assert response.status_code == 403

    def test_a_timestamp_four_minutes_old_is_accepted(self, client, sent_job):
        body = task_body(sent_job)
        headers = signed_headers(body, timestamp=int(time.time()) - 240)

        response = client.post(callback_url(sent_job), body, "application/json", **headers)

        assert response.status_code == 204

    @pytest.mark.parametrize(
        "stamp", [str(10**30), "1e30", "inf", "nan", "-1", "9" * 4000, "yesterday"]
    )
    def test_an_impossible_timestamp_is_forbidden_not_an_error(self, client, sent_job, stamp):
        body = task_body(sent_job)
        headers = signed_headers(body) | {"HTTP_WEBHOOK_TIMESTAMP": stamp}

        response = client.post(callback_url(sent_job), body, "application/json", **headers)

        assert response.status_code == 403

    @pytest.mark.parametrize("signature", ["garbage", "v1", "v1,not-base64!!", "v1,a,b", "v1,"])
    def test_a_malformed_signature_is_forbidden_not_an_error(self, client, sent_job, signature):
        body = task_body(sent_job)
        headers = signed_headers(body) | {"HTTP_WEBHOOK_SIGNATURE": signature}

        response = client.post(callback_url(sent_job), body, "application/json", **headers)

        assert response.status_code == 403

    def test_a_body_that_is_not_utf8_is_forbidden_not_an_error(self, client, sent_job):
        headers = signed_headers(b"{}")

        response = client.post(callback_url(sent_job), b"\xff\xfe{}", "application/json", **headers)

        assert response.status_code == 403

    def test_a_secret_the_library_cannot_use_refuses_every_callback(
        self, client, sent_job, settings, caplog
    ):
        settings.KLING_WEBHOOK_SECRET = "my-plain-secret"
        body = task_body(sent_job)
        due = sent_job.next_check_at

        response = client.post(
            callback_url(sent_job), body, "application/json", **signed_headers(body)
        )

        assert response.status_code == 403
        sent_job.refresh_from_db()
        assert sent_job.next_check_at == due
        assert "KLING_WEBHOOK_SECRET" in caplog.text
        assert "my-plain-secret" not in caplog.text

    def test_the_token_is_still_checked_before_the_signature(self, client, sent_job):
        body = task_body(sent_job)
        response = client.post(
            callback_url(sent_job, "f" * 64), body, "application/json", **signed_headers(body)
        )
        assert response.status_code == 404


class TestTheSignatureCheck:
    """``webhooks.verify`` (the standardwebhooks library) against what the simulator signs."""

    def headers(self, body: bytes, *, secret: str = SECRET, age: int = 0, msg_id="msg_7"):
        stamp = int(time.time()) - age
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_webhook(secret, msg_id, stamp, body),
        }

    def test_the_simulator_signs_the_reference_test_vector(self):
        assert sign_webhook(SECRET, "9876543210", 1781080794, VECTOR_BODY) == VECTOR_SIGNATURE

    def test_the_reference_vector_is_refused_today_as_stale(self):
        headers = {
            "webhook-id": "9876543210",
            "webhook-timestamp": "1781080794",
            "webhook-signature": VECTOR_SIGNATURE,
        }
        assert time.time() > 1781080794 + 300
        with pytest.raises(webhooks.InvalidSignature, match="too old"):
            webhooks.verify(SECRET, headers, VECTOR_BODY)

    @pytest.mark.parametrize(
        "secret",
        [
            pytest.param(SECRET, id="whsec-base64"),
            pytest.param(SECRET.removeprefix("whsec_"), id="bare-base64"),
            pytest.param(SECRET.rstrip("="), id="unpadded-base64"),
            pytest.param("hunter2", id="not-base64"),
        ],
    )
    def test_a_fresh_simulator_signature_verifies_whatever_the_secret_looks_like(self, secret):
        webhooks.verify(secret, self.headers(VECTOR_BODY, secret=secret), VECTOR_BODY)

    def test_header_names_may_be_in_any_case(self):
        headers = {name.title(): value for name, value in self.headers(VECTOR_BODY).items()}
        webhooks.verify(SECRET, headers, VECTOR_BODY)

    def test_one_valid_signature_among_several_verifies(self):
        headers = self.headers(VECTOR_BODY)
        headers["webhook-signature"] = "v1,AAAA v2,BBBB " + headers["webhook-signature"]
        webhooks.verify(SECRET, headers, VECTOR_BODY)

    def test_a_tampered_body_is_refused(self):
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, self.headers(VECTOR_BODY), VECTOR_BODY + b" ")

    def test_another_id_is_refused(self):
        headers = self.headers(VECTOR_BODY) | {"webhook-id": "msg_8"}
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, headers, VECTOR_BODY)

    def test_a_signature_made_with_another_secret_is_refused(self):
        other = "whsec_Zm9yZ2VkLXNlY3JldC1mb3JnZWQtc2VjcmV0LTEyMzQ="
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, self.headers(VECTOR_BODY, secret=other), VECTOR_BODY)

    def test_a_non_base64_secret_is_not_its_own_text_as_a_key(self):
        # The old hand-written check keyed HMAC with the text of a non-base64 secret; the
        # library (and so the simulator) never does.
        stamp = int(time.time())
        signed = f"msg_7.{stamp}.".encode() + VECTOR_BODY
        digest = hmac.new(b"hunter2", signed, hashlib.sha256).digest()
        headers = {
            "webhook-id": "msg_7",
            "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify("hunter2", headers, VECTOR_BODY)

    @pytest.mark.parametrize("age", [301, -301, 3600])
    def test_a_timestamp_more_than_five_minutes_off_is_refused(self, age):
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, self.headers(VECTOR_BODY, age=age), VECTOR_BODY)

    @pytest.mark.parametrize(
        "stamp", [str(10**30), "1e30", "-1e30", "inf", "nan", "9" * 4000, "yesterday", ""]
    )
    def test_an_impossible_timestamp_is_refused_and_nothing_else(self, stamp):
        headers = self.headers(VECTOR_BODY) | {"webhook-timestamp": stamp}
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, headers, VECTOR_BODY)

    @pytest.mark.parametrize(
        "signature", ["", "garbage", "v1", "v1,", "v1,not-base64!!", "v1,a,b", "v1,AAAA  v1,BBBB"]
    )
    def test_a_malformed_signature_is_refused_and_nothing_else(self, signature):
        headers = self.headers(VECTOR_BODY) | {"webhook-signature": signature}
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, headers, VECTOR_BODY)

    def test_a_body_that_is_not_utf8_is_refused_and_nothing_else(self):
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, self.headers(b"{}"), b"\xff\xfe{}")

    @pytest.mark.parametrize("secret", ["my-plain-secret", "whsec_%%%", "whsec_", ""])
    def test_a_secret_the_library_refuses_refuses_every_signature(self, secret):
        headers = self.headers(VECTOR_BODY)
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(secret, headers, VECTOR_BODY)


class TestTheCallbackUrlSentToKling:
    def test_with_a_site_url_the_create_carries_the_jobs_callback_url(
        self, user, kling, worker, settings
    ):
        settings.SITE_URL = "https://studio.example.com"
        job = make_job(user)

        worker()

        (create,) = [r for r in kling.requests if r.method == "POST"]
        token = job.callback_token
        expected = f"https://studio.example.com/kling/callback/{job.pk}/{token}/"
        assert create.body["callback_url"] == expected

    def test_without_a_site_url_no_callback_url_is_sent(self, user, kling, worker, settings):
        settings.SITE_URL = None
        make_job(user)

        worker()

        (create,) = [r for r in kling.requests if r.method == "POST"]
        assert "callback_url" not in create.body


@pytest.mark.django_db(transaction=True)
class TestCallbacksFromTheSimulator:
    # The simulator signs with the same library the studio verifies with: a secret that is
    # not base64 is read the same (odd) way by both, where two hand-written copies disagreed.
    @pytest.mark.parametrize("secret", [SECRET, "hunter2"], ids=["whsec-base64", "not-base64"])
    def test_a_signed_callback_reaches_the_studio_and_brings_the_check_forward(
        self, live_server, user, start_kling, sim_clock, worker, settings, secret
    ):
        kling = start_kling(
            now=sim_clock, submitted_seconds=3, processing_seconds=10, webhook_secret=secret
        )
        settings.SITE_URL = live_server.url
        settings.KLING_WEBHOOK_SECRET = secret
        job = make_job(user)
        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        checked_at = job.next_check_at
        assert checked_at is not None
        assert checked_at > timezone.now()

        sim_clock.advance(4)  # the task starts processing: the simulator calls back
        deadline = time.monotonic() + 5
        while not kling.callbacks and time.monotonic() < deadline:
            time.sleep(0.02)

        (attempt,) = kling.callbacks
        assert attempt.signed
        assert attempt.task_status == "processing"
        assert attempt.http_status == 204, attempt.error
        job.refresh_from_db()
        assert job.next_check_at is not None
        assert job.next_check_at < checked_at - timedelta(seconds=1)
        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.PROCESSING
