"""Credits: the team's usage page, and the monthly budget that refuses new jobs and batches."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from factories import TEXT_FORM, TEXT_INPUTS, make_job, make_member, rows

from tasks_app.models import Batch, Job, JobMode, JobStatus, Team, TeamRole
from tasks_app.services import budgets, submitting

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_person(team):
    """Dora, the admin of team A."""
    return make_member("dora", team, role=TeamRole.ADMIN, first_name="Dora", last_name="Diaz")


@pytest.fixture
def dora(admin_person) -> Client:
    client = Client()
    client.force_login(admin_person)
    return client


def charged(person, credits: str, *, days_ago: int = 0, **fields) -> Job:
    """A finished job of ``person``'s that Kling charged ``credits`` for."""
    return make_job(
        person,
        status=JobStatus.SUCCEEDED,
        credits=Decimal(credits),
        created_at=timezone.now() - timedelta(days=days_ago),
        **fields,
    )


def running(person, **fields) -> Job:
    return make_job(person, status=JobStatus.PROCESSING, **fields)


def set_budget(team: Team, amount: str | None) -> None:
    budgets.team_set_budget(team=team, budget=None if amount is None else Decimal(amount))


def submit(team: Team, person) -> Job:
    job, created = submitting.job_create(
        team=team,
        submitted_by=person,
        job_input=submitting.JobInput(**TEXT_INPUTS),
        submission_key=uuid.uuid4(),
    )
    assert created
    return job


def submit_batch(team: Team, person, n: int) -> Batch:
    batch, created = submitting.batch_create(
        team=team,
        created_by=person,
        rows=[submitting.JobInput(**TEXT_INPUTS)] * n,
        submission_key=uuid.uuid4(),
    )
    assert created
    return batch


class TestTheEstimateOfARunningJob:
    def test_is_the_median_of_the_teams_recent_charged_jobs(self, team, user):
        for credits in ["10", "30", "20", "100"]:
            charged(user, credits)
        assert budgets.team_job_estimate(team=team) == Decimal("25.00")

    def test_reads_only_the_latest_charged_jobs(self, team, user, settings):
        for _n in range(budgets.RECENT_JOBS_FOR_ESTIMATE):
            charged(user, "5", days_ago=1)
        charged(user, "500", days_ago=2)  # older than the twenty latest
        assert budgets.team_job_estimate(team=team) == Decimal("5.00")

    def test_ignores_other_teams_and_jobs_not_charged(self, team, user, other_user):
        charged(other_user, "90")
        make_job(user, status=JobStatus.FAILED)
        charged(user, "8")
        assert budgets.team_job_estimate(team=team) == Decimal("8.00")

    def test_is_zero_before_any_job_was_charged(self, team, user):
        assert budgets.team_job_estimate(team=team) == Decimal("0")

    def test_running_jobs_count_at_the_estimate(self, team, user):
        charged(user, "10")
        charged(user, "20")
        running(user)
        running(user)
        make_job(user)  # waiting to be sent: it will cost too

        state = budgets.team_budget_state(team=team)

        assert state.charged == Decimal("30")
        assert state.running == 3
        assert state.per_job == Decimal("15.00")
        assert state.used == Decimal("75.00")


class TestTheMonthsCredits:
    def test_count_this_month_only(self, team, user):
        charged(user, "10")
        last_month = budgets.month_start() - timedelta(days=2)
        make_job(user, status=JobStatus.SUCCEEDED, credits=Decimal("500"), created_at=last_month)
        assert budgets.team_month_credits(team=team) == Decimal("10")


class TestTheBudget:
    def test_without_a_budget_nothing_is_refused(self, team, user):
        charged(user, "100000")
        assert submit(team, user).status == JobStatus.PENDING

    def test_under_the_budget_a_job_is_accepted(self, team, user):
        set_budget(team, "100")
        charged(user, "30")
        charged(user, "30")  # 60 used, and a job costs about 30

        assert submit(team, user).status == JobStatus.PENDING

    def test_at_the_budget_a_job_is_refused(self, team, user, admin_person):
        set_budget(team, "80")
        charged(user, "40")
        charged(user, "40")
        jobs_before = Job.objects.count()

        with pytest.raises(submitting.SubmissionRefused):
            submit(team, user)

        assert Job.objects.count() == jobs_before

    def test_over_the_budget_a_job_is_refused(self, team, user, admin_person):
        set_budget(team, "50")
        charged(user, "40")
        charged(user, "40")

        with pytest.raises(submitting.SubmissionRefused):
            submit(team, user)

    def test_a_job_that_would_pass_it_is_refused(self, team, user):
        set_budget(team, "100")
        charged(user, "45")
        charged(user, "45")  # 90 used; one more job costs about 45

        with pytest.raises(submitting.SubmissionRefused):
            submit(team, user)

    def test_running_jobs_count_towards_it(self, team, user):
        set_budget(team, "100")
        charged(user, "25")
        charged(user, "25")
        assert submit(team, user).status == JobStatus.PENDING  # 50 + 1 running at 25 < 100
        running(user)  # 50 + 2 x 25 = 100: the budget is reached

        with pytest.raises(submitting.SubmissionRefused):
            submit(team, user)

    def test_the_message_says_the_budget_what_was_used_and_who_can_raise_it(
        self, team, user, admin_person
    ):
        make_member("erin", team, role=TeamRole.ADMIN)
        set_budget(team, "80")
        charged(user, "40")
        charged(user, "40")

        with pytest.raises(submitting.SubmissionRefused) as refused:
            submit(team, user)

        message = str(refused.value)
        assert "monthly budget is 80 credits" in message
        assert "80 are already used this month" in message
        assert "Ask Dora Diaz, erin to raise it on the team page." in message

    def test_last_months_credits_do_not_count(self, team, user):
        set_budget(team, "50")
        last_month = budgets.month_start() - timedelta(days=2)
        # Counted, its 40 and a new job's 40 would pass 50.
        make_job(user, status=JobStatus.SUCCEEDED, credits=Decimal("40"), created_at=last_month)
        assert submit(team, user).status == JobStatus.PENDING

    def test_another_teams_spending_does_not_count(self, team, user, other_user):
        set_budget(team, "50")
        charged(other_user, "500")
        assert submit(team, user).status == JobStatus.PENDING

    def test_a_resubmitted_form_still_finds_its_job(self, team, user):
        """The budget refuses new jobs only: a double click returns the job it made."""
        set_budget(team, "100")
        charged(user, "50")
        key = uuid.uuid4()
        inputs = submitting.JobInput(**TEXT_INPUTS)
        job, _ = submitting.job_create(
            team=team, submitted_by=user, job_input=inputs, submission_key=key
        )
        charged(user, "50")

        again, created = submitting.job_create(
            team=team, submitted_by=user, job_input=inputs, submission_key=key
        )

        assert (again.pk, created) == (job.pk, False)

    def test_a_retry_is_refused_too(self, team, user):
        failed = make_job(user, status=JobStatus.FAILED)
        set_budget(team, "40")
        charged(user, "40")

        with pytest.raises(submitting.SubmissionRefused, match="monthly budget is 40"):
            submitting.job_retry(job=failed, submitted_by=user)
        assert not failed.retries.exists()


class TestABatchAgainstTheBudget:
    def test_counts_every_row(self, team, user):
        set_budget(team, "100")
        charged(user, "25")
        charged(user, "25")  # 50 used, 25 a job: two rows fit, three do not

        with pytest.raises(submitting.SubmissionRefused) as refused:
            submit_batch(team, user, 3)
        assert "These 3 jobs would need about 75 more." in str(refused.value)
        assert not Batch.objects.exists()

        batch = submit_batch(team, user, 2)
        assert batch.jobs.count() == 2

    def test_without_a_budget_any_batch_is_accepted(self, team, user):
        charged(user, "1000")
        assert submit_batch(team, user, 5).jobs.count() == 5


class TestTheFormWhenTheBudgetIsReached:
    def test_shows_the_message_and_keeps_the_entries(self, alice, team, user, admin_person):
        set_budget(team, "10")
        charged(user, "10")
        jobs_before = Job.objects.count()

        response = alice.post("/tasks/new/", TEXT_FORM | {"submission_key": str(uuid.uuid4())})

        assert response.status_code == 400
        html = response.content.decode()
        assert "monthly budget is 10 credits" in html
        assert "Ask Dora Diaz to raise it on the team page." in html
        assert TEXT_FORM["text"] in html
        assert Job.objects.count() == jobs_before


class TestSettingTheBudget:
    def test_a_team_admin_sets_and_clears_it(self, dora, team):
        assert dora.post("/team/budget/", {"budget": "250.5"}).status_code == 302
        team.refresh_from_db()
        assert team.monthly_credit_budget == Decimal("250.50")

        assert dora.post("/team/budget/", {"budget": ""}).status_code == 302
        team.refresh_from_db()
        assert team.monthly_credit_budget is None

    @pytest.mark.parametrize("value", ["-5", "lots", "1e400", "123456789012"])
    def test_bad_input_is_an_error_next_to_the_field(self, dora, team, value):
        set_budget(team, "100")

        response = dora.post("/team/budget/", {"budget": value})

        assert response.status_code == 400
        assert 'class="errorlist" role="alert"' in response.content.decode()
        team.refresh_from_db()
        assert team.monthly_credit_budget == Decimal("100")

    def test_a_member_may_not_set_it(self, alice, team):
        assert alice.post("/team/budget/", {"budget": "5"}).status_code == 403
        team.refresh_from_db()
        assert team.monthly_credit_budget is None

    def test_the_team_page_shows_what_is_used_of_it(self, alice, team, user):
        set_budget(team, "100")
        charged(user, "30")
        html = alice.get("/team/").content.decode()
        assert "Used this month: 30 of 100 credits." in html
        assert "still running" not in html

        running(user)
        html = alice.get("/team/").content.decode()
        assert "Used this month: 60 of 100 credits." in html
        assert "This counts 1 job still running at about 30 credits." in html

    def test_without_a_budget_the_page_says_so(self, alice, team, user):
        charged(user, "12.5")
        html = alice.get("/team/").content.decode()
        assert "No budget is set. Used this month: 12.50 credits." in html

    def test_staff_set_it_in_the_admin(self, team):
        staff = make_member("sam", is_staff=True, is_superuser=True)
        client = Client()
        client.force_login(staff)
        page = client.get(f"/admin/tasks_app/team/{team.pk}/change/")
        assert page.status_code == 200
        assert 'name="monthly_credit_budget"' in page.content.decode()


def usage_lines(html: str, testid: str) -> list[tuple[str, str, str]]:
    """(label, credits, jobs) of each row marked ``testid`` on the usage page."""
    found = re.findall(
        rf'<tr data-testid="{testid}"><td>(.*?)</td><td>(.*?)</td>\s*<td>(.*?)</td></tr>',
        html,
        re.S,
    )
    return [(label, credits, re.sub(r"<[^>]+>", "", jobs)) for label, credits, jobs in found]


def links_of(html: str, testid: str) -> list[str]:
    rows_html = re.findall(rf'<tr data-testid="{testid}">.*?</tr>', html, re.S)
    return [
        link.replace("&amp;", "&")
        for row in rows_html
        for link in re.findall(r'href="([^"]+)"', row)
    ]


class TestTheUsagePage:
    @pytest.fixture
    def spending(self, team, user, teammate, other_user):
        charged(user, "10")
        charged(user, "5", mode=JobMode.AUDIO)
        charged(teammate, "20")
        make_job(teammate, status=JobStatus.FAILED)  # counted as a job, no credits
        charged(other_user, "999")  # another team

    def test_shows_the_months_credits_per_person_and_per_kind(self, alice, spending):
        html = alice.get("/team/usage/").content.decode()

        assert "35 credits, 4 jobs" in html
        assert usage_lines(html, "person") == [("carol", "20", "2"), ("alice", "15", "2")]
        assert usage_lines(html, "kind") == [("Audio", "5", "1"), ("Text", "30", "3")]
        assert "999" not in html

    def test_each_number_links_to_the_jobs_behind_it(self, alice, spending, user, teammate):
        html = alice.get("/team/usage/").content.decode()
        carol_link, alice_link = links_of(html, "person")
        audio_link, _text_link = links_of(html, "kind")

        carols_jobs = alice.get(carol_link)
        audio_jobs = alice.get(audio_link)

        assert f"submitter={teammate.pk}" in carol_link
        assert sorted(rows(carols_jobs)) == sorted(
            Job.objects.filter(submitted_by=teammate).values_list("pk", flat=True)
        )
        assert rows(audio_jobs) == list(
            Job.objects.filter(team__name="Studio A", mode=JobMode.AUDIO).values_list(
                "pk", flat=True
            )
        )
        assert len(rows(alice.get(alice_link))) == 2

    def test_the_month_link_covers_the_whole_month_with_archived_jobs(self, alice, user):
        job = charged(user, "10", archived_at=timezone.now())
        html = alice.get("/team/usage/").content.decode()
        link = re.search(r'data-testid="month-total"><a href="([^"]+)"', html)
        assert link
        month = alice.get(link[1].replace("&amp;", "&"))
        assert rows(month) == [job.pk]

    def test_months_are_listed_newest_first(self, alice, user):
        charged(user, "10")
        last_month = budgets.month_start() - timedelta(days=2)
        make_job(user, status=JobStatus.SUCCEEDED, credits=Decimal("7"), created_at=last_month)

        months = budgets.team_usage(team=user.memberships.get().team)

        assert [m.credits for m in months] == [Decimal("10"), Decimal("7")]
        assert months[0].month > months[1].month

    def test_someone_who_left_is_listed_without_a_link(self, alice, team, teammate):
        charged(teammate, "20")
        teammate.memberships.all().delete()

        html = alice.get("/team/usage/").content.decode()

        assert usage_lines(html, "person") == [("carol", "20", "1")]
        assert links_of(html, "person") == []

    def test_an_empty_team_says_so(self, alice):
        html = alice.get("/team/usage/").content.decode()
        assert "No jobs in the last twelve months." in html

    def test_reads_the_usage_in_one_aggregate_query(
        self, team, spending, django_assert_num_queries
    ):
        with django_assert_num_queries(3):  # the rows, the names, the members
            budgets.team_usage(team=team)
