"""What the simulator accepts: both of Kling's authentication schemes, and every rule of a
create body, answered with Kling's codes and messages."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import jwt
import pytest
from simulator_helpers import (
    ACCESS_KEY,
    API,
    SECRET_KEY,
    MakeSimulator,
    assert_error,
    audio_body,
    client_for,
    create,
    mint_jwt,
    text_body,
    without,
)

from tasks_app.simulator import KlingSimulator, ManualClock

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
        token = jwt.encode({"iss": ACCESS_KEY, "exp": int(clock()) + 60}, "", algorithm="none")
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
