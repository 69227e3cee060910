"""KlingClient against a fake Kling at the HTTP level (httpx.MockTransport)."""

import base64
import json
import logging
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tasks_app.kling import (
    ApiKeyAuth,
    AudioTrack,
    ErrorKind,
    JwtAuth,
    KlingClient,
    KlingError,
    LipSyncRequest,
    TaskPage,
    TaskStatus,
    TextSpeech,
    VideoSource,
)

API_KEY = "sk-live-0123456789abcdef-api-key"
ACCESS_KEY = "AK-access-key-0123456789"
SECRET_KEY = "SK-secret-key-with-at-least-32-bytes!"
BASE = "https://api-singapore.klingai.com"
TASK_ID = "860012345678901234"
PARENT_URL = "https://cdn.example/p.mp4"
RESULT_URL = "https://cdn.example/r.mp4"

CREATE_DATA = {
    "task_id": TASK_ID,
    "task_status": "submitted",
    "created_at": 1781080778802,
    "updated_at": 1781080778802,
}
QUERY_DATA = {
    "task_id": TASK_ID,
    "task_status": "succeed",
    "task_status_msg": "",
    "task_info": {"parent_video": {"id": "p-1", "url": PARENT_URL, "duration": 7}},
    "task_result": {"videos": [{"id": "v-1", "url": RESULT_URL, "duration": "5.1"}]},
    "final_unit_deduction": "5",
    "created_at": 1781080778802,
    "updated_at": 1781080894151,
}


def envelope(data, *, code=0, message="SUCCEED", request_id="req-1"):
    body = {"code": code, "message": message, "request_id": request_id}
    if data is not None:
        body["data"] = data
    return body


class FakeKling:
    """Answers every request with one fixed response (or raises), recording the requests."""

    def __init__(self, status=200, body=None, *, raw=None, headers=None, raises=None):
        self.status, self.body, self.raw, self.headers, self.raises = (
            status,
            body,
            raw,
            headers,
            raises,
        )
        self.requests: list[httpx.Request] = []

    def __call__(self, request):
        self.requests.append(request)
        if self.raises is not None:
            raise self.raises("simulated failure", request=request)
        if self.raw is not None:
            return httpx.Response(self.status, content=self.raw, headers=self.headers)
        return httpx.Response(self.status, json=self.body, headers=self.headers)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def make_client(kling, *, base_url=BASE, auth=None, **kwargs):
    return KlingClient(
        base_url=base_url,
        auth=auth or ApiKeyAuth(API_KEY),
        transport=httpx.MockTransport(kling),
        **kwargs,
    )


def text_request(**overrides):
    fields: dict[str, Any] = {
        "video": VideoSource(video_id="vid-1"),
        "speech": TextSpeech(text="Hello", voice_id="AOT", voice_language="en"),
    }
    return LipSyncRequest(**(fields | overrides))


def failure(call, kling, **client_kwargs) -> KlingError:
    with make_client(kling, **client_kwargs) as client, pytest.raises(KlingError) as caught:
        call(client)
    return caught.value


def create(client):
    return client.create_task(text_request())


def get(client):
    return client.get_task(TASK_ID)


class TestUrls:
    @pytest.mark.parametrize(
        ("base_url", "expected"),
        [
            (BASE, f"{BASE}/v1/videos/lip-sync"),
            (f"{BASE}/", f"{BASE}/v1/videos/lip-sync"),
            ("https://reseller.example/kling", "https://reseller.example/kling/v1/videos/lip-sync"),
            (
                "https://reseller.example/kling/",
                "https://reseller.example/kling/v1/videos/lip-sync",
            ),
            (
                "  https://reseller.example/api/kling  ",
                "https://reseller.example/api/kling/v1/videos/lip-sync",
            ),
        ],
    )
    def test_create_posts_under_the_base_urls_path(self, base_url, expected):
        kling = FakeKling(body=envelope(CREATE_DATA))
        with make_client(kling, base_url=base_url) as client:
            create(client)
        assert kling.last.method == "POST"
        assert str(kling.last.url) == expected

    def test_the_base_url_property_is_normalised(self):
        with make_client(FakeKling(), base_url="https://reseller.example/kling/") as client:
            assert client.base_url == "https://reseller.example/kling"

    def test_get_task_puts_the_quoted_task_id_in_the_path(self):
        kling = FakeKling(body=envelope(QUERY_DATA))
        with make_client(kling, base_url="https://reseller.example/kling/") as client:
            client.get_task("Zm9v/YmFy+cXV4=")
        assert kling.last.method == "GET"
        assert kling.last.url.raw_path == b"/kling/v1/videos/lip-sync/Zm9v%2FYmFy%2BcXV4%3D"

    @pytest.mark.parametrize(
        "base_url",
        [
            "",
            "api.klingai.com",
            "ftp://api.klingai.com",
            "https://user:pass@api.klingai.com",
            "https://api.klingai.com/?key=1",
        ],
    )
    def test_it_refuses_an_unusable_base_url(self, base_url):
        with pytest.raises(ValueError, match="base_url"):
            KlingClient(base_url=base_url, auth=ApiKeyAuth(API_KEY))

    @pytest.mark.parametrize("task_id", ["", "  ", None])
    def test_get_task_refuses_a_blank_task_id(self, task_id):
        with make_client(FakeKling()) as client, pytest.raises(ValueError, match="task_id"):
            client.get_task(task_id)


class TestHeaders:
    def test_it_sends_the_default_user_agent(self):
        kling = FakeKling(body=envelope(QUERY_DATA))
        with make_client(kling) as client:
            get(client)
        assert kling.last.headers["User-Agent"] == "LipSyncStudio/0.1 (+kling-client)"

    def test_it_sends_a_custom_user_agent(self):
        kling = FakeKling(body=envelope(QUERY_DATA))
        with make_client(kling, user_agent="Studio/9 (+ops@example.com)") as client:
            get(client)
        assert kling.last.headers["User-Agent"] == "Studio/9 (+ops@example.com)"

    def test_create_sends_json(self):
        kling = FakeKling(body=envelope(CREATE_DATA))
        with make_client(kling) as client:
            create(client)
        assert kling.last.headers["Content-Type"] == "application/json"
        assert kling.last.headers["Accept"] == "application/json"


class TestCreateTask:
    def test_it_sends_the_requests_body_and_parses_the_answer(self):
        kling = FakeKling(body=envelope(CREATE_DATA, request_id="req-create"))
        request = text_request(callback_url="https://studio.example/cb")
        with make_client(kling) as client:
            task = client.create_task(request)
        assert json.loads(kling.last.content) == request.to_body()
        assert task.task_id == TASK_ID
        assert task.status is TaskStatus.SUBMITTED
        assert task.request_id == "req-create"

    def test_voice_speed_goes_over_the_wire_as_a_number_with_one_decimal(self):
        kling = FakeKling(body=envelope(CREATE_DATA))
        speech = TextSpeech(text="Hi", voice_id="AOT", voice_language="en", voice_speed=Decimal(1))
        with make_client(kling) as client:
            client.create_task(text_request(speech=speech))
        assert b'"voice_speed":1.0' in kling.last.content.replace(b" ", b"")

    def test_chinese_text_arrives_intact(self):
        kling = FakeKling(body=envelope(CREATE_DATA))
        speech = TextSpeech(text="你好世界", voice_id="tiexin_nanyou", voice_language="zh")
        with make_client(kling) as client:
            client.create_task(text_request(speech=speech))
        assert json.loads(kling.last.content)["input"]["text"] == "你好世界"

    def test_an_audio_file_is_sent_as_base64(self):
        kling = FakeKling(body=envelope(CREATE_DATA))
        audio = b"ID3\x04\x00" + bytes(range(200))
        with make_client(kling) as client:
            client.create_task(text_request(speech=AudioTrack(audio_file=audio)))
        sent = json.loads(kling.last.content)["input"]
        assert sent["audio_type"] == "file"
        assert base64.b64decode(sent["audio_file"]) == audio

    def test_it_refuses_something_that_is_not_a_request(self):
        with make_client(FakeKling()) as client, pytest.raises(ValueError):
            client.create_task({"input": {}})

    def test_a_success_answer_without_a_task_leaves_the_outcome_unknown(self):
        err = failure(create, FakeKling(body=envelope({"task_status": "submitted"})))
        assert err.kind is ErrorKind.BAD_RESPONSE
        assert err.outcome_unknown is True
        assert (err.http_status, err.request_id) == (200, "req-1")


class TestGetTask:
    def test_it_parses_a_finished_task(self):
        kling = FakeKling(body=envelope(QUERY_DATA, request_id="req-q"))
        with make_client(kling) as client:
            task = get(client)
        assert task.status is TaskStatus.SUCCEED
        assert task.videos[0].url == RESULT_URL
        assert task.videos[0].duration == 5.1
        assert task.parent_video.duration == 7.0
        assert task.credits == Decimal("5")
        assert task.request_id == "req-q"
        assert task.updated_at.tzinfo is not None

    def test_a_kling_error_inside_an_http_200_is_still_an_error(self):
        body = envelope(None, code=1303, message="parallel task over limit", request_id="req-9")
        err = failure(get, FakeKling(200, body))
        assert (err.kind, err.code, err.http_status) == (ErrorKind.CONCURRENCY, 1303, 200)
        assert err.retryable is True
        assert err.request_id == "req-9"

    def test_a_task_without_task_id_is_a_bad_response_with_a_known_outcome(self):
        data = {k: v for k, v in QUERY_DATA.items() if k != "task_id"}
        err = failure(get, FakeKling(body=envelope(data)))
        assert err.kind is ErrorKind.BAD_RESPONSE
        assert err.outcome_unknown is False
        assert err.retryable is False

    def test_a_success_answer_without_data_is_a_bad_response(self):
        err = failure(get, FakeKling(body=envelope(None)))
        assert err.kind is ErrorKind.BAD_RESPONSE

    def test_code_zero_on_an_http_error_status_is_not_taken_for_success(self):
        err = failure(get, FakeKling(502, envelope(QUERY_DATA)))
        assert (err.kind, err.http_status, err.code) == (ErrorKind.SERVER, 502, None)


class TestListTasks:
    def test_it_sends_page_number_and_size(self):
        kling = FakeKling(body=envelope([]))
        with make_client(kling) as client:
            client.list_tasks(page=3, page_size=50)
        assert kling.last.method == "GET"
        assert kling.last.url.path == "/v1/videos/lip-sync"
        assert dict(kling.last.url.params) == {"pageNum": "3", "pageSize": "50"}

    def test_it_asks_for_the_first_page_of_thirty_by_default(self):
        kling = FakeKling(body=envelope([]))
        with make_client(kling) as client:
            client.list_tasks()
        assert dict(kling.last.url.params) == {"pageNum": "1", "pageSize": "30"}

    def test_it_parses_the_array_of_tasks(self):
        second = QUERY_DATA | {"task_id": "860000000000000002", "task_status": "processing"}
        kling = FakeKling(body=envelope([QUERY_DATA, second], request_id="req-list"))
        with make_client(kling) as client:
            page = client.list_tasks()
        assert isinstance(page, TaskPage)
        assert [t.task_id for t in page.tasks] == [TASK_ID, "860000000000000002"]
        assert [t.status for t in page.tasks] == [TaskStatus.SUCCEED, TaskStatus.PROCESSING]
        assert page.request_id == "req-list"
        assert page.tasks[0].request_id == "req-list"

    def test_an_empty_or_missing_list_is_an_empty_page(self):
        for body in (envelope([]), envelope(None)):
            with make_client(FakeKling(body=body)) as client:
                assert client.list_tasks().tasks == ()

    def test_data_that_is_not_an_array_is_a_bad_response(self):
        err = failure(lambda c: c.list_tasks(), FakeKling(body=envelope(QUERY_DATA)))
        assert err.kind is ErrorKind.BAD_RESPONSE

    @pytest.mark.parametrize("kwargs", [{"page": 0}, {"page_size": -1}, {"page": "2"}])
    def test_it_refuses_a_nonsense_page(self, kwargs):
        with make_client(FakeKling()) as client, pytest.raises(ValueError):
            client.list_tasks(**kwargs)


class TestUnreadableAnswers:
    def test_a_non_json_answer_to_a_query_is_a_retryable_bad_response(self):
        err = failure(get, FakeKling(200, raw=b"OK", headers={"content-type": "text/plain"}))
        assert (err.kind, err.retryable, err.outcome_unknown) == (
            ErrorKind.BAD_RESPONSE,
            True,
            False,
        )
        assert "not JSON" in str(err)

    def test_a_non_json_answer_to_a_create_leaves_the_outcome_unknown(self):
        err = failure(create, FakeKling(200, raw=b"OK", headers={"content-type": "text/plain"}))
        assert err.kind is ErrorKind.BAD_RESPONSE
        assert err.outcome_unknown is True

    def test_truncated_json_is_a_bad_response(self):
        cut = json.dumps(envelope(QUERY_DATA)).encode()[:40]
        err = failure(get, FakeKling(200, raw=cut, headers={"content-type": "application/json"}))
        assert err.kind is ErrorKind.BAD_RESPONSE

    def test_truncated_json_after_a_create_leaves_the_outcome_unknown(self):
        cut = json.dumps(envelope(CREATE_DATA)).encode()[:40]
        err = failure(create, FakeKling(200, raw=cut))
        assert err.outcome_unknown is True

    def test_an_empty_body_is_a_bad_response(self):
        err = failure(get, FakeKling(200, raw=b""))
        assert err.kind is ErrorKind.BAD_RESPONSE
        assert "empty" in str(err)

    @pytest.mark.parametrize(("call", "unknown"), [(create, True), (get, False)])
    def test_a_proxys_html_error_page_is_a_retryable_server_error(self, call, unknown):
        page = b"<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
        kling = FakeKling(502, raw=page, headers={"content-type": "text/html"})
        err = failure(call, kling)
        assert (err.kind, err.http_status, err.code) == (ErrorKind.SERVER, 502, None)
        assert err.retryable is True
        assert err.outcome_unknown is unknown
        assert "text/html" in str(err)
        assert "nginx" not in str(err)

    def test_a_rate_limit_without_a_kling_body_is_retryable(self):
        err = failure(get, FakeKling(429, raw=b"Too Many Requests"))
        assert (err.kind, err.retryable) == (ErrorKind.RATE_LIMIT, True)

    def test_a_404_page_from_a_wrong_base_url_is_not_retryable(self):
        err = failure(create, FakeKling(404, raw=b"<html>Not Found</html>"))
        assert (err.kind, err.retryable, err.outcome_unknown) == (
            ErrorKind.BAD_RESPONSE,
            False,
            False,
        )

    def test_a_redirect_is_not_followed(self):
        kling = FakeKling(301, raw=b"", headers={"location": "https://elsewhere.example/"})
        err = failure(create, kling)
        assert len(kling.requests) == 1
        assert err.http_status == 301
        assert err.retryable is False

    def test_a_proxys_json_error_message_is_kept(self):
        err = failure(get, FakeKling(403, {"error": {"message": "quota exceeded for key"}}))
        assert err.kling_message == "quota exceeded for key"
        assert err.code is None


class TestTransportErrors:
    @pytest.mark.parametrize(
        ("exception", "call", "kind", "unknown"),
        [
            (httpx.ConnectError, create, ErrorKind.NETWORK, False),
            (httpx.ConnectTimeout, create, ErrorKind.TIMEOUT, False),
            (httpx.PoolTimeout, create, ErrorKind.TIMEOUT, False),
            (httpx.ReadTimeout, create, ErrorKind.TIMEOUT, True),
            (httpx.WriteTimeout, create, ErrorKind.TIMEOUT, True),
            (httpx.ReadTimeout, get, ErrorKind.TIMEOUT, False),
            (httpx.RemoteProtocolError, create, ErrorKind.NETWORK, True),
            (httpx.ReadError, create, ErrorKind.NETWORK, True),
            (httpx.RemoteProtocolError, get, ErrorKind.NETWORK, False),
            (httpx.ConnectError, get, ErrorKind.NETWORK, False),
        ],
    )
    def test_it_classifies_the_failure_and_whether_a_create_may_exist(
        self, exception, call, kind, unknown
    ):
        err = failure(call, FakeKling(raises=exception))
        assert err.kind is kind
        assert err.retryable is True
        assert err.outcome_unknown is unknown
        assert err.http_status is None
        assert exception.__name__ in str(err)

    def test_it_does_not_chain_the_httpx_exception(self):
        # httpx exceptions hold the request, and with it the Authorization header.
        err = failure(create, FakeKling(raises=httpx.ReadTimeout))
        assert err.__cause__ is None
        assert err.__suppress_context__ is True


class TestSecrets:
    def test_the_clients_repr_shows_the_base_url_but_no_key(self):
        with make_client(FakeKling(), base_url="https://reseller.example/kling") as client:
            text = repr(client)
        assert "https://reseller.example/kling" in text
        assert API_KEY not in text

    def test_a_key_echoed_in_klings_message_is_redacted(self):
        body = envelope(None, code=1002, message=f"invalid key {API_KEY}")
        err = failure(get, FakeKling(401, body))
        assert API_KEY not in str(err)
        assert API_KEY not in repr(err)
        assert API_KEY not in err.user_message
        assert err.kling_message == "invalid key <redacted>"

    def test_a_token_echoed_in_klings_message_is_redacted(self):
        seen = []

        def handler(request):
            token = request.headers["Authorization"].removeprefix("Bearer ")
            seen.append(token)
            body = envelope(None, code=1002, message=f"bad token {token} for {ACCESS_KEY}")
            return httpx.Response(401, json=body)

        err = failure(get, handler, auth=JwtAuth(ACCESS_KEY, SECRET_KEY))
        assert seen[0] not in str(err)
        assert ACCESS_KEY not in str(err)

    @pytest.mark.parametrize("mode", ["api-key", "access-key"])
    def test_no_secret_reaches_the_log_across_failing_and_succeeding_calls(self, mode, caplog):
        caplog.set_level(logging.DEBUG)
        tokens = []
        answers = iter(
            [
                httpx.Response(401, json=envelope(None, code=1004, message="token expired")),
                httpx.Response(200, json=envelope(CREATE_DATA)),
                httpx.Response(429, json=envelope(None, code=1303, message="busy")),
                httpx.Response(200, json=envelope(QUERY_DATA, request_id="req-logged")),
            ]
        )

        def handler(request):
            tokens.append(request.headers["Authorization"].removeprefix("Bearer "))
            return next(answers)

        auth = ApiKeyAuth(API_KEY) if mode == "api-key" else JwtAuth(ACCESS_KEY, SECRET_KEY)
        audio = b"\xff\xfb\x90\x64" + b"distinctive-audio-bytes" * 20
        with make_client(handler, auth=auth) as client:
            if mode == "api-key":
                with pytest.raises(KlingError):  # the 1004 is not retried with an API key
                    client.create_task(text_request(speech=AudioTrack(audio_file=audio)))
                client.create_task(text_request(speech=AudioTrack(audio_file=audio)))
            else:  # the 1004 is retried with a fresh token and succeeds
                client.create_task(text_request(speech=AudioTrack(audio_file=audio)))
            with pytest.raises(KlingError):
                get(client)
            get(client)

        logged = "\n".join(
            f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
        )
        assert "req-logged" in logged  # the log does say what happened...
        assert "/v1/videos/lip-sync" in logged
        assert "code=1303" in logged
        for secret in (API_KEY, ACCESS_KEY, SECRET_KEY, *tokens):  # ...but never with what
            assert secret not in logged
        assert base64.b64encode(audio).decode()[:40] not in logged


class TestLifecycle:
    def test_the_context_manager_closes_the_transport(self):
        closed = []

        class Transport(httpx.MockTransport):
            def close(self):
                closed.append(True)

        with KlingClient(base_url=BASE, auth=ApiKeyAuth(API_KEY), transport=Transport(FakeKling())):
            assert closed == []
        assert closed == [True]

    @pytest.mark.parametrize(
        ("auth", "mode"),
        [(ApiKeyAuth(API_KEY), "api-key"), (JwtAuth(ACCESS_KEY, SECRET_KEY), "access-key")],
    )
    def test_it_reports_the_auth_mode(self, auth, mode):
        with make_client(FakeKling(), auth=auth) as client:
            assert client.auth_mode == mode
