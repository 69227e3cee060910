"""The demo's sample source videos: real MP4 files of the promised length and size, served by
the simulator like its result video (ranges included), made without the internet."""

from __future__ import annotations

import io

import av
import cv2
import cv2.data
import httpx
import numpy as np
import pytest
from simulator_helpers import MakeSimulator

from tasks_app.simulator import SAMPLE_NAMES, SAMPLES, SAMPLES_PATH, KlingSimulator, sample_bytes

# The limits the studio checks a source video against (its settings' defaults).
MIN_SECONDS, MAX_SECONDS = 2, 10
MIN_SIDE, MAX_SIDE = 720, 1920

# name: (width, height, seconds, has a face)
PROMISED = {
    "sample-ok.mp4": (720, 1280, 4.0, True),
    "sample-noface.mp4": (720, 1280, 4.0, False),
    "sample-too-long.mp4": (720, 1280, 12.0, True),
    "sample-too-small.mp4": (320, 240, 4.0, True),
}


def probe(data: bytes) -> tuple[str, int, int, float]:
    """The container's format name, the video's size and the file's length, read by PyAV."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert container.duration is not None
        return (
            container.format.name,
            stream.codec_context.width,
            stream.codec_context.height,
            container.duration / av.time_base,
        )


def faces_per_second(data: bytes) -> list[int]:
    """How many faces OpenCV's bundled Haar cascade finds in one frame of each second."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = []
    with av.open(io.BytesIO(data), mode="r") as container:
        rate = container.streams.video[0].average_rate
        assert rate is not None
        for index, frame in enumerate(container.decode(video=0)):
            if index % int(rate):
                continue
            grey = frame.to_ndarray(format="gray")
            scale = min(1.0, 512 / max(grey.shape))
            small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            found.append(len(cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5)))
    return found


def test_the_samples_are_the_promised_ones() -> None:
    assert set(SAMPLE_NAMES) == set(PROMISED)
    assert [sample.name for sample in SAMPLES] == list(SAMPLE_NAMES)


@pytest.mark.parametrize("name", list(PROMISED))
def test_each_sample_is_a_real_mp4_of_the_promised_size_and_length(name: str) -> None:
    width, height, seconds, _face = PROMISED[name]
    data = sample_bytes(name)
    assert data is not None
    format_name, measured_width, measured_height, measured_seconds = probe(data)
    assert "mp4" in format_name.split(",")
    assert (measured_width, measured_height) == (width, height)
    assert measured_seconds == pytest.approx(seconds, abs=0.1)
    # Small enough to make on the fly and keep in memory.
    assert len(data) < 500_000


def test_the_samples_fall_on_the_side_of_the_limits_their_names_say() -> None:
    facts = {name: probe(sample_bytes(name) or b"") for name in PROMISED}

    def within(name: str) -> tuple[bool, bool]:
        _format, width, height, seconds = facts[name]
        length_ok = MIN_SECONDS <= seconds <= MAX_SECONDS
        sides_ok = all(MIN_SIDE <= side <= MAX_SIDE for side in (width, height))
        return length_ok, sides_ok

    assert within("sample-ok.mp4") == (True, True)
    assert within("sample-noface.mp4") == (True, True)
    assert within("sample-too-long.mp4") == (False, True)
    assert within("sample-too-small.mp4") == (True, False)


@pytest.mark.parametrize("name", list(PROMISED))
def test_a_face_is_found_in_every_second_of_the_samples_with_one(name: str) -> None:
    data = sample_bytes(name)
    assert data is not None
    found = faces_per_second(data)
    assert len(found) == int(PROMISED[name][2])
    if PROMISED[name][3]:
        assert all(count == 1 for count in found), found
    else:
        assert not any(found), found


def test_the_index_comes_first_so_a_range_read_of_the_start_finds_it() -> None:
    data = sample_bytes("sample-ok.mp4")
    assert data is not None
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_a_sample_is_made_once_and_the_frames_move() -> None:
    data = sample_bytes("sample-ok.mp4")
    assert sample_bytes("sample-ok.mp4") is data
    with av.open(io.BytesIO(data or b""), mode="r") as container:
        frames = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    assert any(not np.array_equal(frames[0], frame) for frame in frames[1:])


def test_an_unknown_name_is_none() -> None:
    assert sample_bytes("demo-result.mp4") is None
    assert sample_bytes("../samples.py") is None


class TestServed:
    @pytest.fixture
    def sim(self, make_simulator: MakeSimulator) -> KlingSimulator:
        return make_simulator()

    def url(self, sim: KlingSimulator, name: str) -> str:
        return f"{sim.url}{SAMPLES_PATH}{name}"

    def test_each_sample_is_served_whole_as_video_mp4_without_authorization(
        self, sim: KlingSimulator
    ) -> None:
        for name in SAMPLE_NAMES:
            response = httpx.get(self.url(sim, name))
            assert response.status_code == 200
            assert response.headers["content-type"] == "video/mp4"
            assert response.headers["accept-ranges"] == "bytes"
            assert response.content == sample_bytes(name)

    def test_a_range_is_answered_with_206_and_those_bytes(self, sim: KlingSimulator) -> None:
        data = sample_bytes("sample-too-long.mp4")
        assert data is not None
        response = httpx.get(self.url(sim, "sample-too-long.mp4"), headers={"Range": "bytes=8-99"})
        assert response.status_code == 206
        assert response.content == data[8:100]
        assert response.headers["content-range"] == f"bytes 8-99/{len(data)}"
        tail = httpx.get(self.url(sim, "sample-too-long.mp4"), headers={"Range": "bytes=-10"})
        assert tail.status_code == 206
        assert tail.content == data[-10:]

    def test_an_unsatisfiable_range_is_416(self, sim: KlingSimulator) -> None:
        data = sample_bytes("sample-ok.mp4") or b""
        response = httpx.get(
            self.url(sim, "sample-ok.mp4"), headers={"Range": f"bytes={len(data)}-"}
        )
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{len(data)}"

    def test_a_head_request_gives_the_size_and_no_body(self, sim: KlingSimulator) -> None:
        response = httpx.head(self.url(sim, "sample-too-small.mp4"))
        assert response.status_code == 200
        assert response.headers["content-length"] == str(
            len(sample_bytes("sample-too-small.mp4") or b"")
        )
        assert response.content == b""

    @pytest.mark.parametrize("name", ["nothing.mp4", "", "..%2Fserver.py", "sample-ok.mp4%00"])
    def test_anything_else_under_samples_is_404(self, sim: KlingSimulator, name: str) -> None:
        assert httpx.get(self.url(sim, name)).status_code == 404

    def test_the_samples_are_served_under_a_resellers_prefix_too(
        self, make_simulator: MakeSimulator
    ) -> None:
        sim = make_simulator(prefix="/kling")
        response = httpx.get(f"{sim.url}/kling{SAMPLES_PATH}sample-ok.mp4")
        assert response.status_code == 200
        assert response.content == sample_bytes("sample-ok.mp4")
