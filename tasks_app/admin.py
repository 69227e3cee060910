"""The staff side: every submission, searchable, reviewable and actionable in Django admin.

Nothing here changes a job directly: reviews go through ``tasks_app.review`` and Kling-facing
steps through ``tasks_app.services``, the same functions the studio and the worker use.

Who sees which jobs here follows the studio's one rule, ``Job.objects.visible_to``: a staff
member with the admin's ``tasks_app.view_job`` permission sees the jobs of their own teams; to
review every team's jobs they also need ``tasks_app.review_job`` (superusers have both), and
``tasks_app.change_job`` to record reviews and run the actions. So every link on a job's page
(its studio page, result video and audio, all served by the studio's views) opens for whoever
can see the job here.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from tasks_app import review
from tasks_app.batch_zip import spreadsheet_cell
from tasks_app.kling.voices import get_voice
from tasks_app.models import (
    ACTIVE_STATUSES,
    Batch,
    Job,
    JobEvent,
    JobStatus,
    Membership,
    ReviewState,
    ShareLink,
    Team,
    WorkerHeartbeat,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User as AuthUser
    from django_stubs_ext import WithAnnotations

User = get_user_model()

KLING_FIELDS = (
    "kling_task_id",
    "kling_request_id",
    "kling_status",
    "kling_status_msg",
    "error_code",
    "error_detail",
    "result_video_id",
    "result_links",
    "result_duration",
    "credits",
)
INPUT_FIELDS = (
    "team",
    "submitted_by",
    "mode",
    "video_id",
    "video_url",
    "source_video",
    "parent_task_id",
    "text",
    "voice_id",
    "voice_name",
    "voice_language",
    "voice_speed",
    "audio_url",
    "stored_audio",
    "audio_name",
    "retry_of",
    "batch",
    "batch_row",
    "consent_by",
    "consent_at",
)
TIME_FIELDS = (
    "created_at",
    "sent_at",
    "processing_at",
    "finished_at",
    "last_checked_at",
    "took",
)
WORKER_FIELDS = (
    "send_attempts",
    "send_started_at",
    "next_check_at",
    "poll_errors",
    "store_attempts",
    "store_error",
    "stored_size",
    "stored_sha256",
    "archived_at",
    "notified_at",
)
# The only fields staff may change on a job; everything else is what the person asked for or
# what Kling said, and editing it would make the record lie.
REVIEW_EDITABLE = ("review_state", "review_note")


def _format_duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}"


def _kling_link(url: str) -> SafeString | str:
    """Kling's result link, clickable only over HTTPS: the value comes from outside the
    studio, and a ``javascript:`` or plain-HTTP link must not be one click away for staff."""
    if not _is_https(url):
        return url  # escaped as plain text by format_html_join / the admin
    return format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, url)


def _is_https(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "https"


def _staff_member(request: HttpRequest) -> AuthUser:
    """The logged-in staff member: the admin lets no one else reach its pages and actions."""
    if not isinstance(request.user, AbstractBaseUser):
        raise PermissionDenied
    return request.user


def _voice_name(job: Job) -> str:
    voice = get_voice(job.voice_id) if job.voice_id else None
    return voice.name("en") if voice else job.voice_id


def _source_facts(job: Job) -> list[str]:
    """The source video's file name, length, size, file size and face check, as words."""
    facts: list[str] = []
    if job.video_name:
        facts.append(job.video_name)
    if job.video_duration is not None:
        facts.append(_("%(seconds).1f s") % {"seconds": job.video_duration})
    if job.video_width and job.video_height:
        size = _("%(width)d × %(height)d px")  # noqa: RUF001 (a multiplication sign)
        facts.append(size % {"width": job.video_width, "height": job.video_height})
    if job.video_bytes is not None:
        facts.append(filesizeformat(job.video_bytes))
    if job.face_found:
        facts.append(str(_("Face found")))
    elif job.face_found is False:
        if job.confirmed_no_face:
            facts.append(str(_("No face found (sent anyway)")))
        else:
            facts.append(str(_("No face found")))
    return facts


# --- Filters ---------------------------------------------------------------------------------


class FindByNumber:
    """Admin search that also finds an object by its number ("#42"), as staff are handed it
    by the person who submitted the job or batch."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        results, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        number = search_term.strip().removeprefix("#")
        # isdigit() alone also accepts "²" (which int() refuses) and numbers too long for the
        # database's integer column.
        if number.isascii() and number.isdigit() and len(number) <= 18:
            results |= queryset.filter(pk=int(number))
        return results, may_have_duplicates


class StuckFilter(admin.SimpleListFilter):
    """Jobs that have waited longer than the studio tells people to expect.

    "At Kling" is what ``Job.is_taking_long`` shows people; "not sent" catches a worker that
    is down, which no one outside the admin would notice.
    """

    title = _("stuck")
    parameter_name = "stuck"
    AT_KLING = "kling"
    NOT_SENT = "unsent"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        minutes = settings.KLING_SLOW_AFTER_MINUTES
        return [
            (self.AT_KLING, _("At Kling for over %(n)s min") % {"n": minutes}),
            (self.NOT_SENT, _("Not sent for over %(n)s min") % {"n": minutes}),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        limit = timezone.now() - timedelta(minutes=settings.KLING_SLOW_AFTER_MINUTES)
        if self.value() == self.AT_KLING:
            return queryset.filter(status__in=ACTIVE_STATUSES, sent_at__lt=limit)
        if self.value() == self.NOT_SENT:
            return queryset.filter(status=JobStatus.PENDING, created_at__lt=limit)
        return queryset


# --- CSV export ------------------------------------------------------------------------------


class _Echo:
    """A file-like object whose write hands the line back, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


# Column names stay untranslated: spreadsheets and scripts read these files by header.
CSV_COLUMNS = (
    "id",
    "created_at",
    "team",
    "submitted_by",
    "mode",
    "video_id",
    "video_url",
    "parent_task_id",
    "text",
    "voice_id",
    "voice_name",
    "voice_language",
    "voice_speed",
    "audio_url",
    "audio_name",
    "status",
    "status_detail",
    "kling_task_id",
    "kling_status",
    "sent_at",
    "finished_at",
    "duration_seconds",
    "result_video_url",
    "result_duration",
    "credits",
    "review_state",
    "reviewed_by",
    "reviewed_at",
)


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        # People's own text (and Kling's URLs) must never run as a formula on a staff
        # member's machine: the same rule as a batch's manifest.
        return spreadsheet_cell(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _csv_row(job: Job) -> list[str]:
    duration = job.duration
    values = (
        job.pk,
        job.created_at,
        job.team.name,
        job.submitted_by.get_username(),
        job.mode,
        job.video_id,
        job.video_url,
        job.parent_task_id,
        job.text,
        job.voice_id,
        _voice_name(job),
        job.voice_language,
        job.voice_speed,
        job.audio_url,
        job.audio_name,
        job.status,
        job.status_detail,
        job.kling_task_id,
        job.kling_status,
        job.sent_at,
        job.finished_at,
        round(duration.total_seconds()) if duration and job.finished_at else None,
        job.result_video_url,
        job.result_duration,
        job.credits,
        job.review_state,
        job.reviewed_by.get_username() if job.reviewed_by else None,
        job.reviewed_at,
    )
    return [_csv_cell(value) for value in values]


def _csv_lines(jobs: QuerySet[Job]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    # iterator() keeps memory flat however many jobs are selected.
    for job in jobs.iterator(chunk_size=500):
        yield writer.writerow(_csv_row(job))


# --- Jobs ------------------------------------------------------------------------------------


class JobEventInline(admin.TabularInline):
    """The job's timeline: recorded by the services, never written by hand."""

    model = JobEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "old_status", "new_status", "note")
    verbose_name = _("status change")
    verbose_name_plural = _("timeline")

    def has_add_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(FindByNumber, admin.ModelAdmin):
    class Media:
        css = {"all": ("admin_extra/admin.css",)}

    list_display = (
        "id",
        "poster_thumbnail",
        "status_badge",
        "review_badge",
        "team",
        "submitted_by",
        "mode",
        "voice_name",
        "excerpt",
        "created_at",
        "took",
        "credits",
    )
    # Shown next to the stuck filter's results: what Kling last said, and when.
    stuck_columns = ("kling_answer", "last_checked_at")
    list_display_links = ("id", "excerpt")
    list_filter = (
        "status",
        StuckFilter,
        "needs_person",
        "review_state",
        ("team", admin.RelatedOnlyFieldListFilter),
        ("submitted_by", admin.RelatedOnlyFieldListFilter),
        "mode",
        "voice_language",
        ("batch", admin.EmptyFieldListFilter),
    )
    list_select_related = ("team", "submitted_by")
    search_fields = (
        "text",
        "audio_name",
        "kling_task_id",
        "kling_request_id",
        "video_id",
        "video_url",
        "result_video_id",
        "result_video_url",
        "submitted_by__username",
        "team__name",
    )
    search_help_text = _(
        "Text, Kling task or request ID, video ID or link, submitter's username, team, or a "
        "job number."
    )
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")
    actions = (
        "approve",
        "flag",
        "refresh_from_kling",
        "retry_failed",
        "send_held_again",
        "fail_held",
        "export_csv",
    )
    fieldsets = (
        (None, {"fields": ("status_badge", "status_detail", "links")}),
        (_("Review"), {"fields": ("review_state", "review_note", "reviewed_by", "reviewed_at")}),
        (_("Inputs"), {"fields": INPUT_FIELDS}),
        (_("From Kling"), {"fields": KLING_FIELDS}),
        (_("Times"), {"fields": TIME_FIELDS}),
        (_("Worker"), {"fields": WORKER_FIELDS, "classes": ("collapse",)}),
    )
    inlines = (JobEventInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        # The studio's rule, so the admin never lists a job whose studio links would 404.
        return super().get_queryset(request) & Job.objects.visible_to(request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> tuple:
        every = (name for _title, options in self.fieldsets for name in options["fields"])
        return tuple(name for name in every if name not in REVIEW_EDITABLE)

    def get_list_display(self, request: HttpRequest) -> tuple:
        if request.GET.get(StuckFilter.parameter_name):
            return (*self.list_display, *self.stuck_columns)
        return self.list_display

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs start from the studio's form, which checks Kling's limits

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # A job is the record of what Kling was asked and charged; people archive theirs.
        return False

    def save_model(self, request: HttpRequest, obj: Job, form, change: bool) -> None:
        if change and not set(form.changed_data) & set(REVIEW_EDITABLE):
            return  # saving an untouched page must not sign someone's name under it
        review.job_review(
            job=obj,
            reviewer=_staff_member(request),
            state=form.cleaned_data["review_state"],
            note=form.cleaned_data["review_note"],
        )

    # Columns and read-only fields.

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, job: Job) -> SafeString:
        slow = job.is_taking_long
        return format_html(
            '<span class="job-badge job-badge--{}{}" title="{}">{}</span>',
            job.status,
            " job-badge--slow" if slow else "",
            _("Taking longer than usual") if slow else job.status_detail,
            job.get_status_display(),
        )

    @admin.display(description=_("review"), ordering="review_state")
    def review_badge(self, job: Job) -> SafeString:
        return format_html(
            '<span class="review-badge review-badge--{}">{}</span>',
            job.review_state,
            job.get_review_state_display(),
        )

    @admin.display(description=_("voice"), ordering="voice_id")
    def voice_name(self, job: Job) -> str:
        return _voice_name(job)

    @admin.display(description=_("text"))
    def excerpt(self, job: Job) -> str:
        return Truncator(job.summary).chars(40) or "-"

    @admin.display(description=_("took"))
    def took(self, job: Job) -> str:
        return _format_duration(job.duration)

    @admin.display(description=_("Kling's last answer"))
    def kling_answer(self, job: Job) -> SafeString:
        detail = job.error_detail or job.kling_status_msg
        return format_html(
            "<strong>{}</strong> {}",
            job.kling_status or "-",
            Truncator(detail).chars(80),
        )

    # Stored files are linked through the studio's views (fixed content type, nosniff, a
    # Content-Disposition), never through their storage URL: nothing serves /media/.

    @admin.display(description=_("links"))
    def links(self, job: Job) -> SafeString:
        items = [(job.get_absolute_url(), _("Job page in the studio"))]
        if _is_https(job.result_video_url):
            items.append((job.result_video_url, _("Result video on Kling")))
        if job.stored_video:
            items.append((reverse("tasks:video", args=[job.pk]), _("Studio copy of the result")))
        return format_html_join(
            " · ", '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', items
        )

    @admin.display(description=_("result video"))
    def result_links(self, job: Job) -> SafeString | str:
        if not job.result_video_url and not job.stored_video:
            return "-"
        parts: list[SafeString | str] = []
        if job.result_video_url:
            parts.append(_kling_link(job.result_video_url))
        if job.stored_video:
            parts.append(
                format_html(
                    '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>',
                    reverse("tasks:video", args=[job.pk]),
                    _("studio copy"),
                )
            )
        return format_html_join(" · ", "{}", ((part,) for part in parts))

    @admin.display(description=_("video"))
    def poster_thumbnail(self, job: Job) -> SafeString | str:
        if not job.poster:
            return "-"
        return format_html(
            '<img src="{}" alt="" height="48" loading="lazy">',
            reverse("tasks:poster", args=[job.pk]),
        )

    @admin.display(description=_("source video"))
    def source_video(self, job: Job) -> SafeString | str:
        """What the studio measured of the source before sending it (nothing for an ID)."""
        if job.video_id:
            return str(_("A Kling video ID: the studio cannot check it; Kling does."))
        facts = _source_facts(job)
        if not facts and not job.poster:
            return "-"
        poster = (
            format_html(
                '<img src="{}" alt="{}" style="max-height: 240px; max-width: 100%"><br>',
                reverse("tasks:poster", args=[job.pk]),
                _("A frame from the source video"),
            )
            if job.poster
            else ""
        )
        return format_html("{}{}", poster, " · ".join(facts))

    @admin.display(description=_("audio file"))
    def stored_audio(self, job: Job) -> SafeString | str:
        if not job.audio_file:
            return "-"
        return format_html(
            '<a href="{}">{}</a>', reverse("tasks:audio", args=[job.pk]), _("Download the audio")
        )

    # Actions: each goes through a service, then says what it did.

    @admin.action(description=_("Approve the selected jobs"), permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        count = review.job_review_bulk(
            jobs=queryset, reviewer=_staff_member(request), state=ReviewState.APPROVED
        )
        self.message_user(request, ngettext("Approved %d job.", "Approved %d jobs.", count) % count)

    @admin.action(description=_("Flag the selected jobs"), permissions=["change"])
    def flag(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        count = review.job_review_bulk(
            jobs=queryset, reviewer=_staff_member(request), state=ReviewState.FLAGGED
        )
        self.message_user(request, ngettext("Flagged %d job.", "Flagged %d jobs.", count) % count)

    @admin.action(description=_("Refresh from Kling now"), permissions=["change"])
    def refresh_from_kling(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        total = queryset.count()
        scheduled = review.job_request_check_bulk(jobs=queryset)
        message = ngettext(
            "Scheduled a check with Kling for %(n)d job.",
            "Scheduled a check with Kling for %(n)d jobs.",
            scheduled,
        ) % {"n": scheduled}
        skipped = total - scheduled
        if skipped:
            message += " " + ngettext(
                "%(n)d was skipped: not sent yet or already finished.",
                "%(n)d were skipped: not sent yet or already finished.",
                skipped,
            ) % {"n": skipped}
        self.message_user(request, message, messages.SUCCESS if scheduled else messages.WARNING)

    @admin.action(description=_("Retry the selected failed jobs"), permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        outcome = review.job_retry_failed_bulk(jobs=queryset.select_related("team", "submitted_by"))
        message = ngettext("Started %(n)d new job.", "Started %(n)d new jobs.", outcome.created) % {
            "n": outcome.created
        }
        if outcome.already_retried:
            message += " " + ngettext(
                "%(n)d had been retried already.",
                "%(n)d had been retried already.",
                outcome.already_retried,
            ) % {"n": outcome.already_retried}
        if outcome.not_failed:
            message += " " + ngettext(
                "%(n)d had not failed and was left alone.",
                "%(n)d had not failed and were left alone.",
                outcome.not_failed,
            ) % {"n": outcome.not_failed}
        if outcome.refused:
            message += " " + ngettext(
                "%(n)d would go over its submitter's per-minute limit; retry it in a minute.",
                "%(n)d would go over their submitters' per-minute limit; retry them in a minute.",
                outcome.refused,
            ) % {"n": outcome.refused}
        level = messages.SUCCESS if outcome.created else messages.WARNING
        self.message_user(request, message, level)

    @admin.action(
        description=_("Held jobs: Kling has no task for them, send them again"),
        permissions=["change"],
    )
    def send_held_again(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        released = review.job_release_bulk(jobs=queryset, send_again=True)
        self._report_release(request, released, len(queryset))

    @admin.action(description=_("Held jobs: stop them (failed)"), permissions=["change"])
    def fail_held(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        released = review.job_release_bulk(jobs=queryset, send_again=False)
        self._report_release(request, released, len(queryset))

    def _report_release(self, request: HttpRequest, released: int, selected: int) -> None:
        message = ngettext("Settled %(n)d held job.", "Settled %(n)d held jobs.", released) % {
            "n": released
        }
        if selected > released:
            message += " " + ngettext(
                "%(n)d was not held and was left alone.",
                "%(n)d were not held and were left alone.",
                selected - released,
            ) % {"n": selected - released}
        self.message_user(request, message, messages.SUCCESS if released else messages.WARNING)

    @admin.action(description=_("Export the selected jobs as CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Job]) -> StreamingHttpResponse:
        jobs = queryset.select_related("team", "submitted_by", "reviewed_by").order_by(
            "created_at", "pk"
        )
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        return StreamingHttpResponse(
            _csv_lines(jobs),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="jobs-{stamp}.csv"'},
        )


# --- Batches ---------------------------------------------------------------------------------


class _BatchRows(TypedDict):
    _rows: int  # annotated in BatchAdmin.get_queryset


@admin.register(Batch)
class BatchAdmin(FindByNumber, admin.ModelAdmin):
    """Batches as they were made: read-only, like jobs; their rows are ordinary jobs."""

    list_display = ("id", "team", "created_by", "row_count", "created_at", "archived_at")
    list_filter = (("team", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("team", "created_by")
    search_fields = ("created_by__username", "team__name")
    search_help_text = _("Username of who made it, team, or a batch number.")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")
    fields = readonly_fields = (
        "team",
        "created_by",
        "created_at",
        "archived_at",
        "row_count",
        "links",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        # The studio's rule, as for jobs: a batch whose studio page would 404 is not listed.
        visible = super().get_queryset(request) & Batch.objects.visible_to(request.user)
        return visible.annotate(_rows=Count("jobs__batch_row", distinct=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # batches start from the studio's page, which checks every row

    def has_change_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return False  # its rows are the record of what Kling was asked and charged

    @admin.display(description=_("rows"), ordering="_rows")
    def row_count(self, batch: WithAnnotations[Batch, _BatchRows]) -> int:
        return batch._rows

    @admin.display(description=_("links"))
    def links(self, batch: Batch) -> SafeString:
        jobs = reverse("admin:tasks_app_job_changelist") + f"?batch__id__exact={batch.pk}"
        return format_html_join(
            " · ",
            '<a href="{}">{}</a>',
            [
                (batch.get_absolute_url(), _("Batch page in the studio")),
                (jobs, _("Its jobs, every attempt")),
            ],
        )


# --- Share links -----------------------------------------------------------------------------


class ShareLinkStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"
    LIVE, EXPIRED, REVOKED = "live", "expired", "revoked"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [
            (self.LIVE, _("Live")),
            (self.EXPIRED, _("Expired")),
            (self.REVOKED, _("Revoked")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ShareLink]) -> QuerySet[ShareLink]:
        now = timezone.now()
        if self.value() == self.LIVE:
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == self.EXPIRED:
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == self.REVOKED:
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    """Links to finished videos for people without an account: a record, read-only (people
    make and revoke them on the job page). The token itself is never stored."""

    list_display = ("id", "job", "created_by", "created_at", "expires_at", "revoked_at")
    list_filter = (
        ShareLinkStateFilter,
        ("job__team", admin.RelatedOnlyFieldListFilter),
        ("created_by", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("job", "created_by")
    search_fields = ("created_by__username", "job__team__name")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")
    fields = readonly_fields = ("job", "created_by", "created_at", "expires_at", "revoked_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ShareLink]:
        # The studio's rule, as for jobs: only links of the jobs staff may see.
        return super().get_queryset(request) & ShareLink.objects.visible_to(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ShareLink | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ShareLink | None = None) -> bool:
        return False


# --- Teams and people ------------------------------------------------------------------------


class TeamMembershipInline(admin.TabularInline):
    """The team's members, on the team's page."""

    model = Membership
    extra = 0
    fields = ("user", "role", "joined_at")
    readonly_fields = ("joined_at",)
    autocomplete_fields = ("user",)
    verbose_name = _("member")
    verbose_name_plural = _("members")


class UserMembershipInline(admin.TabularInline):
    """The teams a person belongs to, on the person's page."""

    model = Membership
    extra = 0
    fields = ("team", "role", "joined_at")
    readonly_fields = ("joined_at",)
    autocomplete_fields = ("team",)
    verbose_name = _("team membership")
    verbose_name_plural = _("team memberships")


class _TeamMembers(TypedDict):
    _members: int  # annotated in TeamAdmin.get_queryset


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ("admin_extra/admin.css",)}

    list_display = ("name", "is_personal", "member_count", "created_at")
    list_filter = ("is_personal",)
    search_fields = ("name", "memberships__user__username")
    fields = ("name", "is_personal", "monthly_credit_budget", "created_at", "monthly_usage")
    readonly_fields = ("created_at", "monthly_usage")
    inlines = (TeamMembershipInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).annotate(_members=Count("memberships"))

    @admin.display(description=_("members"), ordering="_members")
    def member_count(self, team: WithAnnotations[Team, _TeamMembers]) -> int:
        return team._members

    @admin.display(description=_("usage per month"))
    def monthly_usage(self, team: Team) -> SafeString | str:
        if team.pk is None:
            return "-"
        months = review.team_monthly_usage(team=team)
        if not months:
            return str(_("No jobs yet."))
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (m.month.strftime("%Y-%m"), m.jobs, m.succeeded, number_format(m.credits, 2))
                for m in months
            ),
        )
        total = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            _("Total"),
            sum(m.jobs for m in months),
            sum(m.succeeded for m in months),
            number_format(sum(m.credits for m in months), 2),
        )
        return format_html(
            '<table class="team-usage"><thead><tr><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th></tr></thead><tbody>{}</tbody><tfoot>{}</tfoot></table>",
            _("Month"),
            _("Jobs"),
            _("Succeeded"),
            _("Credits"),
            rows,
            total,
        )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "team", "role", "joined_at")
    list_filter = ("role", ("team", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user", "team")
    search_fields = ("user__username", "team__name")
    autocomplete_fields = ("team", "user")


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Django's own user admin, plus the teams a person belongs to."""

    inlines = (UserMembershipInline,)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    """The worker processes that reported themselves lately, and whether they still do."""

    list_display = ("worker_id", "state", "hostname", "pid", "started_at", "last_seen_at")
    list_filter = ("hostname",)
    search_fields = ("worker_id", "hostname")
    readonly_fields = ("worker_id", "hostname", "pid", "started_at", "last_seen_at", "stopped_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # workers report themselves

    def has_change_permission(
        self, request: HttpRequest, obj: WorkerHeartbeat | None = None
    ) -> bool:
        return False

    @admin.display(description=_("state"))
    def state(self, worker: WorkerHeartbeat) -> str:
        if worker.stopped_at is not None:
            return str(_("Stopped"))
        silent = timedelta(seconds=settings.WORKER_SILENT_AFTER_SECONDS)
        if timezone.now() - worker.last_seen_at > silent:
            return str(_("Not heard from"))
        return str(_("Running"))
