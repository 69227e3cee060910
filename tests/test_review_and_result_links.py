"""What the job page and the admin offer around a result: the staff review shown to the
submitter, "Make another lip-sync from this video", and the admin's link to the studio copy."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from factories import make_job, make_member, put_job

from tasks_app import review
from tasks_app.models import Job, JobStatus, ReviewState

pytestmark = pytest.mark.django_db

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4
MAKE_ANOTHER = re.compile(r'<a class="button" data-testid="make-another" href="([^"]+)"')


def finished(person, **fields) -> Job:
    job = make_job(person, status=JobStatus.SUCCEEDED, result_video_id="vid-result-1", **fields)
    name = default_storage.save(f"results/job-{job.pk}.mp4", ContentFile(VIDEO))
    return put_job(job, stored_video=name, stored_size=len(VIDEO))


class TestTheReviewOnTheJobPage:
    @pytest.fixture
    def reviewer(self):
        return make_member("sam", is_staff=True, is_superuser=True)

    def test_the_submitter_sees_an_approval_and_the_staff_note(self, alice, user, reviewer):
        job = finished(user)
        review.job_review(
            job=job, reviewer=reviewer, state=ReviewState.APPROVED, note="Lovely & clear."
        )

        page = alice.get(job.get_absolute_url()).content.decode()

        assert 'data-testid="review"' in page
        assert "Approved by the studio's staff" in page
        assert "Lovely &amp; clear." in page

    def test_the_submitter_sees_a_flag_and_the_staff_note(self, alice, user, reviewer):
        job = finished(user)
        review.job_review(
            job=job, reviewer=reviewer, state=ReviewState.FLAGGED, note="The lips drift."
        )

        page = alice.get(job.get_absolute_url()).content.decode()

        assert "Flagged by the studio's staff" in page
        assert "Approved by" not in page
        assert "The lips drift." in page

    def test_a_review_without_a_note_shows_its_verdict_alone(self, alice, user, reviewer):
        job = finished(user)
        review.job_review(job=job, reviewer=reviewer, state=ReviewState.APPROVED)

        page = alice.get(job.get_absolute_url()).content.decode()

        assert "Approved by the studio's staff" in page
        assert 'data-testid="review-note"' not in page

    def test_a_job_not_reviewed_shows_no_review(self, alice, user):
        job = finished(user)

        page = alice.get(job.get_absolute_url()).content.decode()

        assert "What was asked" in page  # the page itself is there
        assert 'data-testid="review"' not in page


class TestMakeAnotherFromTheResult:
    def test_it_is_offered_while_kling_keeps_the_video_id(self, alice, user):
        job = finished(user)

        page = alice.get(job.get_absolute_url()).content.decode()

        match = MAKE_ANOTHER.search(page)
        assert match
        assert match[1] == "/tasks/new/?video_id=vid-result-1"

    def test_it_is_not_offered_after_klings_limit_while_the_copy_still_plays(
        self, alice, user, settings
    ):
        job = finished(user)
        put_job(
            job,
            finished_at=timezone.now()
            - timedelta(days=settings.KLING_RESULT_LIFETIME_DAYS, minutes=1),
        )

        page = alice.get(job.get_absolute_url()).content.decode()

        assert 'data-testid="result-video"' in page
        assert "Download the video" in page
        assert not MAKE_ANOTHER.search(page)
        assert "Make another lip-sync from this video" not in page

    def test_it_carries_the_task_that_made_the_video_when_the_job_named_a_parent_task(
        self, alice, user
    ):
        job = finished(user, parent_task_id="reseller-parent-7")

        page = alice.get(job.get_absolute_url()).content.decode()

        match = MAKE_ANOTHER.search(page)
        assert match
        assert match[1] == (f"/tasks/new/?video_id=vid-result-1&amp;task_id={job.kling_task_id}")

    def test_the_form_it_opens_is_filled_in_with_the_video_and_the_task(self, alice, user):
        job = finished(user, parent_task_id="reseller-parent-7")

        form = alice.get(
            reverse("tasks:create"),
            {"video_id": "vid-result-1", "task_id": job.kling_task_id},
        ).content.decode()

        assert re.search(r'name="video_id"[^>]*value="vid-result-1"', form)
        assert re.search(rf'name="task_id"[^>]*value="{job.kling_task_id}"', form)


class TestTheAdminsStudioCopyLink:
    def reviewer(self, *codenames: str) -> Client:
        """A staff member in no team, with the admin's job permissions (not a superuser)."""
        staff = make_member("sam", is_staff=True)
        staff.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="tasks_app", codename__in=codenames)
        )
        client = Client()
        client.force_login(staff)
        return client

    def links_of(self, client: Client, job: Job) -> dict[str, str]:
        page = client.get(reverse("admin:tasks_app_job_change", args=[job.pk]))
        assert page.status_code == 200
        return {
            label: href
            for href, label in re.findall(
                r'<a href="([^"]+)"[^>]*>([^<]+)</a>', page.content.decode()
            )
        }

    def test_it_opens_the_copy_for_a_reviewer_of_every_team(self, user):
        job = finished(user)
        staff = self.reviewer("view_job", "review_job")

        links = self.links_of(staff, job)

        for label in ("Studio copy of the result", "studio copy"):
            response = staff.get(links[label])
            assert response.status_code == 200, label
            assert response.getvalue() == VIDEO

    def test_it_opens_the_copy_for_a_superuser(self, admin_client, user):
        job = finished(user)

        links = self.links_of(admin_client, job)

        assert admin_client.get(links["Studio copy of the result"]).status_code == 200

    def test_a_copy_lost_from_storage_is_a_404_not_a_server_error(self, admin_client, user):
        job = finished(user)
        default_storage.delete(job.stored_video.name or "")

        links = self.links_of(admin_client, job)

        assert admin_client.get(links["Studio copy of the result"]).status_code == 404
