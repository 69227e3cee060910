"""A team's credits: what it spent each month (the usage page) and its monthly budget.

Credits are what Kling reports for each job (``Job.credits``); a month is a calendar month of
the studio's time zone, and a job counts in the month it was submitted.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone
from django.utils.translation import gettext as _

from tasks_app.models import ACTIVE_STATUSES, Job, JobMode, Membership, Team, TeamRole

# How many of the team's latest charged jobs the estimate of a running job is the median of.
RECENT_JOBS_FOR_ESTIMATE = 20
# Months the usage page shows, this one included.
USAGE_MONTHS = 12
ZERO = Decimal("0")


class BudgetReached(Exception):
    """A submission the team's monthly budget has no room for; the message says why."""


def month_start(*, now: datetime | None = None) -> datetime:
    """Midnight on the first day of ``now``'s month, in the studio's time zone."""
    local = timezone.localtime(now or timezone.now())
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def team_month_credits(*, team: Team, now: datetime | None = None) -> Decimal:
    """Credits Kling charged this month for the team's jobs (submitted this month)."""
    charged = Job.objects.filter(team=team, created_at__gte=month_start(now=now)).aggregate(
        total=Sum("credits")
    )
    return charged["total"] or ZERO


def team_job_estimate(*, team: Team) -> Decimal:
    """What one job of the team is expected to cost: the median of the credits Kling charged
    for its ``RECENT_JOBS_FOR_ESTIMATE`` latest charged jobs.

    The median, not the mean, so one unusually long job does not inflate every estimate.
    A team none of whose jobs has been charged yet has no estimate (zero): until Kling reports
    a first price, only credits actually charged count against the budget.
    """
    recent = (
        Job.objects.filter(team=team, credits__isnull=False)
        .order_by("-created_at", "-pk")
        .values_list("credits", flat=True)[:RECENT_JOBS_FOR_ESTIMATE]
    )
    prices = [price for price in recent if price is not None]
    return Decimal(statistics.median(prices)).quantize(Decimal("0.01")) if prices else ZERO


@dataclass(frozen=True, kw_only=True)
class BudgetState:
    """Where a team stands against its monthly budget."""

    budget: Decimal | None
    charged: Decimal  # credits Kling charged this month
    running: int  # the team's jobs still waiting or running, not charged yet
    per_job: Decimal  # the estimate of one job (``team_job_estimate``)

    @property
    def used(self) -> Decimal:
        """This month's credits plus the running jobs at the estimate."""
        return self.charged + self.running * self.per_job

    def has_room_for(self, *, jobs: int) -> bool:
        """Whether ``jobs`` more jobs fit: nothing used reaches the budget yet, and the new
        jobs at the estimate do not pass it. No budget: always."""
        if self.budget is None:
            return True
        return self.used < self.budget and self.used + jobs * self.per_job <= self.budget


def team_budget_state(*, team: Team, now: datetime | None = None) -> BudgetState:
    """The team's budget, this month's credits and its running jobs (read now).

    Running jobs are those not finished yet whose price Kling has not reported.
    """
    running = Job.objects.filter(
        team=team, status__in=ACTIVE_STATUSES, credits__isnull=True
    ).count()
    return BudgetState(
        budget=team.monthly_credit_budget,
        charged=team_month_credits(team=team, now=now),
        running=running,
        per_job=team_job_estimate(team=team),
    )


def team_admin_names(*, team: Team) -> list[str]:
    """The team's admins as the studio names people (full name, else username)."""
    admins = (
        Membership.objects.filter(team=team, role=TeamRole.ADMIN)
        .select_related("user")
        .order_by("user__username")
    )
    return [m.user.get_full_name() or m.user.get_username() for m in admins]


def team_check_budget(*, team: Team, jobs: int, locked: bool = False) -> None:
    """Refuse (``BudgetReached``) ``jobs`` new jobs the team's monthly budget has no room for.

    The message says the budget, what is used (this month's credits plus the running jobs,
    each estimated at the team's recent median, ``team_job_estimate``), what the new jobs would
    add, and who can raise the budget (the team's admins by name). The budget is read fresh,
    with the team's row ``locked`` until the transaction ends if asked (one query when the
    team has no budget).
    """
    rows = Team.objects.select_for_update() if locked else Team.objects.all()
    budget = rows.filter(pk=team.pk).values_list("monthly_credit_budget", flat=True).first()
    if budget is None:
        return
    state = replace(team_budget_state(team=team), budget=budget)
    if state.has_room_for(jobs=jobs):
        return
    admins = ", ".join(team_admin_names(team=team)) or _("a studio admin")
    message = _(
        "This team's monthly budget is {budget} credits, and {used} are already used this "
        "month (charged, or estimated for jobs still running)."
    ).format(budget=_credits(budget), used=_credits(state.used))
    if jobs > 1 and state.per_job:
        message += " " + _("These {n} jobs would need about {more} more.").format(
            n=jobs, more=_credits(jobs * state.per_job)
        )
    elif state.per_job:
        message += " " + _("A job needs about {more}.").format(more=_credits(state.per_job))
    message += " " + _("Ask {admins} to raise it on the team page.").format(admins=admins)
    raise BudgetReached(message)


def team_set_budget(*, team: Team, budget: Decimal | None) -> None:
    """Set (or with None, remove) the team's monthly credit budget."""
    with transaction.atomic():
        Team.objects.filter(pk=team.pk).update(monthly_credit_budget=budget)
    team.monthly_credit_budget = budget


def _credits(amount: Decimal) -> str:
    """A number of credits as the pages show them (``floatformat:"-2"``): "80", "12.50"."""
    normal = amount.quantize(Decimal("0.01"))
    return f"{normal:.0f}" if normal == normal.to_integral_value() else f"{normal:.2f}"


# --- The usage page ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class UsageLine:
    """Credits and jobs of one person or one kind in one month."""

    label: str
    credits: Decimal
    jobs: int
    # The history filters that list these jobs (``tasks_app.filters.JobFilterForm``); None
    # for someone who has left the team (the history filters by current members only).
    filters: dict[str, str] | None

    @property
    def query(self) -> str:
        """The filters as the history page's query string ("" when there are none)."""
        return urlencode(self.filters) if self.filters else ""


@dataclass(kw_only=True)
class MonthUsage:
    month: date
    credits: Decimal = ZERO
    jobs: int = 0
    filters: dict[str, str] = field(default_factory=dict)
    people: list[UsageLine] = field(default_factory=list)
    kinds: list[UsageLine] = field(default_factory=list)

    @property
    def query(self) -> str:
        return urlencode(self.filters)


def team_usage(*, team: Team, now: datetime | None = None) -> list[MonthUsage]:
    """The team's credits and jobs per month (the last ``USAGE_MONTHS``, newest first), each
    split per person and per kind (text or audio), with the history filters behind each number.

    One aggregate query, grouped by month, submitter and kind; the sums per month, person and
    kind are added up from its rows. Archived jobs count (they were charged).
    """
    start = month_start(now=now)
    for _month in range(USAGE_MONTHS - 1):
        start = month_start(now=start - timedelta(days=1))
    rows = (
        Job.objects.filter(team=team, created_at__gte=start)
        .annotate(month=TruncMonth("created_at"))
        .values("month", "submitted_by_id", "mode")
        .annotate(credits=Sum("credits"), jobs=Count("pk"))
        .order_by("-month")
    )
    people = get_user_model()
    names = dict(
        people.objects.filter(lipsync_jobs__team=team, lipsync_jobs__created_at__gte=start)
        .distinct()
        .values_list("pk", people.USERNAME_FIELD)
    )
    members = set(Membership.objects.filter(team=team).values_list("user_id", flat=True))
    kinds = {JobMode.TEXT: _("Text"), JobMode.AUDIO: _("Audio")}
    months: dict[date, MonthUsage] = {}
    per_person: dict[tuple[date, int], list[Decimal | int]] = {}
    per_kind: dict[tuple[date, str], list[Decimal | int]] = {}
    for row in rows:
        month = timezone.localtime(row["month"]).date()
        usage = months.setdefault(month, MonthUsage(month=month, filters=_month_filters(month)))
        credits, jobs = row["credits"] or ZERO, row["jobs"]
        usage.credits += credits
        usage.jobs += jobs
        for totals in (
            per_person.setdefault((month, row["submitted_by_id"]), [ZERO, 0]),
            per_kind.setdefault((month, row["mode"]), [ZERO, 0]),
        ):
            totals[0] += credits
            totals[1] += jobs
    for (month, person_id), (credits, jobs) in per_person.items():
        months[month].people.append(
            UsageLine(
                label=names.get(person_id, "?"),
                credits=Decimal(credits),
                jobs=int(jobs),
                filters=(
                    months[month].filters | {"submitter": str(person_id)}
                    if person_id in members
                    else None
                ),
            )
        )
    for (month, mode), (credits, jobs) in per_kind.items():
        months[month].kinds.append(
            UsageLine(
                label=str(kinds.get(JobMode(mode), mode)),
                credits=Decimal(credits),
                jobs=int(jobs),
                filters=months[month].filters | {"mode": mode},
            )
        )
    for usage in months.values():
        usage.people.sort(key=lambda line: (-line.credits, line.label))
        usage.kinds.sort(key=lambda line: line.label)
    return sorted(months.values(), key=lambda usage: usage.month, reverse=True)


def _month_filters(month: date) -> dict[str, str]:
    """The history's filters for every job (archived ones too) submitted in ``month``."""
    next_month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    last_day = next_month - timedelta(days=1)
    return {"date_from": month.isoformat(), "date_to": last_day.isoformat(), "archived": "on"}
