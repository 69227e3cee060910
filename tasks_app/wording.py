"""Sentences written now and read later, in the reader's language.

The worker says what happened to a job while nobody is looking and in no particular language;
a page shows it in the reader's. So such a sentence is stored as its English message id and
its arguments, and translated when it is shown. Message ids are marked with ``gettext_noop``
at the call site, which is how ``makemessages`` finds them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import formats, timezone, translation
from django.utils.translation import gettext

Message = dict[str, Any]


def say(msgid: str, **args: Any) -> Message:
    """A sentence to store: ``msgid`` (marked with gettext_noop) with its arguments.

    An argument may itself be a message, a moment (``at(...)``) or plain text, which is shown
    as it is (Kling's own words, a file name).
    """
    return {"msg": msgid, "args": args}


def at(moment: datetime) -> Message:
    """A time of day, shown in the reader's time zone."""
    return {"at": moment.isoformat()}


def render(message: Message | str | None) -> str:
    """The sentence in the active language."""
    if not message:
        return ""
    if isinstance(message, str):
        return message
    if "at" in message:
        moment = timezone.localtime(datetime.fromisoformat(message["at"]))
        return formats.time_format(moment, "H:i:s")
    args = {
        name: render(value) if isinstance(value, dict) else value
        for name, value in message.get("args", {}).items()
    }
    try:
        return gettext(message["msg"]).format(**args)
    except (KeyError, IndexError, ValueError):
        # A translation with a broken placeholder must not break the page: say it in English.
        return message["msg"].format(**args)


def render_english(message: Message | str | None) -> str:
    """The sentence in English, for staff, logs and exports."""
    with translation.override("en"):
        return render(message)
