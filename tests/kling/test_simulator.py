"""Tests of the Kling lip-sync API simulator, spoken to over real HTTP with httpx.

Time is moved with a ManualClock wherever possible; only one lifecycle test and the callback
tests rely on the simulator's own background thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from copy import deepcopy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tasks_app.kling.simulator import (
    DEMO_RESULT_NAME,
    NO_FACE_MESSAGE,
    KlingSimulator,
    ManualClock,
    SimulatorConfig,
    sign_webhook,
)

MakeSimulator = Callable[..., KlingSimulator]

API = "/v1/videos/lip-sync"
ACCESS_KEY = "ak-test-0123456789"
SECRET_KEY = "sk-test-0123456789abcdef0123456789abcdef"  # >= 32 bytes: no PyJWT key warning
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"simulator-webhook-secret-32bytes").decode()
REPO_ROOT = Path(__file__).resolve().parents[2]
# Loading CA certificates costs ~30 ms per httpx.Client; the simulator speaks plain HTTP, so
# share one context.
SSL_CONTEXT = ssl.create_default_context()


# ---- helpers ---------------------------------------------------------------------------------


def client_for(sim: KlingSimulator, bearer: str | None = "demo-key") -> httpx.Client:
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    return httpx.Client(base_url=sim.url, headers=headers, timeout=10, verify=SSL_CONTEXT)


def text_body(**input_overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input": {
            "video_url": "https://cdn.example.com/talking-head.mp4",
            "mode": "text2video",
            "text": "Hello from the studio.",
            "voice_id": "genshin_vindi2",
            "voice_language": "en",
            "voice_speed": 1.0,
        }
    }
    body["input"].update(input_overrides)
    return body


def audio_body(**input_overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input": {
            "video_url": "https://cdn.example.com/talking-head.mp4",
            "mode": "audio2video",
            "audio_type": "file",
            "audio_file": base64.b64encode(b"ID3\x04fake mp3 bytes").decode(),
        }
    }
    body["input"].update(input_overrides)
    return body


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    body = deepcopy(body)
    for key in keys:
        del body["input"][key]
    return body


def create(client: httpx.Client, body: dict[str, Any] | None = None) -> str:
    response = client.post(API, json=body or text_body())
    assert response.status_code == 200, response.text
    return response.json()["data"]["task_id"]


def query(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def assert_error(response: httpx.Response, http_status: int, code: int) -> dict[str, Any]:
    """Kling's error envelope: the HTTP status and code go together, and there is no data."""
    assert response.status_code == http_status, response.text
    envelope = response.json()
    assert envelope["code"] == code
    assert envelope["message"]
    assert envelope["request_id"]
    assert "data" not in envelope
    return envelope


def mint_jwt(now: float, *, secret: str = SECRET_KEY, **claims: Any) -> str:
    payload = {"iss": ACCESS_KEY, "exp": int(now) + 1800, "nbf": int(now) - 5, **claims}
    return jwt.encode(payload, secret, algorithm="HS256", headers={"typ": "JWT"})


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class CallbackReceiver:
    """A tiny HTTP server on 127.0.0.1 that records the callbacks it receives."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.put(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/kling"

    def next(self, timeout: float = 5.0) -> tuple[dict[str, str], dict[str, Any], bytes]:
        headers, body = self.received.get(timeout=timeout)
        return headers, json.loads(body), body

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# ---- sign_webhook ----------------------------------------------------------------------------


class TestSignWebhook:
    def test_it_matches_the_reference_test_vector(self) -> None:
        body = (
            b'{"id":"1234567890","status":"succeeded","message":"",'
            b'"create_time":1781080778802,"update_time":1781080794151}'
        )
        signature = sign_webhook(
            "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=", "9876543210", 1781080794, body
        )
        assert signature == "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="

    def test_it_treats_a_secret_without_the_whsec_prefix_as_the_same_key(self) -> None:
        bare = "dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
        assert sign_webhook(bare, "1", 2, b"{}") == sign_webhook(f"whsec_{bare}", "1", 2, b"{}")

    def test_it_rejects_a_secret_that_is_not_base64(self) -> None:
        with pytest.raises(ValueError, match="base64"):
            sign_webhook("whsec_not base64!", "1", 2, b"{}")


# ---- configuration and clock -----------------------------------------------------------------


class TestSimulatorConfig:
    def test_it_normalises_the_reseller_prefix(self) -> None:
        assert SimulatorConfig(prefix="kling/").prefix == "/kling"
        assert SimulatorConfig(prefix="/kling").prefix == "/kling"
        assert SimulatorConfig(prefix="/").prefix == ""

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({"submitted_seconds": -1}, id="negative-timing"),
            pytest.param({"concurrency_limit": 0}, id="zero-concurrency"),
            pytest.param({"access_key": "ak"}, id="access-key-without-secret"),
            pytest.param({"api_key": None}, id="no-credentials-at-all"),
            pytest.param({"webhook_secret": "whsec_%%%"}, id="webhook-secret-not-base64"),
        ],
    )
    def test_it_refuses_an_inconsistent_config(self, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            SimulatorConfig(**options)

    def test_its_repr_does_not_show_the_webhook_secret(self) -> None:
        assert WEBHOOK_SECRET not in repr(SimulatorConfig(webhook_secret=WEBHOOK_SECRET))


class TestManualClock:
    def test_it_stands_still_until_advanced(self) -> None:
        clock = ManualClock(start=100.0)
        assert clock() == 100.0
        assert clock.advance(2.5) == 102.5
        assert clock() == 102.5

    def test_it_refuses_to_go_back_in_time(self) -> None:
        with pytest.raises(ValueError):
            ManualClock(start=1.0).advance(-1)


# ---- server lifecycle ------------------------------------------------------------------------


class TestServer:
    def test_it_reports_its_url_with_the_real_port(self, simulator: KlingSimulator) -> None:
        assert simulator.url.startswith("http://127.0.0.1:")
        assert not simulator.url.endswith(":0")

    def test_it_works_as_a_context_manager_and_refuses_connections_once_stopped(
        self, fake_assets_dir: Path
    ) -> None:
        config = SimulatorConfig(assets_dir=fake_assets_dir)
        with KlingSimulator(config) as sim:
            url = sim.url
            client = client_for(sim)
            assert client.get(API).status_code == 200
        # The kept-alive connection is closed, and nobody listens any more.
        with pytest.raises(httpx.TransportError):
            client.get(API)
        client.close()
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + API)

    def test_it_answers_an_unknown_path_with_1203(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            assert_error(client.get("/v1/videos/image2video"), 404, 1203)

    def test_it_answers_a_wrong_method_with_1202(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            assert_error(client.delete(API), 404, 1202)
            assert_error(client.post(f"{API}/123456789012345678", json={}), 404, 1202)

    def test_it_refuses_a_body_over_12_mb_and_keeps_the_connection_usable(
        self, simulator: KlingSimulator
    ) -> None:
        with client_for(simulator) as client:
            assert_error(client.post(API, content=b" " * (13 * 1024 * 1024)), 413, 1200)
            assert client.get(API).status_code == 200


# ---- authentication --------------------------------------------------------------------------


class TestApiKeyAuthentication:
    def test_it_accepts_the_configured_api_key(self, simulator: KlingSimulator) -> None:
        with client_for(simulator, "demo-key") as client:
            assert client.get(API).json()["code"] == 0
        assert simulator.requests[-1].auth == "api-key"

    def test_it_rejects_a_wrong_api_key_with_1002(self, simulator: KlingSimulator) -> None:
        with client_for(simulator, "not-the-key") as client:
            assert_error(client.get(API), 401, 1002)

    def test_it_rejects_a_missing_header_with_1001(self, simulator: KlingSimulator) -> None:
        with client_for(simulator, None) as client:
            assert_error(client.get(API), 401, 1001)

    def test_it_rejects_an_empty_bearer_with_1001(self, simulator: KlingSimulator) -> None:
        response = httpx.get(simulator.url + API, headers={"Authorization": "Bearer"})
        assert_error(response, 401, 1001)

    def test_it_rejects_a_scheme_other_than_bearer_with_1002(
        self, simulator: KlingSimulator
    ) -> None:
        response = httpx.get(simulator.url + API, headers={"Authorization": "Basic ZGVtbw=="})
        assert_error(response, 401, 1002)

    def test_it_protects_every_api_call(self, simulator: KlingSimulator) -> None:
        with client_for(simulator, None) as client:
            assert_error(client.post(API, json=text_body()), 401, 1001)
            assert_error(client.get(f"{API}/123456789012345678"), 401, 1001)
        assert simulator.created_count == 0

    def test_it_never_logs_the_authorization_header(
        self, simulator: KlingSimulator, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="kling.simulator")
        with client_for(simulator, "demo-key") as client:
            create(client)
            client.get(API)
        with client_for(simulator, "a-wrong-and-secret-token") as client:
            client.get(API)
        assert caplog.records
        assert "demo-key" not in caplog.text
        assert "a-wrong-and-secret-token" not in caplog.text
        assert all("Authorization" not in str(entry) for entry in simulator.requests)


class TestJwtAuthentication:
    @pytest.fixture
    def sim(self, make_simulator: MakeSimulator, clock: ManualClock) -> KlingSimulator:
        return make_simulator(access_key=ACCESS_KEY, secret_key=SECRET_KEY, now=clock)

    def test_it_accepts_a_token_minted_like_kling_asks(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        with client_for(sim, mint_jwt(clock())) as client:
            assert client.get(API).json()["code"] == 0
        assert sim.requests[-1].auth == "jwt"

    def test_it_still_accepts_the_api_key_next_to_jwts(self, sim: KlingSimulator) -> None:
        with client_for(sim, "demo-key") as client:
            assert client.get(API).status_code == 200

    def test_it_rejects_an_expired_token_with_1004(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        token = mint_jwt(clock())
        clock.advance(1801)
        with client_for(sim, token) as client:
            assert_error(client.get(API), 401, 1004)

    def test_it_rejects_a_token_not_yet_valid_with_1003(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        with client_for(sim, mint_jwt(clock(), nbf=int(clock()) + 60)) as client:
            assert_error(client.get(API), 401, 1003)

    def test_it_rejects_a_token_signed_with_another_secret_with_1002(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        token = mint_jwt(clock(), secret="another-secret-of-at-least-32-bytes!!")
        with client_for(sim, token) as client:
            assert_error(client.get(API), 401, 1002)

    def test_it_rejects_a_token_for_another_access_key_with_1002(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        with client_for(sim, mint_jwt(clock(), iss="someone-else")) as client:
            assert_error(client.get(API), 401, 1002)

    def test_it_rejects_a_token_without_expiry_with_1002(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        token = jwt.encode({"iss": ACCESS_KEY}, SECRET_KEY, algorithm="HS256")
        with client_for(sim, token) as client:
            assert_error(client.get(API), 401, 1002)

    def test_it_rejects_an_unsigned_token_with_1002(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        token = jwt.encode({"iss": ACCESS_KEY, "exp": int(clock()) + 60}, None, algorithm="none")
        with client_for(sim, token) as client:
            assert_error(client.get(API), 401, 1002)

    @pytest.mark.parametrize("garbage", ["a.b.c", "not-a-jwt", "e30.e30.", "...."])
    def test_it_rejects_garbage_with_1002(self, sim: KlingSimulator, garbage: str) -> None:
        with client_for(sim, garbage) as client:
            assert_error(client.get(API), 401, 1002)

    def test_it_accepts_only_jwts_when_no_api_key_is_configured(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(api_key=None, access_key=ACCESS_KEY, secret_key=SECRET_KEY, now=clock)
        with client_for(sim, "demo-key") as client:
            assert_error(client.get(API), 401, 1002)
        with client_for(sim, mint_jwt(clock())) as client:
            assert client.get(API).status_code == 200


# ---- create ----------------------------------------------------------------------------------


class TestCreate:
    def test_it_answers_with_the_create_envelope(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            envelope = client.post(API, json=text_body()).json()
        assert envelope["code"] == 0
        assert envelope["message"] == "SUCCEED"
        assert envelope["request_id"]
        data = envelope["data"]
        assert set(data) == {"task_id", "task_status", "created_at", "updated_at"}
        assert data["task_status"] == "submitted"
        assert data["created_at"] == data["updated_at"] == round(clock() * 1000)

    def test_it_gives_each_task_a_distinct_18_digit_numeric_id(
        self, simulator: KlingSimulator
    ) -> None:
        with client_for(simulator) as client:
            ids = [create(client) for _ in range(5)]
        assert len(set(ids)) == 5
        assert all(len(task_id) == 18 and task_id.isdigit() for task_id in ids)
        assert simulator.created_count == 5

    def test_it_accepts_an_audio_file_task(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            create(client, audio_body())

    def test_it_accepts_an_audio_url_task(self, simulator: KlingSimulator) -> None:
        body = audio_body(audio_type="url", audio_url="https://cdn.example.com/a.mp3")
        with client_for(simulator) as client:
            create(client, without(body, "audio_file"))

    def test_it_accepts_a_reseller_task_id_next_to_a_video_id(
        self, simulator: KlingSimulator
    ) -> None:
        body = without(text_body(video_id="842211903355666432", task_id="abc=="), "video_url")
        with client_for(simulator) as client:
            create(client, body)

    def test_it_records_the_body_for_inspection(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            create(client)
        assert simulator.requests[-1].body == text_body()
        assert simulator.create_calls == 1

    def test_it_describes_the_source_video_in_task_info(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            task = query(client, create(client))
        parent = task["task_info"]["parent_video"]
        assert parent["url"] == "https://cdn.example.com/talking-head.mp4"
        assert parent["id"].isdigit()
        assert isinstance(parent["duration"], str)

    def test_it_accepts_a_result_video_id_as_a_later_source(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            first = create(client)
            clock.advance(60)
            result = query(client, first)["task_result"]["videos"][0]
            second = create(client, without(text_body(video_id=result["id"]), "video_url"))
            assert query(client, second)["task_info"]["parent_video"] == result


class TestCreateValidation:
    """Each rule of the reference, answered like Kling: HTTP 400, code 1201, a clear message."""

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            pytest.param(
                without(text_body(), "video_url"),
                "video_id or video_url is required",
                id="neither-video-key",
            ),
            pytest.param(text_body(video_id="842211903355666432"), "both", id="both-video-keys"),
            pytest.param(
                text_body(video_url="ftp://cdn.example.com/a.mp4"), "video_url", id="ftp-video"
            ),
            pytest.param(text_body(video_url="talking-head.mp4"), "video_url", id="bare-path"),
            pytest.param(
                without(text_body(video_id="../../etc"), "video_url"),
                "video_id",
                id="video-id-not-an-id",
            ),
            pytest.param(without(text_body(), "mode"), "mode is required", id="no-mode"),
            pytest.param(text_body(mode="image2video"), "mode", id="unknown-mode"),
            pytest.param(without(text_body(), "text"), "text is required", id="no-text"),
            pytest.param(text_body(text="   "), "text is required", id="blank-text"),
            pytest.param(text_body(text="x" * 121), "120", id="text-too-long"),
            pytest.param(without(text_body(), "voice_id"), "voice_id", id="no-voice"),
            pytest.param(text_body(voice_id="nobody"), "Voice id not found", id="unknown-voice"),
            pytest.param(text_body(voice_language="fr"), "voice_language", id="bad-language"),
            pytest.param(
                text_body(voice_id="tiyuxi_xuedi", voice_language="en"),
                "voice_language",
                id="zh-only-voice-in-en",
            ),
            pytest.param(
                text_body(voice_id="AOT", voice_language="zh"),
                "voice_language",
                id="en-only-voice-in-zh",
            ),
            pytest.param(text_body(voice_speed="1.0"), "voice_speed", id="speed-as-string"),
            pytest.param(text_body(voice_speed=True), "voice_speed", id="speed-as-bool"),
            pytest.param(text_body(voice_speed=0.7), "voice_speed", id="speed-too-slow"),
            pytest.param(text_body(voice_speed=2.1), "voice_speed", id="speed-too-fast"),
            pytest.param(text_body(voice_speed=1.25), "decimal", id="speed-two-decimals"),
            pytest.param(without(audio_body(), "audio_type"), "audio_type", id="no-audio-type"),
            pytest.param(audio_body(audio_type="stream"), "audio_type", id="bad-audio-type"),
            pytest.param(without(audio_body(), "audio_file"), "audio_file", id="no-audio-file"),
            pytest.param(audio_body(audio_file="not base64!"), "base64", id="audio-not-base64"),
            pytest.param(
                audio_body(audio_file="data:audio/mpeg;base64,SUQzBA=="),
                "base64",
                id="audio-with-data-prefix",
            ),
            pytest.param(audio_body(audio_type="url"), "audio_url", id="url-type-without-url"),
            pytest.param(
                audio_body(audio_type="url", audio_url="file:///etc/passwd"),
                "audio_url",
                id="audio-url-not-http",
            ),
            pytest.param(
                {**text_body(), "callback_url": "javascript:alert(1)"},
                "callback_url",
                id="bad-callback-url",
            ),
            pytest.param({"mode": "text2video"}, "input", id="no-input-object"),
        ],
    )
    def test_it_rejects_an_invalid_body_with_1201(
        self, simulator: KlingSimulator, body: dict[str, Any], message: str
    ) -> None:
        with client_for(simulator) as client:
            envelope = assert_error(client.post(API, json=body), 400, 1201)
        assert message in envelope["message"]
        assert simulator.created_count == 0

    def test_it_rejects_a_body_with_both_video_keys(self, simulator: KlingSimulator) -> None:
        body = text_body(video_id="842211903355666432")
        with client_for(simulator) as client:
            assert_error(client.post(API, json=body), 400, 1201)

    def test_it_rejects_audio_over_5_mb_once_decoded(self, simulator: KlingSimulator) -> None:
        audio = base64.b64encode(b"\0" * (5 * 1024 * 1024 + 1)).decode()
        with client_for(simulator) as client:
            envelope = assert_error(client.post(API, json=audio_body(audio_file=audio)), 400, 1201)
        assert "5 MB" in envelope["message"]

    def test_it_accepts_audio_of_exactly_5_mb(self, simulator: KlingSimulator) -> None:
        audio = base64.b64encode(b"\0" * (5 * 1024 * 1024)).decode()
        with client_for(simulator) as client:
            create(client, audio_body(audio_file=audio))

    @pytest.mark.parametrize("text", ["x" * 120, "你" * 120])
    def test_it_accepts_text_of_exactly_120_characters(
        self, simulator: KlingSimulator, text: str
    ) -> None:
        with client_for(simulator) as client:
            create(client, text_body(text=text))

    @pytest.mark.parametrize("speed", [0.8, 1, 1.3, 2.0])
    def test_it_accepts_speeds_within_range_with_one_decimal(
        self, simulator: KlingSimulator, speed: float
    ) -> None:
        with client_for(simulator) as client:
            create(client, text_body(voice_speed=speed))

    def test_it_accepts_a_bilingual_voice_in_chinese(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            create(client, text_body(voice_id="genshin_vindi2", voice_language="zh", text="你好"))

    def test_it_defaults_the_speed_and_the_language(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            create(client, without(text_body(voice_id="AOT"), "voice_speed", "voice_language"))

    @pytest.mark.parametrize("content", [b"{not json", b"", "\xff\xfe".encode("latin-1")])
    def test_it_rejects_a_body_that_is_not_json_with_1200(
        self, simulator: KlingSimulator, content: bytes
    ) -> None:
        with client_for(simulator) as client:
            assert_error(client.post(API, content=content), 400, 1200)

    def test_it_rejects_a_json_body_that_is_not_an_object_with_1200(
        self, simulator: KlingSimulator
    ) -> None:
        with client_for(simulator) as client:
            assert_error(client.post(API, json=[text_body()]), 400, 1200)


# ---- lifecycle -------------------------------------------------------------------------------


class TestLifecycle:
    @pytest.fixture
    def sim(self, make_simulator: MakeSimulator, clock: ManualClock) -> KlingSimulator:
        return make_simulator(now=clock, submitted_seconds=3, processing_seconds=12)

    def test_it_moves_a_task_through_its_statuses_by_the_clock(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        start_ms = round(clock() * 1000)
        with client_for(sim) as client:
            task_id = create(client)
            clock.advance(2.9)
            assert query(client, task_id)["task_status"] == "submitted"
            clock.advance(0.2)
            processing = query(client, task_id)
            clock.advance(12)
            done = query(client, task_id)
        assert processing["task_status"] == "processing"
        assert processing["updated_at"] == start_ms + 3000
        assert processing["task_result"]["videos"] == []
        assert "final_unit_deduction" not in processing
        assert done["task_status"] == "succeed"
        assert done["created_at"] == start_ms
        assert done["updated_at"] == start_ms + 15000

    def test_a_successful_task_carries_its_result_video_and_charge(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        with client_for(sim) as client:
            task_id = create(client)
            clock.advance(15)
            task = query(client, task_id)
        assert task["task_status_msg"] == ""
        assert task["final_unit_deduction"] == "5"
        [video] = task["task_result"]["videos"]
        assert video["id"].isdigit() and len(video["id"]) == 18
        assert video["id"] != task_id
        assert video["url"] == f"{sim.url}/assets/{DEMO_RESULT_NAME}?task={task_id}"
        assert isinstance(video["duration"], str)
        float(video["duration"])

    @pytest.mark.parametrize(
        "source",
        [
            {"video_url": "https://cdn.example.com/noface-landscape.mp4"},
            {"video_id": "noface-842211903355"},
        ],
    )
    def test_a_video_without_a_face_fails_uncharged(
        self, sim: KlingSimulator, clock: ManualClock, source: dict[str, str]
    ) -> None:
        body = without(text_body(), "video_url")
        body["input"].update(source)
        with client_for(sim) as client:
            task_id = create(client, body)
            clock.advance(3)
            assert query(client, task_id)["task_status"] == "processing"
            clock.advance(12)
            task = query(client, task_id)
        assert task["task_status"] == "failed"
        assert task["task_status_msg"] == NO_FACE_MESSAGE
        assert task["task_result"]["videos"] == []
        assert "final_unit_deduction" not in task

    def test_it_answers_an_unknown_task_with_404_and_1203(self, sim: KlingSimulator) -> None:
        with client_for(sim) as client:
            assert_error(client.get(f"{API}/999999999999999999"), 404, 1203)

    def test_it_counts_queries(self, sim: KlingSimulator) -> None:
        with client_for(sim) as client:
            task_id = create(client)
            query(client, task_id)
            query(client, task_id)
            client.get(f"{API}/999999999999999999")
        assert sim.query_count == 3

    def test_its_task_snapshot_follows_the_clock(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        with client_for(sim) as client:
            task_id = create(client)
        assert sim.tasks[task_id]["task_status"] == "submitted"
        clock.advance(20)
        assert sim.tasks[task_id]["task_status"] == "succeed"

    def test_a_task_runs_its_course_in_real_time(self, simulator: KlingSimulator) -> None:
        seen: list[str] = []
        with client_for(simulator) as client:
            task_id = create(client)
            deadline = time.monotonic() + 5
            while not seen or seen[-1] not in ("succeed", "failed"):
                assert time.monotonic() < deadline, seen
                status = query(client, task_id)["task_status"]
                if not seen or seen[-1] != status:
                    seen.append(status)
                time.sleep(0.03)
        assert seen == ["submitted", "processing", "succeed"]


# ---- list ------------------------------------------------------------------------------------


class TestList:
    @pytest.fixture
    def sim(self, make_simulator: MakeSimulator, clock: ManualClock) -> KlingSimulator:
        return make_simulator(now=clock)

    def _create_tasks(self, sim: KlingSimulator, clock: ManualClock, count: int) -> list[str]:
        with client_for(sim) as client:
            ids = []
            for _ in range(count):
                ids.append(create(client))
                clock.advance(0.001)
            return ids

    def test_it_lists_tasks_newest_first(self, sim: KlingSimulator, clock: ManualClock) -> None:
        ids = self._create_tasks(sim, clock, 3)
        with client_for(sim) as client:
            envelope = client.get(API).json()
        assert envelope["code"] == 0
        assert [task["task_id"] for task in envelope["data"]] == ids[::-1]

    def test_it_keeps_creation_order_for_tasks_created_in_the_same_millisecond(
        self, sim: KlingSimulator
    ) -> None:
        with client_for(sim) as client:
            ids = [create(client) for _ in range(3)]
            listed = [task["task_id"] for task in client.get(API).json()["data"]]
        assert listed == ids[::-1]

    def test_it_pages_through_tasks(self, sim: KlingSimulator, clock: ManualClock) -> None:
        ids = self._create_tasks(sim, clock, 5)[::-1]
        with client_for(sim) as client:
            pages = [
                [
                    t["task_id"]
                    for t in client.get(API, params={"pageNum": n, "pageSize": 2}).json()["data"]
                ]
                for n in (1, 2, 3, 4)
            ]
        assert pages == [ids[0:2], ids[2:4], ids[4:5], []]

    def test_it_lists_full_task_objects(self, sim: KlingSimulator, clock: ManualClock) -> None:
        [task_id] = self._create_tasks(sim, clock, 1)
        clock.advance(60)
        with client_for(sim) as client:
            [listed] = client.get(API).json()["data"]
            assert listed == query(client, task_id)

    @pytest.mark.parametrize(
        "params",
        [{"pageNum": 0}, {"pageSize": 0}, {"pageSize": 501}, {"pageNum": "one"}],
    )
    def test_it_rejects_bad_paging_with_1201(
        self, sim: KlingSimulator, params: dict[str, Any]
    ) -> None:
        with client_for(sim) as client:
            assert_error(client.get(API, params=params), 400, 1201)

    def test_it_defaults_to_30_per_page_and_counts_calls(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        self._create_tasks(sim, clock, 31)
        with client_for(sim) as client:
            assert len(client.get(API).json()["data"]) == 30
            assert len(client.get(API, params={"pageNum": 2}).json()["data"]) == 1
        assert sim.list_count == 2


# ---- concurrency -----------------------------------------------------------------------------


class TestConcurrency:
    def test_it_refuses_a_create_beyond_the_limit_with_429_and_1303(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock, concurrency_limit=2)
        with client_for(sim) as client:
            create(client)
            create(client)
            assert_error(client.post(API, json=text_body()), 429, 1303)
        assert sim.created_count == 2
        assert sim.create_calls == 3

    def test_queries_and_lists_do_not_count_against_the_limit(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock, concurrency_limit=1)
        with client_for(sim) as client:
            task_id = create(client)
            assert client.get(f"{API}/{task_id}").status_code == 200
            assert client.get(API).status_code == 200

    def test_a_task_frees_its_slot_when_it_ends_even_by_failing(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock, concurrency_limit=1)
        noface = text_body(video_url="https://cdn.example.com/noface.mp4")
        with client_for(sim) as client:
            create(client, noface)
            clock.advance(sim.config.submitted_seconds)
            assert_error(client.post(API, json=text_body()), 429, 1303)  # processing holds it
            clock.advance(sim.config.processing_seconds)
            create(client)

    def test_it_tracks_the_most_tasks_running_at_once(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            for _ in range(3):
                create(client)
            assert sim.running_count == 3
            clock.advance(60)
            create(client)
        assert sim.running_count == 1
        assert sim.max_running == 3


# ---- fault injection -------------------------------------------------------------------------


class TestFaultInjection:
    def test_an_injected_error_answers_the_next_matching_calls_then_stops(
        self, simulator: KlingSimulator
    ) -> None:
        simulator.inject("POST", "/lip-sync", http_status=500, code=5000, message="boom", times=2)
        with client_for(simulator) as client:
            for _ in range(2):
                envelope = assert_error(client.post(API, json=text_body()), 500, 5000)
                assert envelope["message"] == "boom"
            create(client)
        assert simulator.created_count == 1
        assert simulator.create_calls == 3

    def test_an_injected_error_only_matches_its_method_and_path(
        self, simulator: KlingSimulator
    ) -> None:
        with client_for(simulator) as client:
            task_id = create(client)
            simulator.inject("GET", f"/{task_id}", http_status=429, code=1302, message="slow")
            assert client.get(API).status_code == 200  # a list, not the query
            assert create(client)  # a POST
            assert_error(client.get(f"{API}/{task_id}"), 429, 1302)
            assert query(client, task_id)["task_id"] == task_id

    def test_injected_errors_come_before_authentication(self, simulator: KlingSimulator) -> None:
        simulator.inject("GET", "/lip-sync", http_status=401, code=1004, message="expired")
        with client_for(simulator, None) as client:
            assert_error(client.get(API), 401, 1004)

    def test_an_injected_raw_answer_is_sent_as_is(self, simulator: KlingSimulator) -> None:
        page = b"<html><body>502 Bad Gateway</body></html>"
        simulator.inject_raw("POST", "/lip-sync", body=page, http_status=502)
        with client_for(simulator) as client:
            response = client.post(API, json=text_body())
        assert response.status_code == 502
        assert response.content == page
        assert response.headers["content-type"].startswith("text/html")
        assert simulator.created_count == 0

    def test_a_fault_that_takes_effect_still_creates_the_task(
        self, simulator: KlingSimulator
    ) -> None:
        simulator.inject_raw(
            "POST", "/lip-sync", body=b'{"code":0,"data":{"task_', http_status=200, take_effect=True
        )
        with client_for(simulator) as client:
            response = client.post(API, json=text_body())
            with pytest.raises(json.JSONDecodeError):
                response.json()
            assert len(client.get(API).json()["data"]) == 1
        assert simulator.created_count == 1

    def test_an_injected_disconnect_gives_no_answer(self, simulator: KlingSimulator) -> None:
        simulator.inject_disconnect("POST", "/lip-sync")
        with client_for(simulator) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                client.post(API, json=text_body())
            create(client)
        assert simulator.created_count == 1

    def test_a_disconnect_after_the_create_leaves_a_task_to_reconcile(
        self, simulator: KlingSimulator
    ) -> None:
        simulator.inject_disconnect("POST", "/lip-sync", take_effect=True)
        with client_for(simulator) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                client.post(API, json=text_body())
            [task] = client.get(API).json()["data"]
        assert task["task_status"] == "submitted"

    def test_clear_faults_forgets_pending_faults(self, simulator: KlingSimulator) -> None:
        simulator.inject("GET", "/lip-sync", http_status=500, code=5000, message="x", times=5)
        simulator.clear_faults()
        with client_for(simulator) as client:
            assert client.get(API).status_code == 200

    def test_it_refuses_to_inject_a_fault_for_zero_calls(self, simulator: KlingSimulator) -> None:
        with pytest.raises(ValueError):
            simulator.inject("GET", "/x", http_status=500, code=5000, message="x", times=0)


class TestLatency:
    def test_a_slow_create_has_already_created_its_task_when_the_client_gives_up(
        self, make_simulator: MakeSimulator
    ) -> None:
        sim = make_simulator(create_latency=1.0)
        with client_for(sim) as client:
            with pytest.raises(httpx.ReadTimeout):
                client.post(API, json=text_body(), timeout=0.2)
            assert len(client.get(API).json()["data"]) == 1

    def test_request_latency_slows_every_call(self, make_simulator: MakeSimulator) -> None:
        sim = make_simulator(request_latency=0.2)
        with client_for(sim) as client:
            started = time.monotonic()
            client.get(API)
        assert time.monotonic() - started >= 0.2


# ---- reseller prefix -------------------------------------------------------------------------


class TestResellerPrefix:
    def test_it_serves_the_api_under_the_prefix_and_bare(
        self, make_simulator: MakeSimulator
    ) -> None:
        sim = make_simulator(prefix="/kling")
        assert sim.api_url == f"{sim.url}/kling"
        with client_for(sim) as client:
            task_id = create(client)
            response = client.post(f"/kling{API}", json=text_body())
            assert response.json()["code"] == 0
            assert client.get(f"/kling{API}/{task_id}").json()["data"]["task_id"] == task_id
            assert len(client.get(f"/kling{API}").json()["data"]) == 2
            assert_error(client.get(f"/other{API}"), 404, 1203)

    def test_without_a_prefix_it_serves_only_bare_paths(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            assert_error(client.get(f"/kling{API}"), 404, 1203)

    def test_faults_match_prefixed_paths_too(self, make_simulator: MakeSimulator) -> None:
        sim = make_simulator(prefix="kling")
        sim.inject("GET", API, http_status=503, code=5001, message="maintenance")
        with client_for(sim) as client:
            assert_error(client.get(f"/kling{API}"), 503, 5001)


# ---- the result video ------------------------------------------------------------------------


class TestResultVideo:
    @pytest.fixture
    def sim(self, make_simulator: MakeSimulator, fake_assets_dir: Path) -> KlingSimulator:
        return make_simulator(assets_dir=fake_assets_dir)

    def _get(self, sim: KlingSimulator, **headers: str) -> httpx.Response:
        return httpx.get(f"{sim.url}/assets/{DEMO_RESULT_NAME}?task=1", headers=headers)

    def test_it_serves_the_whole_video_with_range_support_advertised(
        self, sim: KlingSimulator, fake_video: bytes
    ) -> None:
        response = self._get(sim)
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        assert response.headers["accept-ranges"] == "bytes"
        assert response.content == fake_video

    @pytest.mark.parametrize(
        ("range_header", "start", "end"),
        [
            ("bytes=0-99", 0, 99),
            ("bytes=100-", 100, None),
            ("bytes=-50", -50, None),
            ("bytes=19990-999999", 19990, None),
        ],
    )
    def test_it_answers_a_range_request_with_206(
        self,
        sim: KlingSimulator,
        fake_video: bytes,
        range_header: str,
        start: int,
        end: int | None,
    ) -> None:
        expected = fake_video[start : None if end is None else end + 1]
        first = start % len(fake_video)
        response = self._get(sim, Range=range_header)
        assert response.status_code == 206
        assert response.content == expected
        assert response.headers["content-length"] == str(len(expected))
        assert response.headers["content-range"] == (
            f"bytes {first}-{first + len(expected) - 1}/{len(fake_video)}"
        )

    def test_it_answers_an_unsatisfiable_range_with_416(
        self, sim: KlingSimulator, fake_video: bytes
    ) -> None:
        response = self._get(sim, Range=f"bytes={len(fake_video)}-")
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{len(fake_video)}"

    def test_it_answers_a_head_request_without_a_body(
        self, sim: KlingSimulator, fake_video: bytes
    ) -> None:
        response = httpx.head(f"{sim.url}/assets/{DEMO_RESULT_NAME}")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(fake_video))
        assert response.content == b""

    def test_it_needs_no_authorization_and_plays_from_a_task_result(
        self, make_simulator: MakeSimulator, fake_assets_dir: Path, fake_video: bytes
    ) -> None:
        clock = ManualClock()
        sim = make_simulator(assets_dir=fake_assets_dir, now=clock)
        with client_for(sim) as client:
            task_id = create(client)
            clock.advance(60)
            url = query(client, task_id)["task_result"]["videos"][0]["url"]
        assert httpx.get(url).content == fake_video

    def test_result_urls_use_the_public_url_when_set(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock, public_url="https://demo.example/sim/")
        with client_for(sim) as client:
            task_id = create(client)
            clock.advance(60)
            url = query(client, task_id)["task_result"]["videos"][0]["url"]
        assert url == f"https://demo.example/sim/assets/{DEMO_RESULT_NAME}?task={task_id}"

    @pytest.mark.parametrize("name", ["missing.mp4", "..%2Fsimulator.py", ".hidden"])
    def test_it_answers_404_for_anything_else(self, sim: KlingSimulator, name: str) -> None:
        assert httpx.get(f"{sim.url}/assets/{name}").status_code == 404


# ---- callbacks -------------------------------------------------------------------------------


class TestCallbacks:
    def test_it_posts_the_task_object_on_each_status_change(
        self, make_simulator: MakeSimulator, clock: ManualClock, receiver: CallbackReceiver
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            task_id = create(client, {**text_body(), "callback_url": receiver.url})
            clock.advance(sim.config.submitted_seconds)
            headers, processing, _ = receiver.next()
            clock.advance(sim.config.processing_seconds)
            _, done, _ = receiver.next()
            assert done == query(client, task_id)
        assert headers["content-type"] == "application/json"
        assert "webhook-signature" not in headers
        assert (processing["task_id"], processing["task_status"]) == (task_id, "processing")
        assert done["task_status"] == "succeed"
        assert receiver.received.empty()

    def test_it_calls_back_for_each_transition_in_order_when_time_jumps(
        self, make_simulator: MakeSimulator, clock: ManualClock, receiver: CallbackReceiver
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            create(client, {**text_body(), "callback_url": receiver.url})
        clock.advance(3600)
        statuses = [receiver.next()[1]["task_status"] for _ in range(2)]
        assert statuses == ["processing", "succeed"]
        wait_until(lambda: len(sim.callbacks) == 2)
        assert all(attempt.ok for attempt in sim.callbacks)

    def test_it_signs_callbacks_the_standard_webhooks_way(
        self, make_simulator: MakeSimulator, receiver: CallbackReceiver
    ) -> None:
        sim = make_simulator(webhook_secret=WEBHOOK_SECRET)
        with client_for(sim) as client:
            create(client, {**text_body(), "callback_url": receiver.url})
        key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
        seen_ids = set()
        for _ in range(2):
            headers, _, raw = receiver.next()
            msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
            assert abs(time.time() - int(timestamp)) < 300
            signed = f"{msg_id}.{timestamp}.".encode() + raw
            expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            assert f"v1,{expected}" in headers["webhook-signature"].split(" ")
            seen_ids.add(msg_id)
        assert len(seen_ids) == 2

    def test_it_ignores_a_receiver_that_cannot_be_reached(
        self,
        make_simulator: MakeSimulator,
        clock: ManualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        with socket.socket() as probe:  # a port that nobody listens on
            probe.bind(("127.0.0.1", 0))
            dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            task_id = create(client, {**text_body(), "callback_url": dead_url})
            clock.advance(3600)
            wait_until(lambda: len(sim.callbacks) == 2)
            assert query(client, task_id)["task_status"] == "succeed"
        assert not any(attempt.ok for attempt in sim.callbacks)
        assert "callback for task" in caplog.text

    def test_it_sends_nothing_without_a_callback_url(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            create(client)
        clock.advance(3600)
        time.sleep(0.1)
        assert sim.callbacks == []


# ---- command line ----------------------------------------------------------------------------


class TestCommandLine:
    def test_it_serves_until_sigterm_and_exits_cleanly(self) -> None:
        env = {**os.environ, "SIM_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tasks_app.kling.simulator",
                "--port",
                "0",
                "--api-key",
                "cli-key",
                "--submitted-seconds",
                "0.1",
                "--processing-seconds",
                "0.1",
                "--webhook-secret-env",
                "SIM_TEST_WEBHOOK_SECRET",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watchdog = threading.Timer(20, process.kill)  # never hang the suite on readline()
        watchdog.start()
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("Kling simulator listening on http://127.0.0.1:"), line
            url = line.rsplit(" ", 1)[1]
            response = httpx.get(url + API, headers={"Authorization": "Bearer cli-key"})
            assert response.json()["code"] == 0
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        _, stderr = process.communicate()
        assert "cli-key" not in stderr
        assert WEBHOOK_SECRET not in stderr
