"""The history page's search and filters, kept in the URL so a view can be shared."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import MINYEAR, UTC, date, datetime, time, tzinfo

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_stubs_ext import StrOrPromise

from tasks_app.kling.voices import VOICES
from tasks_app.models import ACTIVE_STATUSES, Job, JobMode, JobStatus, Team, VoiceLanguage

# Finished jobs are counted up to this many per status; past it the page says "100+". Each
# count re-reads its rows, so the cap is what a count costs a team with a long history.
COUNT_CAP = 100
# The largest id a URL may ask for: more digits than this overflow the database's integers.
MAX_ID = 10**18 - 1


def _utc_edge(day: date, moment: time, zone: tzinfo) -> datetime:
    """``moment`` of ``day`` in ``zone``, in UTC, clamped to what a datetime can hold.

    Within a day of year 1 or 9999 a zone's offset can carry the moment past datetime's own
    limits (both ends in America/Adak, whose year-1 offset is its local mean time, +12:13),
    and the database layer's conversion to UTC would then raise; every job lies between
    those limits anyway.
    """
    try:
        return datetime.combine(day, moment, zone).astimezone(UTC)
    except OverflowError:
        edge = datetime.min if day.year == MINYEAR else datetime.max
        return edge.replace(tzinfo=UTC)


class JobFilterForm(forms.Form):
    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=200,
        widget=forms.SearchInput(
            attrs={"placeholder": _("Text, voice, video ID or link, Kling task ID")}
        ),
    )
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("Any status")), *JobStatus.choices]
    )
    submitter = forms.ChoiceField(label=_("Submitted by"), required=False)
    mode = forms.ChoiceField(
        label=_("Kind"),
        required=False,
        choices=[("", _("Text or audio")), (JobMode.TEXT, _("Text")), (JobMode.AUDIO, _("Audio"))],
    )
    language = forms.ChoiceField(
        label=_("Language"),
        required=False,
        choices=[("", _("Any language")), *VoiceLanguage.choices],
    )
    date_from = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    archived = forms.BooleanField(label=_("Show archived jobs"), required=False)
    # One batch's rows (its page links here); kept in the form as the other filters change.
    batch = forms.IntegerField(
        label=_("Batch"),
        required=False,
        min_value=1,
        max_value=MAX_ID,
        widget=forms.HiddenInput,
    )

    def __init__(self, *args, team: Team, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.team = team
        people = get_user_model()
        members = people.objects.filter(memberships__team=team).order_by(people.USERNAME_FIELD)
        submitter = self.fields["submitter"]
        assert isinstance(submitter, forms.ChoiceField)
        submitter.choices = [("", _("Anyone"))] + [
            (str(pk), username) for pk, username in members.values_list("pk", people.USERNAME_FIELD)
        ]

    @property
    def batch_id(self) -> int | None:
        """The batch the history is narrowed to, if any."""
        return self.cleaned_data.get("batch") if self.is_valid() else None

    def filtered(self, jobs: QuerySet[Job], *, with_status: bool = True) -> QuerySet[Job]:
        """``jobs`` narrowed by every valid filter (status optional, for the counts)."""
        if self.is_bound and self.data.get("batch") and self.has_error("batch"):
            return jobs.none()  # no batch has that number: none of its rows either
        data = self.cleaned_data if self.is_valid() else {}
        if not data.get("archived"):
            jobs = jobs.filter(archived_at__isnull=True)
        if q := (data.get("q") or "").strip():
            voice_ids = [v.id for v in VOICES if q.lower() in v.name_en.lower() or q in v.name_zh]
            jobs = jobs.filter(
                Q(text__icontains=q)
                | Q(voice_id__icontains=q)
                | Q(voice_id__in=voice_ids)
                | Q(video_id__icontains=q)
                | Q(video_url__icontains=q)
                | Q(kling_task_id__icontains=q)
                | Q(audio_name__icontains=q)
                | Q(audio_url__icontains=q)
            )
        if with_status and data.get("status"):
            jobs = jobs.filter(status=data["status"])
        if data.get("submitter"):
            jobs = jobs.filter(submitted_by_id=int(data["submitter"]))
        if data.get("mode"):
            jobs = jobs.filter(mode=data["mode"])
        if data.get("language"):
            jobs = jobs.filter(voice_language=data["language"])
        zone = timezone.get_current_timezone()
        if data.get("date_from"):
            jobs = jobs.filter(created_at__gte=_utc_edge(data["date_from"], time.min, zone))
        if data.get("date_to"):
            jobs = jobs.filter(created_at__lte=_utc_edge(data["date_to"], time.max, zone))
        if data.get("batch"):
            jobs = jobs.filter(batch_id=data["batch"])
        return jobs

    def status_counts(self, jobs: QuerySet[Job]) -> list[StatusCount]:
        """How many jobs the filters match in each status, for the quick filters.

        Counting a team's million finished jobs exactly would cost the page more than
        everyone else on it together, and nobody needs more than "over a hundred": the
        running ones are counted exactly, the finished ones up to ``COUNT_CAP``. One query:
        a count per part, the parts joined by UNION ALL (cheaper to build than one
        subquery per status, and a row per status whatever the history's size).
        """
        matching = self.filtered(jobs, with_status=False).order_by()
        parts = [matching.filter(status__in=ACTIVE_STATUSES)]
        for status in JobStatus.values:
            if status not in ACTIVE_STATUSES:
                capped = matching.filter(status=status).values("pk")[: COUNT_CAP + 1]
                parts.append(Job.objects.filter(pk__in=capped).order_by())
        counted = [part.values_list("status").annotate(n=Count("pk")) for part in parts]
        row = dict(counted[0].union(*counted[1:], all=True))
        return [
            StatusCount(
                status=value,
                label=label,
                count=row[value],
                capped=value not in ACTIVE_STATUSES and row[value] > COUNT_CAP,
            )
            for value, label in JobStatus.choices
            if row.get(value)
        ]


@dataclass(frozen=True)
class StatusCount:
    status: str
    label: StrOrPromise  # translated when shown
    count: int
    # More than COUNT_CAP: shown as "100+".
    capped: bool


@dataclass(frozen=True)
class HistoryPage:
    """One page of the history, found without counting every matching job."""

    jobs: list[Job]
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


# Deeper than any history goes, and small enough that the offset fits any database.
MAX_PAGE = 10**9


def history_page(jobs: QuerySet[Job], *, number: str | None, per_page: int) -> HistoryPage:
    """Page ``number`` of ``jobs`` (the first for anything that is not a page number)."""
    page = 1
    if number and number.isascii() and number.isdigit() and len(number) <= 10:
        page = int(number) if 1 <= int(number) <= MAX_PAGE else 1
    start = (page - 1) * per_page
    # One row past the page says whether another follows.
    rows = list(jobs[start : start + per_page + 1])
    return HistoryPage(jobs=rows[:per_page], number=page, has_next=len(rows) > per_page)
