"""Reading source media (tasks_app/probe.py) and links as files (fetch.open_remote).

Every file here is real media written by PyAV (tests/media_files.py): a clip of scikit-image's
astronaut photograph has a real face, a synthetic pattern has none. Links are served by a
server on 127.0.0.1, allow-listed in the guard's policy, through a transport that refuses any
connection off this machine.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from factories import settings_run
from local_http import LocalServer, LoopbackOnly, serving
from media_files import (
    make_audio,
    make_audio_only_mp4,
    make_not_media,
    make_video,
)

from tasks_app.fetch import (
    FetchError,
    FetchPolicy,
    FetchReason,
    RemoteFile,
    open_remote,
    parse_allowed_hosts,
)
from tasks_app.probe import (
    AudioFacts,
    MediaError,
    MediaReason,
    VideoFacts,
    audio_probe,
    audio_refusals,
    audio_refusals_by_settings,
    audio_warnings,
    video_probe,
    video_refusals,
    video_refusals_by_settings,
)
from tasks_app.wording import Message, render_english

KLING = {"min_seconds": 2, "max_seconds": 10, "min_side": 720, "max_side": 1920}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def face_mp4(media: Path) -> Path:
    return make_video(media / "face.mp4", seconds=4, width=720, height=720)


@pytest.fixture(scope="module")
def pattern_mov(media: Path) -> Path:
    return make_video(
        media / "pattern.mov",
        seconds=3,
        width=720,
        height=960,
        container="mov",
        face=False,
        audio=True,
    )


@pytest.fixture(scope="module")
def big_mp4(media: Path) -> bytes:
    """A 720p clip of more than 20 MB whose index is at the start (a keyframe of about 1 MB
    each second)."""
    path = make_video(
        media / "big.mp4", seconds=20, width=1280, height=720, grain=64, faststart=True
    )
    body = path.read_bytes()
    assert len(body) > 20 * MB
    return body


def probe(source: Path | io.BufferedReader | RemoteFile, **options: object) -> VideoFacts:
    return video_probe(source=source, deadline=time.monotonic() + 20, **options)  # type: ignore[arg-type]


def english(messages: list[Message]) -> list[str]:
    return [render_english(message) for message in messages]


def refused(source: Path) -> MediaError:
    with pytest.raises(MediaError) as caught:
        probe(source)
    return caught.value


def facts(**changes: object) -> VideoFacts:
    """Facts Kling takes, with ``changes``."""
    values: dict[str, object] = {
        "container": "mov,mp4,m4a,3gp,3g2,mj2",
        "extension": "mp4",
        "video_codec": "h264",
        "duration": 5.0,
        "width": 1280,
        "height": 720,
        "size": 2 * MB,
        "face_found": True,
        "frames_checked": 1,
        "frame_times": (2.5,),
        "frame_thumbs": (b"",),
        "poster_jpeg": b"",
        "has_audio": False,
    }
    return VideoFacts(**{**values, **changes})  # type: ignore[arg-type]


def picture(jpeg: bytes) -> np.ndarray:
    decoded = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    return decoded


# --- What a probe measures ------------------------------------------------------------------


class TestVideoFacts:
    def test_an_mp4_with_a_face(self, face_mp4: Path) -> None:
        found = probe(face_mp4)

        assert found.container == "mov,mp4,m4a,3gp,3g2,mj2"
        assert (found.extension, found.video_codec) == ("mp4", "h264")
        assert found.duration == pytest.approx(4.0, abs=0.05)
        assert (found.width, found.height) == (720, 720)
        assert found.size == face_mp4.stat().st_size
        assert found.face_found is True
        assert found.has_audio is False
        assert video_refusals(facts=found, max_bytes=100 * MB, **KLING) == []

    def test_a_mov_without_a_face_is_taken_and_says_so(self, pattern_mov: Path) -> None:
        found = probe(pattern_mov)

        assert found.extension == "mov"
        assert (found.width, found.height) == (720, 960)
        assert found.has_audio is True
        assert found.face_found is False
        # Every frame looked at, spread across the clip, each shown as a small JPEG.
        assert found.frames_checked == 5
        assert len(found.frame_times) == 5
        assert found.frame_times == tuple(sorted(found.frame_times))
        assert found.frame_times[0] < 1.0 and found.frame_times[-1] > 2.0
        assert all(max(picture(thumb).shape[:2]) <= 160 for thumb in found.frame_thumbs)
        assert video_refusals(facts=found, max_bytes=100 * MB, **KLING) == []

    def test_the_poster_is_a_small_jpeg_of_the_clip(self, face_mp4: Path) -> None:
        found = probe(face_mp4)

        assert found.poster_jpeg is not None
        assert found.poster_jpeg[:2] == b"\xff\xd8"
        assert picture(found.poster_jpeg).shape[:2] == (480, 480)

    def test_without_the_face_check_nothing_is_said_of_faces(self, pattern_mov: Path) -> None:
        found = probe(pattern_mov, face_check=False)

        assert (found.face_found, found.frames_checked, found.frame_thumbs) == (None, 0, ())
        assert found.poster_jpeg is not None

    def test_a_phone_clip_stored_turned_is_measured_and_checked_upright(self, media: Path) -> None:
        path = make_video(media / "portrait.mov", seconds=2, width=720, height=1280, rotation=90)

        found = probe(path)

        assert (found.width, found.height) == (720, 1280)
        assert found.face_found is True
        assert picture(found.poster_jpeg or b"").shape[:2] == (480, 270)

    def test_an_open_file_is_read_like_a_path(self, face_mp4: Path) -> None:
        with face_mp4.open("rb") as file:
            found = probe(file)

        assert found.size == face_mp4.stat().st_size
        assert found.face_found is True

    def test_a_deadline_already_reached_stops_the_check(self, face_mp4: Path) -> None:
        with pytest.raises(MediaError) as caught:
            video_probe(source=face_mp4, deadline=time.monotonic())

        assert caught.value.reason is MediaReason.TOO_SLOW
        assert render_english(caught.value.message) == (
            "The studio could not read the video in time."
        )


class TestVideoRefusals:
    @pytest.mark.parametrize(
        ("seconds", "said"),
        [
            (12, "This video is 12.0 s long; Kling takes 2 to 10 s."),
            (1, "This video is 1.0 s long; Kling takes 2 to 10 s."),
        ],
    )
    def test_too_long_or_too_short(self, media: Path, seconds: int, said: str) -> None:
        path = make_video(
            media / f"{seconds}s.mp4", seconds=seconds, width=720, height=720, face=False, fps=2
        )

        refusals = video_refusals(facts=probe(path), max_bytes=100 * MB, **KLING)

        assert english(refusals) == [said]

    def test_a_length_just_past_the_limit_does_not_read_as_the_limit(self) -> None:
        refusals = video_refusals(facts=facts(duration=10.04), max_bytes=100 * MB, **KLING)

        assert english(refusals) == ["This video is 10.04 s long; Kling takes 2 to 10 s."]

    @pytest.mark.parametrize(
        ("width", "height", "said"),
        [
            (640, 360, "This video is 640 × 360 pixels; Kling takes sides of 720 to 1920 pixels."),  # noqa: RUF001
            (
                2048,
                720,
                "This video is 2048 × 720 pixels; Kling takes sides of 720 to 1920 pixels.",  # noqa: RUF001
            ),
        ],
    )
    def test_a_side_too_small_or_too_large(
        self, media: Path, width: int, height: int, said: str
    ) -> None:
        path = make_video(
            media / f"{width}x{height}.mp4",
            seconds=3,
            width=width,
            height=height,
            face=False,
            fps=2,
        )

        refusals = video_refusals(facts=probe(path), max_bytes=100 * MB, **KLING)

        assert english(refusals) == [said]

    def test_too_many_bytes(self, face_mp4: Path) -> None:
        found = probe(face_mp4)

        assert video_refusals(facts=found, max_bytes=found.size or 0, **KLING) == []
        refusals = video_refusals(facts=found, max_bytes=MB // 4, **KLING)

        size = f"{face_mp4.stat().st_size / MB:.1f}"
        assert english(refusals) == [
            f"This video is {size} MB; the studio takes videos up to 0.25 MB."
        ]

    def test_the_studio_settings_are_the_limits(self, settings: object) -> None:
        settings.KLING_VIDEO_MAX_SECONDS = 4  # type: ignore[attr-defined]
        settings.KLING_VIDEO_MAX_BYTES = MB  # type: ignore[attr-defined]

        refusals = video_refusals_by_settings(facts=facts(duration=5.0, size=2 * MB))

        assert english(refusals) == [
            "This video is 5.0 s long; Kling takes 2 to 4 s.",
            "This video is 2.0 MB; the studio takes videos up to 1 MB.",
        ]

    def test_not_a_video(self, media: Path) -> None:
        error = refused(make_not_media(media / "sign-in.mp4"))

        assert error.reason is MediaReason.NOT_MEDIA
        assert render_english(error.message) == ("This file is not a video the studio can read.")

    def test_no_video_stream(self, media: Path) -> None:
        error = refused(make_audio_only_mp4(media / "sound-only.mp4", seconds=3))

        assert error.reason is MediaReason.NO_VIDEO
        assert render_english(error.message) == (
            "This file has no video in it (only sound, or nothing)."
        )

    def test_a_video_in_another_container_is_not_taken(self, media: Path) -> None:
        path = make_video(
            media / "clip.mkv", seconds=3, width=720, height=720, container="matroska", fps=2
        )

        error = refused(path)

        assert error.reason is MediaReason.NOT_MP4
        assert render_english(error.message) == (
            "Only MP4 and MOV videos are taken; this file is Matroska / WebM."
        )


class TestAudio:
    @pytest.mark.parametrize("format", ["wav", "mp3", "m4a", "aac"])
    def test_each_format_kling_takes(self, media: Path, format: str) -> None:
        path = make_audio(media / f"tone.{format}", seconds=3, format=format)  # type: ignore[arg-type]

        found = audio_probe(source=path)

        assert found.format == format
        # ADTS (raw AAC) states no length: FFmpeg estimates it from the bitrate.
        assert found.duration == pytest.approx(3.0, abs=0.2)
        assert found.size == path.stat().st_size
        assert audio_refusals(facts=found, min_seconds=2, max_seconds=60) == []

    def test_sound_in_an_mp4_reads_as_m4a(self, media: Path) -> None:
        found = audio_probe(source=make_audio_only_mp4(media / "voice.mp4", seconds=3))

        assert (found.format, found.codec) == ("m4a", "aac")

    @pytest.mark.parametrize(
        "make",
        [
            lambda folder: make_not_media(folder / "page.mp3"),
            lambda folder: make_video(
                folder / "silent.mp4", seconds=2, width=64, height=64, face=False, fps=2
            ),
        ],
        ids=["not media", "a video without sound"],
    )
    def test_audio_that_cannot_be_decoded(self, media: Path, make: object) -> None:
        with pytest.raises(MediaError) as caught:
            audio_probe(source=make(media))  # type: ignore[operator]

        assert render_english(caught.value.message) == (
            "This is not a sound file the studio can read (MP3, WAV, M4A or AAC)."
        )

    @pytest.mark.parametrize(
        ("seconds", "said"),
        [
            (61, "This audio is 61.0 s long; Kling takes 2 to 60 s."),
            (1, "This audio is 1.0 s long; Kling takes 2 to 60 s."),
        ],
    )
    def test_too_long_or_too_short(self, media: Path, seconds: int, said: str) -> None:
        found = audio_probe(
            source=make_audio(media / f"{seconds}s.mp3", seconds=seconds, format="mp3")
        )

        assert english(audio_refusals(facts=found, min_seconds=2, max_seconds=60)) == [said]

    def test_the_studio_settings_are_the_limits(self, settings: object) -> None:
        settings.KLING_AUDIO_MAX_SECONDS = 20  # type: ignore[attr-defined]
        found = AudioFacts(format="mp3", codec="mp3float", duration=30.0, size=1000)

        assert english(audio_refusals_by_settings(facts=found)) == [
            "This audio is 30.0 s long; Kling takes 2 to 20 s."
        ]

    def test_audio_longer_than_the_video_is_a_warning(self, media: Path, face_mp4: Path) -> None:
        audio = audio_probe(source=make_audio(media / "long.wav", seconds=6))
        video = probe(face_mp4)

        warnings = audio_warnings(audio_seconds=audio.duration, video_seconds=video.duration)

        assert english(warnings) == [
            "The audio (6.0 s) is longer than the video (4.0 s); Kling does not say what it "
            "does with the rest."
        ]
        assert audio_refusals(facts=audio, min_seconds=2, max_seconds=60) == []

    def test_audio_as_long_as_the_video_or_without_one_is_no_warning(self) -> None:
        assert audio_warnings(audio_seconds=4.02, video_seconds=4.0) == []
        assert audio_warnings(audio_seconds=3.0, video_seconds=4.0) == []
        assert audio_warnings(audio_seconds=30.0, video_seconds=None) == []


# --- Links read as files ----------------------------------------------------------------------


def allowing(server: LocalServer, *, max_bytes: int = 100 * MB) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=max_bytes,
        deadline_seconds=20,
        connect_timeout=2,
        read_timeout=5,
        allowed_hosts=parse_allowed_hosts([f"127.0.0.1:{server.port}"]),
    )


class TestRemoteFile:
    def test_a_large_mp4_with_its_index_first_is_checked_from_a_few_mb(
        self, big_mp4: bytes, guard_rail: LoopbackOnly
    ) -> None:
        with (
            serving(big_mp4) as server,
            open_remote(
                f"{server.url}/ranged", policy=allowing(server), transport=guard_rail
            ) as remote,
        ):
            found = probe(remote)

        assert remote.ranged is True
        assert (found.width, found.height, found.face_found) == (1280, 720, True)
        assert found.duration == pytest.approx(20.0, abs=0.1)
        assert found.size == len(big_mp4)
        assert remote.bytes_read < 5 * MB
        assert all(headers["Range"].startswith("bytes=") for _, headers in server.requests)
        assert remote.closed

    def test_a_server_without_ranges_is_downloaded_once_within_the_cap(
        self, face_mp4: Path, guard_rail: LoopbackOnly
    ) -> None:
        body = face_mp4.read_bytes()
        with (
            serving(body) as server,
            open_remote(
                f"{server.url}/video", policy=allowing(server), transport=guard_rail
            ) as remote,
        ):
            found = probe(remote)

        assert remote.ranged is False
        assert remote.bytes_read == len(body)
        assert server.hits == 1
        assert (found.size, found.face_found) == (len(body), True)

    def test_a_body_over_the_cap_is_refused(self, face_mp4: Path, guard_rail: LoopbackOnly) -> None:
        body = face_mp4.read_bytes()
        with serving(body) as server, pytest.raises(FetchError) as caught:
            open_remote(
                f"{server.url}/video",
                policy=allowing(server, max_bytes=len(body) - 1),
                transport=guard_rail,
            )

        assert caught.value.reason is FetchReason.TOO_BIG

    def test_ranged_reads_are_held_to_the_cap_too(
        self, big_mp4: bytes, guard_rail: LoopbackOnly
    ) -> None:
        with (
            serving(big_mp4) as server,
            open_remote(
                f"{server.url}/ranged", policy=allowing(server, max_bytes=MB), transport=guard_rail
            ) as remote,
            pytest.raises(FetchError) as caught,
        ):
            probe(remote)

        assert caught.value.reason is FetchReason.TOO_BIG
        assert remote.bytes_read <= MB + 256 * 1024

    def test_reads_and_seeks_like_a_file(self, guard_rail: LoopbackOnly) -> None:
        body = bytes(range(256)) * 4000  # 1,024,000 bytes: four blocks
        with (
            serving(body) as server,
            open_remote(
                f"{server.url}/ranged", policy=allowing(server), transport=guard_rail
            ) as remote,
        ):
            assert remote.size == len(body)
            remote.seek(300_000)
            assert remote.read(10) == body[300_000:300_010]
            # A read across a block's end comes back whole through BufferedReader.
            remote.seek(262_140)
            reader = io.BufferedReader(remote)
            assert reader.read(10) == body[262_140:262_150]
            reader.detach()  # or it would close the file when collected
            assert remote.seek(-5, io.SEEK_END) == len(body) - 5
            assert remote.read() == body[-5:]
            assert remote.read(10) == b""
            remote.seek(0)
            assert remote.read(4) == body[:4]
            hits = server.hits
            remote.seek(1)
            remote.read(4)
            # A block read once is kept: reading it again asks nothing of the server.
            assert server.hits == hits

    def test_a_missing_file_says_so(self, guard_rail: LoopbackOnly) -> None:
        with serving(b"", mode="missing") as server, pytest.raises(FetchError) as caught:
            open_remote(f"{server.url}/missing", policy=allowing(server), transport=guard_rail)

        assert caught.value.reason is FetchReason.NOT_FOUND
        assert render_english(caught.value.message) == (
            "The link's file was not found (its server answered 404)."
        )

    def test_the_guard_still_refuses_a_local_server_nobody_allowed(
        self, guard_rail: LoopbackOnly
    ) -> None:
        with serving(b"video") as server, pytest.raises(FetchError) as caught:
            open_remote(
                f"{server.url}/ranged",
                policy=FetchPolicy(max_bytes=MB, deadline_seconds=5),
                transport=guard_rail,
            )

        assert caught.value.reason is FetchReason.PRIVATE_ADDRESS
        assert server.hits == 0

    def test_all_requests_share_one_deadline(self, guard_rail: LoopbackOnly) -> None:
        with serving(b"video", mode="slow") as server, pytest.raises(FetchError) as caught:
            started = time.monotonic()
            open_remote(
                f"{server.url}/slow",
                policy=allowing(server),
                transport=guard_rail,
                deadline=time.monotonic() + 0.5,
            )

        assert caught.value.reason is FetchReason.TOO_SLOW
        assert time.monotonic() - started < 2


# A web worker as gunicorn starts it, after its first pages: the URLs, every template tag
# library and the pages' templates loaded. Then the first video check.
WHAT_A_WEB_WORKER_LOADS = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "lipsync_site.settings"
import lipsync_site.wsgi, lipsync_site.urls
from django.template import engines
from django.template.loader import get_template
engines["django"].engine.template_libraries
for name in ("tasks/job_list.html", "tasks/job_form.html", "tasks/job_detail.html"):
    get_template(name)
heavy = ("cv2", "numpy")
print(",".join(m for m in heavy if m in sys.modules) or "none")
from tasks_app.probe import video_probe
video_probe(source=sys.argv[1], deadline=float("inf"))
print(",".join(m for m in heavy if m in sys.modules) or "none")
"""


class TestWhatAWebWorkerLoads:
    def test_opencv_and_numpy_load_with_the_first_video_checked_not_with_the_pages(
        self, face_mp4: Path, tmp_path: Path
    ) -> None:
        # OpenCV and numpy are some 30 MB of a web worker's memory, which pages never need.
        run = settings_run(
            WHAT_A_WEB_WORKER_LOADS.replace("sys.argv[1]", repr(str(face_mp4))),
            SECRET_KEY="test-only-secret-key",
            DEBUG="0",
            ALLOWED_HOSTS="localhost",
            DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        )

        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == ["none", "cv2,numpy"]
