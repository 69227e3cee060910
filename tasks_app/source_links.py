"""Signed links to uploaded source videos, which Kling downloads because it only takes links.

A link names its job and the stored file inside a signed token (``TimestampSigner``, salted
for this use alone), so it cannot be guessed, cannot be turned into another job's file, and
stops working ``SOURCE_LINK_HOURS`` after it was made. It needs no log-in: Kling has none.
Each send signs a fresh link, so a job waiting to be sent for a long time still hands Kling a
link that lasts the whole allowance from then on.

With a bucket (``AWS_STORAGE_BUCKET_NAME``) Kling reads the object from the bucket itself,
through a presigned link valid as long; the link still names its job (in the file name the
store is told to answer with, which the signature covers), so that a lost create is found by
it as surely as by the studio's own link.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import PurePosixPath
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseForbidden
from django.urls import reverse
from django.views.decorators.http import require_safe

from tasks_app.models import Job
from tasks_app.results import ranged_file_response
from tasks_app.storage import bucket, link_is_to_object, object_size, presigned_link

_SALT = "tasks_app.source_links.source_video"
_CONTENT_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime"}


class SourceLinkUnavailable(Exception):
    """The studio has no address Kling could fetch an uploaded video from (no ``SITE_URL``)."""


def source_base_url() -> str | None:
    """Where links to uploaded videos point: ``SITE_URL``, or in demo mode the address the
    studio serves on (the simulator runs on the same machine); None when Kling could not
    reach the studio, so uploads cannot be used."""
    if settings.SITE_URL:
        return str(settings.SITE_URL)
    if settings.KLING_DEMO:
        return str(settings.DEMO_STUDIO_URL)
    return None


def source_link(*, job: Job) -> str:
    """An absolute, signed link to ``job``'s uploaded video, valid ``SOURCE_LINK_HOURS``.

    Raises ``SourceLinkUnavailable`` without a base URL (see ``source_base_url``), and
    ValueError for a job without an uploaded video. With a bucket, the link is a presigned
    one of the object, which must be there: FileNotFoundError when it is not, or one of
    ``storage.storage_errors()`` when the bucket does not answer.
    """
    if not job.video_file:
        raise ValueError(f"job {job.pk} has no uploaded video")
    store = bucket()
    if store is not None:
        name = str(job.video_file.name)
        object_size(storage=store, name=name)  # Kling must not be sent to a missing object
        return presigned_link(
            storage=store,
            name=name,
            seconds=max(1, round(settings.SOURCE_LINK_HOURS * 3600)),
            content_type=_CONTENT_TYPES[PurePosixPath(_link_name(job)).suffix],
            filename=_object_link_name(job),
            as_attachment=False,
        )
    base = source_base_url()
    if base is None:
        raise SourceLinkUnavailable("SITE_URL is not set")
    token = signing.TimestampSigner(salt=_SALT).sign_object([job.pk, job.video_file.name])
    path = reverse("source_video", kwargs={"token": token, "name": _link_name(job)})
    return base.rstrip("/") + path


def source_link_is_for(*, url: str, job: Job) -> bool:
    """Whether ``url`` is a link ``source_link`` made for ``job``'s current file, whenever it
    was made (expired ones too): Kling's task list shows the link a task was created with."""
    if not job.video_file:
        return False
    store = bucket()
    if store is not None and link_is_to_object(
        storage=store, url=url, name=str(job.video_file.name)
    ):
        disposition = parse_qs(urlsplit(url).query).get("response-content-disposition")
        return disposition == [f'inline; filename="{_object_link_name(job)}"']
    segments = urlsplit(url).path.split("/")
    if len(segments) < 3 or segments[-3] != "sources" or segments[-1] != _link_name(job):
        return False
    try:
        value = signing.TimestampSigner(salt=_SALT).unsign_object(segments[-2])
    except signing.BadSignature:
        return False
    return bool(value == [job.pk, job.video_file.name])


@login_not_required  # Kling fetches it; the signed token is the permission
@require_safe
def source_video(request: HttpRequest, token: str, name: str) -> HttpResponseBase:
    """Serve an uploaded source video to whoever holds a valid link (Kling), with ranges."""
    max_age = timedelta(hours=settings.SOURCE_LINK_HOURS)
    try:
        value = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=max_age)
    except signing.SignatureExpired:
        raise Http404 from None
    except signing.BadSignature:
        return HttpResponseForbidden()
    if not (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and isinstance(value[1], str)
    ):
        return HttpResponseForbidden()
    job_id, stored_name = value
    job = Job.objects.filter(pk=job_id).first()
    # A job's file may have been replaced or removed since the link was made.
    if job is None or not job.video_file or job.video_file.name != stored_name:
        raise Http404
    if name != _link_name(job):
        raise Http404
    try:
        size = job.video_file.size
        file = job.video_file.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    response = ranged_file_response(
        request,
        file,
        size=size,
        content_type=_CONTENT_TYPES[PurePosixPath(name).suffix],
        filename=name,
        as_attachment=False,
    )
    response["Content-Disposition"] = f'inline; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    # Only the link's holder may keep a copy; shared caches must not.
    response["Cache-Control"] = "private"
    response["X-Robots-Tag"] = "noindex"
    return response


def _link_name(job: Job) -> str:
    """The file name at the end of the link: Kling goes by it to tell MP4 from MOV."""
    suffix = PurePosixPath(job.video_file.name or "").suffix.lower()
    return f"video{suffix if suffix in _CONTENT_TYPES else '.mp4'}"


def _object_link_name(job: Job) -> str:
    """The file name a presigned link to ``job``'s upload is answered with: it names the job,
    since two jobs (one tried again from the other) may share one uploaded object."""
    return f"job-{job.pk}-{_link_name(job)}"
