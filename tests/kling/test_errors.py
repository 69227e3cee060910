"""KlingError: the reference's error table, answers that are not Kling's, and presentation."""

import pickle

import httpx
import pytest

from tasks_app.kling import ApiKeyAuth, ErrorKind, KlingClient, KlingError

E = ErrorKind

# (HTTP status, code, kind, retryable): every row of the reference's error table.
REFERENCE_TABLE = [
    (401, 1000, E.AUTH, False),
    (401, 1001, E.AUTH, False),
    (401, 1002, E.AUTH, False),
    (401, 1003, E.TOKEN_NOT_YET_VALID, True),
    # Retryable "once, with a new token": JwtAuth spends that retry, so what surfaces is final.
    (401, 1004, E.TOKEN_EXPIRED, False),
    (429, 1100, E.ACCOUNT, False),
    (429, 1101, E.ACCOUNT, False),
    (429, 1102, E.CREDITS, False),
    (403, 1103, E.PERMISSION, False),
    (400, 1200, E.INVALID_REQUEST, False),
    (400, 1201, E.INVALID_INPUT, False),
    (404, 1202, E.INVALID_REQUEST, False),
    (404, 1203, E.NOT_FOUND, False),
    (400, 1300, E.POLICY, False),
    (400, 1301, E.CONTENT_SAFETY, False),
    (429, 1302, E.RATE_LIMIT, True),
    (429, 1303, E.CONCURRENCY, True),
    (429, 1304, E.IP_NOT_ALLOWED, False),
    (500, 5000, E.SERVER, True),
    (503, 5001, E.SERVER, True),
    (504, 5002, E.SERVER, True),
]


def failing_client(status, body):
    def handler(request):
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers={"content-type": "text/html"})
        return httpx.Response(status, json=body)

    return KlingClient(
        base_url="https://api.example.com",
        auth=ApiKeyAuth("test-api-key"),
        transport=httpx.MockTransport(handler),
    )


class TestReferenceTable:
    @pytest.mark.parametrize(("status", "code", "kind", "retryable"), REFERENCE_TABLE)
    def test_each_kling_answer_maps_to_its_kind_and_retry_advice(
        self, status, code, kind, retryable
    ):
        body = {"code": code, "message": f"message for {code}", "request_id": f"req-{code}"}
        with failing_client(status, body) as client, pytest.raises(KlingError) as caught:
            client.get_task("860012345678901234")
        err = caught.value
        assert (err.kind, err.retryable) == (kind, retryable)
        assert (err.http_status, err.code) == (status, code)
        assert err.kling_message == f"message for {code}"
        assert err.request_id == f"req-{code}"
        assert err.outcome_unknown is False

    @pytest.mark.parametrize(("status", "code", "kind", "retryable"), REFERENCE_TABLE)
    def test_the_code_decides_even_when_the_http_status_disagrees(
        self, status, code, kind, retryable
    ):
        err = KlingError.from_answer(http_status=200, code=code, message="m")
        assert (err.kind, err.retryable) == (kind, retryable)

    def test_a_gateway_timeout_leaves_a_creates_outcome_unknown(self):
        err = KlingError.from_answer(http_status=504, code=5002, creating=True)
        assert err.outcome_unknown is True

    @pytest.mark.parametrize("code", [1201, 1303, 5000])
    def test_other_kling_refusals_of_a_create_are_known_outcomes(self, code):
        assert KlingError.from_answer(
            http_status=400, code=code, creating=True
        ).outcome_unknown is (False)


class TestUnknownCodes:
    def test_an_unknown_code_is_unknown_and_not_retryable(self):
        err = KlingError.from_answer(http_status=400, code=1999, message="something new")
        assert (err.kind, err.retryable) == (E.UNKNOWN, False)
        assert err.code == 1999

    def test_an_unknown_code_on_a_server_error_is_retryable(self):
        err = KlingError.from_answer(http_status=502, code=5999)
        assert (err.kind, err.retryable) == (E.UNKNOWN, True)

    def test_a_code_sent_as_a_digit_string_is_still_recognised(self):
        body = {"code": "1303", "message": "too many tasks", "request_id": "r"}
        with failing_client(429, body) as client, pytest.raises(KlingError) as caught:
            client.get_task("t")
        assert (caught.value.kind, caught.value.code) == (E.CONCURRENCY, 1303)


class TestAnswersWithoutAKlingBody:
    @pytest.mark.parametrize(
        ("status", "kind", "retryable"),
        [
            (200, E.BAD_RESPONSE, True),
            (301, E.BAD_RESPONSE, False),
            (401, E.AUTH, False),
            (404, E.BAD_RESPONSE, False),
            (413, E.BAD_RESPONSE, False),
            (429, E.RATE_LIMIT, True),
            (500, E.SERVER, True),
            (502, E.SERVER, True),
            (504, E.SERVER, True),
        ],
    )
    def test_the_http_status_decides(self, status, kind, retryable):
        err = KlingError.from_answer(http_status=status, code=None)
        assert (err.kind, err.retryable, err.code) == (kind, retryable, None)

    @pytest.mark.parametrize(("status", "unknown"), [(200, True), (502, True), (413, False)])
    def test_a_create_is_unknown_unless_the_request_was_clearly_turned_away(self, status, unknown):
        err = KlingError.from_answer(http_status=status, code=None, creating=True)
        assert err.outcome_unknown is unknown

    def test_queries_never_have_an_unknown_outcome(self):
        assert KlingError.from_answer(http_status=502, code=None).outcome_unknown is False


class TestPresentation:
    def test_str_is_one_technical_line_with_everything_known(self):
        err = KlingError.from_answer(
            http_status=429, code=1303, message="parallel task over\nlimit", request_id="req-42"
        )
        text = str(err)
        assert "\n" not in text
        for part in ("concurrency", "429", "1303", "parallel task over", "req-42", "retryable"):
            assert part in text

    def test_repr_names_the_class_and_the_kind(self):
        err = KlingError(E.TIMEOUT, retryable=True, detail="ReadTimeout")
        assert repr(err).startswith("KlingError(")
        assert "timeout" in repr(err)

    @pytest.mark.parametrize("kind", list(ErrorKind))
    def test_every_kind_has_a_plain_english_user_message(self, kind):
        message = KlingError(kind).user_message
        assert len(message) > 30
        assert "None" not in message
        assert "HTTP" not in message

    def test_the_concurrency_message_says_the_studio_will_retry(self):
        message = KlingError.from_answer(http_status=429, code=1303).user_message
        assert "busy" in message
        assert "try again" in message

    def test_input_errors_quote_klings_own_words(self):
        err = KlingError.from_answer(http_status=400, code=1201, message="Voice id not found")
        assert "Voice id not found" in err.user_message

    def test_credential_errors_do_not_quote_kling(self):
        err = KlingError.from_answer(http_status=401, code=1002, message="invalid sig abc")
        assert "invalid sig abc" not in err.user_message

    def test_arrears_has_its_own_message(self):
        arrears = KlingError.from_answer(http_status=429, code=1101).user_message
        status = KlingError.from_answer(http_status=429, code=1100).user_message
        assert "unpaid" in arrears
        assert arrears != status

    def test_an_unknown_outcome_is_explained_to_the_user(self):
        err = KlingError(E.TIMEOUT, retryable=True, outcome_unknown=True)
        assert "may or may not have been created" in err.user_message

    def test_an_explicit_user_message_wins(self):
        assert KlingError(E.SERVER, user_message="Custom.").user_message == "Custom."


class TestPickling:
    def test_it_survives_a_pickle_round_trip(self):
        err = KlingError.from_answer(
            http_status=429, code=1303, message="busy", request_id="req-1", creating=False
        )
        copy = pickle.loads(pickle.dumps(err))  # noqa: S301 (our own bytes)
        assert type(copy) is KlingError
        assert (copy.kind, copy.code, copy.http_status, copy.request_id) == (
            E.CONCURRENCY,
            1303,
            429,
            "req-1",
        )
        assert (copy.retryable, copy.user_message, str(copy)) == (
            err.retryable,
            err.user_message,
            str(err),
        )
