"""Everything that can go wrong when talking to Kling, as one exception type.

Kling answers errors with an HTTP status *and* a business ``code`` (see the table in the
protocol reference). :class:`KlingError` folds that, and the failures that are not Kling
answers at all (network trouble, timeouts, proxy pages), into a ``kind``, a ``retryable``
flag, and an ``outcome_unknown`` flag for creates whose fate is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    AUTH = "auth"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"  # noqa: S105 (a name, not a password)
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    ACCOUNT = "account"
    CREDITS = "credits"
    PERMISSION = "permission"
    INVALID_REQUEST = "invalid_request"
    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    POLICY = "policy"
    CONTENT_SAFETY = "content_safety"
    RATE_LIMIT = "rate_limit"
    CONCURRENCY = "concurrency"
    IP_NOT_ALLOWED = "ip_not_allowed"
    SERVER = "server"
    NETWORK = "network"
    TIMEOUT = "timeout"
    BAD_RESPONSE = "bad_response"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class _Row:
    kind: ErrorKind
    retryable: bool
    user_message: str | None = None  # overrides the kind's message when one code needs its own


# The reference's error table. 1004 is retryable "once, with a new token", and JwtAuth already
# spends that one retry inside the request, so a 1004 that reaches the caller is final.
_CODES: dict[int, _Row] = {
    1000: _Row(ErrorKind.AUTH, False),
    1001: _Row(ErrorKind.AUTH, False),
    1002: _Row(ErrorKind.AUTH, False),
    1003: _Row(ErrorKind.TOKEN_NOT_YET_VALID, True),
    1004: _Row(ErrorKind.TOKEN_EXPIRED, False),
    1100: _Row(ErrorKind.ACCOUNT, False),
    1101: _Row(
        ErrorKind.ACCOUNT,
        False,
        "The Kling account has unpaid charges. The account owner needs to settle them in the "
        "Kling console before new jobs can run.",
    ),
    1102: _Row(ErrorKind.CREDITS, False),
    1103: _Row(ErrorKind.PERMISSION, False),
    1200: _Row(ErrorKind.INVALID_REQUEST, False),
    1201: _Row(ErrorKind.INVALID_INPUT, False),
    1202: _Row(ErrorKind.INVALID_REQUEST, False),
    1203: _Row(ErrorKind.NOT_FOUND, False),
    1300: _Row(ErrorKind.POLICY, False),
    1301: _Row(ErrorKind.CONTENT_SAFETY, False),
    1302: _Row(ErrorKind.RATE_LIMIT, True),
    1303: _Row(ErrorKind.CONCURRENCY, True),
    1304: _Row(ErrorKind.IP_NOT_ALLOWED, False),
    5000: _Row(ErrorKind.SERVER, True),
    5001: _Row(ErrorKind.SERVER, True),
    5002: _Row(ErrorKind.SERVER, True),
}

# A gateway timeout means Kling's front door gave up waiting, not that the work was refused.
_CODES_WITH_UNKNOWN_OUTCOME = frozenset({5002})

_USER_MESSAGES: dict[ErrorKind, str] = {
    ErrorKind.AUTH: (
        "Kling did not accept the studio's credentials. An administrator needs to check the "
        "Kling keys in the settings."
    ),
    ErrorKind.TOKEN_NOT_YET_VALID: (
        "Kling says the studio's sign-in token is not valid yet, which usually means this "
        "server's clock is off. The studio will try again shortly."
    ),
    ErrorKind.TOKEN_EXPIRED: (
        "Kling says the studio's sign-in token has expired, even after a fresh one was made. "
        "This server's clock may be wrong; an administrator should check it."
    ),
    ErrorKind.ACCOUNT: (
        "Kling reports a problem with the account's status. The account owner needs to check "
        "it in the Kling console."
    ),
    ErrorKind.CREDITS: (
        "The Kling account has run out of credits, or its resource pack has expired. Buy more "
        "credits, then submit the job again."
    ),
    ErrorKind.PERMISSION: (
        "This Kling account is not allowed to use lip-sync. The account owner needs to enable "
        "it in the Kling console."
    ),
    ErrorKind.INVALID_REQUEST: (
        "Kling could not accept the job as the studio sent it. This looks like a problem in the "
        "studio itself; please tell the administrator."
    ),
    ErrorKind.INVALID_INPUT: (
        "Kling rejected one of the job's inputs. Change it and submit the job again."
    ),
    ErrorKind.NOT_FOUND: (
        "Kling could not find that task or video. It may have been deleted (Kling keeps results "
        "for 30 days) or belong to another account."
    ),
    ErrorKind.POLICY: "Kling refused this job under its platform policy.",
    ErrorKind.CONTENT_SAFETY: (
        "Kling's content-safety check refused this video or text. Change the text or the video "
        "and submit the job again."
    ),
    ErrorKind.RATE_LIMIT: (
        "Kling is receiving too many requests from this account right now; the studio will try "
        "again shortly."
    ),
    ErrorKind.CONCURRENCY: (
        "Kling is busy with too many jobs for this account right now; the studio will try "
        "again shortly."
    ),
    ErrorKind.IP_NOT_ALLOWED: (
        "Kling refused this server because its IP address is not on the account's allow-list. "
        "An administrator needs to add it in the Kling console."
    ),
    ErrorKind.SERVER: (
        "Kling is having trouble right now (a server error or maintenance); the studio will try "
        "again later."
    ),
    ErrorKind.NETWORK: "The studio could not reach Kling; it will try again shortly.",
    ErrorKind.TIMEOUT: "Kling took too long to answer; the studio will try again shortly.",
    ErrorKind.BAD_RESPONSE: (
        "Kling sent an answer the studio could not read. If this keeps happening, an "
        "administrator should check the Kling API address in the settings."
    ),
    ErrorKind.UNKNOWN: "Kling reported an unexpected problem.",
}

# Kinds whose Kling message tells the user what to fix ("Voice id not found", ...).
_KINDS_QUOTING_KLING = frozenset(
    {
        ErrorKind.INVALID_REQUEST,
        ErrorKind.INVALID_INPUT,
        ErrorKind.POLICY,
        ErrorKind.CONTENT_SAFETY,
        ErrorKind.UNKNOWN,
    }
)

_OUTCOME_UNKNOWN_NOTE = (
    " The job may or may not have been created; the studio will check with Kling before "
    "trying again, so it is not paid for twice."
)


def _user_message(
    kind: ErrorKind, kling_message: str | None, retryable: bool, outcome_unknown: bool
) -> str:
    text = _USER_MESSAGES[kind]
    if kling_message and kind in _KINDS_QUOTING_KLING:
        text = f"{text} Kling said: \u201c{kling_message}\u201d."
    if kind is ErrorKind.UNKNOWN:
        text += (
            " The studio will try again later."
            if retryable
            else " If it keeps happening, please tell the administrator."
        )
    if outcome_unknown:
        text += _OUTCOME_UNKNOWN_NOTE
    return text


class KlingError(Exception):
    """A failed call to Kling, classified.

    ``retryable`` means the same call may succeed later. For a create with
    ``outcome_unknown`` the task may already exist on Kling's side (and cost credits), so the
    caller must reconcile (e.g. through the list endpoint) before creating it again.
    ``str(err)`` is a one-line technical summary; ``user_message`` is for people.
    """

    def __init__(
        self,
        kind: ErrorKind,
        *,
        http_status: int | None = None,
        code: int | None = None,
        kling_message: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        outcome_unknown: bool = False,
        user_message: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.kind = ErrorKind(kind)
        self.http_status = http_status
        self.code = code
        self.kling_message = kling_message
        self.request_id = request_id
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        self.detail = detail
        self.user_message = user_message or _user_message(
            self.kind, kling_message, retryable, outcome_unknown
        )
        super().__init__(self._summary())

    @classmethod
    def from_answer(
        cls,
        *,
        http_status: int,
        code: int | None,
        message: str | None = None,
        request_id: str | None = None,
        creating: bool = False,
        detail: str | None = None,
    ) -> KlingError:
        """Classify an HTTP answer that is not a success.

        ``code`` is Kling's business code, or None when the body was not a Kling envelope
        (a proxy's HTML page, truncated JSON, ...); then the HTTP status decides. ``creating``
        marks the answer to a create, where some failures leave the task's existence unknown.
        """
        if code is not None and code in _CODES:
            row = _CODES[code]
            return cls(
                row.kind,
                http_status=http_status,
                code=code,
                kling_message=message,
                request_id=request_id,
                retryable=row.retryable,
                outcome_unknown=creating and code in _CODES_WITH_UNKNOWN_OUTCOME,
                user_message=row.user_message,
                detail=detail,
            )
        server_side = http_status >= 500
        if code is not None:
            return cls(
                ErrorKind.UNKNOWN,
                http_status=http_status,
                code=code,
                kling_message=message,
                request_id=request_id,
                retryable=server_side,
                outcome_unknown=creating and server_side,
                detail=detail,
            )
        # No Kling body. A 2xx or 5xx that we cannot read may hide a created task; a 3xx/4xx
        # (redirect, proxy refusal, 413 body too large...) means the request was turned away.
        kind, retryable = _kind_for_bare_status(http_status)
        return cls(
            kind,
            http_status=http_status,
            kling_message=message,
            request_id=request_id,
            retryable=retryable,
            outcome_unknown=creating and (server_side or 200 <= http_status < 300),
            detail=detail,
        )

    def _summary(self) -> str:
        parts = [f"Kling error {self.kind.value}"]
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.kling_message:
            parts.append(f"message {self.kling_message!r}")
        if self.request_id:
            parts.append(f"request_id {self.request_id}")
        if self.detail:
            parts.append(self.detail)
        if self.outcome_unknown:
            parts.append("outcome unknown")
        parts.append("retryable" if self.retryable else "not retryable")
        return ", ".join(parts).replace("\n", " ")

    def __repr__(self) -> str:
        return f"KlingError({self._summary()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only constructor defeats Exception's default pickling (task queues and
        # multiprocessing pickle exceptions).
        return (_rebuild, (self.kind, self._state()))

    def _state(self) -> dict[str, Any]:
        return {
            "http_status": self.http_status,
            "code": self.code,
            "kling_message": self.kling_message,
            "request_id": self.request_id,
            "retryable": self.retryable,
            "outcome_unknown": self.outcome_unknown,
            "user_message": self.user_message,
            "detail": self.detail,
        }


def business_code(value: object) -> int | None:
    """Kling's envelope ``code`` as an int; some proxies send it as a digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _rebuild(kind: ErrorKind, state: dict[str, Any]) -> KlingError:
    return KlingError(kind, **state)


def _kind_for_bare_status(http_status: int) -> tuple[ErrorKind, bool]:
    if http_status == 401:
        return ErrorKind.AUTH, False
    if http_status == 429:
        return ErrorKind.RATE_LIMIT, True
    if http_status >= 500:
        return ErrorKind.SERVER, True
    # A 2xx that cannot be read is most likely a truncated or garbled answer: worth a retry.
    return ErrorKind.BAD_RESPONSE, 200 <= http_status < 300
