"""Kling's callbacks: a hint to look again, checked by a per-job token and maybe a signature."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tasks_app import services, webhooks
from tasks_app.kling.simulator import sign_webhook
from tasks_app.models import Job, JobStatus

pytestmark = pytest.mark.django_db

SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
VECTOR_BODY = (
    b'{"id":"1234567890","status":"succeeded","message":"",'
    b'"create_time":1781080778802,"update_time":1781080794151}'
)
VECTOR_SIGNATURE = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="


def callback_url(job: Job, token: str | None = None) -> str:
    return f"/kling/callback/{job.pk}/{token or services.job_callback_token(job=job)}/"


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
def sent_job(user, submit_job, kling, worker) -> Job:
    job = submit_job(user)
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

    def test_a_callback_for_a_job_not_yet_sent_changes_nothing(self, client, user, submit_job):
        job = submit_job(user)
        due = job.next_check_at

        response = client.post(callback_url(job), b"{}", content_type="application/json")

        assert response.status_code == 204
        job.refresh_from_db()
        assert job.next_check_at == due

    def test_a_callback_for_a_finished_job_changes_nothing(self, client, user, submit_job):
        job = submit_job(user)
        services.job_cancel(job=job)

        response = client.post(callback_url(job), b"{}", content_type="application/json")

        assert response.status_code == 204
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
        assert job.next_check_at is None

    def test_a_wrong_token_is_not_found(self, client, sent_job):
        due = sent_job.next_check_at
        response = client.post(
            callback_url(sent_job, "0" * 64), b"{}", content_type="application/json"
        )

        assert response.status_code == 404
        sent_job.refresh_from_db()
        assert sent_job.next_check_at == due

    def test_another_jobs_token_is_not_found(self, client, user, submit_job, sent_job):
        other = submit_job(user)
        token = services.job_callback_token(job=other)

        response = client.post(callback_url(sent_job, token), b"{}", "application/json")

        assert response.status_code == 404

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
        token = services.job_callback_token(job=sent_job)
        settings.SECRET_KEY = "another-secret-key"
        assert services.job_callback_token(job=sent_job) != token
        assert not services.job_callback_token_is_valid(job=sent_job, token=token)


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

    def test_the_token_is_still_checked_before_the_signature(self, client, sent_job):
        body = task_body(sent_job)
        response = client.post(
            callback_url(sent_job, "f" * 64), body, "application/json", **signed_headers(body)
        )
        assert response.status_code == 404


class TestTheSignatureCheck:
    headers = {
        "webhook-id": "9876543210",
        "webhook-timestamp": "1781080794",
        "webhook-signature": VECTOR_SIGNATURE,
    }

    def test_the_reference_test_vector_verifies(self):
        webhooks.verify(SECRET, self.headers, VECTOR_BODY, now=1781080794 + 10)

    def test_signing_the_vector_gives_the_references_signature(self):
        assert webhooks.sign(SECRET, "9876543210", 1781080794, VECTOR_BODY) == VECTOR_SIGNATURE

    def test_the_vector_with_another_body_fails(self):
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, self.headers, VECTOR_BODY + b" ", now=1781080794)

    def test_the_vector_with_another_id_fails(self):
        headers = self.headers | {"webhook-id": "9876543211"}
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, headers, VECTOR_BODY, now=1781080794)

    def test_the_vector_checked_much_later_fails(self):
        with pytest.raises(webhooks.InvalidSignature, match="timestamp"):
            webhooks.verify(SECRET, self.headers, VECTOR_BODY, now=1781080794 + 301)

    def test_a_malformed_timestamp_fails(self):
        headers = self.headers | {"webhook-timestamp": "yesterday"}
        with pytest.raises(webhooks.InvalidSignature):
            webhooks.verify(SECRET, headers, VECTOR_BODY, now=1781080794)


class TestTheCallbackUrlSentToKling:
    def test_with_a_site_url_the_create_carries_the_jobs_callback_url(
        self, user, submit_job, kling, worker, settings
    ):
        settings.SITE_URL = "https://studio.example.com"
        job = submit_job(user)

        worker()

        (create,) = [r for r in kling.requests if r.method == "POST"]
        token = services.job_callback_token(job=job)
        expected = f"https://studio.example.com/kling/callback/{job.pk}/{token}/"
        assert create.body["callback_url"] == expected

    def test_without_a_site_url_no_callback_url_is_sent(
        self, user, submit_job, kling, worker, settings
    ):
        settings.SITE_URL = None
        submit_job(user)

        worker()

        (create,) = [r for r in kling.requests if r.method == "POST"]
        assert "callback_url" not in create.body


@pytest.mark.django_db(transaction=True)
class TestCallbacksFromTheSimulator:
    def test_a_signed_callback_reaches_the_studio_and_brings_the_check_forward(
        self, live_server, user, submit_job, start_kling, sim_clock, worker, settings
    ):
        kling = start_kling(
            now=sim_clock, submitted_seconds=3, processing_seconds=10, webhook_secret=SECRET
        )
        settings.SITE_URL = live_server.url
        settings.KLING_WEBHOOK_SECRET = SECRET
        job = submit_job(user)
        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        checked_at = job.next_check_at
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
        assert job.next_check_at < checked_at - timedelta(seconds=1)
        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.PROCESSING
