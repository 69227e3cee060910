from __future__ import annotations

import json
import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling, trigger_client_event
from django_htmx.middleware import HtmxDetails

from tasks_app import ratelimits, services, teams, webhooks
from tasks_app.filters import JobFilterForm
from tasks_app.forms import (
    TEXT_MAX_CHARS,
    AccountForm,
    AudioSourceChoice,
    JobForm,
    VideoSourceChoice,
)
from tasks_app.history_rows import (
    history_live_ids,
    history_rows_render,
    history_values,
)
from tasks_app.kling.voices import VOICES
from tasks_app.models import Job
from tasks_app.notices import notices_peek
from tasks_app.paging import CountedPaginator
from tasks_app.results import ranged_file_response
from tasks_app.uploads import AudioSizeLimitHandler

JOBS_PER_PAGE = 50
# The filter form is kept under the language, the query and the team's members (job_list.html).
FILTERS_CACHE_SECONDS = 24 * 3600


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
def index(request: HtmxHttpRequest) -> HttpResponse:
    return redirect("tasks:list")


@require_GET
def job_list(request: HtmxHttpRequest) -> HttpResponse:
    team = teams.team_for_person(user=request.user)
    team_jobs = Job.objects.filter(team=team)
    filters = JobFilterForm(request.GET, team=team)
    jobs = history_values(filters.filtered(team_jobs))
    status_counts = filters.status_counts(team_jobs)
    # The counts per status already cover every other filter: their sum is the total.
    paginator = CountedPaginator(jobs, JOBS_PER_PAGE, count=filters.total(status_counts))
    page = paginator.get_page(request.GET.get("page"))
    context = {
        "team": team,
        "filters": filters,
        "page": page,
        "rows": history_rows_render(user=request.user, rows=page.object_list),
        "filters_cache_seconds": FILTERS_CACHE_SECONDS,
        "status_counts": status_counts,
        "live_ids": history_live_ids(page.object_list),
        "is_filtered": any(value for key, value in request.GET.items() if key != "page"),
        "list_path": request.get_full_path(),
    }
    if request.htmx and request.htmx.target == "job-results":
        return render(request, "tasks/job_list.html#results", context)
    return render(request, "tasks/job_list.html", context)


@require_GET
def job_list_live(request: HtmxHttpRequest) -> HttpResponse:
    """The page's active rows, refreshed in one request (each row swaps itself out of band)."""
    ids = [int(value) for value in request.GET.getlist("id") if _is_id(value)][:JOBS_PER_PAGE]
    rows = list(history_values(Job.objects.visible_to(request.user).filter(pk__in=ids)))
    live_ids = history_live_ids(rows)
    context = {
        # Their buttons post the page's own #row-actions form, which returns to the page.
        "rows": history_rows_render(user=request.user, rows=rows, oob=True),
        "live_ids": live_ids,
        "notices": notices_peek(user=request.user),
    }
    response = render(request, "tasks/job_list.html#live", context)
    if len(live_ids) < len(ids):
        # A job finished: the page's counts and filters may no longer match; refresh them.
        trigger_client_event(response, "jobs-changed")
    if not live_ids:
        response.status_code = HttpResponseStopPolling.status_code
    return response


def _initial_from_job(job: Job) -> dict:
    return {
        "video_source": VideoSourceChoice.ID if job.video_id else VideoSourceChoice.URL,
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


@csrf_exempt  # the upload handler must be set before CSRF reads the body; checked below
@require_http_methods(["GET", "POST"])
def job_create(request: HtmxHttpRequest) -> HttpResponse:
    request.upload_handlers.insert(0, AudioSizeLimitHandler(request))
    return _job_create(request)


@csrf_protect
def _job_create(request: HtmxHttpRequest) -> HttpResponse:
    source_job = None
    if request.method == "POST":
        form = JobForm(
            request.POST,
            request.FILES,
            upload_too_big=getattr(request, "upload_too_big", False),
        )
        if (
            form.is_valid()
            and not services.job_exists(
                submitted_by=request.user, submission_key=form.submission_key_value()
            )
            and not ratelimits.submission_is_allowed(user=request.user)
        ):
            form.add_error(
                None,
                _(
                    "You have started {n} lip-syncs in the last minute, the most the studio "
                    "allows. Wait a minute and submit again; your entries are kept below."
                ).format(n=settings.SUBMISSIONS_PER_MINUTE),
            )
        if form.is_valid():
            job, created = services.job_create(
                team=teams.team_for_person(user=request.user),
                submitted_by=request.user,
                job_input=form.to_job_input(),
                submission_key=form.submission_key_value(),
            )
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
                initial |= _initial_from_job(source_job)
        if request.GET.get("video_id"):
            initial |= {"video_source": VideoSourceChoice.ID, "video_id": request.GET["video_id"]}
        form = JobForm(initial=initial)
        status = 200
    context = {
        "form": form,
        "source_job": source_job,
        "text_max": TEXT_MAX_CHARS,
        "voice_languages": {voice.id: list(voice.languages) for voice in VOICES},
    }
    return render(request, "tasks/job_form.html", context, status=status)


@require_GET
def job_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    if request.htmx:
        # The status partial, polled every few seconds by everyone watching: the job alone
        # (no submitter or team), one query besides the session's two.
        job = Job.objects.visible_one(user=request.user, pk=pk)
        if job is None:
            raise Http404
    else:
        job = get_object_or_404(Job.objects.visible_to(request.user).with_people(), pk=pk)
    context = {
        "job": job,
        "typical_seconds": services.job_typical_seconds(),
        # Asked only when the page offers an action (a callable is resolved lazily).
        "can_manage": lambda: teams.job_can_manage(user=request.user, job=job),
    }
    if request.htmx:
        response = render(request, "tasks/job_detail.html#status", context)
        if job.is_terminal:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    context["events"] = job.events.all()
    return render(request, "tasks/job_detail.html", context)


@require_POST
def job_retry(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    new_job, _created = services.job_retry(job=job, submitted_by=request.user)
    return redirect(new_job)


@require_POST
def job_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    if not teams.job_can_manage(user=request.user, job=job):
        raise PermissionDenied
    if not services.job_cancel(job=job):
        messages.error(request, _("This job was already sent to Kling and can't be cancelled."))
    return redirect(job)


@login_not_required
@csrf_exempt  # Kling posts here; the per-job token and the signature are the checks
@require_POST
def kling_callback(request: HttpRequest, job_id: int, token: str) -> HttpResponse:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not services.job_callback_token_is_valid(job=job, token=token):
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
    services.job_handle_callback(job=job)
    return HttpResponse(status=204)


@require_POST
def job_archive(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    if not teams.job_can_manage(user=request.user, job=job):
        raise PermissionDenied
    archive = request.POST.get("archive", "1") == "1"
    services.job_archive(job=job, archived=archive)
    if archive:
        messages.success(request, _("Archived. It is hidden from the history but kept."))
    else:
        messages.success(request, _("Back in the history."))
    return redirect(request.POST.get("next") if _is_local(request.POST.get("next")) else job)


def _is_id(value: str) -> bool:
    """A database id from a URL or form: ASCII digits that fit a 64-bit column.

    ``str.isdigit`` alone also accepts "²" (which ``int`` refuses) and numbers too big for the
    database (SQLite raises OverflowError on them).
    """
    return value.isascii() and value.isdigit() and len(value) <= 18


def _is_local(url: str | None) -> bool:
    return bool(url) and url_has_allowed_host_and_scheme(url, allowed_hosts=None)


@require_GET
def job_video(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The result video: the studio's own copy (seekable), or Kling's link until it has one."""
    job = get_object_or_404(Job.objects.visible_to(request.user), pk=pk)
    as_attachment = request.GET.get("download") == "1"
    if job.stored_video:
        return ranged_file_response(
            request,
            job.stored_video.open("rb"),
            size=job.stored_size or job.stored_video.size,
            content_type="video/mp4",
            filename=f"lipsync-{job.pk}.mp4",
            as_attachment=as_attachment,
        )
    if job.result_video_url and job.kling_link_is_live:
        return redirect(job.result_video_url)
    raise Http404(_("This video is no longer available."))


@require_http_methods(["GET", "POST"])
def account(request: HtmxHttpRequest) -> HttpResponse:
    """The person's preferences and teams."""
    profile = teams.profile_get(user=request.user)
    if request.method == "POST":
        form = AccountForm(request.POST, instance=profile)
        if form.is_valid():
            form.save()
            messages.success(request, _("Saved."))
            return redirect("account")
    else:
        form = AccountForm(instance=profile)
    memberships = request.user.memberships.select_related("team")
    return render(
        request,
        "tasks/account.html",
        {
            "form": form,
            "memberships": memberships,
            "current": teams.team_for_person(user=request.user),
        },
    )


@require_POST
def team_switch(request: HtmxHttpRequest) -> HttpResponse:
    team_id = request.POST.get("team", "")
    if not _is_id(team_id) or teams.team_switch(user=request.user, team_id=int(team_id)) is None:
        raise Http404
    return redirect("tasks:list")
