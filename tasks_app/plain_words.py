"""What Kling's errors and failures mean, in words a non-technical person can act on.

The Kling client has English messages of its own; these are the studio's, translatable, and keyed
on the error's kind so that wording lives in one place.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from tasks_app.kling import ErrorKind, KlingError


def error_message(err: KlingError) -> str:
    """The sentence shown on a job that Kling refused or could not be reached for."""
    messages = {
        ErrorKind.AUTH: _(
            "Kling refused the studio's key. Ask whoever runs the studio to check the Kling "
            "credentials, then try again."
        ),
        ErrorKind.TOKEN_NOT_YET_VALID: _("Kling was not ready to accept the studio's sign-in."),
        ErrorKind.TOKEN_EXPIRED: _("The studio's sign-in to Kling expired."),
        ErrorKind.ACCOUNT: _(
            "Kling says the studio's account has a problem (suspended or unpaid). Ask whoever "
            "runs the studio to check the Kling account."
        ),
        ErrorKind.CREDITS: _(
            "The Kling account has run out of credits. Ask whoever runs the studio to top it up, "
            "then try again."
        ),
        ErrorKind.PERMISSION: _("The Kling account is not allowed to use lip-sync."),
        ErrorKind.INVALID_REQUEST: _("Kling did not accept this job: {detail}"),
        ErrorKind.INVALID_INPUT: _("Kling did not accept this job: {detail}"),
        ErrorKind.NOT_FOUND: _(
            "Kling could not find what this job refers to (for example the video ID). "
            "Check it and try again."
        ),
        ErrorKind.POLICY: _("Kling's platform rules do not allow this job."),
        ErrorKind.CONTENT_SAFETY: _(
            "Kling's content rules blocked this job. Change the text or the video and try again."
        ),
        ErrorKind.RATE_LIMIT: _("Kling asked the studio to slow down."),
        ErrorKind.CONCURRENCY: _("All of the account's Kling slots are busy with other jobs."),
        ErrorKind.IP_NOT_ALLOWED: _(
            "Kling does not accept requests from the studio's network address. Ask whoever runs "
            "the studio to add it to the Kling allow-list."
        ),
        ErrorKind.SERVER: _("Kling had a problem on its side."),
        ErrorKind.NETWORK: _("The studio could not reach Kling."),
        ErrorKind.TIMEOUT: _("Kling took too long to answer."),
        ErrorKind.BAD_RESPONSE: _("Kling sent an answer the studio could not read."),
    }
    template = messages.get(err.kind, _("Something went wrong talking to Kling: {detail}"))
    return template.format(detail=err.kling_message or err.user_message)


# Kling's own failure messages, as seen from the service, and what to do about them.
_KNOWN_FAILURES = {
    "the model did not detect a human": lambda: _(
        "Kling could not find a human face in the source video. Use a video where one person's "
        "face is clearly visible, then try again. (Kling does not charge for this.)"
    ),
}


def failure_message(kling_message: str) -> str:
    """The sentence shown on a job that Kling ran and reported as failed."""
    known = _KNOWN_FAILURES.get(kling_message.strip().rstrip(".").lower())
    if known:
        return known()
    if kling_message:
        return _("Kling could not make this video. Kling said: “{message}”").format(
            message=kling_message
        )
    return _("Kling could not make this video and did not say why. Try again.")
