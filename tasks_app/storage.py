"""Where the studio keeps its files: this machine's disk, or an S3-compatible bucket.

Every stored file (uploads, posters, result copies) goes through Django's default storage,
which ``STORAGES`` picks from the environment (see settings, "Media storage"). What differs
lives here: a bucket hands out presigned links, to Kling for an uploaded source and to a
person's browser for a result once the studio's view has checked who may see it, where files
on the disk are served by the studio's own views; and a bucket, being across the network,
can fail to answer, which the worker must say on the job rather than wait in silence.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator
from posixpath import normpath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from django.core.files.storage import Storage, storages
from django.utils.translation import gettext_noop

from tasks_app.models import Job
from tasks_app.wording import Message, say

if TYPE_CHECKING:
    from storages.backends.s3 import S3Storage  # type: ignore[import-untyped]

# boto3 and botocore weigh some 30 MB in every process: they are loaded only by a bucket's
# storage (django-storages imports them with its S3 backend), never on one machine's disk.
S3_BACKEND_MODULE = "storages.backends.s3"


def storage_errors() -> tuple[type[Exception], ...]:
    """What reading or writing a stored file may raise: the disk's errors (a missing file is a
    FileNotFoundError from either storage) and, once a bucket was used, the bucket's (no
    answer, refused, throttled). For ``except storage_errors():``."""
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is None:
        return (OSError,)
    return (OSError, botocore.BotoCoreError, botocore.ClientError)


# How long a link handed to a person's browser (a result to play, an audio file to save)
# works: long enough to watch a video to its end, short enough not to be worth sharing.
PLAYBACK_LINK_SECONDS = 3600

CHUNK = 256 * 1024


def bucket() -> S3Storage | None:
    """The default storage when it is a bucket; None when files are on this machine's disk."""
    storage = storages["default"]
    return storage if type(storage).__module__ == S3_BACKEND_MODULE else None


def presigned_link(
    *,
    storage: S3Storage,
    name: str,
    seconds: int,
    content_type: str,
    filename: str,
    as_attachment: bool,
) -> str:
    """A link that reads the object ``name`` for ``seconds``, answered with ``content_type``
    and as ``filename`` (inline, or a download): the store sends those headers, signed into
    the link, so the browser never guesses from the object's own metadata."""
    disposition = "attachment" if as_attachment else "inline"
    parameters = {
        "ResponseContentType": content_type,
        "ResponseContentDisposition": f'{disposition}; filename="{filename}"',
    }
    return str(storage.url(name, parameters=parameters, expire=seconds))


def link_is_to_object(*, storage: S3Storage, url: str, name: str) -> bool:
    """Whether ``url`` reads the object ``name`` of ``storage``'s bucket, whoever signed it
    and whenever (its query, the signature and the expiry, is not looked at)."""
    ours = urlsplit(storage.url(name, expire=60))
    given = urlsplit(url)
    return (given.scheme, given.netloc.lower()) == (ours.scheme, ours.netloc.lower()) and (
        normpath(unquote(given.path)) == normpath(unquote(ours.path))
    )


def object_size(*, storage: S3Storage, name: str) -> int:
    """The size of the object ``name``; FileNotFoundError when the bucket has no such object
    (one HEAD request)."""
    return int(storage.size(name))


def object_head(*, storage: S3Storage, name: str, length: int) -> bytes:
    """The first ``length`` bytes of the object ``name`` (one ranged GET, however large it is);
    FileNotFoundError when the bucket has no such object."""
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    try:
        answer = _client(storage).get_object(
            Bucket=storage.bucket_name, Key=_key(storage, name), Range=f"bytes=0-{length - 1}"
        )
    except ClientError as err:
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            raise FileNotFoundError(f"no object {name}") from None
        if status == 416:  # an empty object has no first byte
            return b""
        raise
    body = answer["Body"]
    try:
        return bytes(body.read())
    finally:
        body.close()


def object_chunks(*, storage: S3Storage, name: str) -> tuple[Iterator[bytes], int]:
    """The object ``name`` as it streams from the bucket, a chunk at a time, and its size.

    The request is made before returning, so a missing object raises FileNotFoundError here,
    not halfway through a response."""
    from botocore.exceptions import ClientError

    try:
        answer = _client(storage).get_object(Bucket=storage.bucket_name, Key=_key(storage, name))
    except ClientError as err:
        if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            raise FileNotFoundError(f"no object {name}") from None
        raise
    body = answer["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := body.read(CHUNK):
                yield chunk
        finally:
            body.close()

    return chunks(), int(answer["ContentLength"])


def storage_problem(err: Exception) -> Message:
    """What went wrong reading a job's stored file, in plain words for the job's page."""
    if isinstance(err, FileNotFoundError):
        return say(
            gettext_noop("The studio could not find this job's uploaded file in its storage.")
        )
    return say(gettext_noop("The studio's file storage did not answer."))


def _client(storage: S3Storage) -> Any:
    return storage.connection.meta.client


def _key(storage: S3Storage, name: str) -> str:
    """The object key of the stored name ``name`` (under the storage's AWS_LOCATION)."""
    from storages.utils import clean_name  # type: ignore[import-untyped]

    return str(storage._normalize_name(clean_name(name)))


class Copied(enum.Enum):
    """What ``media_copy_to_bucket`` did with one file."""

    COPIED = "copied"
    ALREADY_THERE = "already there"
    MISSING_HERE = "missing here"
    DIFFERENT_THERE = "different in the bucket"
    FAILED = "failed"


def media_names() -> list[str]:
    """Every stored file a job references (upload, audio, poster, result copy), each once."""
    names: set[str] = set()
    for row in Job.objects.values_list("video_file", "audio_file", "poster", "stored_video"):
        names.update(name for name in row if name)
    return sorted(names)


def media_copy_to_bucket(
    *, names: list[str], source: Storage, target: S3Storage, dry_run: bool
) -> Iterator[tuple[str, Copied, str]]:
    """Copy each of ``names`` from ``source`` (the disk) into ``target`` under the same name,
    one at a time, streaming (a multipart upload past a few megabytes, never the whole file
    in memory); yields each name, what happened, and the error when one did.

    An object of the same size already there is taken for the file (a run stopped halfway
    is simply run again); one of another size is left alone and reported, as is a file
    found in neither place. Nothing is ever
    deleted, here or there. ``dry_run``: look, but copy nothing.
    """
    for name in names:
        try:
            here = source.size(name) if source.exists(name) else None
            try:
                there: int | None = object_size(storage=target, name=name)
            except FileNotFoundError:
                there = None
            if here is None:
                # Copied before, or by a node that already wrote to the bucket.
                yield name, (Copied.MISSING_HERE if there is None else Copied.ALREADY_THERE), ""
                continue
            if there == here:
                yield name, Copied.ALREADY_THERE, ""
                continue
            if there is not None:
                yield name, Copied.DIFFERENT_THERE, f"{there} bytes there, {here} here"
                continue
            if not dry_run:
                with source.open(name, "rb") as file:
                    # Under the very name the job holds (``save`` would pick another).
                    target._save(name, file)
            yield name, Copied.COPIED, ""
        except storage_errors() as err:
            yield name, Copied.FAILED, f"{type(err).__name__}: {err}"
