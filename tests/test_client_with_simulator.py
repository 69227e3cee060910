"""The real Kling client against the simulator, over real HTTP: the two must agree."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from tasks_app.kling import (
    ApiKeyAuth,
    AudioTrack,
    ErrorKind,
    JwtAuth,
    KlingClient,
    KlingError,
    LipSyncRequest,
    TaskStatus,
    TextSpeech,
    VideoSource,
)

ACCESS_KEY = "ak-client-test"
SECRET_KEY = "sk-client-test-secret-of-a-decent-length!"
VIDEO_ID = "860327812345678901"


def text_request(video_id: str = VIDEO_ID, **speech) -> LipSyncRequest:
    fields = {"text": "Hello there", "voice_id": "genshin_vindi2", "voice_language": "en"} | speech
    return LipSyncRequest(video=VideoSource(video_id=video_id), speech=TextSpeech(**fields))


@pytest.fixture
def connect():
    clients: list[KlingClient] = []

    def make(base_url: str, auth=None) -> KlingClient:
        client = KlingClient(base_url=base_url, auth=auth or ApiKeyAuth("demo-key"), read_timeout=5)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def last_create(sim) -> dict:
    return [r for r in sim.requests if r.method == "POST"][-1].body


class TestTextMode:
    def test_it_creates_follows_and_lists_a_task(self, kling, sim_clock, connect):
        client = connect(kling.api_url)

        created = client.create_task(text_request(voice_speed=Decimal("1.3")))

        assert created.status == TaskStatus.SUBMITTED
        assert created.task_id in kling.tasks
        assert created.request_id
        assert last_create(kling)["input"]["voice_speed"] == 1.3

        sim_clock.advance(4)
        assert client.get_task(created.task_id).status == TaskStatus.PROCESSING

        sim_clock.advance(11)
        done = client.get_task(created.task_id)
        assert done.status == TaskStatus.SUCCEED
        assert done.status.is_final
        (video,) = done.videos
        assert video.id and video.url.startswith(kling.url)
        assert video.duration == pytest.approx(5.1)
        assert done.credits == Decimal("5")
        assert done.parent_video is not None and done.parent_video.id == VIDEO_ID
        assert done.created_at is not None and done.updated_at > done.created_at

        page = client.list_tasks(page=1, page_size=10)
        assert [task.task_id for task in page.tasks] == [created.task_id]
        assert page.tasks[0].status == TaskStatus.SUCCEED

    def test_the_list_is_newest_first_and_paged(self, kling, sim_clock, connect):
        client = connect(kling.api_url)
        ids = []
        for _ in range(3):
            ids.append(client.create_task(text_request()).task_id)
            sim_clock.advance(1)

        first = client.list_tasks(page=1, page_size=2)
        second = client.list_tasks(page=2, page_size=2)

        assert [t.task_id for t in first.tasks] == [ids[2], ids[1]]
        assert [t.task_id for t in second.tasks] == [ids[0]]
        assert client.list_tasks(page=3, page_size=2).tasks == ()

    def test_a_video_without_a_face_ends_failed_with_klings_words(self, kling, sim_clock, connect):
        client = connect(kling.api_url)
        request = LipSyncRequest(
            video=VideoSource(video_url="https://example.com/noface.mp4"),
            speech=TextSpeech(text="Hi", voice_id="AOT", voice_language="en"),
        )
        task = client.create_task(request)

        sim_clock.advance(15)
        failed = client.get_task(task.task_id)

        assert failed.status == TaskStatus.FAILED
        assert failed.status_msg == "The model did not detect a human"
        assert failed.videos == ()

    def test_a_result_video_id_can_be_used_for_the_next_job(self, kling, sim_clock, connect):
        client = connect(kling.api_url)
        first = client.create_task(text_request())
        sim_clock.advance(15)
        (video,) = client.get_task(first.task_id).videos

        second = client.create_task(text_request(video_id=video.id))

        assert client.get_task(second.task_id).parent_video.id == video.id

    def test_a_parent_task_id_is_sent_only_when_given(self, kling, connect):
        client = connect(kling.api_url)
        client.create_task(text_request())
        assert "task_id" not in last_create(kling)["input"]

        request = LipSyncRequest(
            video=VideoSource(video_id=VIDEO_ID),
            speech=TextSpeech(text="Hi", voice_id="AOT", voice_language="en"),
            task_id="parent-task",
        )
        client.create_task(request)
        assert last_create(kling)["input"]["task_id"] == "parent-task"

    def test_chinese_text_arrives_intact(self, kling, connect):
        client = connect(kling.api_url)
        client.create_task(
            text_request(text="你好世界", voice_id="tiyuxi_xuedi", voice_language="zh")
        )
        assert last_create(kling)["input"]["text"] == "你好世界"


class TestAudioModes:
    def test_an_audio_link_is_sent_as_a_url(self, kling, connect):
        client = connect(kling.api_url)
        request = LipSyncRequest(
            video=VideoSource(video_url="https://example.com/face.mp4"),
            speech=AudioTrack(audio_url="https://example.com/voice.mp3"),
        )

        task = client.create_task(request)

        assert task.task_id in kling.tasks
        body = last_create(kling)["input"]
        assert body == {
            "video_url": "https://example.com/face.mp4",
            "mode": "audio2video",
            "audio_type": "url",
            "audio_url": "https://example.com/voice.mp3",
        }

    def test_an_audio_file_is_sent_as_base64(self, kling, connect, wav_bytes):
        client = connect(kling.api_url)
        request = LipSyncRequest(
            video=VideoSource(video_id=VIDEO_ID), speech=AudioTrack(audio_file=wav_bytes)
        )

        task = client.create_task(request)

        assert task.task_id in kling.tasks
        body = last_create(kling)["input"]
        assert body["audio_type"] == "file"
        assert not body["audio_file"].startswith("data:")
        assert base64.b64decode(body["audio_file"], validate=True) == wav_bytes
        assert "audio_url" not in body


class TestAuthentication:
    def test_an_api_key_is_accepted(self, kling, connect):
        connect(kling.api_url).list_tasks()
        assert kling.requests[-1].auth == "api-key"

    def test_a_wrong_api_key_is_an_auth_error(self, kling, connect):
        client = connect(kling.api_url, ApiKeyAuth("not-the-key"))

        with pytest.raises(KlingError) as failure:
            client.create_task(text_request())

        err = failure.value
        assert err.kind == ErrorKind.AUTH
        assert (err.http_status, err.code) == (401, 1002)
        assert not err.retryable
        assert "not-the-key" not in str(err)
        assert kling.created_count == 0

    def test_access_and_secret_keys_sign_in_with_a_jwt(self, start_kling, sim_clock, connect):
        sim = start_kling(api_key=None, access_key=ACCESS_KEY, secret_key=SECRET_KEY, now=sim_clock)
        client = connect(sim.api_url, JwtAuth(ACCESS_KEY, SECRET_KEY))

        task = client.create_task(text_request())

        assert client.get_task(task.task_id).task_id == task.task_id
        assert client.auth_mode == "access-key"
        assert {r.auth for r in sim.requests} == {"jwt"}

    def test_a_wrong_secret_is_an_auth_error_that_hides_the_secret(self, start_kling, connect):
        sim = start_kling(api_key=None, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        wrong = "a-wrong-secret-of-a-decent-length-too!!"
        client = connect(sim.api_url, JwtAuth(ACCESS_KEY, wrong))

        with pytest.raises(KlingError) as failure:
            client.list_tasks()

        assert failure.value.kind == ErrorKind.AUTH
        assert failure.value.code == 1002
        assert wrong not in str(failure.value)
        assert wrong not in repr(client)

    def test_an_unknown_access_key_is_an_auth_error(self, start_kling, connect):
        sim = start_kling(api_key=None, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        client = connect(sim.api_url, JwtAuth("someone-else", SECRET_KEY))

        with pytest.raises(KlingError) as failure:
            client.list_tasks()

        assert failure.value.kind == ErrorKind.AUTH

    def test_a_token_the_simulator_finds_expired_is_replaced_once_then_reported(
        self, start_kling, sim_clock, connect
    ):
        sim = start_kling(api_key=None, access_key=ACCESS_KEY, secret_key=SECRET_KEY, now=sim_clock)
        # The client's clock stays behind while Kling's moves on by more than a token's life.
        frozen = sim_clock()
        client = connect(sim.api_url, JwtAuth(ACCESS_KEY, SECRET_KEY, clock=lambda: frozen))
        client.list_tasks()
        sim_clock.advance(3600)

        with pytest.raises(KlingError) as failure:
            client.list_tasks()

        assert failure.value.kind == ErrorKind.TOKEN_EXPIRED
        assert [r.code for r in sim.requests[-2:]] == [1004, 1004]


class TestResellerPrefix:
    def test_a_base_url_with_the_prefix_reaches_the_api(self, start_kling, connect):
        sim = start_kling(prefix="/kling")
        client = connect(sim.url + "/kling")

        task = client.create_task(text_request())

        assert client.base_url == sim.url + "/kling"
        assert client.get_task(task.task_id).task_id == task.task_id
        assert [t.task_id for t in client.list_tasks().tasks] == [task.task_id]

    def test_a_trailing_slash_on_the_prefix_is_fine(self, start_kling, connect):
        sim = start_kling(prefix="/kling")
        assert connect(sim.url + "/kling/").list_tasks().tasks == ()

    def test_a_wrong_prefix_is_not_found(self, start_kling, connect):
        sim = start_kling(prefix="/kling")

        with pytest.raises(KlingError) as failure:
            connect(sim.url + "/other").list_tasks()

        assert failure.value.kind == ErrorKind.NOT_FOUND
        assert failure.value.http_status == 404


class TestKlingsRefusals:
    def test_a_full_account_answers_1303_until_a_slot_frees_up(
        self, start_kling, sim_clock, connect
    ):
        sim = start_kling(
            now=sim_clock, concurrency_limit=1, submitted_seconds=3, processing_seconds=10
        )
        client = connect(sim.api_url)
        client.create_task(text_request())

        with pytest.raises(KlingError) as failure:
            client.create_task(text_request())

        err = failure.value
        assert err.kind == ErrorKind.CONCURRENCY
        assert (err.http_status, err.code) == (429, 1303)
        assert err.retryable
        assert not err.outcome_unknown
        assert "Parallel task limit" in (err.kling_message or "")
        assert sim.created_count == 1

        sim_clock.advance(15)
        client.create_task(text_request())
        assert sim.created_count == 2
        assert sim.max_running == 1

    @pytest.mark.parametrize(
        ("request_", "message"),
        [
            (
                lambda: text_request(voice_id="no_such_voice"),
                "Voice id not found",
            ),
            (
                lambda: text_request(voice_id="AOT", voice_language="zh"),
                "voice_language zh is not supported by voice AOT",
            ),
            (lambda: text_request(text="a" * 121), "text must be at most 120 characters"),
            (
                lambda: text_request(voice_speed=Decimal("2.5")),
                "voice_speed must be between 0.8 and 2.0",
            ),
            (lambda: text_request(video_id="bad id!"), "video_id is invalid"),
        ],
    )
    def test_a_refused_input_surfaces_klings_message(self, kling, connect, request_, message):
        with pytest.raises(KlingError) as failure:
            connect(kling.api_url).create_task(request_())

        err = failure.value
        assert err.kind == ErrorKind.INVALID_INPUT
        assert (err.http_status, err.code) == (400, 1201)
        assert err.kling_message == message
        assert message in err.user_message
        assert not err.retryable
        assert kling.created_count == 0

    def test_an_unknown_task_is_not_found(self, kling, connect):
        with pytest.raises(KlingError) as failure:
            connect(kling.api_url).get_task("123456789012345678")

        assert failure.value.kind == ErrorKind.NOT_FOUND
        assert failure.value.code == 1203

    @pytest.mark.parametrize(
        ("code", "http_status", "kind"),
        [
            (1102, 429, ErrorKind.CREDITS),
            (1301, 400, ErrorKind.CONTENT_SAFETY),
            (1302, 429, ErrorKind.RATE_LIMIT),
            (5001, 503, ErrorKind.SERVER),
        ],
    )
    def test_injected_errors_are_classified(self, kling, connect, code, http_status, kind):
        kling.inject("POST", "/lip-sync", http_status=http_status, code=code, message="injected")

        with pytest.raises(KlingError) as failure:
            connect(kling.api_url).create_task(text_request())

        assert failure.value.kind == kind
        assert failure.value.code == code
        assert failure.value.kling_message == "injected"

    def test_a_dropped_create_leaves_the_outcome_unknown(self, kling, connect):
        kling.inject_disconnect("POST", "/lip-sync", take_effect=True)

        with pytest.raises(KlingError) as failure:
            connect(kling.api_url).create_task(text_request())

        assert failure.value.outcome_unknown
        assert failure.value.retryable
        assert kling.created_count == 1

    def test_a_slow_create_times_out_with_the_outcome_unknown(self, start_kling, connect):
        sim = start_kling(create_latency=0.6)
        client = KlingClient(base_url=sim.api_url, auth=ApiKeyAuth("demo-key"), read_timeout=0.3)

        with client, pytest.raises(KlingError) as failure:
            client.create_task(text_request())

        assert failure.value.kind == ErrorKind.TIMEOUT
        assert failure.value.outcome_unknown
        assert sim.created_count == 1

    def test_garbage_after_a_create_leaves_the_outcome_unknown(self, kling, connect):
        kling.inject_raw("POST", "/lip-sync", body=b'{"code": 0, "data": {"task_', http_status=200)

        with pytest.raises(KlingError) as failure:
            connect(kling.api_url).create_task(text_request())

        assert failure.value.kind == ErrorKind.BAD_RESPONSE
        assert failure.value.outcome_unknown

    def test_a_refused_connection_proves_nothing_was_created(self, connect):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]

        with pytest.raises(KlingError) as failure:
            connect(f"http://127.0.0.1:{port}").create_task(text_request())

        assert failure.value.kind == ErrorKind.NETWORK
        assert not failure.value.outcome_unknown
