"""Telling people their jobs finished: a notice on their next page, a count in the tab, e-mail."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django_tasks import task

from tasks_app import wording
from tasks_app.models import Job, JobStatus, Profile

MAX_NOTICES = 5


def _finished_since(user_id: int, since: datetime) -> list[Job]:
    """The person's jobs that succeeded or failed after ``since``, newest first: only what
    a notice shows is read."""
    jobs = Job.objects.filter(
        submitted_by_id=user_id,
        status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED],
        finished_at__gt=since,
    )
    shown = jobs.only("status", "mode", "text", "audio_name", "audio_url")
    return list(shown.order_by("-finished_at")[:MAX_NOTICES])


def notices_take(*, profile: Profile) -> list[Job]:
    """The person's jobs that finished since they last loaded a page; now they have looked."""
    now = timezone.now()
    jobs = _finished_since(profile.user_id, profile.last_seen_at) if profile.last_seen_at else []
    # With nothing new, moving the mark changes nothing the next look would find; skipping
    # the write spares every page view a database write.
    if jobs or profile.last_seen_at is None:
        Profile.objects.filter(pk=profile.pk).update(last_seen_at=now)
        profile.last_seen_at = now
    return jobs


def notices_peek(*, user_id: int) -> list[Job]:
    """The same, without marking them seen (for a page's background refresh)."""
    seen = Profile.objects.filter(user_id=user_id).values_list("last_seen_at", flat=True).first()
    return _finished_since(user_id, seen) if seen else []


@task()
def email_job_finished(job_id: int) -> None:
    job_email_finished(job_id=job_id)


def job_email_finished(*, job_id: int) -> bool:
    """E-mail the submitter that a job finished, if they asked for it; return whether sent."""
    job = Job.objects.select_related("submitted_by").filter(pk=job_id).first()
    if job is None or job.status not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        return False
    person = job.submitted_by
    profile = Profile.objects.filter(user=person, email_when_done=True).first()
    if profile is None or not person.email:
        return False
    link = absolute_url(job.get_absolute_url())
    # In the person's own language (tasks_app.services.profiles), whatever the worker speaks.
    with translation.override(profile.language or settings.LANGUAGE_CODE):
        if job.status == JobStatus.SUCCEEDED:
            subject = _("Your lip-sync “{summary}” is ready").format(summary=job.summary[:40])
            body = _("Your lip-synced video is ready: {link}").format(link=link)
        else:
            subject = _("Your lip-sync “{summary}” failed").format(summary=job.summary[:40])
            reason = wording.render(job.status_message)
            body = _("{reason}\n\nSee the job and try again: {link}").format(
                reason=reason or job.status_detail, link=link
            )
    send_mail(subject, body, None, [person.email])
    return True


def absolute_url(path: str) -> str:
    """A studio page's full address, for e-mails: under ``SITE_URL``, or without it the
    address ``make run`` serves on (set ``SITE_URL`` wherever e-mail is sent)."""
    return (settings.SITE_URL or settings.DEMO_STUDIO_URL) + path
