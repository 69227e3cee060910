from __future__ import annotations

from datetime import timedelta

from django import template
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _

from tasks_app.kling.voices import get_voice
from tasks_app.wording import Message, render

register = template.Library()


@register.filter
def voice_name(voice_id: str) -> str:
    """A voice's display name in the page's language ("Sunny", "阳光少年")."""
    voice = get_voice(voice_id or "")
    if voice is None:
        return voice_id
    return voice.name("zh" if (get_language() or "en").startswith("zh") else "en")


@register.filter
def as_duration(value: timedelta | float | int | None) -> str:
    """Seconds or a timedelta as words: "45 s", "3 min 05 s", "1 h 02 min"."""
    if value is None:
        return ""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    if seconds < 60:
        return _("%(s)d s") % {"s": seconds}
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return _("%(m)d min %(s)02d s") % {"m": minutes, "s": seconds}
    hours, minutes = divmod(minutes, 60)
    return _("%(h)d h %(m)02d min") % {"h": hours, "m": minutes}


@register.filter
def typical_time(seconds: float | None) -> str:
    if seconds is None:
        return _("usually 2 to 5 minutes")
    minutes = max(1, round(seconds / 60))
    if seconds < 90:
        return _("usually about %(s)d seconds") % {"s": round(seconds)}
    return ngettext("usually about %(m)d minute", "usually about %(m)d minutes", minutes) % {
        "m": minutes
    }


@register.filter
def said(message: Message | None, fallback: str = "") -> str:
    """A stored sentence in the reader's language (``fallback``: the stored English text)."""
    return render(message) or fallback
