"""A person's own settings kept with their profile: the language their e-mails are written in."""

from __future__ import annotations

from django.conf import settings
from django.utils import translation

from tasks_app.models import Profile


def _supported(language: str) -> str:
    """``language`` as one of the studio's ``LANGUAGES`` codes ("zh-Hans" and "zh-hans-CN"
    are "zh-hans"), or "" when the studio does not speak it."""
    try:
        return translation.get_supported_language_variant(language.lower())
    except LookupError:
        return ""


def profile_set_language(*, user_id: int, language: str) -> bool:
    """Store the language a person chose (with the switch); return whether it was stored.

    A language the studio does not offer is ignored.
    """
    code = _supported(language)
    if not code:
        return False
    Profile.objects.get_or_create(user_id=user_id)
    Profile.objects.filter(user_id=user_id).update(language=code)
    return True


def profile_remember_language(*, user_id: int, language: str) -> bool:
    """At log-in: keep the browser's language for a person who has none stored yet; return
    whether it was stored. A language chosen before (with the switch) is never replaced."""
    code = _supported(language)
    if not code:
        return False
    Profile.objects.get_or_create(user_id=user_id)
    return bool(Profile.objects.filter(user_id=user_id, language="").update(language=code))


def profile_language(*, user_id: int) -> str:
    """The language to write to a person in: theirs if stored, else the studio's default."""
    stored = Profile.objects.filter(user_id=user_id).values_list("language", flat=True).first()
    return stored or settings.LANGUAGE_CODE
