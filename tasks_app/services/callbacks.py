"""Kling's calls back to the studio: a hint to look now, never the truth."""

from __future__ import annotations

from django.utils.crypto import constant_time_compare

from tasks_app.models import Job
from tasks_app.services.lifecycle import job_request_check


def job_callback_token_is_valid(*, job: Job, token: str) -> bool:
    return constant_time_compare(job.callback_token, token)


def job_handle_callback(*, job: Job) -> None:
    """Kling says the job changed: ask Kling now rather than wait for the next scheduled check.

    The callback's body is not trusted for state; only Kling's answer to our own query is.
    """
    job_request_check(job=job)
