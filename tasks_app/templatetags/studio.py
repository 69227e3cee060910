from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django import template
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _

from tasks_app.kling.voices import get_voice
from tasks_app.models import JobStatus
from tasks_app.wording import Message, render

if TYPE_CHECKING:
    from tasks_app.models import Job

register = template.Library()


@register.filter
def voice_name(voice_id: str) -> str:
    """A voice's display name in the page's language ("Sunny", "阳光少年")."""
    voice = get_voice(voice_id or "")
    if voice is None:
        return voice_id
    return voice.name("zh" if (get_language() or "en").startswith("zh") else "en")


@register.filter
def as_duration(value: timedelta | float | int | None) -> str:
    """Seconds or a timedelta as words: "45 s", "3 min 05 s", "1 h 02 min"."""
    if value is None:
        return ""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    if seconds < 60:
        return _("%(s)d s") % {"s": seconds}
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return _("%(m)d min %(s)02d s") % {"m": minutes, "s": seconds}
    hours, minutes = divmod(minutes, 60)
    return _("%(h)d h %(m)02d min") % {"h": hours, "m": minutes}


@register.filter
def typical_time(seconds: float | None) -> str:
    if seconds is None:
        return _("usually 2 to 5 minutes")
    minutes = max(1, round(seconds / 60))
    if seconds < 90:
        return _("usually about %(s)d seconds") % {"s": round(seconds)}
    return ngettext("usually about %(m)d minute", "usually about %(m)d minutes", minutes) % {
        "m": minutes
    }


@register.filter
def said(message: Message | None, fallback: str = "") -> str:
    """A stored sentence in the reader's language (``fallback``: the stored English text)."""
    return render(message) or fallback


@register.simple_tag(takes_context=True)
def history_row(context: template.Context, job: Job) -> SafeString:
    """One row of the history table, for the page and for its live refresh (out of band).

    Built with ``format_html``, as the admin builds its change list's rows, rather than as a
    template: the page shows 50 rows, on which the template engine spent about 9 ms, nearly
    half the page's time; this takes about 4. ``context`` gives ``person_id`` and
    ``managed_team_ids`` (who may cancel or archive the job) and ``oob``.
    """
    url = _job_url(context, job.pk)
    badges = format_html('<span class="badge badge-{}">{}</span>', job.status, job.status_label)
    if job.is_taking_long:
        badges += format_html(
            '<span class="badge badge-slow">{}</span>', _("Taking longer than usual")
        )
    if job.archived_at:
        badges += format_html('<span class="badge">{}</span>', _("Archived"))

    poster = batch = SafeString()
    if job.poster:
        width = ""
        if job.video_width and job.video_height:
            width = str(round(job.video_width / job.video_height * 48))
        poster = format_html(
            '<img class="row-poster" src="{}poster.jpg" alt="" height="48" loading="lazy"{}>',
            url,
            format_html(' width="{}"', width) if width else "",
        )
    if job.batch_id:
        batch = format_html(
            '<a class="muted row-batch" href="{}">{}</a>',
            reverse("tasks:batch", args=[job.batch_id]),
            _("Batch #%(n)s · row %(row)s") % {"n": job.batch_id, "row": job.batch_row},
        )

    if job.voice_id:
        voice = conditional_escape(voice_name(job.voice_id))
    else:
        voice = format_html('<span class="muted">{}</span>', _("Audio track"))
    took = SafeString()
    if job.finished_at:
        took = conditional_escape(as_duration(job.duration))
    elif job.is_active:
        took = format_html('<span class="muted">{}</span>', _("running"))

    # The buttons post the page's one #row-actions form, which holds the CSRF token and the
    # way back to the page, so no row carries anything of the person reading it.
    actions = SafeString()
    if job.status == JobStatus.FAILED:
        actions += _row_button(url, "retry/", _("Try again"), job.pk)
        actions += format_html(
            '<a class="button small" href="{}?from={}">'
            '{}<span class="visually-hidden"> #{}</span></a>',
            reverse("tasks:create"),
            job.pk,
            _("Edit"),
            job.pk,
        )
    manages = job.team_id in (context.get("managed_team_ids") or ())
    if job.submitted_by_id == context.get("person_id") or manages:
        if job.can_cancel:
            actions += _row_button(url, "cancel/", _("Cancel"), job.pk)
        elif job.is_terminal and job.archived_at:
            actions += _row_button(url, "archive/", _("Unarchive"), job.pk, archive="0")
        elif job.is_terminal:
            actions += _row_button(url, "archive/", _("Archive"), job.pk, archive="1")

    return format_html(
        '<tr id="job-row-{}" class="status-{}"{}><td>{}</td>'
        '<td>{}<a class="row-summary" href="{}">{}</a>{}</td><td>{}</td><td>{}</td>'
        '<td><time datetime="{}">{}</time></td><td>{}</td><td class="row-actions">{}</td></tr>',
        job.pk,
        job.status,
        SafeString(' hx-swap-oob="true"') if context.get("oob") else "",
        badges,
        poster,
        url,
        job.summary or _("(no text)"),
        batch,
        voice,
        job.submitter_name,
        job.created_at.isoformat(),
        formats.date_format(timezone.localtime(job.created_at), "SHORT_DATETIME_FORMAT"),
        took,
        actions,
    )


# A job id no page shows, reversed once a page to find where the id goes in a job's URL.
_SAMPLE_JOB_ID = 987_654_321_012_345


def _job_url(context: template.Context, job_id: int) -> str:
    """``tasks:detail`` of ``job_id``, from one ``reverse()`` a page rather than one a row."""
    parts = context.render_context.get("history_job_url")
    if parts is None:
        sample = reverse("tasks:detail", args=[_SAMPLE_JOB_ID])
        head, _sample, tail = sample.partition(str(_SAMPLE_JOB_ID))
        parts = context.render_context["history_job_url"] = (head, tail)
    head, tail = parts
    return f"{head}{job_id}{tail}"


def _row_button(url: str, action: str, label: str, job_id: int, *, archive: str = "") -> SafeString:
    return format_html(
        '<button type="submit" form="row-actions" formaction="{}{}"{} class="button small">'
        '{}<span class="visually-hidden"> #{}</span></button>',
        url,
        action,
        format_html(' name="archive" value="{}"', archive) if archive else "",
        label,
        job_id,
    )
