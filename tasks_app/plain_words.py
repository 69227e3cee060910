"""What Kling's errors and failures mean, in words a non-technical person can act on.

The Kling client has English messages of its own; these are the studio's, stored as messages
(see ``wording``) so each reader sees them in their language, and keyed on the error's kind so
that wording lives in one place.
"""

from __future__ import annotations

from django.utils.translation import gettext_noop

from tasks_app.kling import ErrorKind, KlingError
from tasks_app.wording import Message, say

_ERRORS = {
    ErrorKind.AUTH: gettext_noop(
        "Kling refused the studio's key. Ask whoever runs the studio to check the Kling "
        "credentials, then try again."
    ),
    ErrorKind.TOKEN_NOT_YET_VALID: gettext_noop(
        "Kling was not ready to accept the studio's sign-in."
    ),
    ErrorKind.TOKEN_EXPIRED: gettext_noop("The studio's sign-in to Kling expired."),
    ErrorKind.ACCOUNT: gettext_noop(
        "Kling says the studio's account has a problem (suspended or unpaid). Ask whoever "
        "runs the studio to check the Kling account."
    ),
    ErrorKind.CREDITS: gettext_noop(
        "The Kling account has run out of credits. Ask whoever runs the studio to top it up, "
        "then try again."
    ),
    ErrorKind.PERMISSION: gettext_noop("The Kling account is not allowed to use lip-sync."),
    ErrorKind.INVALID_REQUEST: gettext_noop("Kling did not accept this job: {detail}"),
    ErrorKind.INVALID_INPUT: gettext_noop("Kling did not accept this job: {detail}"),
    ErrorKind.NOT_FOUND: gettext_noop(
        "Kling could not find what this job refers to (for example the video ID). "
        "Check it and try again."
    ),
    ErrorKind.POLICY: gettext_noop("Kling's platform rules do not allow this job."),
    ErrorKind.CONTENT_SAFETY: gettext_noop(
        "Kling's content rules blocked this job. Change the text or the video and try again."
    ),
    ErrorKind.RATE_LIMIT: gettext_noop("Kling asked the studio to slow down."),
    ErrorKind.CONCURRENCY: gettext_noop(
        "All of the account's Kling slots are busy with other jobs."
    ),
    ErrorKind.IP_NOT_ALLOWED: gettext_noop(
        "Kling does not accept requests from the studio's network address. Ask whoever runs "
        "the studio to add it to the Kling allow-list."
    ),
    ErrorKind.SERVER: gettext_noop("Kling had a problem on its side."),
    ErrorKind.NETWORK: gettext_noop("The studio could not reach Kling."),
    ErrorKind.TIMEOUT: gettext_noop("Kling took too long to answer."),
    ErrorKind.BAD_RESPONSE: gettext_noop("Kling sent an answer the studio could not read."),
}
_OTHER_ERROR = gettext_noop("Something went wrong talking to Kling: {detail}")


def error_message(err: KlingError) -> Message:
    """What to show on a job that Kling refused or could not be reached for."""
    template = _ERRORS.get(err.kind, _OTHER_ERROR)
    return say(template, detail=err.kling_message or err.user_message)


# Kling's own failure messages, as seen from the service, and what to do about them.
_KNOWN_FAILURES = {
    "the model did not detect a human": gettext_noop(
        "Kling could not find a human face in the source video. Use a video where one person's "
        "face is clearly visible, then try again. (Kling does not charge for this.)"
    ),
}


def failure_message(kling_message: str) -> Message:
    """What to show on a job that Kling ran and reported as failed."""
    known = _KNOWN_FAILURES.get(kling_message.strip().rstrip(".").lower())
    if known:
        return say(known)
    if kling_message:
        return say(
            gettext_noop("Kling could not make this video. Kling said: “{message}”"),
            message=kling_message,
        )
    return say(gettext_noop("Kling could not make this video and did not say why. Try again."))
