"""``manage.py move_media_to_bucket``: the files jobs reference, from MEDIA_ROOT into the bucket
(moto's server over HTTP), under the same names, idempotent, with progress, a dry run, and
nothing deleted."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from factories import make_job
from local_http import unused_port

from tasks_app.models import Job, JobStatus

pytestmark = pytest.mark.django_db


class Run:
    """What one run of the command printed."""

    def __init__(self, *args: str) -> None:
        out, err = StringIO(), StringIO()
        call_command("move_media_to_bucket", *args, stdout=out, stderr=err)
        self.out, self.err = out.getvalue(), err.getvalue()


@pytest.fixture
def on_disk(media_root) -> FileSystemStorage:
    """The studio's files as they were before the bucket: on this machine's disk."""
    return FileSystemStorage(location=media_root)


def finished_job(person, disk: FileSystemStorage, tag: str = "a") -> Job:
    """A finished job with all four kinds of file on the disk, each with its own bytes."""
    return make_job(
        person,
        status=JobStatus.SUCCEEDED,
        video_id="",
        video_file=disk.save(f"sources/2026/11/{tag}.mp4", ContentFile(b"source " + tag.encode())),
        audio_file=disk.save(f"audio/2026/11/{tag}.wav", ContentFile(b"audio " + tag.encode())),
        poster=disk.save(f"posters/2026/11/{tag}.jpg", ContentFile(b"poster " + tag.encode())),
        stored_video=disk.save(f"results/1/{tag}.mp4", ContentFile(b"result " * 3000)),
    )


def referenced(job: Job) -> list[str]:
    return sorted(
        str(field.name) for field in (job.video_file, job.audio_file, job.poster, job.stored_video)
    )


class TestMovingMediaToTheBucket:
    def test_it_copies_every_file_a_job_references_under_the_same_name(self, user, on_disk, bucket):
        job = finished_job(user, on_disk)
        on_disk.save("sources/2026/11/never-submitted.mp4", ContentFile(b"staged, abandoned"))

        run = Run()

        assert bucket.object_keys() == referenced(job)
        for name in referenced(job):
            with on_disk.open(name, "rb") as local:
                assert bucket.read(name) == local.read()
        assert "4/4 4 copied, 0 already there" in run.out
        assert run.err == ""

    def test_the_job_then_plays_from_the_bucket(self, alice, user, on_disk, bucket):
        job = finished_job(user, on_disk)
        Run()

        response = alice.get(reverse("tasks:video", args=[job.pk]))
        assert response.status_code == 302, response
        assert response["Location"].startswith(f"{bucket.endpoint}/{bucket.name}/results/")

    def test_a_second_run_copies_nothing_again(self, user, on_disk, bucket):
        finished_job(user, on_disk)
        Run()
        bucket.put(bucket.object_keys()[0], b"changed in the bucket since")

        run = Run()

        assert "4/4 0 copied, 3 already there, 1 different in the bucket" in run.out
        assert "different in the bucket" in run.err
        # Left as it was: the command overwrites nothing.
        assert bucket.read(bucket.object_keys()[0]) == b"changed in the bucket since"

    def test_a_run_stopped_halfway_copies_only_the_rest(self, user, on_disk, bucket):
        job = finished_job(user, on_disk)
        first = referenced(job)[0]
        with on_disk.open(first, "rb") as local:
            bucket.put(first, local.read())

        run = Run()

        assert "4/4 3 copied, 1 already there" in run.out
        assert len(bucket.object_keys()) == 4

    def test_it_shows_progress_every_ten_files_and_at_the_end(self, user, on_disk, bucket):
        for index in range(6):  # 24 files
            finished_job(user, on_disk, tag=f"job{index}")

        run = Run()

        progress = [line for line in run.out.splitlines() if "/24 " in line]
        assert [line.split()[0] for line in progress] == ["10/24", "20/24", "24/24"]
        assert progress[-1] == "24/24 24 copied, 0 already there"

    def test_a_file_shared_by_two_jobs_is_copied_once(self, user, on_disk, bucket):
        job = finished_job(user, on_disk)
        make_job(user, status=JobStatus.FAILED, video_id="", video_file=job.video_file.name)

        run = Run()

        assert "4/4 4 copied" in run.out

    def test_a_dry_run_copies_nothing_and_says_what_it_would(self, user, on_disk, bucket):
        finished_job(user, on_disk)

        run = Run("--dry-run")

        assert bucket.object_keys() == []
        assert "4/4 4 would copy, 0 already there" in run.out
        assert "Dry run: nothing was copied." in run.out

    def test_a_file_missing_here_is_reported_and_the_rest_copied(self, user, on_disk, bucket):
        job = finished_job(user, on_disk)
        on_disk.delete(str(job.poster.name))

        run = Run()

        assert f"{job.poster.name}: missing here" in run.err
        assert "4/4 3 copied, 0 already there, 1 missing here" in run.out
        assert len(bucket.object_keys()) == 3

    def test_it_deletes_no_local_file_and_says_how_to_once_checked(
        self, user, on_disk, bucket, media_root
    ):
        job = finished_job(user, on_disk)

        run = Run()

        assert all(on_disk.exists(name) for name in referenced(job))
        assert "delete them yourself" in run.out
        assert str(media_root) in run.out

    def test_another_folder_can_be_named(self, user, bucket, tmp_path):
        elsewhere = FileSystemStorage(location=tmp_path / "old-media")
        job = finished_job(user, elsewhere)

        run = Run("--from", str(tmp_path / "old-media"))

        assert bucket.object_keys() == referenced(job)
        assert "4/4 4 copied" in run.out

    def test_without_a_bucket_it_stops_with_a_clear_error(self, user, on_disk, media_root):
        finished_job(user, on_disk)

        with pytest.raises(CommandError, match=r"No bucket is configured.*AWS_STORAGE_BUCKET_NAME"):
            Run()

        assert len([path for path in Path(media_root).rglob("*") if path.is_file()]) == 4

    def test_a_bucket_that_does_not_answer_fails_the_run_saying_so(
        self, user, on_disk, bucket, settings
    ):
        finished_job(user, on_disk)
        settings.AWS_S3_ENDPOINT_URL = f"http://127.0.0.1:{unused_port()}"
        settings.AWS_S3_CLIENT_CONFIG = Config(
            retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=1
        )
        settings.STORAGES = {**settings.STORAGES}

        with pytest.raises(CommandError, match="4 files could not be copied"):
            Run()
