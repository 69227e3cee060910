from __future__ import annotations

import csv
import json
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, TypeGuard

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.db.models.fields.files import FieldFile
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseForbidden,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling, trigger_client_event
from django_htmx.middleware import HtmxDetails

from tasks_app import source_check, storage, teams, webhooks
from tasks_app.batch_forms import BatchForm, template_rows
from tasks_app.filters import COUNT_CAP, JobFilterForm, history_page
from tasks_app.forms import (
    TEXT_MAX_CHARS,
    AccountForm,
    AudioSourceChoice,
    JobForm,
    ShareForm,
    VideoSourceChoice,
)
from tasks_app.kling.media import sniff_audio_format
from tasks_app.kling.voices import VOICES
from tasks_app.models import Job, Profile
from tasks_app.notices import notices_peek
from tasks_app.results import ranged_file_response
from tasks_app.services import callbacks, lifecycle, submitting, workers
from tasks_app.uploads import (
    AUDIO_CONTENT_TYPES,
    SNIFF_BYTES,
    UNKNOWN_AUDIO_EXTENSION,
    UNKNOWN_CONTENT_TYPE,
    audio_format_of,
    media_upload_handlers,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

JOBS_PER_PAGE = 50
# The session key under which a share link just made waits for the job page to show it once.
FRESH_SHARE_KEY = "fresh_share"
# What a history row shows, read alone: a page of 50 full jobs spends more time turning
# columns it never shows (dates, JSON, Kling's data) into Python than rendering itself. A
# field missing here still shows right (Django reads it on use); the history's query-count
# tests say so.
HISTORY_ROW_FIELDS = (
    *("team_id", "submitted_by_id", "status", "mode", "text", "audio_name", "audio_url"),
    *("voice_id", "poster", "video_width", "video_height", "archived_at", "created_at"),
    *("sent_at", "finished_at", "send_started_at", "batch", "batch_row"),
)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class StudioRequest(HtmxHttpRequest):
    """A logged-in person's request: their profile comes with it (``ProfileMiddleware``).

    Every view that takes one is behind ``LoginRequiredMiddleware``, so ``user`` is a person,
    never ``AnonymousUser``.
    """

    user: User
    profile: Profile


@require_GET
def index(request: StudioRequest) -> HttpResponse:
    return redirect("tasks:list")


@require_GET
def job_list(request: StudioRequest) -> HttpResponse:
    team = teams.team_for_person(profile=request.profile)
    team_jobs = Job.objects.visible_to(request.user, memberships=request.profile.memberships)
    team_jobs = team_jobs.filter(team=team)
    filters = JobFilterForm(request.GET, team=team)
    rows = filters.filtered(team_jobs.with_submitter_name()).only(*HISTORY_ROW_FIELDS)
    page = history_page(rows, number=request.GET.get("page"), per_page=JOBS_PER_PAGE)
    context = {
        "team": team,
        "filters": filters,
        "page": page,
        "status_counts": filters.status_counts(team_jobs),
        "count_cap": COUNT_CAP,
        "managed_team_ids": teams.team_ids_managed(profile=request.profile),
        "person_id": request.user.pk,
        "live_ids": [job.pk for job in page.jobs if job.is_active],
        "is_filtered": any(value for key, value in request.GET.items() if key != "page"),
        "list_path": request.get_full_path(),
    }
    if request.htmx and request.htmx.target == "job-results":
        return render(request, "tasks/job_list.html#results", context)
    return render(request, "tasks/job_list.html", context)


@require_GET
def job_list_live(request: StudioRequest) -> HttpResponse:
    """The page's active rows, refreshed in one request (each row swaps itself out of band)."""
    ids = [int(value) for value in request.GET.getlist("id") if _is_id(value)][:JOBS_PER_PAGE]
    jobs = list(
        Job.objects.visible_to(request.user, memberships=request.profile.memberships)
        .filter(pk__in=ids)
        .only(*HISTORY_ROW_FIELDS)
        .with_submitter_name()
    )
    live_ids = [job.pk for job in jobs if job.is_active]
    context = {
        # Their buttons post the page's own #row-actions form, which returns to the page.
        "jobs": jobs,
        "oob": True,
        "managed_team_ids": teams.team_ids_managed(profile=request.profile),
        "person_id": request.user.pk,
        "live_ids": live_ids,
        "notices": notices_peek(user_id=request.user.pk),
    }
    response = render(request, "tasks/job_list.html#live", context)
    if len(live_ids) < len(ids):
        # A job finished: the page's counts and filters may no longer match; refresh them.
        trigger_client_event(response, "jobs-changed")
    if not live_ids:
        response.status_code = HttpResponseStopPolling.status_code
    return response


def _initial_from_job(job: Job, *, person_id: int) -> dict:
    if job.video_id:
        video_source = VideoSourceChoice.ID
    elif job.video_file:
        video_source = VideoSourceChoice.FILE
    else:
        video_source = VideoSourceChoice.URL
    staged = ""
    if job.video_file:
        # The job's stored file is offered again as if just uploaded: no second upload.
        staged = source_check.staged_token(
            staged=source_check.Staged(name=job.video_file.name or "", original=job.video_name),
            person_id=person_id,
        )
    return {
        "video_source": video_source,
        "video_staged": staged,
        "video_id": job.video_id,
        "task_id": job.parent_task_id,
        "video_url": job.video_url,
        "mode": job.mode,
        "text": job.text,
        "voice_id": job.voice_id,
        "voice_language": job.voice_language or "en",
        "voice_speed": job.voice_speed or Decimal("1.0"),
        "audio_source": AudioSourceChoice.URL if job.audio_url else AudioSourceChoice.FILE,
        "audio_url": job.audio_url,
    }


def _bound_job_form(request: StudioRequest) -> JobForm:
    return JobForm(
        request.POST,
        request.FILES,
        upload_too_big=getattr(request, "upload_too_big", False),
        video_upload_too_big=getattr(request, "video_upload_too_big", False),
        person_id=request.user.pk,
    )


@csrf_exempt  # the upload handlers must be set before CSRF reads the body; checked below
@require_http_methods(["GET", "POST"])
def job_create(request: StudioRequest) -> HttpResponse:
    request.upload_handlers = media_upload_handlers(request)
    return _job_create(request)


@csrf_protect
def _job_create(request: StudioRequest) -> HttpResponse:
    source_job = None
    if request.method == "POST":
        form = _bound_job_form(request)
        form.is_valid()
        # Read even when a field has an error, so the page shown again keeps the video.
        form.check_sources()
        if form.ready:
            try:
                job, created = submitting.job_create(
                    team=teams.team_for_person(profile=request.profile),
                    submitted_by=request.user,
                    job_input=form.to_job_input(),
                    submission_key=form.submission_key_value(),
                )
            except submitting.SubmissionRefused as refused:
                form.add_error(None, str(refused))
            else:
                if not created:
                    messages.info(request, _("You already submitted this job; here it is."))
                return redirect(job)
        status = 400
    else:
        initial: dict = {"submission_key": uuid.uuid4()}
        source_id = request.GET.get("from", "")
        if _is_id(source_id):
            source_job = Job.objects.visible_to(request.user).filter(pk=int(source_id)).first()
            if source_job:
                initial |= _initial_from_job(source_job, person_id=request.user.pk)
        if request.GET.get("video_id"):
            initial |= {"video_source": VideoSourceChoice.ID, "video_id": request.GET["video_id"]}
            # A reseller's parent task ID, when the video came from an earlier job's result.
            if request.GET.get("task_id"):
                initial["task_id"] = request.GET["task_id"]
        if video_url := request.GET.get("video_url"):  # a sample video, without JavaScript
            initial |= {"video_source": VideoSourceChoice.URL, "video_url": video_url}
        form = JobForm(initial=initial)
        status = 200
    context = {
        "form": form,
        "source_job": source_job,
        "text_max": TEXT_MAX_CHARS,
        "voice_languages": {voice.id: list(voice.languages) for voice in VOICES},
    }
    return render(request, "tasks/job_form.html", context, status=status)


@csrf_exempt  # the upload handlers must be set before CSRF reads the body; checked below
@require_POST
def job_check(request: StudioRequest) -> HttpResponse:
    """The job form's sources read as the person fills it in (htmx): what the studio found.

    The facts are cached and an uploaded video is kept, so the submit that follows reads
    nothing again. Nothing is saved and no other field is judged here.
    """
    request.upload_handlers = media_upload_handlers(request)
    return _job_check(request)


@csrf_protect
def _job_check(request: StudioRequest) -> HttpResponse:
    form = _bound_job_form(request)
    form.is_valid()
    form.check_sources()
    return render(request, "tasks/job_form.html#checks", {"form": form, "in_check": True})


@require_GET
def job_detail(request: StudioRequest, pk: int) -> HttpResponse:
    return job_page(request, pk=pk)


def job_page(
    request: StudioRequest, *, pk: int, share_form: ShareForm | None = None, status: int = 200
) -> HttpResponse:
    """The job page (or, for htmx, its status partial); ``share_form`` is a share form to
    show with its errors (``share_views.job_share``)."""
    jobs = Job.objects.visible_to(request.user)
    # The status partial, polled every few seconds by everyone watching, needs the job
    # alone (no submitter or team): one query besides the session's two.
    job = get_object_or_404(jobs if request.htmx else jobs.with_people(), pk=pk)
    context: dict[str, object] = {
        # Sharing, offered on a finished job: its links are read only there.
        "share_links": lambda: list(job.share_links.select_related("created_by")),
        "share_form": share_form or ShareForm(),
        "fresh_share": fresh_share_of(request, job=job),
        "job": job,
        "typical_seconds": lifecycle.job_typical_seconds(),
        # Asked only when the page offers an action (a callable is resolved lazily).
        "can_manage": lambda: teams.job_can_manage(
            user=request.user, profile=request.profile, job=job
        ),
        "waits_for_a_worker": lambda: workers.job_waits_for_a_worker(job=job),
        "studio_contact": settings.STUDIO_CONTACT,
    }
    if request.htmx:
        # The page says what its timeline shows; only a change costs the timeline's query.
        if request.GET.get("shown") != job.timeline_state:
            context["events"] = job.events.all()
        response = render(request, "tasks/job_detail.html#status", context)
        if job.is_terminal:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    context["events"] = job.events.all()
    return render(request, "tasks/job_detail.html", context, status=status)


def fresh_share_of(request: StudioRequest, *, job: Job) -> str:
    """The link just made for ``job`` (shown once: only its fingerprint is stored)."""
    fresh = request.session.get(FRESH_SHARE_KEY)
    if not isinstance(fresh, dict) or fresh.get("job") != job.pk:
        return ""
    del request.session[FRESH_SHARE_KEY]
    return str(fresh.get("url", ""))


@require_POST
def job_retry(request: StudioRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    try:
        new_job, _created = submitting.job_retry(job=job, submitted_by=request.user)
    except submitting.SubmissionRefused as refused:
        messages.error(request, str(refused))
        return redirect(job)
    return redirect(new_job)


@require_POST
def job_cancel(request: StudioRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    if not teams.job_can_manage(user=request.user, profile=request.profile, job=job):
        raise PermissionDenied
    if not submitting.job_cancel(job=job):
        messages.error(request, _("This job was already sent to Kling and can't be cancelled."))
    return redirect(job)


@login_not_required
@csrf_exempt  # Kling posts here; the per-job token and the signature are the checks
@require_POST
def kling_callback(request: HttpRequest, job_id: int, token: str) -> HttpResponse:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not callbacks.job_callback_token_is_valid(job=job, token=token):
        return HttpResponse(status=404)
    if settings.KLING_WEBHOOK_SECRET:
        headers = {key.lower(): value for key, value in request.headers.items()}
        try:
            webhooks.verify(settings.KLING_WEBHOOK_SECRET, headers, request.body)
        except webhooks.InvalidSignature:
            return HttpResponseForbidden("invalid signature")
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return HttpResponseBadRequest("body is not JSON")
    if not isinstance(payload, dict):
        return HttpResponseBadRequest("body is not a task object")
    callbacks.job_handle_callback(job=job)
    return HttpResponse(status=204)


@require_POST
def job_archive(request: StudioRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    if not teams.job_can_manage(user=request.user, profile=request.profile, job=job):
        raise PermissionDenied
    archive = request.POST.get("archive", "1") == "1"
    submitting.job_archive(job=job, archived=archive)
    if archive:
        messages.success(request, _("Archived. It is hidden from the history but kept."))
    else:
        messages.success(request, _("Back in the history."))
    next_url = request.POST.get("next")
    return redirect(next_url if _is_local(next_url) else job)


def _is_id(value: str) -> bool:
    """A database id from a URL or form: ASCII digits that fit a 64-bit column.

    ``str.isdigit`` alone also accepts "²" (which ``int`` refuses) and numbers too big for the
    database (SQLite raises OverflowError on them).
    """
    return value.isascii() and value.isdigit() and len(value) <= 18


def _is_local(url: str | None) -> TypeGuard[str]:
    return bool(url) and url_has_allowed_host_and_scheme(url, allowed_hosts=None)


@require_GET
def job_video(request: StudioRequest, pk: int) -> HttpResponseBase:
    """The result video: the studio's own copy (seekable), or Kling's link until it has one."""
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    as_attachment = request.GET.get("download") == "1"
    if job.stored_video and (store := storage.bucket()) is not None:
        name = str(job.stored_video.name)
        try:
            storage.object_size(storage=store, name=name)  # one HEAD: the studio's 404 if gone
        except FileNotFoundError:
            raise Http404(_("This video is no longer available.")) from None
        except storage.storage_errors():
            return _storage_unavailable()
        return _to_bucket(
            storage.presigned_link(
                storage=store,
                name=name,
                seconds=storage.PLAYBACK_LINK_SECONDS,
                content_type="video/mp4",
                filename=f"lipsync-{job.pk}.mp4",
                as_attachment=as_attachment,
            )
        )
    if job.stored_video:
        return stored_video_response(
            request, job, filename=f"lipsync-{job.pk}.mp4", as_attachment=as_attachment
        )
    if job.result_video_url and job.kling_link_is_live:
        return redirect(job.result_video_url)
    raise Http404(_("This video is no longer available."))


def stored_video_response(
    request: HttpRequest, job: Job, *, filename: str, as_attachment: bool
) -> HttpResponseBase:
    """The studio's copy of ``job``'s result, served with ranges (the player seeks), as
    ``filename``; a 404 when storage has lost it."""
    response = ranged_file_response(
        request,
        _open_stored(job.stored_video, gone=_("This video is no longer available.")),
        size=job.stored_size or job.stored_video.size,
        content_type="video/mp4",
        filename=filename,
        as_attachment=as_attachment,
    )
    # On every answer, ranges included: the browser must play or save it, never guess.
    disposition = "attachment" if as_attachment else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _open_stored(field: FieldFile, *, gone: str) -> File:
    """A stored file of a job, opened for reading; a 404 saying ``gone`` when storage has
    lost it."""
    try:
        return field.open("rb")
    except FileNotFoundError:
        raise Http404(gone) from None


def _to_bucket(link: str) -> HttpResponse:
    """Send the browser to a presigned link; the studio's own view checked who may follow it."""
    response = redirect(link)
    # The link lasts PLAYBACK_LINK_SECONDS; the browser may reuse this answer for a while.
    response["Cache-Control"] = "private, max-age=600"
    return response


def _storage_unavailable() -> HttpResponse:
    """The answer when the bucket did not: a passing outage, not a missing file."""
    return HttpResponse(
        _("The studio's file storage did not answer. Try again in a moment."),
        status=503,
        content_type="text/plain; charset=utf-8",
        headers={"Retry-After": "30"},
    )


@require_GET
def job_audio(request: StudioRequest, pk: int) -> HttpResponseBase:
    """The job's uploaded audio, always as a download typed by its bytes, never by its name."""
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    if not job.audio_file:
        raise Http404(_("This job has no uploaded audio."))
    gone = _("This audio file is no longer available.")
    if (store := storage.bucket()) is not None:
        # Typed by its first bytes (one ranged read), then fetched from the bucket directly.
        try:
            head = storage.object_head(
                storage=store, name=str(job.audio_file.name), length=SNIFF_BYTES
            )
        except FileNotFoundError:
            raise Http404(gone) from None
        except storage.storage_errors():
            return _storage_unavailable()
        audio_format = sniff_audio_format(head)
        return _to_bucket(
            storage.presigned_link(
                storage=store,
                name=str(job.audio_file.name),
                seconds=storage.PLAYBACK_LINK_SECONDS,
                content_type=AUDIO_CONTENT_TYPES.get(audio_format or "", UNKNOWN_CONTENT_TYPE),
                filename=f"lipsync-{job.pk}-audio.{audio_format or UNKNOWN_AUDIO_EXTENSION}",
                as_attachment=True,
            )
        )
    file = _open_stored(job.audio_file, gone=gone)
    audio_format = audio_format_of(file=file)
    response = FileResponse(
        file,
        as_attachment=True,
        filename=f"lipsync-{job.pk}-audio.{audio_format or UNKNOWN_AUDIO_EXTENSION}",
        content_type=AUDIO_CONTENT_TYPES.get(audio_format or "", UNKNOWN_CONTENT_TYPE),
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
def job_poster(request: StudioRequest, pk: int) -> HttpResponseBase:
    """A frame of the job's source video (JPEG, made by the studio when it checked the video)."""
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    missing = _("This job has no picture of its video.")
    if not job.poster:
        raise Http404(missing)
    response: HttpResponseBase
    if (store := storage.bucket()) is not None:
        # Streamed through the studio, not redirected: pictures may only come from the
        # studio itself (its Content-Security-Policy), and a poster is small.
        try:
            chunks, size = storage.object_chunks(storage=store, name=str(job.poster.name))
        except FileNotFoundError:
            raise Http404(missing) from None
        except storage.storage_errors():
            return _storage_unavailable()
        response = StreamingHttpResponse(chunks, content_type="image/jpeg")
        response["Content-Length"] = str(size)
    else:
        response = FileResponse(_open_stored(job.poster, gone=missing), content_type="image/jpeg")
    response["X-Content-Type-Options"] = "nosniff"
    # A poster never changes once stored; history pages show dozens of them.
    response["Cache-Control"] = "private, max-age=86400"
    return response


@require_http_methods(["GET", "POST"])
def account(request: StudioRequest) -> HttpResponse:
    """The person's preferences and teams."""
    profile = request.profile
    if request.method == "POST":
        form = AccountForm(request.POST, instance=profile)
        if form.is_valid():
            form.save()
            messages.success(request, _("Saved."))
            return redirect("account")
    else:
        form = AccountForm(instance=profile)
    return render(
        request,
        "tasks/account.html",
        {
            "form": form,
            "memberships": profile.memberships,
            "current": teams.team_for_person(profile=profile),
        },
    )


@require_POST
def team_switch(request: StudioRequest) -> HttpResponse:
    team_id = request.POST.get("team", "")
    if (
        not _is_id(team_id)
        or teams.team_switch(profile=request.profile, team_id=int(team_id)) is None
    ):
        raise Http404
    return redirect("tasks:list")


@csrf_exempt  # the upload handlers must be set before CSRF reads the body; checked below
@require_http_methods(["GET", "POST"])
def batch_create(request: StudioRequest) -> HttpResponse:
    request.upload_handlers = media_upload_handlers(request)
    return _batch_create(request)


@csrf_protect
def _batch_create(request: StudioRequest) -> HttpResponse:
    if request.method == "POST":
        form = BatchForm(
            request.POST,
            request.FILES,
            person_id=request.user.pk,
            upload_too_big=getattr(request, "upload_too_big", False),
            video_upload_too_big=getattr(request, "video_upload_too_big", False),
        )
        form.check_rows()
        if form.ready:
            try:
                batch, created = submitting.batch_create(
                    team=teams.team_for_person(profile=request.profile),
                    created_by=request.user,
                    rows=form.job_inputs,
                    submission_key=form.submission_key_value(),
                )
            except submitting.SubmissionRefused as refused:
                form.add_error(None, str(refused))
            else:
                if not created:
                    messages.info(request, _("You already submitted this batch; here it is."))
                return redirect(batch)
        status = 400
    else:
        form = BatchForm(initial={"submission_key": uuid.uuid4()}, person_id=request.user.pk)
        status = 200
    context = {
        "form": form,
        "shared": form.shared,
        "max_rows": settings.BATCH_MAX_ROWS,
        "voice_languages": {voice.id: list(voice.languages) for voice in VOICES},
    }
    return render(request, "tasks/batch_form.html", context, status=status)


@require_GET
def batch_template(request: StudioRequest) -> HttpResponse:
    """An example table for the batch page: the header and two rows (UTF-8 with a BOM, so a
    spreadsheet opens any language in it correctly)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="batch-template.csv"'
    response.write("\ufeff")
    csv.writer(response).writerows(template_rows())
    return response
