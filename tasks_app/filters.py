"""The history page's search and filters, kept in the URL so a view can be shared."""

from __future__ import annotations

from datetime import datetime, time

from django import forms
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tasks_app.kling.voices import VOICES
from tasks_app.models import Job, JobMode, JobStatus, JobTally, Membership, Team, VoiceLanguage


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

    # The filters that pick some of a status's jobs (status and archived pick whole tallies).
    NARROWING = ("q", "submitter", "mode", "language", "date_from", "date_to")

    def __init__(self, *args, team: Team, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["submitter"].choices = [("", _("Anyone"))] + [
            (str(pk), username) for pk, username in team_members(team)
        ]

    def filtered(self, jobs: QuerySet[Job], *, with_status: bool = True) -> QuerySet[Job]:
        """``jobs`` narrowed by every valid filter (status optional, for the counts)."""
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
            jobs = jobs.filter(created_at__gte=datetime.combine(data["date_from"], time.min, zone))
        if data.get("date_to"):
            jobs = jobs.filter(created_at__lte=datetime.combine(data["date_to"], time.max, zone))
        return jobs

    def status_counts(self, jobs: QuerySet[Job]) -> list[tuple[str, str, int]]:
        """(status, label, count) for the quick filters, in one query.

        Without a search or filter (other than status and archived) they are the team's
        tallies, which cost the same for any number of jobs; otherwise the matching jobs are
        counted.
        """
        data = self.cleaned_data if self.is_valid() else {}
        if not any(data.get(name) for name in self.NARROWING):
            counts = JobTally.objects.counts(
                team=self.team, with_archived=bool(data.get("archived"))
            )
        else:
            rows = self.filtered(jobs, with_status=False).order_by().values("status")
            counts = {row["status"]: row["n"] for row in rows.annotate(n=Count("id"))}
        return [
            (value, label, counts[value]) for value, label in JobStatus.choices if counts.get(value)
        ]

    def total(self, status_counts: list[tuple[str, str, int]]) -> int:
        """How many jobs the filters match, from ``status_counts`` (no second count)."""
        status = self.cleaned_data.get("status") if self.is_valid() else ""
        return sum(count for value, _label, count in status_counts if not status or value == status)


def team_members(team: Team) -> list[tuple[int, str]]:
    """(id, username) of the team's members, by username: the "Submitted by" choices.

    Every history page reads these: a plain query, a fifth of what the ORM's costs.
    """
    User = get_user_model()
    quote = connection.ops.quote_name
    pk, username = (
        quote(User._meta.pk.column),
        quote(User._meta.get_field(User.USERNAME_FIELD).column),
    )
    query = (
        f"SELECT u.{pk}, u.{username} FROM {quote(User._meta.db_table)} u "  # noqa: S608
        f"JOIN {quote(Membership._meta.db_table)} m ON m.user_id = u.{pk} "
        f"WHERE m.team_id = %s ORDER BY u.{username}"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [team.pk])
        return [(row[0], row[1]) for row in cursor.fetchall()]
