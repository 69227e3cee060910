"""Helpers the test modules share: making people and jobs, running the worker, reading pages."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import django_tasks_db.management.commands.db_worker as db_worker
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from tasks_app.models import (
    Batch,
    Job,
    JobEvent,
    JobMode,
    JobStatus,
    Membership,
    Team,
    TeamRole,
)
from tasks_app.services import submitting

TEXT_INPUTS: dict[str, Any] = {
    "mode": "text2video",
    "video_id": "860327812345678901",
    "text": "Hello there",
    "voice_id": "genshin_vindi2",
    "voice_language": "en",
    "voice_speed": Decimal("1.0"),
}


# The same inputs as the job form posts them.
TEXT_FORM = {
    "video_source": "video_id",
    "video_id": "860327812345678901",
    "mode": "text2video",
    "text": "Hello from the studio",
    "voice_id": "genshin_vindi2",
    "voice_language": "en",
    "voice_speed": "1.0",
    "consent": "on",
}
AUDIO_FORM = {
    "video_source": "video_id",
    "video_id": "860327812345678901",
    "mode": "audio2video",
    "audio_source": "url",
    "audio_url": "https://example.com/voice.mp3",
    "consent": "on",
}

# An ID3v2.4 tag (empty) and one MPEG-1 Layer III frame (128 kbit/s, 44.1 kHz: 417 bytes).
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"\x00" * 413


PASSWORD = "correct horse battery"


def make_member(username: str, team: Team | None = None, role: str = TeamRole.MEMBER, **fields):
    """A person who logs in with ``PASSWORD``, in ``team`` with ``role`` (in no team without
    one); ``fields`` are the user's own (``is_staff``, ``email``)."""
    person = get_user_model().objects.create_user(username, password=PASSWORD, **fields)
    if team is not None:
        Membership.objects.create(team=team, user=person, role=role)
    return person


# What a person asks for (the service's JobInput); every other field of a job is its state.
INPUT_NAMES = frozenset(field.name for field in dataclasses.fields(submitting.JobInput))
UPLOAD_INPUTS = ("audio_upload", "audio_stored_name")  # a stored job has its audio_file
AUDIO_SOURCES = ("audio_url", *UPLOAD_INPUTS)


def make_job(person, *, team: Team | None = None, status: str | None = None, **fields) -> Job:
    """A job of ``person``'s in ``team`` (by default their first team).

    Without ``status`` it is stored through the service, as the form stores it: pending, with
    its sending scheduled for the worker; ``fields`` are then inputs only. With ``status`` it
    is written as the worker would have left it in that state (sent and finished a few minutes
    ago, with a Kling task id and an event in its timeline) and nothing is scheduled;
    ``fields`` may then set any field of the job.

    Inputs not given are those of ``TEXT_INPUTS``; a job from a video link has no video id,
    and an audio job speaks from a link unless it is given a file.
    """
    inputs = TEXT_INPUTS | {name: value for name, value in fields.items() if name in INPUT_NAMES}
    if inputs.get("video_url") and "video_id" not in fields:
        inputs["video_id"] = ""
    if inputs["mode"] == JobMode.AUDIO:
        inputs |= {"text": "", "voice_id": "", "voice_language": "", "voice_speed": None}
        if not any(inputs.get(name) for name in AUDIO_SOURCES):
            inputs["audio_url"] = "https://files.example/track.mp3"
    team = team or person.memberships.order_by("pk").first().team
    state = {name: value for name, value in fields.items() if name not in INPUT_NAMES}

    if status is None:
        if state:
            raise TypeError(f"{sorted(state)} are not inputs: give the job a status as well")
        job, created = submitting.job_create(
            team=team,
            submitted_by=person,
            job_input=submitting.JobInput(**inputs),
            submission_key=uuid.uuid4(),
        )
        assert created
        return job

    now = timezone.now()
    values = {
        "team": team,
        "submitted_by": person,
        "status": status,
        "created_at": now - timedelta(minutes=3),
        **{name: value for name, value in inputs.items() if name not in UPLOAD_INPUTS},
    }
    if inputs.get("audio_stored_name"):
        values["audio_file"] = inputs["audio_stored_name"]
    if status != JobStatus.PENDING:
        values["sent_at"] = now - timedelta(minutes=2)
        values["kling_task_id"] = f"task-{uuid.uuid4().hex[:16]}"
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        values["finished_at"] = now - timedelta(minutes=1)
    job = Job.objects.create(**(values | state))
    JobEvent.objects.create(job=job, new_status=status, note=f"{status} for the test")
    return job


def make_batch(
    person, *, team: Team | None = None, statuses: list[str] | None = None, **fields
) -> Batch:
    """A batch of ``person``'s with one row per entry of ``statuses`` (three waiting rows by
    default), each row a job as ``make_job`` writes it in that state, its text "Line <row>".

    ``fields`` are given to every row (``voice_id``, ``credits``, ...)."""
    team = team or person.memberships.order_by("pk").first().team
    batch = Batch.objects.create(team=team, created_by=person)
    for row, status in enumerate(statuses or [JobStatus.PENDING] * 3, start=1):
        make_job(
            person,
            team=team,
            status=status,
            **({"text": f"Line {row}"} | fields | {"batch": batch, "batch_row": row}),
        )
    return batch


@functools.cache
def small_mp4() -> bytes:
    """A one-second 64 x 64 MP4 without a face, made once per test run."""
    from media_files import video_bytes

    return video_bytes(seconds=1, width=64, height=64, face=False)


def uploaded_job(
    person, *, data: bytes | None = None, extension: str = "mp4", name: str | None = None
) -> Job:
    """A pending job whose source is an upload in the storage (``name``, or ``data`` stored
    now; by default a small MP4), as the form leaves it: not scheduled yet."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from tasks_app.uploads import stored_source_name

    stored = name or default_storage.save(
        stored_source_name(Job(), f"clip.{extension}"),
        ContentFile(small_mp4() if data is None else data),
    )
    return make_job(
        person, status=JobStatus.PENDING, video_id="", video_file=stored, video_name="clip"
    )


def send_soon(job: Job) -> None:
    """Have the worker send ``job`` on its next run."""
    from tasks_app.services import lifecycle

    lifecycle.job_schedule(job=job, at=timezone.now())
    job.save(update_fields=["next_check_at"])


def rows(response) -> list[int]:
    """The job ids of the history table's rows in a page or partial, in order."""
    return [int(pk) for pk in re.findall(r'<tr id="job-row-(\d+)"', response.content.decode())]


def make_worker(
    worker_id: str, *, batch: bool = True, interval: float = 0, max_tasks: int | None = None
) -> db_worker.Worker:
    """django-tasks-db's own worker, as ``studio_worker`` runs it in each thread."""
    return db_worker.Worker(
        queue_names=["default"],
        interval=interval,
        batch=batch,
        backend_name="default",
        startup_delay=False,
        max_tasks=max_tasks,
        worker_id=worker_id,
        excluded_queue_names=[],
    )


@contextmanager
def keeping_the_test_connection() -> Iterator[None]:
    """The worker drops "old" connections between tasks; inside a test's transaction that
    would close the test's own connection on PostgreSQL. As Django's test client does for
    requests, a test run keeps it (connections are the harness's business, not the app's)."""
    keep = db_worker.close_old_connections
    db_worker.close_old_connections = lambda **kwargs: None
    try:
        yield
    finally:
        db_worker.close_old_connections = keep


def assert_no_failed_tasks() -> None:
    failed = DBTaskResult.objects.filter(status="FAILED")
    assert not failed.exists(), [(r.task_path, r.traceback) for r in failed]


def put_job(job: Job | int, **fields) -> Job:
    """Give a job some state directly (a test's starting point) and return it fresh.

    Saved through ``Job.save``, as the services save."""
    job = Job.objects.get(pk=getattr(job, "pk", job))
    for name, value in fields.items():
        setattr(job, name, value)
    job.save(update_fields=list(fields))
    return job


class CountingHandler(FileUploadHandler):
    """Stands where Django's own handlers stand after ours: counts the bytes passed on."""

    def __init__(self, request=None) -> None:
        super().__init__(request)
        self.passed_on = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.passed_on += len(raw_data)
        return raw_data

    def file_complete(self, file_size: int):
        return SimpleUploadedFile(self.file_name or "upload", b"x" * file_size)


PROJECT = Path(__file__).resolve().parents[1]


def settings_run(code: str = "import lipsync_site.settings", **variables: str):
    """Run ``code`` (which imports the settings) in a fresh interpreter whose environment holds
    only ``variables``: the settings as a deployment with that environment reads them."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(PROJECT)}
    return subprocess.run(  # noqa: S603 (this interpreter, a fixed script)
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env=clean | variables,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
