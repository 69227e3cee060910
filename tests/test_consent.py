"""Consent: the submitter confirms that the person in the video agreed to it being lip-synced,
and the studio records who confirmed it and when."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from factories import TEXT_FORM, make_job

from tasks_app.models import Batch, Job, JobStatus

pytestmark = pytest.mark.django_db

CONSENT_ERROR = "Tick this box to confirm that the person in the video agreed"
BATCH_FORM = {
    "way": "lines",
    "lines": "First line\nSecond line\nThird line",
    "video_source": "video_id",
    "video_id": "860327812345678901",
    "voice_id": "genshin_vindi2",
    "voice_language": "en",
    "voice_speed": "1.0",
    "consent": "on",
}


def without_consent(form: dict) -> dict:
    return {name: value for name, value in form.items() if name != "consent"}


def consent_box(page: str) -> str:
    match = re.search(r'<input type="checkbox" name="consent"[^>]*>', page)
    assert match, "the form has the consent box"
    return match[0]


class TestConsentOnTheJobForm:
    def test_the_form_asks_for_it_with_a_box_that_is_not_ticked(self, alice):
        page = alice.get(reverse("tasks:create")).content.decode()

        box = consent_box(page)
        assert "checked" not in box
        assert "The person in this video agreed to it being lip-synced" in page

    def test_without_it_the_box_says_why_and_nothing_is_saved(self, alice):
        response = alice.post(reverse("tasks:create"), without_consent(TEXT_FORM))

        assert response.status_code == 400
        page = response.content.decode()
        assert CONSENT_ERROR in page
        assert 'aria-invalid="true"' in consent_box(page)
        assert not Job.objects.exists()

    def test_the_job_records_who_confirmed_it_and_when(self, alice, user):
        before = timezone.now()
        response = alice.post(reverse("tasks:create"), TEXT_FORM)

        assert response.status_code == 302
        job = Job.objects.get()
        assert job.consent_by == user
        assert job.consent_at is not None
        assert before <= job.consent_at <= timezone.now()

    def test_the_job_page_shows_the_record(self, alice):
        alice.post(reverse("tasks:create"), TEXT_FORM)
        job = Job.objects.get()

        page = alice.get(job.get_absolute_url()).content.decode()

        assert 'data-testid="consent"' in page
        assert "Confirmed by alice" in page

    def test_a_job_without_a_record_says_nothing_about_it(self, alice, user):
        job = make_job(user, status=JobStatus.SUCCEEDED)

        page = alice.get(job.get_absolute_url()).content.decode()

        assert "Submitted by" in page  # the facts are there, only the consent is not
        assert 'data-testid="consent"' not in page


class TestConsentOnABatch:
    def test_one_box_for_the_whole_batch(self, alice):
        page = alice.get(reverse("tasks:batch_create")).content.decode()

        assert page.count('name="consent"') == 1
        consent_box(page)

    def test_it_is_recorded_on_every_row(self, alice, user):
        before = timezone.now()
        response = alice.post(
            reverse("tasks:batch_create"), BATCH_FORM | {"submission_key": str(uuid.uuid4())}
        )

        assert response.status_code == 302
        jobs = list(Batch.objects.get().jobs.all())
        assert len(jobs) == 3
        for job in jobs:
            assert job.consent_by == user
            assert job.consent_at is not None and before <= job.consent_at <= timezone.now()

    def test_without_it_the_page_says_why_once_and_nothing_is_saved(self, alice):
        response = alice.post(
            reverse("tasks:batch_create"),
            without_consent(BATCH_FORM) | {"submission_key": str(uuid.uuid4())},
        )

        assert response.status_code == 400
        page = response.content.decode()
        assert page.count(CONSENT_ERROR) == 1  # next to the box, not once per row
        assert 'aria-invalid="true"' in consent_box(page)
        assert not Batch.objects.exists()
        assert not Job.objects.exists()


class TestConsentOnARetry:
    def test_a_retry_records_the_person_retrying_and_the_time(self, carol, user, teammate):
        failed = make_job(
            user,
            status=JobStatus.FAILED,
            consent_by=user,
            consent_at=timezone.now() - timedelta(days=1),
        )
        before = timezone.now()

        response = carol.post(reverse("tasks:retry", args=[failed.pk]))

        assert response.status_code == 302
        retry = Job.objects.get(retry_of=failed)
        assert retry.consent_by == teammate
        assert retry.consent_at is not None and retry.consent_at >= before

    def test_a_retry_of_a_job_without_a_record_gets_none(self, carol, user):
        failed = make_job(user, status=JobStatus.FAILED)

        carol.post(reverse("tasks:retry", args=[failed.pk]))

        retry = Job.objects.get(retry_of=failed)
        assert retry.consent_by is None
        assert retry.consent_at is None


class TestConsentInTheAdmin:
    def test_the_job_page_shows_who_confirmed_it_and_when_read_only(self, admin_client, alice):
        alice.post(reverse("tasks:create"), TEXT_FORM)
        job = Job.objects.get()

        page = admin_client.get(reverse("admin:tasks_app_job_change", args=[job.pk]))
        html = page.content.decode()

        assert "consent confirmed by" in html.lower()
        assert "consent confirmed at" in html.lower()
        assert re.search(r'field-consent_by">.*?alice', html, re.S)
        assert 'name="consent_by"' not in html
        assert 'name="consent_at"' not in html
