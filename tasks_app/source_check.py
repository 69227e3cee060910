"""Reading a job's source video and audio track before the job is saved, and keeping what
was found for a few minutes.

The job form checks its sources twice in a person's visit: once as they fill it in (the
check endpoint, by htmx) and again when they submit. The second time must be fast and must
not fetch a link again, so the facts are cached, keyed by the link or by the stored file's
name. An uploaded video that passed is stored at once under a generated name ("staged"), and
the page carries a signed token of that name, so a form shown again (an error elsewhere, the
face warning to confirm) needs no second upload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile

from tasks_app import fetch
from tasks_app.models import Job
from tasks_app.probe import (
    AudioFacts,
    MediaSource,
    VideoFacts,
    audio_probe,
    check_deadline,
    video_probe,
)
from tasks_app.uploads import stored_source_name

T = TypeVar("T")

# Long enough to cover filling in the rest of the form after the check; short enough that
# a link whose file was replaced is read afresh on the next visit.
FACTS_SECONDS = 5 * 60
# A staged upload's token outlives any reasonable stay on the form page.
STAGED_TOKEN_SECONDS = 24 * 60 * 60
_STAGED_SALT = "tasks_app.source_check.staged"
_STAGED_PREFIX = "sources/"


@dataclass(frozen=True, kw_only=True)
class Staged:
    """An uploaded source video already in storage: its stored name and the person's name."""

    name: str
    original: str


def staged_token(*, staged: Staged, person_id: int | None) -> str:
    """A token the form carries instead of the file; it names the file only to ``person_id``."""
    return signing.dumps(
        {"n": staged.name, "o": staged.original, "p": person_id}, salt=_STAGED_SALT
    )


def staged_from_token(*, token: str, person_id: int | None) -> Staged | None:
    """The staged upload ``token`` names, or None for a token that is not the studio's, not
    this person's, too old, or whose file is gone."""
    if not token:
        return None
    try:
        value = signing.loads(token, salt=_STAGED_SALT, max_age=STAGED_TOKEN_SECONDS)
    except signing.BadSignature:
        return None
    if not isinstance(value, dict) or value.get("p") != person_id:
        return None
    name, original = value.get("n"), value.get("o")
    if not isinstance(name, str) or not isinstance(original, str):
        return None
    if not name.startswith(_STAGED_PREFIX) or not default_storage.exists(name):
        return None
    return Staged(name=name, original=original)


def video_stage(*, upload: UploadedFile, facts: VideoFacts) -> Staged:
    """Store a checked upload under a generated name (with the extension its bytes show)."""
    upload.seek(0)
    name = default_storage.save(stored_source_name(Job(), f"source.{facts.extension}"), upload)
    cache.set(_key("staged", name), facts, FACTS_SECONDS)
    return Staged(name=name, original=upload.name or "")


def _probe_upload(upload: UploadedFile, probe: Callable[[MediaSource], T]) -> T:
    """Run ``probe`` on an upload where it lies: its temporary file when it has one, else the
    upload itself from its start (and back at its start afterwards, ready to be stored)."""
    path = getattr(upload, "temporary_file_path", None)
    if callable(path):
        return probe(path())
    upload.seek(0)
    try:
        return probe(upload)
    finally:
        upload.seek(0)


def video_facts_of_upload(*, upload: UploadedFile) -> VideoFacts:
    """Probe an upload where it lies (a temporary file). Raises probe.MediaError."""
    return _probe_upload(
        upload,
        lambda source: video_probe(source=source, size=upload.size, deadline=check_deadline()),
    )


def video_facts_of_staged(*, staged: Staged) -> VideoFacts:
    """The facts of a staged upload, measured again only once the cache has let them go."""
    key = _key("staged", staged.name)
    facts = cache.get(key)
    if not isinstance(facts, VideoFacts):
        with default_storage.open(staged.name, "rb") as stored:
            facts = video_probe(source=stored, size=stored.size, deadline=check_deadline())
        cache.set(key, facts, FACTS_SECONDS)
    return facts


def video_facts_of_link(*, url: str) -> VideoFacts:
    """The facts of a linked video, fetched through the guard (Range requests where the
    server answers them). Raises fetch.FetchError or probe.MediaError."""
    key = _key("video-link", url)
    facts = cache.get(key)
    if isinstance(facts, VideoFacts):
        return facts
    deadline = check_deadline()
    policy = fetch.policy_from_settings(
        max_bytes=settings.KLING_VIDEO_MAX_BYTES, deadline_seconds=settings.MEDIA_CHECK_SECONDS
    )
    with fetch.open_remote(url, policy=policy, deadline=deadline) as remote:
        facts = video_probe(source=remote, size=remote.size, deadline=deadline)
    cache.set(key, facts, FACTS_SECONDS)
    return facts


def audio_facts_of_upload(*, upload: UploadedFile) -> AudioFacts:
    return _probe_upload(upload, lambda source: audio_probe(source=source, size=upload.size))


def audio_facts_of_link(*, url: str) -> AudioFacts:
    key = _key("audio-link", url)
    facts = cache.get(key)
    if isinstance(facts, AudioFacts):
        return facts
    policy = fetch.policy_from_settings(
        max_bytes=settings.KLING_MAX_AUDIO_BYTES, deadline_seconds=settings.MEDIA_CHECK_SECONDS
    )
    with fetch.open_remote(url, policy=policy) as remote:
        facts = audio_probe(source=remote, size=remote.size)
    cache.set(key, facts, FACTS_SECONDS)
    return facts


def _key(kind: str, source: str) -> str:
    # Links may be long and hold any character; a cache key may not.
    return f"source-facts:{kind}:{hashlib.sha256(source.encode()).hexdigest()}"
