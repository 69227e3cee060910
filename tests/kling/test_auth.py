"""ApiKeyAuth and JwtAuth, driven through a real KlingClient over httpx.MockTransport."""

import httpx
import jwt
import pytest

from tasks_app.kling import (
    ApiKeyAuth,
    ErrorKind,
    JwtAuth,
    KlingClient,
    KlingError,
    LipSyncRequest,
    TextSpeech,
    VideoSource,
)

API_KEY = "sk-live-0123456789abcdef-api-key"
ACCESS_KEY = "AK-access-key-0123456789"
SECRET_KEY = "SK-secret-key-with-at-least-32-bytes!"
T0 = 1_781_000_000

TASK = {"task_id": "860012345678901234", "task_status": "processing"}


class FakeClock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def snapshot(request: httpx.Request) -> httpx.Request:
    return httpx.Request(
        request.method, request.url, headers=request.headers.copy(), content=request.content
    )


class ScriptedKling:
    """A transport that answers with the scripted responses in turn, recording each request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request):
        # A copy: httpx re-sends the very same Request object after re-signing it.
        self.requests.append(snapshot(request))
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return httpx.Response(status, json=body)

    def bearers(self):
        return [r.headers["Authorization"].removeprefix("Bearer ") for r in self.requests]


OK = (200, {"code": 0, "message": "SUCCEED", "request_id": "req-ok", "data": TASK})
EXPIRED = (401, {"code": 1004, "message": "token expired", "request_id": "req-exp"})


def client_for(auth, kling):
    return KlingClient(
        base_url="https://api.example.com", auth=auth, transport=httpx.MockTransport(kling)
    )


def claims(token, secret=SECRET_KEY):
    return jwt.decode(
        token, secret, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )


class TestApiKeyAuth:
    def test_it_sends_the_key_as_a_bearer_token(self):
        kling = ScriptedKling(OK)
        with client_for(ApiKeyAuth(API_KEY), kling) as client:
            client.get_task("860012345678901234")
        assert kling.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"

    def test_its_mode_is_api_key(self):
        assert ApiKeyAuth(API_KEY).mode == "api-key"

    def test_it_never_retries_a_1004(self):
        kling = ScriptedKling(EXPIRED, OK)
        with client_for(ApiKeyAuth(API_KEY), kling) as client, pytest.raises(KlingError):
            client.get_task("860012345678901234")
        assert len(kling.requests) == 1

    @pytest.mark.parametrize("key", ["", "   ", None])
    def test_it_refuses_a_missing_key(self, key):
        with pytest.raises(ValueError, match="api_key"):
            ApiKeyAuth(key)

    def test_its_repr_and_str_show_nothing_of_the_key(self):
        auth = ApiKeyAuth(API_KEY)
        assert repr(auth) == "ApiKeyAuth(<hidden>)"
        assert API_KEY[-4:] not in str(auth)

    def test_it_redacts_its_key_from_text(self):
        assert ApiKeyAuth(API_KEY).redact(f"bad key {API_KEY}!") == "bad key <redacted>!"


class TestJwtAuthToken:
    def test_the_token_carries_klings_claims_signed_with_the_secret(self):
        kling = ScriptedKling(OK)
        with client_for(JwtAuth(ACCESS_KEY, SECRET_KEY, clock=FakeClock()), kling) as client:
            client.get_task("860012345678901234")
        token = kling.bearers()[0]
        assert claims(token) == {"iss": ACCESS_KEY, "exp": T0 + 1800, "nbf": T0 - 5}
        assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}

    def test_the_token_does_not_verify_with_another_secret(self):
        kling = ScriptedKling(OK)
        with client_for(JwtAuth(ACCESS_KEY, SECRET_KEY, clock=FakeClock()), kling) as client:
            client.get_task("860012345678901234")
        with pytest.raises(jwt.InvalidSignatureError):
            claims(kling.bearers()[0], secret="another-secret-that-is-32-bytes-long")

    def test_a_custom_ttl_sets_the_expiry(self):
        kling = ScriptedKling(OK)
        auth = JwtAuth(ACCESS_KEY, SECRET_KEY, ttl=900, clock=FakeClock())
        with client_for(auth, kling) as client:
            client.get_task("860012345678901234")
        assert claims(kling.bearers()[0])["exp"] == T0 + 900

    def test_it_reuses_the_cached_token_while_it_has_life_left(self):
        clock = FakeClock()
        kling = ScriptedKling(OK)
        with client_for(JwtAuth(ACCESS_KEY, SECRET_KEY, clock=clock), kling) as client:
            client.get_task("a")
            clock.now = T0 + 1800 - 301  # just over five minutes left
            client.get_task("b")
        first, second = kling.bearers()
        assert first == second

    def test_it_remints_when_less_than_five_minutes_remain(self):
        clock = FakeClock()
        kling = ScriptedKling(OK)
        with client_for(JwtAuth(ACCESS_KEY, SECRET_KEY, clock=clock), kling) as client:
            client.get_task("a")
            clock.now = T0 + 1800 - 299
            client.get_task("b")
        first, second = kling.bearers()
        assert first != second
        assert claims(second)["exp"] == T0 + 1800 - 299 + 1800

    def test_its_mode_is_access_key(self):
        assert JwtAuth(ACCESS_KEY, SECRET_KEY).mode == "access-key"

    @pytest.mark.parametrize(
        ("access_key", "secret_key", "ttl"),
        [("", SECRET_KEY, 1800), (ACCESS_KEY, " ", 1800), (ACCESS_KEY, SECRET_KEY, 0)],
    )
    def test_it_refuses_missing_keys_and_a_useless_ttl(self, access_key, secret_key, ttl):
        with pytest.raises(ValueError):
            JwtAuth(access_key, secret_key, ttl=ttl)

    def test_its_repr_shows_neither_key_nor_token(self):
        kling = ScriptedKling(OK)
        auth = JwtAuth(ACCESS_KEY, SECRET_KEY, clock=FakeClock())
        with client_for(auth, kling) as client:
            client.get_task("a")
        token = kling.bearers()[0]
        for text in (repr(auth), str(auth)):
            assert ACCESS_KEY not in text
            assert SECRET_KEY not in text
            assert token not in text
        assert repr(auth) == "JwtAuth(<hidden>, ttl=1800)"

    def test_it_redacts_keys_and_issued_tokens_from_text(self):
        kling = ScriptedKling(OK)
        auth = JwtAuth(ACCESS_KEY, SECRET_KEY, clock=FakeClock())
        with client_for(auth, kling) as client:
            client.get_task("a")
        token = kling.bearers()[0]
        redacted = auth.redact(f"{ACCESS_KEY} {SECRET_KEY} {token}")
        assert redacted == "<redacted> <redacted> <redacted>"


class TestJwtAuthExpiredTokenRetry:
    def test_it_remints_once_on_1004_and_the_retry_succeeds(self):
        clock = FakeClock()
        kling = ScriptedKling(OK, EXPIRED, OK)
        with client_for(JwtAuth(ACCESS_KEY, SECRET_KEY, clock=clock), kling) as client:
            client.get_task("a")
            clock.now = T0 + 60  # the cached token is still "fresh" by our clock
            task = client.get_task("b")
        assert task.task_id == "860012345678901234"
        _, rejected, retried = kling.bearers()
        assert retried != rejected
        assert claims(retried)["exp"] == T0 + 60 + 1800
        assert [r.url.path for r in kling.requests[1:]] == ["/v1/videos/lip-sync/b"] * 2

    def test_the_fresh_token_is_kept_for_later_requests(self):
        clock = FakeClock()
        kling = ScriptedKling(OK, EXPIRED, OK, OK)
        with client_for(JwtAuth(ACCESS_KEY, SECRET_KEY, clock=clock), kling) as client:
            client.get_task("a")
            clock.now = T0 + 60
            client.get_task("b")
            client.get_task("c")
        assert kling.bearers()[2] == kling.bearers()[3]

    def test_it_resends_the_create_body_unchanged(self):
        kling = ScriptedKling(EXPIRED, OK)
        request = LipSyncRequest(
            video=VideoSource(video_id="vid-1"),
            speech=TextSpeech(text="Hi", voice_id="AOT", voice_language="en"),
        )
        with client_for(JwtAuth(ACCESS_KEY, SECRET_KEY, clock=FakeClock()), kling) as client:
            client.create_task(request)
        assert [r.method for r in kling.requests] == ["POST", "POST"]
        assert kling.requests[0].content == kling.requests[1].content != b""

    def test_a_second_1004_surfaces_as_a_kling_error(self):
        kling = ScriptedKling(EXPIRED)
        auth = JwtAuth(ACCESS_KEY, SECRET_KEY, clock=FakeClock())
        with client_for(auth, kling) as client, pytest.raises(KlingError) as caught:
            client.get_task("a")
        assert len(kling.requests) == 2
        assert (caught.value.kind, caught.value.code) == (ErrorKind.TOKEN_EXPIRED, 1004)
        assert caught.value.retryable is False

    @pytest.mark.parametrize(
        "answer",
        [
            (401, {"code": 1002, "message": "invalid", "request_id": "r"}),
            (401, {"code": 1003, "message": "not yet valid", "request_id": "r"}),
            (403, {"code": 1004, "message": "odd", "request_id": "r"}),
        ],
        ids=["401-1002", "401-1003", "403-1004"],
    )
    def test_other_auth_failures_are_not_retried(self, answer):
        kling = ScriptedKling(answer, OK)
        auth = JwtAuth(ACCESS_KEY, SECRET_KEY, clock=FakeClock())
        with client_for(auth, kling) as client, pytest.raises(KlingError):
            client.get_task("a")
        assert len(kling.requests) == 1

    def test_a_401_that_is_not_json_is_not_retried(self):
        requests = []

        def handler(request):
            requests.append(snapshot(request))
            return httpx.Response(401, text="<html>Unauthorized</html>")

        auth = JwtAuth(ACCESS_KEY, SECRET_KEY, clock=FakeClock())
        with client_for(auth, handler) as client, pytest.raises(KlingError) as caught:
            client.get_task("a")
        assert len(requests) == 1
        assert caught.value.kind is ErrorKind.AUTH
