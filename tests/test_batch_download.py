"""Download all: one ZIP of a batch's finished results and a manifest, streamed in constant
memory, with every cell a spreadsheet would run as a formula made harmless."""

from __future__ import annotations

import csv
import io
import os
import tracemalloc
import zipfile
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import StreamingHttpResponse
from django.urls import reverse
from factories import make_batch, make_job, put_job

from tasks_app.models import Batch, Job, JobMode, JobStatus

pytestmark = pytest.mark.django_db

MANIFEST_HEADER = [
    "row",
    "status",
    "text",
    "voice",
    "language",
    "speed",
    "file_name",
    "kling_task_id",
    "credits",
    "failure_reason",
]


def video_bytes(n: int) -> bytes:
    """A small stand-in for a result: an MP4 box header, then bytes that differ per ``n``."""
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes([n]) * 4000


def keep_result(job: Job, content: bytes) -> Job:
    """Store ``content`` as the studio's copy of ``job``'s result, as the worker does."""
    name = default_storage.save(f"results/{job.team_id}/job-{job.pk}.mp4", ContentFile(content))
    return put_job(job, stored_video=name, stored_size=len(content))


def row_job(batch: Batch, row: int) -> Job:
    return Job.objects.filter(batch=batch, batch_row=row).latest("pk")


def download(client, batch: Batch) -> zipfile.ZipFile:
    response = client.get(reverse("tasks:batch_download", args=[batch.pk]))
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None  # every entry's checksum holds
    return archive


def manifest(archive: zipfile.ZipFile) -> list[dict[str, str]]:
    text = archive.read("manifest.csv").decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == MANIFEST_HEADER
    return list(reader)


class TestTheResponse:
    def test_is_a_streamed_zip_attachment_named_after_the_batch(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED])
        keep_result(row_job(batch, 1), video_bytes(1))

        response = alice.get(reverse("tasks:batch_download", args=[batch.pk]))

        assert isinstance(response, StreamingHttpResponse)
        assert response["Content-Type"] == "application/zip"
        assert response["Content-Disposition"] == f'attachment; filename="batch-{batch.pk}.zip"'
        assert response["X-Content-Type-Options"] == "nosniff"
        assert not response.has_header("Content-Length")
        assert response.getvalue().startswith(b"PK\x03\x04")

    def test_is_a_get(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED])

        response = alice.post(reverse("tasks:batch_download", args=[batch.pk]))

        assert response.status_code == 405


class TestTheEntries:
    def test_hold_every_stored_result_named_by_row_and_first_words(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED] * 3)
        put_job(row_job(batch, 1), text="Hello there, dear customer number one! Welcome back")
        put_job(row_job(batch, 2), text="Bonjour à tous")
        put_job(row_job(batch, 3), text="你好，世界")  # noqa: RUF001 (a Chinese comma)
        for row in (1, 2, 3):
            keep_result(row_job(batch, row), video_bytes(row))

        archive = download(alice, batch)

        assert archive.namelist() == [
            "1-hello-there-dear-customer-number-one.mp4",
            "2-bonjour-à-tous.mp4",
            "3-你好世界.mp4",
            "manifest.csv",
        ]
        for row, name in enumerate(archive.namelist()[:3], start=1):
            assert archive.read(name) == video_bytes(row)
            # Already compressed: stored as it is. The manifest is text: deflated.
            assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("manifest.csv").compress_type == zipfile.ZIP_DEFLATED

    def test_an_audio_row_is_named_after_its_audio(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.SUCCEEDED])
        put_job(
            row_job(batch, 2),
            mode=JobMode.AUDIO,
            text="",
            voice_id="",
            voice_language="",
            voice_speed=None,
            audio_url="https://files.example/greeting-for-anna.mp3",
        )
        for row in (1, 2):
            keep_result(row_job(batch, row), video_bytes(row))

        archive = download(alice, batch)

        assert archive.namelist() == ["1-line-1.mp4", "2-greeting-for-anna.mp4", "manifest.csv"]

    def test_a_text_without_words_names_the_file_by_its_row(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED], text="?!…")
        keep_result(row_job(batch, 1), video_bytes(1))

        archive = download(alice, batch)

        assert archive.namelist() == ["1.mp4", "manifest.csv"]

    def test_hold_the_newest_attempt_of_a_retried_row(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED])
        keep_result(row_job(batch, 1), video_bytes(1))
        retry = make_job(user, status=JobStatus.SUCCEEDED, batch=batch, batch_row=1, text="Again")
        keep_result(retry, video_bytes(9))

        archive = download(alice, batch)

        assert archive.namelist() == ["1-again.mp4", "manifest.csv"]
        assert archive.read("1-again.mp4") == video_bytes(9)

    def test_a_batch_with_nothing_finished_gives_the_manifest_alone(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.PENDING, JobStatus.FAILED])

        archive = download(alice, batch)

        assert archive.namelist() == ["manifest.csv"]
        assert [line["row"] for line in manifest(archive)] == ["1", "2"]


class TestTheManifest:
    def test_has_a_line_per_row_with_its_columns(self, alice, user):
        batch = make_batch(
            user,
            statuses=[JobStatus.SUCCEEDED, JobStatus.FAILED],
            voice_language="zh",
            voice_speed=Decimal("1.5"),
        )
        ready = keep_result(put_job(row_job(batch, 1), credits=Decimal("2.00")), video_bytes(1))
        failed = put_job(
            row_job(batch, 2), status_detail="Kling could not find a face in the video."
        )

        lines = manifest(download(alice, batch))

        assert lines == [
            {
                "row": "1",
                "status": "succeeded",
                "text": "Line 1",
                "voice": "genshin_vindi2",
                "language": "zh",
                "speed": "1.5",
                "file_name": "1-line-1.mp4",
                "kling_task_id": ready.kling_task_id,
                "credits": "2.00",
                "failure_reason": "",
            },
            {
                "row": "2",
                "status": "failed",
                "text": "Line 2",
                "voice": "genshin_vindi2",
                "language": "zh",
                "speed": "1.5",
                "file_name": "",
                "kling_task_id": failed.kling_task_id,
                "credits": "",
                "failure_reason": "Kling could not find a face in the video.",
            },
        ]

    def test_says_why_a_row_has_no_file(self, alice, user):
        batch = make_batch(
            user,
            statuses=[
                JobStatus.SUCCEEDED,
                JobStatus.SUCCEEDED,
                JobStatus.SUCCEEDED,
                JobStatus.PROCESSING,
                JobStatus.SUCCEEDED,
            ],
        )
        put_job(row_job(batch, 2), store_error="Kling's link answered 403.")
        lost = keep_result(row_job(batch, 3), video_bytes(3))
        assert lost.stored_video.name
        default_storage.delete(lost.stored_video.name)
        keep_result(row_job(batch, 5), video_bytes(5))

        archive = download(alice, batch)

        assert archive.namelist() == ["5-line-5.mp4", "manifest.csv"]
        reasons = {
            line["row"]: (line["file_name"], line["failure_reason"]) for line in manifest(archive)
        }
        assert reasons == {
            "1": ("", "The studio has no copy of this video yet; try the download again later."),
            "2": ("", "Kling's link answered 403."),
            "3": ("", "The studio's copy of this video is missing."),
            "4": ("", "Not finished yet."),
            "5": ("5-line-5.mp4", ""),
        }

    @pytest.mark.parametrize("start", ["=", "+", "-", "@"])
    def test_neutralises_a_cell_a_spreadsheet_would_run_as_a_formula(self, alice, user, start):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.FAILED])
        formula = f'{start}HYPERLINK("https://evil.example","click")'
        put_job(row_job(batch, 1), text=formula, status_detail=f"{start}1+1")
        put_job(row_job(batch, 2), text="1 + 1 = 2, as usual")

        lines = manifest(download(alice, batch))

        assert lines[0]["text"] == "'" + formula
        assert lines[0]["failure_reason"] == f"'{start}1+1"
        assert lines[1]["text"] == "1 + 1 = 2, as usual"  # a formula sign inside is harmless

    def test_neutralises_a_cell_starting_with_a_tab_or_a_carriage_return(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.FAILED])
        put_job(row_job(batch, 1), text="\t=1+1")
        put_job(row_job(batch, 2), text="\r=1+1")

        lines = manifest(download(alice, batch))

        assert [line["text"] for line in lines] == ["'\t=1+1", "'\r=1+1"]


class TestMemory:
    def test_stays_flat_while_streaming_results_many_times_larger(self, alice, user, tmp_path):
        size = 8 * 1024 * 1024
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED] * 3)
        for row in (1, 2, 3):
            job = row_job(batch, row)
            name = f"results/{job.team_id}/job-{job.pk}.mp4"
            with default_storage.open(default_storage.save(name, ContentFile(b"")), "wb") as out:
                for _ in range(size // (1024 * 1024)):
                    out.write(os.urandom(1024 * 1024))
            put_job(job, stored_video=name, stored_size=size)
        response = alice.get(reverse("tasks:batch_download", args=[batch.pk]))
        saved = tmp_path / "batch.zip"

        tracemalloc.start()
        try:
            with saved.open("wb") as out:
                for chunk in response.streaming_content:
                    out.write(chunk)
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert saved.stat().st_size > 3 * size  # the whole archive went through
        assert peak < 3 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {3 * size / 1e6:.0f} MB ZIP"
        with zipfile.ZipFile(saved) as archive:
            assert archive.testzip() is None
            assert [info.file_size for info in archive.infolist()][:3] == [size] * 3
