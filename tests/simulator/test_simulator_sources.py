"""The simulator downloading a task's source video as Kling does (``fetch_sources``), from a
local test server: a video lets the task go on; a link it cannot read fails the task with a
reason; and it never downloads anything unless told to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from local_http import LocalServer, serving, unused_port
from simulator_helpers import MakeSimulator, client_for, create, query, text_body

from tasks_app.simulator import KlingSimulator, ManualClock, SimulatorConfig
from tasks_app.simulator.cli import _parse_args
from tasks_app.simulator.sources import SNIFF_BYTES, looks_like_video

# The start of an MP4 file, then more than the simulator reads.
VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(200_000)


@pytest.fixture
def files() -> Iterator[LocalServer]:
    with serving(VIDEO) as server:
        yield server


@pytest.fixture
def fetching(make_simulator: MakeSimulator, clock: ManualClock) -> KlingSimulator:
    return make_simulator(now=clock, fetch_sources=True, fetch_timeout=1.0)


def run_task(sim: KlingSimulator, clock: ManualClock, video_url: str) -> dict:
    """Create a task from ``video_url``, let its submitted phase pass, and query it."""
    with client_for(sim) as client:
        task_id = create(client, text_body(video_url=video_url))
        clock.advance(0.25)  # past submitted_seconds (0.2), not past processing
        return query(client, task_id)


class TestFetching:
    def test_a_video_is_downloaded_from_its_start_and_the_task_goes_on(
        self, fetching: KlingSimulator, clock: ManualClock, files: LocalServer
    ) -> None:
        task = run_task(fetching, clock, f"{files.url}/video")

        assert task["task_status"] == "processing"
        ((path, headers),) = files.requests
        assert path == "/video"
        assert headers["Range"] == f"bytes=0-{SNIFF_BYTES - 1}"
        clock.advance(1)
        with client_for(fetching) as client:
            assert query(client, task["task_id"])["task_status"] == "succeed"

    def test_a_missing_file_fails_the_task_with_the_http_status(
        self, fetching: KlingSimulator, clock: ManualClock, files: LocalServer
    ) -> None:
        task = run_task(fetching, clock, f"{files.url}/missing")

        assert task["task_status"] == "failed"
        assert task["task_status_msg"] == (
            "Failed to download the video from video_url: the server answered HTTP 404"
        )

    def test_a_refused_connection_fails_the_task(
        self, fetching: KlingSimulator, clock: ManualClock
    ) -> None:
        task = run_task(fetching, clock, f"http://127.0.0.1:{unused_port()}/clip.mp4")

        assert task["task_status"] == "failed"
        assert "could not connect" in task["task_status_msg"]

    def test_a_page_that_is_not_a_video_fails_the_task(
        self, fetching: KlingSimulator, clock: ManualClock, files: LocalServer
    ) -> None:
        task = run_task(fetching, clock, f"{files.url}/html")

        assert task["task_status"] == "failed"
        assert "not a supported video" in task["task_status_msg"]

    def test_a_server_that_does_not_answer_in_time_fails_the_task(
        self, fetching: KlingSimulator, clock: ManualClock, files: LocalServer
    ) -> None:
        task = run_task(fetching, clock, f"{files.url}/slow")

        assert task["task_status"] == "failed"
        assert "did not answer in time" in task["task_status_msg"]

    def test_the_task_waits_in_submitted_until_its_time_whatever_the_download_found(
        self, fetching: KlingSimulator, clock: ManualClock, files: LocalServer
    ) -> None:
        with client_for(fetching) as client:
            task_id = create(client, text_body(video_url=f"{files.url}/missing"))
            assert query(client, task_id)["task_status"] == "submitted"

    def test_a_failure_is_listed_and_called_back_like_any_other(
        self, make_simulator: MakeSimulator, clock: ManualClock, files: LocalServer, receiver
    ) -> None:
        sim = make_simulator(now=clock, fetch_sources=True, fetch_timeout=1.0)
        body = text_body(video_url=f"{files.url}/missing")
        body["callback_url"] = receiver.url
        with client_for(sim) as client:
            task_id = create(client, body)
            clock.advance(0.25)
            (listed,) = client.get("/v1/videos/lip-sync").json()["data"]
        assert listed["task_id"] == task_id
        assert listed["task_status"] == "failed"
        _headers, payload, _raw = receiver.next()
        assert (payload["task_id"], payload["task_status"]) == (task_id, "failed")
        assert "HTTP 404" in payload["task_status_msg"]


class TestOffByDefault:
    def test_nothing_is_downloaded_unless_asked(
        self, make_simulator: MakeSimulator, clock: ManualClock, files: LocalServer
    ) -> None:
        sim = make_simulator(now=clock)
        assert sim.config.fetch_sources is False

        task = run_task(sim, clock, f"{files.url}/missing")
        clock.advance(1)
        with client_for(sim) as client:
            assert query(client, task["task_id"])["task_status"] == "succeed"
        assert files.hits == 0

    def test_the_command_line_turns_it_on(self) -> None:
        assert _parse_args([]).fetch_sources is False
        args = _parse_args(["--fetch-sources", "--fetch-timeout", "2.5"])
        assert (args.fetch_sources, args.fetch_timeout) == (True, 2.5)

    @pytest.mark.parametrize("timeout", [0, -1, float("nan")])
    def test_a_fetch_timeout_must_be_positive(self, timeout: float) -> None:
        with pytest.raises(ValueError, match="fetch_timeout"):
            SimulatorConfig(fetch_timeout=timeout)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (VIDEO[:64], True),
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x00mdat", True),  # an old QuickTime file
        (b"<html><body>Sign in</body></html>", False),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", False),
        (b"\x00\x00\x00\x18ftyp"[:6], False),
        (b"", False),
    ],
)
def test_a_video_is_told_by_its_first_box(head: bytes, expected: bool) -> None:
    assert looks_like_video(head) is expected
