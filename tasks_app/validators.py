"""The studio's rule for a link to a media file, shared by every place that takes one.

The job form and the model's fields (and so the admin's forms) check links with
``validate_video_link`` / ``validate_audio_link``, as batch rows are to: a link that one of them
accepts is never refused by another, nor by Kling after credits were spent.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import SplitResult, urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.deconstruct import deconstructible
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

VIDEO_EXTENSIONS = (".mp4", ".mov")
AUDIO_EXTENSIONS = (".mp3", ".wav", ".m4a", ".aac")

# Kling fetches the file itself: any other scheme is either unreachable for it or a way to
# make a server read something it should not.
_SCHEMES = ("http", "https")
_well_formed = URLValidator(schemes=list(_SCHEMES))


@deconstructible
class MediaLinkValidator:
    """A web link to a file Kling can fetch: http(s), no credentials, a real host name,
    and a path ending in one of ``extensions``.

    Deconstructible, so it can sit in a model field's ``validators`` (migrations name it).
    """

    def __init__(self, *, kind: str, extensions: tuple[str, ...]) -> None:
        # ``kind`` picks the message ("video" or "audio"); it is stored as a plain string so
        # migrations can write it down.
        self.kind = kind
        self.extensions = tuple(extensions)

    def __call__(self, value: str) -> None:
        parts = _split(value)
        if parts is None:
            raise self._invalid()
        if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
            raise ValidationError(
                _("Use a web link that starts with http:// or https://."), code="scheme"
            )
        if parts.username is not None or parts.password is not None:
            raise ValidationError(
                _("Links with a user name or password in them are not accepted."),
                code="credentials",
            )
        try:
            _well_formed(value)
        except ValidationError:
            raise self._invalid() from None
        # A trailing slash names a folder, whatever the segment before it looks like.
        suffix = "" if parts.path.endswith("/") else PurePosixPath(parts.path).suffix.lower()
        if suffix not in self.extensions:
            raise ValidationError(
                _("The link must point to {kind} file ending in {extensions}.").format(
                    kind=self._kind_words(), extensions=" / ".join(self.extensions)
                ),
                code="extension",
            )

    @staticmethod
    def _invalid() -> ValidationError:
        # Django's "Enter a valid URL." does not say what to look for.
        return ValidationError(
            _(
                "This is not a valid web link: check it for spaces or typos, or copy it again "
                "from the address bar."
            ),
            code="invalid",
        )

    def _kind_words(self) -> Promise | str:
        if self.kind == "video":
            return _("a video")
        if self.kind == "audio":
            return _("an audio")
        return self.kind

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MediaLinkValidator)
            and self.kind == other.kind
            and self.extensions == other.extensions
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.extensions))


def _split(value: str) -> SplitResult | None:
    """The link's parts, or None when it cannot even be split: ``urlsplit`` raises a
    ValueError for a broken IPv6 literal such as ``http://[::1/a.mp4``, and reading the port
    does for one that is not a number from 0 to 65535."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018
    except ValueError:
        return None
    return parts


validate_video_link = MediaLinkValidator(kind="video", extensions=VIDEO_EXTENSIONS)
validate_audio_link = MediaLinkValidator(kind="audio", extensions=AUDIO_EXTENSIONS)
