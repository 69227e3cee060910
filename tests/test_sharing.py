"""Share links: a finished video for people without an account, until it expires or is revoked."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from factories import make_job, put_job

from tasks_app.models import Job, JobStatus, ShareLink

pytestmark = pytest.mark.django_db

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8


@pytest.fixture
def finished(user) -> Job:
    """Alice's finished job, its words and her name on it, with a studio copy."""
    job = make_job(user, status=JobStatus.SUCCEEDED, text="Our secret launch line")
    name = default_storage.save(f"results/job-{job.pk}.mp4", ContentFile(VIDEO))
    return put_job(job, stored_video=name, stored_size=len(VIDEO))


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def share(client: Client, job: Job, days: int | str = 7) -> str:
    """Make a link from the job page as a person would; return its path, as the page shows it
    (once)."""
    response = client.post(reverse("tasks:share", args=[job.pk]), {"days": days})
    assert response.status_code == 302, response.content.decode()[:500]
    assert response["Location"] == f"{job.get_absolute_url()}#share"
    page = client.get(job.get_absolute_url()).content.decode()
    match = re.search(r'id="share-url" type="text" readonly value="([^"]+)"', page)
    assert match, "the new link is shown on the job page"
    url = html.unescape(match[1])
    assert url.startswith("http://testserver/share/")
    return url.removeprefix("http://testserver")


class TestMakingAShareLink:
    def test_a_teammate_makes_a_link_that_is_shown_once_and_listed_with_who_made_it(
        self, carol, finished
    ):
        before = timezone.now()
        path = share(carol, finished)

        link = ShareLink.objects.get()
        assert link.job == finished
        assert link.created_by.username == "carol"
        assert before + timedelta(days=7) <= link.expires_at <= timezone.now() + timedelta(days=7)
        assert link.revoked_at is None
        page = carol.get(finished.get_absolute_url()).content.decode()
        assert 'data-testid="share-link"' in page
        assert "carol" in page
        assert 'id="share-url"' not in page  # shown once only
        assert path.split("/")[2] not in page

    def test_the_database_keeps_a_fingerprint_of_the_token_not_the_token(self, alice, finished):
        token = share(alice, finished).split("/")[2]

        link = ShareLink.objects.get()
        assert len(token) >= 40
        assert token not in link.token_hash
        assert len(link.token_hash) == 64

    def test_two_links_of_one_job_have_different_tokens(self, alice, finished):
        first, second = share(alice, finished), share(alice, finished)

        assert first != second
        assert ShareLink.objects.count() == 2

    @pytest.mark.parametrize("days", [1, 30])
    def test_the_expiry_may_be_chosen_from_1_to_30_days(self, alice, finished, days):
        share(alice, finished, days=days)

        link = ShareLink.objects.get()
        assert link.expires_at - link.created_at == timedelta(days=days)

    @pytest.mark.parametrize("days", ["0", "31", "-3", "seven", "", "1e3", "7.5"])
    def test_an_expiry_out_of_bounds_is_refused_next_to_its_field(self, alice, finished, days):
        response = alice.post(reverse("tasks:share", args=[finished.pk]), {"days": days})

        assert response.status_code == 400
        page = response.content.decode()
        field = re.search(r'<input type="number" name="days"[^>]*>', page)
        assert field and 'aria-invalid="true"' in field[0]
        assert "Choose from 1 to 30 days." in page
        assert not ShareLink.objects.exists()

    @pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.PROCESSING])
    def test_a_job_that_did_not_succeed_cannot_be_shared(self, alice, user, status):
        job = make_job(user, status=status)

        response = alice.post(reverse("tasks:share", args=[job.pk]), {"days": "7"}, follow=True)

        assert response.redirect_chain == [(job.get_absolute_url(), 302)]
        page = response.content.decode()
        assert "Only a finished video can be shared." in page
        assert f'action="/tasks/{job.pk}/share/"' not in page
        assert not ShareLink.objects.exists()

    def test_a_finished_job_offers_the_share_form(self, alice, finished):
        page = alice.get(finished.get_absolute_url()).content.decode()

        assert f'action="/tasks/{finished.pk}/share/"' in page
        assert 'name="days"' in page and 'value="7"' in page

    def test_another_team_cannot_share_the_job(self, bob, finished):
        response = bob.post(reverse("tasks:share", args=[finished.pk]), {"days": "7"})

        assert response.status_code == 404
        assert not ShareLink.objects.exists()

    def test_making_a_link_takes_a_post(self, alice, finished):
        assert alice.get(reverse("tasks:share", args=[finished.pk])).status_code == 405


class TestTheSharedPage:
    def test_it_opens_without_an_account_with_the_player_a_download_and_the_label(
        self, alice, finished
    ):
        path = share(alice, finished)

        response = Client().get(path)

        assert response.status_code == 200
        assert response["X-Robots-Tag"].startswith("noindex")
        assert response["Cache-Control"] == "no-store"
        assert response["Referrer-Policy"] == "no-referrer"
        page = response.content.decode()
        assert '<meta name="robots" content="noindex' in page
        assert "AI-generated video" in page
        assert f'src="{path}video.mp4"' in page
        assert f'href="{path}video.mp4?download=1"' in page

    def test_it_shows_nothing_else_of_the_job(self, alice, user, team, finished):
        other = make_job(user, status=JobStatus.SUCCEEDED, text="Another job of hers")
        path = share(alice, finished)

        page = Client().get(path).content.decode()

        assert "AI-generated video" in page  # a positive control for the absences below
        for private in ("Our secret launch line", "alice", team.name, other.text, "/tasks/"):
            assert private not in page, private

    def test_its_video_plays_and_downloads_without_an_account(self, alice, finished):
        path = share(alice, finished)
        visitor = Client()

        whole = visitor.get(f"{path}video.mp4")
        part = visitor.get(f"{path}video.mp4", HTTP_RANGE="bytes=0-99")
        download = visitor.get(f"{path}video.mp4", {"download": "1"})

        assert whole.status_code == 200
        assert whole["Content-Type"] == "video/mp4"
        assert body_of(whole) == VIDEO
        assert whole["X-Robots-Tag"].startswith("noindex")
        assert part.status_code == 206
        assert body_of(part) == VIDEO[:100]
        assert download["Content-Disposition"].startswith("attachment;")
        assert body_of(download) == VIDEO

    def test_an_expired_link_is_a_404(self, alice, finished):
        path = share(alice, finished)
        assert Client().get(path).status_code == 200
        ShareLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

        assert Client().get(path).status_code == 404
        assert Client().get(f"{path}video.mp4").status_code == 404
        assert "Expired" in alice.get(finished.get_absolute_url()).content.decode()

    def test_a_made_up_token_is_a_404(self, alice, finished):
        share(alice, finished)
        visitor = Client()

        for token in ("x" * 43, "", "../tasks", "%00", "a" * 500):
            assert visitor.get(f"/share/{token}/").status_code == 404, token

    def test_a_link_of_a_job_no_longer_finished_is_a_404(self, alice, finished):
        path = share(alice, finished)
        put_job(finished, status=JobStatus.FAILED)

        assert Client().get(path).status_code == 404


class TestRevokingALink:
    def test_a_teammate_revokes_it_and_it_is_a_404_at_once(self, alice, carol, finished):
        path = share(alice, finished)
        link = ShareLink.objects.get()
        visitor = Client()
        assert visitor.get(path).status_code == 200

        response = carol.post(reverse("tasks:share_revoke", args=[finished.pk, link.pk]))

        assert response.status_code == 302
        assert visitor.get(path).status_code == 404
        assert visitor.get(f"{path}video.mp4").status_code == 404
        link.refresh_from_db()
        assert link.revoked_at is not None
        page = carol.get(finished.get_absolute_url()).content.decode()
        assert "Revoked" in page
        assert f'action="/tasks/{finished.pk}/share/{link.pk}/revoke/"' not in page

    def test_the_job_page_offers_revoke_for_a_live_link(self, alice, finished):
        share(alice, finished)
        link = ShareLink.objects.get()

        page = alice.get(finished.get_absolute_url()).content.decode()

        assert f'action="/tasks/{finished.pk}/share/{link.pk}/revoke/"' in page

    def test_another_team_cannot_revoke_it(self, alice, bob, finished):
        path = share(alice, finished)
        link = ShareLink.objects.get()

        response = bob.post(reverse("tasks:share_revoke", args=[finished.pk, link.pk]))

        assert response.status_code == 404
        assert Client().get(path).status_code == 200
        link.refresh_from_db()
        assert link.revoked_at is None

    def test_a_link_named_under_another_job_is_a_404(self, alice, user, finished):
        share(alice, finished)
        link = ShareLink.objects.get()
        other = make_job(user, status=JobStatus.SUCCEEDED)

        response = alice.post(reverse("tasks:share_revoke", args=[other.pk, link.pk]))

        assert response.status_code == 404
        link.refresh_from_db()
        assert link.revoked_at is None

    def test_revoking_takes_a_post(self, alice, finished):
        share(alice, finished)
        link = ShareLink.objects.get()

        response = alice.get(reverse("tasks:share_revoke", args=[finished.pk, link.pk]))

        assert response.status_code == 405


class TestShareLinksInTheAdmin:
    def test_staff_see_the_links_read_only(self, admin_client, alice, finished):
        share(alice, finished)
        link = ShareLink.objects.get()

        listing = admin_client.get(reverse("admin:tasks_app_sharelink_changelist"))
        change = admin_client.get(reverse("admin:tasks_app_sharelink_change", args=[link.pk]))

        assert listing.status_code == 200
        assert "alice" in listing.content.decode()
        assert change.status_code == 200
        assert 'name="_save"' not in change.content.decode()
        assert admin_client.get(reverse("admin:tasks_app_sharelink_add")).status_code == 403
