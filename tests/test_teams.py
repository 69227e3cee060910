"""Team workspace: every job URL checks membership, team switching, roles, and the login pages."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from factories import PASSWORD, TEXT_FORM, make_job, make_member

from tasks_app import teams
from tasks_app.filters import JobFilterForm
from tasks_app.models import Job, JobStatus, Membership, Profile, Team, TeamRole

pytestmark = pytest.mark.django_db

SECRET_TEXT = "Secret line of studio A"
RESULT_URL = "https://cdn.kling.example/result.mp4"


# A job Kling has finished, with a result link (the state some URLs need).
FINISHED: dict[str, Any] = {"status": JobStatus.SUCCEEDED, "result_video_url": RESULT_URL}


# (name, method, url, extra request headers, needs a finished job, alice's status)
JOB_URLS = [
    ("detail page", "get", "/tasks/{pk}/", {}, False, 200),
    ("status poll", "get", "/tasks/{pk}/", {"HTTP_HX_REQUEST": "true"}, False, 200),
    ("retry", "post", "/tasks/{pk}/retry/", {}, False, 302),
    ("cancel", "post", "/tasks/{pk}/cancel/", {}, False, 302),
    ("archive", "post", "/tasks/{pk}/archive/", {}, True, 302),
    ("video", "get", "/tasks/{pk}/video/", {}, True, 302),
    ("video download", "get", "/tasks/{pk}/video/?download=1", {}, True, 302),
]


class TestEveryJobUrlChecksTeamMembership:
    @pytest.mark.parametrize(
        ("method", "url", "headers", "done"),
        [row[1:5] for row in JOB_URLS],
        ids=[row[0] for row in JOB_URLS],
    )
    def test_a_person_of_another_team_gets_404(self, bob, user, method, url, headers, done):
        job = make_job(user, text=SECRET_TEXT, **(FINISHED if done else {}))
        jobs_before = Job.objects.count()

        response = getattr(bob, method)(url.format(pk=job.pk), **headers)

        assert response.status_code == 404
        assert SECRET_TEXT not in response.content.decode()
        assert Job.objects.count() == jobs_before
        job.refresh_from_db()
        assert job.archived_at is None
        assert job.status != JobStatus.CANCELLED

    @pytest.mark.parametrize(
        ("method", "url", "headers", "done", "expected"),
        [row[1:] for row in JOB_URLS],
        ids=[row[0] for row in JOB_URLS],
    )
    def test_a_member_of_the_jobs_team_gets_through(
        self, alice, user, method, url, headers, done, expected
    ):
        job = make_job(user, text=SECRET_TEXT, **(FINISHED if done else {}))

        response = getattr(alice, method)(url.format(pk=job.pk), **headers)

        assert response.status_code == expected
        if expected == 200:
            assert f"/tasks/{job.pk}/" in response.content.decode()

    def test_the_live_rows_of_another_team_are_not_sent(self, bob, alice, user):
        job = make_job(user, text=SECRET_TEXT)

        theirs = bob.get(f"/tasks/live/?id={job.pk}")
        mine = alice.get(f"/tasks/live/?id={job.pk}")

        assert f'id="job-row-{job.pk}"' not in theirs.content.decode()
        assert SECRET_TEXT not in theirs.content.decode()
        assert f'id="job-row-{job.pk}"' in mine.content.decode()
        assert mine.status_code == 200

    def test_new_from_another_teams_job_prefills_nothing(self, bob, alice, user):
        job = make_job(user, text=SECRET_TEXT, video_id="860327899999999999")

        theirs = bob.get(f"/tasks/new/?from={job.pk}")
        mine = alice.get(f"/tasks/new/?from={job.pk}")

        assert theirs.status_code == 200
        assert theirs.context["source_job"] is None
        assert SECRET_TEXT not in theirs.content.decode()
        assert "860327899999999999" not in theirs.content.decode()
        assert mine.context["source_job"] == job
        assert SECRET_TEXT in mine.content.decode()

    def test_the_history_of_another_team_does_not_list_the_job(self, bob, user):
        make_job(user, text=SECRET_TEXT)

        response = bob.get("/tasks/")

        assert response.status_code == 200
        assert SECRET_TEXT not in response.content.decode()


class TestWhoSeesAJob:
    def test_the_rule_reads_the_same_with_the_memberships_the_request_has_read(
        self, user, other_user, team, other_team
    ):
        mine = make_job(user)
        theirs = make_job(other_user, team=other_team)
        read = Profile.objects.for_user(user).memberships

        with CaptureQueriesContext(connection) as asked:
            named = list(Job.objects.visible_to(user, memberships=read))
        looked_up = list(Job.objects.visible_to(user))

        assert named == looked_up == [mine]
        assert theirs not in named
        # The teams are named in the query, not asked for again.
        (query,) = asked.captured_queries
        assert "tasks_app_membership" not in query["sql"]

    def test_someone_elses_memberships_are_refused(self, user, other_user):
        theirs = Profile.objects.for_user(other_user).memberships

        with pytest.raises(ValueError, match="not the person's"):
            Job.objects.visible_to(user, memberships=theirs)

    def test_a_reviewer_sees_every_team_whatever_memberships_are_given(
        self, user, other_user, other_team
    ):
        make_job(user)
        make_job(other_user, team=other_team)
        user.is_superuser = user.is_staff = True
        user.save()

        memberships = Profile.objects.for_user(user).memberships
        assert Job.objects.visible_to(user, memberships=memberships).count() == 2


ANONYMOUS_PAGES = [
    ("get", "/tasks/"),
    ("get", "/tasks/new/"),
    ("get", "/tasks/{pk}/"),
    ("get", "/tasks/live/?id={pk}"),
    ("get", "/tasks/{pk}/video/"),
    ("post", "/tasks/{pk}/retry/"),
    ("post", "/tasks/{pk}/cancel/"),
    ("post", "/tasks/{pk}/archive/"),
    ("get", "/account/"),
    ("post", "/teams/switch/"),
    ("get", "/accounts/password_change/"),
    ("get", "/"),
]


class TestAnonymousVisitors:
    @pytest.mark.parametrize(("method", "url"), ANONYMOUS_PAGES)
    def test_every_page_redirects_to_the_login(self, client, user, method, url):
        job = make_job(user)
        path = url.format(pk=job.pk)

        response = getattr(client, method)(path)

        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")

    def test_the_callback_needs_no_login_but_a_valid_token(self, client, settings, user):
        settings.KLING_WEBHOOK_SECRET = None
        job = make_job(user)
        token = job.callback_token

        wrong = client.post(
            f"/kling/callback/{job.pk}/not-the-token/", b"{}", content_type="application/json"
        )
        right = client.post(
            f"/kling/callback/{job.pk}/{token}/", b"{}", content_type="application/json"
        )

        assert wrong.status_code == 404
        assert right.status_code == 204


class TestSwitchingTeams:
    @pytest.fixture
    def both(self, user, other_team) -> object:
        Membership.objects.create(team=other_team, user=user)
        return user

    def test_the_history_then_lists_only_the_chosen_teams_jobs(self, alice, both, team, other_team):
        make_job(both, team=team, text="Made in studio A")
        make_job(both, team=other_team, text="Made in studio B")
        before = alice.get("/tasks/").content.decode()

        response = alice.post("/teams/switch/", {"team": other_team.pk})
        after = alice.get("/tasks/").content.decode()

        assert "Made in studio A" in before
        assert "Made in studio B" not in before
        assert response.status_code == 302
        assert response["Location"] == "/tasks/"
        assert "Made in studio B" in after
        assert "Made in studio A" not in after
        assert Profile.objects.get(user=both).current_team == other_team

    def test_the_team_menu_is_shown_to_a_person_in_two_teams(self, alice, both, other_team):
        page = alice.get("/tasks/").content.decode()

        assert 'action="/teams/switch/"' in page
        assert f'value="{other_team.pk}"' in page

    def test_leaving_the_current_team_falls_back_to_a_team_you_are_still_in(
        self, alice, both, team, other_team
    ):
        make_job(both, team=team, text="Made in studio A")
        alice.post("/teams/switch/", {"team": other_team.pk})
        Membership.objects.filter(user=both, team=other_team).delete()

        response = alice.get("/tasks/")

        assert response.context["team"] == team
        assert "Made in studio A" in response.content.decode()

    def test_a_team_you_are_not_in_is_a_404(self, alice, user, team):
        outsiders = Team.objects.create(name="Studio C")

        response = alice.post("/teams/switch/", {"team": outsiders.pk})

        assert response.status_code == 404
        assert Profile.objects.filter(user=user, current_team=outsiders).count() == 0

    def test_a_team_id_that_is_not_a_number_is_a_404(self, alice):
        assert alice.post("/teams/switch/", {"team": "abc"}).status_code == 404

    def test_a_new_job_goes_to_the_chosen_team(
        self,
        alice,
        both,
        other_team,
    ):
        alice.post("/teams/switch/", {"team": other_team.pk})

        response = alice.post("/tasks/new/", TEXT_FORM)

        assert response.status_code == 302
        assert Job.objects.get().team == other_team


class TestAPersonWithNoTeam:
    @pytest.fixture
    def loner(self, db):
        return make_member("dave")

    def test_gets_a_personal_team_as_its_admin_on_first_use(self, client, loner):
        client.force_login(loner)

        response = client.get("/tasks/")

        assert response.status_code == 200
        membership = Membership.objects.get(user=loner)
        assert membership.role == TeamRole.ADMIN
        assert membership.team.is_personal
        assert response.context["team"] == membership.team

    def test_can_submit_a_job_at_once(
        self,
        client,
        loner,
    ):
        client.force_login(loner)

        response = client.post("/tasks/new/", TEXT_FORM)

        assert response.status_code == 302
        job = Job.objects.get()
        assert job.submitted_by == loner
        assert job.team.is_personal
        assert Membership.objects.filter(user=loner, team=job.team).exists()

    def test_keeps_the_same_personal_team_afterwards(self, client, loner):
        client.force_login(loner)

        client.get("/tasks/")
        client.get("/account/")

        assert Team.objects.filter(memberships__user=loner).count() == 1


class TestRoles:
    @pytest.fixture
    def admin(self, team):
        return make_member("erin", team, role=TeamRole.ADMIN)

    def login(self, person) -> Client:
        client = Client()
        client.force_login(person)
        return client

    @pytest.mark.parametrize("who", ["submitter", "admin"])
    def test_the_submitter_and_a_team_admin_may_cancel(self, user, admin, who):
        job = make_job(user)
        person = user if who == "submitter" else admin

        response = self.login(person).post(f"/tasks/{job.pk}/cancel/")

        assert response.status_code == 302
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED

    def test_a_plain_teammate_may_not_cancel(self, user, teammate):
        job = make_job(user)

        response = self.login(teammate).post(f"/tasks/{job.pk}/cancel/")

        assert response.status_code == 403
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING

    @pytest.mark.parametrize("who", ["submitter", "admin"])
    def test_the_submitter_and_a_team_admin_may_archive(self, user, admin, who):
        job = make_job(user, **FINISHED)
        person = user if who == "submitter" else admin

        response = self.login(person).post(f"/tasks/{job.pk}/archive/", {"archive": "1"})

        assert response.status_code == 302
        job.refresh_from_db()
        assert job.archived_at is not None

    def test_a_plain_teammate_may_not_archive(self, user, teammate):
        job = make_job(user, **FINISHED)

        response = self.login(teammate).post(f"/tasks/{job.pk}/archive/", {"archive": "1"})

        assert response.status_code == 403
        job.refresh_from_db()
        assert job.archived_at is None

    def test_archiving_can_be_undone(self, user):
        job = make_job(user, **FINISHED, archived_at=timezone.now() - timedelta(days=1))

        self.login(user).post(f"/tasks/{job.pk}/archive/", {"archive": "0"})

        job.refresh_from_db()
        assert job.archived_at is None

    def test_any_member_may_retry(self, user, teammate):
        job = make_job(user, status=JobStatus.FAILED)

        response = self.login(teammate).post(f"/tasks/{job.pk}/retry/")

        assert response.status_code == 302
        retry = Job.objects.get(retry_of=job)
        assert retry.submitted_by == teammate
        assert retry.team == job.team
        assert response["Location"] == retry.get_absolute_url()

    def test_the_detail_page_offers_the_manage_buttons_only_to_those_allowed(
        self, user, teammate, admin
    ):
        job = make_job(user)
        cancel = f'action="/tasks/{job.pk}/cancel/"'

        assert cancel in self.login(user).get(job.get_absolute_url()).content.decode()
        assert cancel in self.login(admin).get(job.get_absolute_url()).content.decode()
        assert cancel not in self.login(teammate).get(job.get_absolute_url()).content.decode()


class TestTheAccountPages:
    def test_the_login_page_uses_the_studios_template_and_logs_in(self, client, user):
        page = client.get("/accounts/login/")

        response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})

        assert page.status_code == 200
        assert "registration/login.html" in [t.name for t in page.templates]
        assert "base.html" in [t.name for t in page.templates]
        assert response.status_code == 302
        assert response["Location"] == "/tasks/"
        assert client.get("/tasks/").status_code == 200

    def test_a_wrong_password_is_refused_on_the_page(self, client, user):
        response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})

        assert response.status_code == 200
        assert 'role="alert"' in response.content.decode()
        assert client.get("/tasks/").status_code == 302

    def test_logout_is_a_post_and_ends_the_session(self, alice):
        page = alice.get("/tasks/").content.decode()

        response = alice.post("/accounts/logout/")

        assert 'action="/accounts/logout/"' in page
        assert response.status_code == 302
        assert response["Location"] == "/accounts/login/"
        assert alice.get("/tasks/").status_code == 302

    def test_logout_by_get_is_not_allowed(self, alice):
        assert alice.get("/accounts/logout/").status_code == 405
        assert alice.get("/tasks/").status_code == 200

    def test_the_password_can_be_changed(self, alice, user):
        page = alice.get("/accounts/password_change/")

        response = alice.post(
            "/accounts/password_change/",
            {
                "old_password": PASSWORD,
                "new_password1": "a much newer passphrase",
                "new_password2": "a much newer passphrase",
            },
        )
        done = alice.get(response["Location"])

        assert "registration/password_change_form.html" in [t.name for t in page.templates]
        assert response.status_code == 302
        assert "registration/password_change_done.html" in [t.name for t in done.templates]
        user.refresh_from_db()
        assert user.check_password("a much newer passphrase")


class TestTheDemoSetupCommand:
    def test_the_demo_account_belongs_to_the_demo_team(self, db):
        call_command("demo_setup", stdout=io.StringIO())

        demo = get_user_model().objects.get(username="demo")
        membership = Membership.objects.get(user=demo)
        assert membership.team.name == "Demo team"
        assert not membership.team.is_personal
        assert membership.role == TeamRole.ADMIN
        assert demo.check_password("lipsync-demo")

    def test_running_it_twice_makes_no_second_team_or_membership(self, db):
        call_command("demo_setup", stdout=io.StringIO())
        call_command("demo_setup", stdout=io.StringIO())

        assert Team.objects.filter(name="Demo team").count() == 1
        assert Membership.objects.filter(user__username="demo").count() == 1

    def test_the_demo_account_works_in_the_demo_team(self, client, db):
        call_command("demo_setup", stdout=io.StringIO())

        client.post("/accounts/login/", {"username": "demo", "password": "lipsync-demo"})
        response = client.get("/tasks/")

        assert response.status_code == 200
        assert response.context["team"].name == "Demo team"
        assert not Team.objects.filter(is_personal=True).exists()


class TestReadingThePersonsTeams:
    """``request.profile`` and its memberships: what every page reads first."""

    def test_the_profile_lists_the_teams_by_name(self, user, team):
        alpha = Team.objects.create(name="Alpha studio")
        Membership.objects.create(team=alpha, user=user, role=TeamRole.ADMIN)

        profile = Profile.objects.for_user(user)
        names = [(m.team.name, m.role) for m in profile.memberships]

        assert names == [("Alpha studio", TeamRole.ADMIN), ("Studio A", TeamRole.MEMBER)]

    def test_a_person_with_a_profile_and_no_team_gets_no_memberships(self, db):
        loner = make_member("lone")

        assert Profile.objects.for_user(loner).memberships == []

    def test_a_member_without_a_profile_yet_works_in_their_team_not_a_new_one(self, user, team):
        assert not Profile.objects.filter(user=user).exists()

        chosen = teams.team_for_person(profile=Profile.objects.for_user(user))

        assert chosen == team
        assert not Team.objects.filter(is_personal=True).exists()
        assert Profile.objects.get(user=user).current_team == team

    def test_a_page_reads_the_persons_teams_once(self, alice, user):
        alice.get("/tasks/")  # the first page makes the profile

        with CaptureQueriesContext(connection) as context:
            alice.get("/tasks/")

        # Memberships read with their teams: the person's own, for the switcher and rights.
        own_teams = 'FROM "tasks_app_membership" INNER JOIN "tasks_app_team"'
        reads = [q for q in context.captured_queries if own_teams in q["sql"]]
        assert len(reads) == 1


class TestTheSubmitterChoices:
    def test_they_are_the_teams_members_by_name(self, user, teammate, other_user, team):
        make_member("aaron", team)

        submitter = JobFilterForm(team=team).fields["submitter"]
        assert isinstance(submitter, forms.ChoiceField)
        choices = submitter.choices
        assert isinstance(choices, list)  # as the field normalises a list it is given

        assert [name for _pk, name in choices] == ["Anyone", "aaron", "alice", "carol"]
        assert (str(user.pk), "alice") in choices
