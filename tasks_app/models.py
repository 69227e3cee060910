from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _
from django_stubs_ext import StrOrPromise

from tasks_app.uploads import (
    SniffedAudioField,
    stored_audio_name,
    stored_poster_name,
    stored_source_name,
    stored_video_name,
)
from tasks_app.validators import validate_audio_link, validate_video_link

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


class JobStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    SENT = "sent", _("Sent to Kling")
    PROCESSING = "processing", _("Processing")
    SUCCEEDED = "succeeded", _("Ready")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


# Kling's error code for "the account runs as many tasks as it may" (see kling-api.md).
KLING_ACCOUNT_FULL = 1303

# Named once: everything else (polling, the worker, the templates) asks these.
TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset(set(JobStatus) - TERMINAL_STATUSES)


class JobMode(models.TextChoices):
    TEXT = "text2video", _("Type what they should say")
    AUDIO = "audio2video", _("Use an audio track")


class VoiceLanguage(models.TextChoices):
    EN = "en", _("English")
    ZH = "zh", _("Chinese")


class TeamRole(models.TextChoices):
    MEMBER = "member", _("Member")
    ADMIN = "admin", _("Team admin")


class Team(models.Model):
    """A group of people who share their lip-sync jobs."""

    name = models.CharField(_("name"), max_length=100)
    is_personal = models.BooleanField(
        _("personal team"),
        default=False,
        help_text=_("Made automatically for a person who had no team yet."),
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Credits the team may spend in a calendar month; None: no limit (see services.budgets).
    monthly_credit_budget = models.DecimalField(
        _("monthly credit budget"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("New jobs are refused once the month's credits reach it. Empty: no limit."),
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(
        _("role"), max_length=16, choices=TeamRole.choices, default=TeamRole.MEMBER
    )
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")
        ]
        ordering = ["team__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.get_role_display()})"


class ProfileManager(models.Manager["Profile"]):
    def for_user(self, user: User) -> Profile:
        """The person's profile, made on their first page."""
        profile, _created = self.get_or_create(user=user)
        return profile


class Profile(models.Model):
    """Per-person studio preferences and what they have already been told."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studio_profile"
    )
    current_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    email_when_done = models.BooleanField(_("e-mail me when a job finishes"), default=False)
    # Jobs that finished after this are "new" to the person: a notice and a count in the tab.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # The language their e-mails are written in: the last one they chose with the switch, or
    # their browser's when they first logged in. Empty: the studio's default.
    language = models.CharField(
        _("language"), max_length=16, choices=settings.LANGUAGES, blank=True
    )

    objects = ProfileManager()

    def __str__(self) -> str:
        return f"Profile of {self.user}"

    @cached_property
    def memberships(self) -> list[Membership]:
        """The person's memberships with their teams, by team name.

        A profile lives one request (``request.profile``), so this is read once a page.
        """
        rows = Membership.objects.filter(user_id=self.user_id).select_related("team")
        return list(rows.order_by("team__name", "team_id"))


class ReviewState(models.TextChoices):
    NOT_REVIEWED = "not_reviewed", _("Not reviewed")
    APPROVED = "approved", _("Approved")
    FLAGGED = "flagged", _("Flagged")


class JobQuerySet(models.QuerySet["Job"]):
    def active(self) -> JobQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def with_people(self) -> JobQuerySet:
        return self.select_related("submitted_by", "team")

    def with_submitter_name(self) -> JobQuerySet:
        """Each job's ``submitter_name``, read in the same query: a list of rows that shows
        only the name need not make a user object for each."""
        return self.annotate(submitter_name=models.F("submitted_by__username"))

    def visible_to(
        self, user: User | AnonymousUser, *, memberships: Sequence[Membership] | None = None
    ) -> JobQuerySet:
        """The one rule for who may see a job: every view reads jobs through it.

        A person sees the jobs of the teams they belong to (anything else is a 404 for
        them); reviewers, who hold the ``review_job`` permission, and superusers see every
        team's. The staff flag alone opens the admin, not other teams' jobs.

        ``memberships``: the person's memberships, when the request has read them already
        (``Profile.memberships``), so the query names their teams instead of asking for them.
        """
        if may_review_every_team(user):
            return self.all()
        return self.filter(team_id__in=team_ids_of(user, memberships=memberships))


def team_ids_of(
    user: User | AnonymousUser, *, memberships: Sequence[Membership] | None = None
) -> models.QuerySet[Membership, Any] | list[int]:
    """The ids of the person's teams, for ``team_id__in``.

    Without ``memberships``, a subquery: a semi-join on their few teams, not a join through
    every membership, so the database reads it once and then the job indexes, which all
    start with the team. With them, their ids: each query that names them is cheaper to plan
    (the history's five uses cost the database 1.5 ms more as subqueries).
    """
    if memberships is None:
        return Membership.objects.filter(user=user.pk).values("team_id")
    if any(membership.user_id != user.pk for membership in memberships):
        raise ValueError("these memberships are not the person's")
    return [membership.team_id for membership in memberships]


def may_review_every_team(user: User | AnonymousUser) -> bool:
    # Only staff can hold the permission in practice; asking them alone spares everyone
    # else the two permission queries.
    return bool(user.is_staff and user.has_perm("tasks_app.review_job"))


JobManager = models.Manager.from_queryset(JobQuerySet)


class BatchQuerySet(models.QuerySet["Batch"]):
    def visible_to(self, user: User | AnonymousUser) -> BatchQuerySet:
        """Who may see a batch: the same rule as for its jobs (``JobQuerySet.visible_to``)."""
        if may_review_every_team(user):
            return self.all()
        return self.filter(team_id__in=team_ids_of(user))


BatchManager = models.Manager.from_queryset(BatchQuerySet)


class Batch(models.Model):
    """Many lip-syncs asked for in one go; each row is an ordinary job (``Job.batch``)."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="lipsync_batches"
    )
    # One POST, one key: a double click finds the batch it already made.
    submission_key = models.UUIDField(default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    archived_at = models.DateTimeField(_("archived"), null=True, blank=True)

    objects = BatchManager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "submission_key"], name="one_batch_per_submission"
            )
        ]
        verbose_name = _("batch")
        verbose_name_plural = _("batches")

    def __str__(self) -> str:
        return f"Batch #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("tasks:batch", args=[self.pk])


class Job(models.Model):
    """One lip-sync job: what a person asked for, and everything Kling said about it."""

    if TYPE_CHECKING:
        # Read by ``JobQuerySet.with_submitter_name``, for the history's rows.
        submitter_name: str

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="jobs")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="lipsync_jobs"
    )
    # The form carries a fresh key each time it is shown, so a double click or a resubmitted
    # page finds the job it already made instead of paying Kling twice.
    submission_key = models.UUIDField(default=uuid.uuid4, editable=False)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    # A row of a batch: its place (from 1) is what the batch page and its download call it.
    # A retry of a row is the row's next attempt (same batch and row); the newest one counts.
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    batch_row = models.PositiveIntegerField(_("row"), null=True, blank=True)

    # Inputs, named as Kling names them.
    video_id = models.CharField(_("Kling video ID"), max_length=128, blank=True)
    video_url = models.URLField(
        _("video link"), max_length=2000, blank=True, validators=[validate_video_link]
    )
    # A video from the person's computer: stored under a generated name, handed to Kling
    # as a signed link (tasks_app.source_links); the person's file name is for display only.
    video_file = models.FileField(_("video file"), upload_to=stored_source_name, blank=True)
    video_name = models.CharField(_("video file name"), max_length=255, blank=True)
    parent_task_id = models.CharField(_("parent task ID"), max_length=128, blank=True)
    mode = models.CharField(max_length=16, choices=JobMode.choices)
    text = models.CharField(max_length=120, blank=True)
    voice_id = models.CharField(_("voice"), max_length=64, blank=True)
    voice_language = models.CharField(
        _("language"), max_length=2, choices=VoiceLanguage.choices, blank=True
    )
    voice_speed = models.DecimalField(
        _("speed"), max_digits=2, decimal_places=1, null=True, blank=True
    )
    audio_url = models.URLField(
        _("audio link"), max_length=2000, blank=True, validators=[validate_audio_link]
    )
    # Stored under a generated name with the extension its bytes show (tasks_app.uploads);
    # the person's own file name is kept in audio_name, for display only.
    audio_file = SniffedAudioField(_("audio file"), upload_to=stored_audio_name, blank=True)
    audio_name = models.CharField(_("audio file name"), max_length=255, blank=True)

    # What the studio measured of the source before sending it (tasks_app.probe). Empty for
    # a Kling video ID, which only Kling can read.
    video_duration = models.FloatField(_("video length (s)"), null=True, blank=True)
    video_width = models.PositiveIntegerField(_("video width"), null=True, blank=True)
    video_height = models.PositiveIntegerField(_("video height"), null=True, blank=True)
    video_bytes = models.PositiveBigIntegerField(_("video size (bytes)"), null=True, blank=True)
    # None: not looked for (a Kling video ID).
    face_found = models.BooleanField(_("face found"), null=True, blank=True)
    # The person sent it although no face was found (Kling may refuse it).
    confirmed_no_face = models.BooleanField(_("sent without a face found"), default=False)
    poster = models.FileField(_("poster frame"), upload_to=stored_poster_name, blank=True)
    audio_duration = models.FloatField(_("audio length (s)"), null=True, blank=True)

    # Local state.
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True
    )
    status_detail = models.CharField(
        _("status in plain words"),
        max_length=500,
        blank=True,
        help_text=_("What the person sees under the status, e.g. why it waits or why it failed."),
    )
    # The same sentence as stored for translation when shown (see tasks_app.wording).
    status_message = models.JSONField(default=dict, blank=True, editable=False)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    send_attempts = models.PositiveIntegerField(default=0)
    # Set just before a create leaves for Kling and cleared once its outcome is known: while it
    # is set, Kling may hold a task for this job that we have not heard about (see reconcile).
    send_started_at = models.DateTimeField(null=True, blank=True)
    poll_errors = models.PositiveIntegerField(default=0)
    # A create whose answer was lost and that Kling's task list cannot settle: the worker
    # stopped following the job until a person decides (services.lifecycle._claim).
    needs_person = models.BooleanField(_("held for a person"), default=False, db_index=True)

    # What Kling said.
    kling_task_id = models.CharField(
        _("Kling task ID"), max_length=128, null=True, blank=True, unique=True
    )
    kling_request_id = models.CharField(_("Kling request ID"), max_length=128, blank=True)
    kling_status = models.CharField(_("Kling status"), max_length=32, blank=True)
    kling_status_msg = models.TextField(_("Kling's message"), blank=True)
    error_code = models.IntegerField(_("Kling error code"), null=True, blank=True)
    error_detail = models.TextField(
        _("technical detail"), blank=True, help_text=_("For staff: Kling's own words.")
    )
    result_video_id = models.CharField(_("result video ID"), max_length=128, blank=True)
    result_video_url = models.URLField(_("result video link"), max_length=2000, blank=True)
    result_duration = models.FloatField(_("result length (s)"), null=True, blank=True)
    credits = models.DecimalField(
        _("credits charged"), max_digits=10, decimal_places=2, null=True, blank=True
    )

    # The studio's own copy of the result, kept after Kling deletes its copy (30 days).
    stored_video = models.FileField(_("studio copy"), upload_to=stored_video_name, blank=True)
    stored_size = models.PositiveBigIntegerField(_("copy size (bytes)"), null=True, blank=True)
    stored_sha256 = models.CharField(_("copy SHA-256"), max_length=64, blank=True)
    store_attempts = models.PositiveIntegerField(default=0)
    store_error = models.CharField(_("copy problem"), max_length=500, blank=True)
    store_message = models.JSONField(default=dict, blank=True, editable=False)

    archived_at = models.DateTimeField(_("archived"), null=True, blank=True, db_index=True)
    # When the submitter was told the job finished (notice on a page, e-mail).
    notified_at = models.DateTimeField(null=True, blank=True)

    review_state = models.CharField(
        _("review"),
        max_length=16,
        choices=ReviewState.choices,
        default=ReviewState.NOT_REVIEWED,
        db_index=True,
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("reviewed by"),
    )
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)
    review_note = models.TextField(_("review note"), blank=True)

    # The submitter's word that the person in the video agreed to it being lip-synced (the
    # form's required "consent" box): who gave it and when.
    consent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("consent confirmed by"),
    )
    consent_at = models.DateTimeField(_("consent confirmed at"), null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    processing_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)

    objects = JobManager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["submitted_by", "submission_key"], name="one_job_per_submission"
            ),
            models.CheckConstraint(
                condition=(
                    (~models.Q(video_id="") & models.Q(video_url="") & models.Q(video_file=""))
                    | (models.Q(video_id="") & ~models.Q(video_url="") & models.Q(video_file=""))
                    | (models.Q(video_id="") & models.Q(video_url="") & ~models.Q(video_file=""))
                ),
                name="exactly_one_video_source",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_check_at"]),
            # The history's page, newest first, in the page's own order (the id breaks ties):
            # the database reads the 51 rows a page needs and sorts nothing.
            models.Index(fields=["team", "archived_at", "-created_at", "-id"]),
            # The history's counts per status (capped, so they read at most a hundred rows
            # each) and its list narrowed to one status, newest first.
            models.Index(fields=["team", "status", "archived_at", "-created_at", "-id"]),
            # "Your lip-sync is ready" notices: a person's recently finished jobs.
            models.Index(fields=["submitted_by", "finished_at"]),
            models.Index(fields=["batch", "batch_row"]),
            # The worker's sweep of result copies lost with their worker (results_sweep):
            # the few ready jobs without a copy or a problem, not a scan of every ready job.
            models.Index(
                fields=["finished_at"],
                name="job_result_copy_missing",
                condition=models.Q(status="succeeded", stored_video="", store_error=""),
            ),
        ]
        permissions = [("review_job", "Can see and review every team's jobs")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.summary}"

    def get_absolute_url(self) -> str:
        return reverse("tasks:detail", args=[self.pk])

    @property
    def callback_token(self) -> str:
        """The unguessable token in the job's callback URL (derived, so never stored)."""
        return salted_hmac("tasks_app.callback", str(self.pk)).hexdigest()

    @property
    def summary(self) -> str:
        if self.mode == JobMode.TEXT:
            return self.text
        return self.audio_name or self.audio_url.rsplit("/", 1)[-1]

    @property
    def status_label(self) -> StrOrPromise:
        # The enum's own label: Django's get_status_display() rebuilds a choices dict, and
        # translates every label, on each call, which shows on a page of 50 rows.
        return JobStatus(self.status).label

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_waiting_for_slot(self) -> bool:
        """Not sent yet because Kling's account runs as many tasks as it may (code 1303)."""
        return (
            self.status == JobStatus.PENDING
            and self.kling_task_id is None
            and self.error_code == KLING_ACCOUNT_FULL
        )

    @property
    def timeline_state(self) -> str:
        """What the job page's timeline shows, in short: a page polling with another state
        is sent the timeline again."""
        return f"{self.status}-slot" if self.is_waiting_for_slot else self.status

    @property
    def is_active(self) -> bool:
        return not self.is_terminal

    @property
    def can_cancel(self) -> bool:
        return self.status == JobStatus.PENDING and self.send_started_at is None

    @property
    def duration(self) -> timedelta | None:
        """How long the job took from submission to its end, or so far."""
        end = self.finished_at or (None if self.is_terminal else timezone.now())
        return end - self.created_at if end else None

    @property
    def kling_link_is_live(self) -> bool:
        """Kling deletes results after 30 days; until then its link is a fallback."""
        if not self.finished_at:
            return False
        lifetime = timedelta(days=settings.KLING_RESULT_LIFETIME_DAYS)
        return timezone.now() - self.finished_at < lifetime

    @property
    def is_taking_long(self) -> bool:
        return Job.taking_long(status=self.status, sent_at=self.sent_at)

    @staticmethod
    def taking_long(*, status: str, sent_at: datetime | None) -> bool:
        """``is_taking_long`` from the two values it depends on (and the clock), for rows
        read as values rather than as jobs."""
        if status not in (JobStatus.SENT, JobStatus.PROCESSING) or not sent_at:
            return False
        limit = timedelta(minutes=settings.KLING_SLOW_AFTER_MINUTES)
        return timezone.now() - sent_at > limit


class ShareLinkQuerySet(models.QuerySet["ShareLink"]):
    def live(self) -> ShareLinkQuerySet:
        """Links that still open: not revoked, not expired, of a finished video."""
        return self.filter(
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            job__status=JobStatus.SUCCEEDED,
        )

    def visible_to(self, user: User | AnonymousUser) -> ShareLinkQuerySet:
        """The links of the jobs the person may see (``JobQuerySet.visible_to``)."""
        return self.filter(job__in=Job.objects.visible_to(user))


ShareLinkManager = models.Manager.from_queryset(ShareLinkQuerySet)


class ShareLink(models.Model):
    """A link to a finished video for people without an account (``tasks_app.sharing``).

    Only the SHA-256 of the link's random token is kept: the link is shown once, when made,
    and cannot be rebuilt from the database.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="share_links")
    token_hash = models.CharField(_("token fingerprint"), max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("made by"),
    )
    created_at = models.DateTimeField(_("made at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    objects = ShareLinkManager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("share link")
        verbose_name_plural = _("share links")

    def __str__(self) -> str:
        return f"Share link #{self.pk} of job #{self.job_id}"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class JobEvent(models.Model):
    """A status change, kept so the page and the admin can show the job's timeline."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(default=timezone.now)
    old_status = models.CharField(max_length=16, choices=JobStatus.choices, blank=True)
    new_status = models.CharField(max_length=16, choices=JobStatus.choices)
    note = models.CharField(max_length=500, blank=True)
    note_message = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.old_status or '-'} -> {self.new_status}"


class WorkerHeartbeat(models.Model):
    """A background worker process, as it last reported itself: the studio can tell when
    nobody is there to send the jobs people wait on."""

    worker_id = models.CharField(_("worker"), max_length=64, unique=True)
    hostname = models.CharField(_("machine"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))
    started_at = models.DateTimeField(_("started"))
    last_seen_at = models.DateTimeField(_("last seen"), db_index=True)
    # Set when the worker stopped as asked (Ctrl-C, SIGTERM); a killed one just falls silent.
    stopped_at = models.DateTimeField(_("stopped"), null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        verbose_name = _("worker")
        verbose_name_plural = _("workers")

    def __str__(self) -> str:
        return f"{self.worker_id} on {self.hostname} (pid {self.pid})"
