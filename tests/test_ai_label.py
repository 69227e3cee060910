"""The studio's copy of each result says "AI-generated" in the MP4's own metadata, rewritten
without re-encoding; a result that cannot be rewritten is kept as it came."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import av
import pytest
from factories import make_job
from local_http import LocalServer, serving

from tasks_app.models import Job, JobStatus
from tasks_app.simulator import DEFAULT_ASSETS_DIR, DEMO_RESULT_NAME

pytestmark = pytest.mark.django_db

ASSET = (DEFAULT_ASSETS_DIR / DEMO_RESULT_NAME).read_bytes()
NOT_AN_MP4 = b"\x00\x00\x00\x18ftypmp42" + b"garbage, not boxes" * 200


def stored_bytes(job: Job) -> bytes:
    with job.stored_video.open("rb") as stored:
        return stored.read()


def video_facts(data: bytes) -> tuple[dict[str, str], str, int, list[bytes]]:
    """The container's metadata, and the video stream's codec, frame count and packets."""
    with av.open(io.BytesIO(data), mode="r") as container:
        video = container.streams.video[0]
        packets = [bytes(packet) for packet in container.demux(video) if packet.size]
        return dict(container.metadata), video.codec_context.name, video.frames, packets


@pytest.fixture
def kling_serving(start_kling, sim_clock, settings) -> Iterator[Callable[[bytes], LocalServer]]:
    """``kling_serving(body)``: a simulator whose results are ``body``, from a file server."""
    with ExitStack() as servers:

        def start(body: bytes) -> LocalServer:
            server = servers.enter_context(serving(body))
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            start_kling(
                now=sim_clock, submitted_seconds=3, processing_seconds=10, public_url=server.url
            )
            return server

        yield start


class TestTheStudiosCopyIsLabelled:
    def test_its_metadata_says_ai_generated(self, kling, user, run_job):
        job = run_job(make_job(user))

        metadata, *_video = video_facts(stored_bytes(job))
        original_metadata, *_original = video_facts(ASSET)

        assert metadata["comment"] == "AI-generated"
        assert metadata["description"] == "AI-generated"
        assert "AI-generated" not in original_metadata.values()

    def test_its_video_is_the_same_packets_not_encoded_again(self, kling, user, run_job):
        job = run_job(make_job(user))

        _meta, codec, frames, packets = video_facts(stored_bytes(job))
        _original_meta, original_codec, original_frames, original_packets = video_facts(ASSET)

        assert codec == original_codec == "h264"
        assert frames == original_frames > 0
        assert packets == original_packets

    def test_its_size_and_checksum_describe_the_stored_bytes(self, kling, user, run_job):
        job = run_job(make_job(user))

        copy = stored_bytes(job)

        assert copy != ASSET
        assert job.stored_size == len(copy)
        assert job.stored_sha256 == hashlib.sha256(copy).hexdigest()

    def test_the_studio_serves_the_labelled_copy(self, kling, alice, user, run_job):
        job = run_job(make_job(user))

        response = alice.get(f"/tasks/{job.pk}/video/")

        body = b"".join(response.streaming_content)
        assert body == stored_bytes(job)
        assert video_facts(body)[0]["comment"] == "AI-generated"


class TestAResultThatCannotBeLabelled:
    def test_it_is_stored_as_it_came_and_the_failure_logged(
        self, kling_serving, user, run_job, caplog
    ):
        kling_serving(NOT_AN_MP4)

        with caplog.at_level(logging.WARNING, logger="tasks_app.results"):
            job = run_job(make_job(user))

        assert job.status == JobStatus.SUCCEEDED
        assert job.store_error == ""
        assert stored_bytes(job) == NOT_AN_MP4
        assert job.stored_size == len(NOT_AN_MP4)
        assert job.stored_sha256 == hashlib.sha256(NOT_AN_MP4).hexdigest()
        assert f"Labelling the result of job {job.pk} as AI-generated failed" in caplog.text

    def test_a_real_mp4_from_the_same_server_is_labelled(self, kling_serving, user, run_job):
        kling_serving(ASSET)  # the positive control: the path above, with a readable result

        job = run_job(make_job(user))

        assert video_facts(stored_bytes(job))[0]["comment"] == "AI-generated"
