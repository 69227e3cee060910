"""The one way a job's status and its plain-words sentence change."""

from __future__ import annotations

from tasks_app.models import Job, JobEvent, JobStatus
from tasks_app.wording import Message, render_english


def job_status_change(
    *, job: Job, status: JobStatus, note: Message, old_status: str | None = None
) -> None:
    """Change the status and record the change as an event (the caller saves the job).

    ``old_status`` names the status the event starts from when it is not the job's own
    (a new job's first event starts from nothing).
    """
    previous = job.status if old_status is None else old_status
    if previous == status and old_status is None:
        return
    job.status = status
    JobEvent.objects.create(
        job=job,
        old_status=previous,
        new_status=status,
        note=render_english(note)[:500],
        note_message=note,
    )


def job_tell(*, job: Job, message: Message) -> None:
    """Set what the job's page says under its status (the caller saves the job)."""
    job.status_message = message
    job.status_detail = render_english(message)[:500]
