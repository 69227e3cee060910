from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class JobStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    SENT = "sent", _("Sent to Kling")
    PROCESSING = "processing", _("Processing")
    SUCCEEDED = "succeeded", _("Ready")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


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
    def with_memberships(self, *, user) -> tuple[Profile | None, list[Membership]]:
        """The person's profile and memberships (each with its team), by team name, in one
        plain query; (None, []) when they have no profile yet.

        Every page a person loads starts by asking which team they work in and what they
        may do there. The ORM's two queries for this cost about a millisecond, mostly in
        compiling them; this one costs a tenth of that. Memberships and teams come with
        the columns the pages read (``joined_at`` and the team's ``created_at`` load on
        first use).
        """
        profile_, membership, team = (
            Profile._meta.db_table,
            Membership._meta.db_table,
            Team._meta.db_table,
        )
        query = (
            "SELECT p.*, m.id AS m_id, m.team_id AS m_team_id, m.role AS m_role, "  # noqa: S608
            "t.name AS t_name, t.is_personal AS t_is_personal "
            f"FROM {profile_} p LEFT JOIN {membership} m ON m.user_id = p.user_id "
            f"LEFT JOIN {team} t ON t.id = m.team_id "
            "WHERE p.user_id = %s ORDER BY t.name, t.id"
        )
        profile, memberships = None, []
        # One row a membership, each carrying the same profile (converted by raw()); the
        # membership's and team's columns need no conversion but the flag (0/1 on SQLite).
        for row in self.raw(query, [user.pk]):
            profile = profile or row
            if row.m_id is None:
                continue
            team_ = Team.from_db(
                self.db,
                ["id", "name", "is_personal"],
                [row.m_team_id, row.t_name, bool(row.t_is_personal)],
            )
            member = Membership.from_db(
                self.db,
                ["id", "team_id", "user_id", "role"],
                [row.m_id, row.m_team_id, user.pk, row.m_role],
            )
            member.team = team_
            memberships.append(member)
        return profile, memberships


class Profile(models.Model):
    """Per-person studio preferences and what they have already been told."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studio_profile"
    )
    current_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    email_when_done = models.BooleanField(_("e-mail me when a job finishes"), default=False)
    # Jobs that finished after this are "new" to the person: a notice and a count in the tab.
    last_seen_at = models.DateTimeField(null=True, blank=True)

    objects = ProfileManager()

    def __str__(self) -> str:
        return f"Profile of {self.user}"


class ReviewState(models.TextChoices):
    NOT_REVIEWED = "not_reviewed", _("Not reviewed")
    APPROVED = "approved", _("Approved")
    FLAGGED = "flagged", _("Flagged")


# A job's place in its team's tallies: (team id, status, archived).
TallyBucket = tuple[int, str, bool]


class JobTallyManager(models.Manager["JobTally"]):
    def move(self, *, was: TallyBucket | None, now: TallyBucket | None) -> None:
        """Count one job out of ``was`` and into ``now`` (None: not counted, e.g. new)."""
        if was == now:
            return
        changes = [(bucket, delta) for bucket, delta in ((was, -1), (now, 1)) if bucket]
        # Always in the same order: an archive and an unarchive in one team at once would
        # otherwise each lock one of the two rows and wait for the other (a deadlock).
        for bucket, delta in sorted(changes, key=lambda change: change[0]):
            self._add(bucket, delta)

    def _add(self, bucket: TallyBucket, delta: int) -> None:
        team_id, status, archived = bucket
        row = self.filter(team_id=team_id, status=status, archived=archived)
        if row.update(count=F("count") + delta):
            return
        # The bucket's first job. Two at once both insert; the second insert does nothing and
        # both updates apply.
        self.bulk_create(
            [JobTally(team_id=team_id, status=status, archived=archived, count=0)],
            ignore_conflicts=True,
        )
        row.update(count=F("count") + delta)

    def counts(self, *, team: Team, with_archived: bool) -> dict[str, int]:
        """Jobs per status in the team (archived ones too when ``with_archived``).

        Every history page reads these: a plain query, a fifth of what the ORM's costs.
        """
        shown = "" if with_archived else " AND NOT archived"
        query = (
            f"SELECT status, count FROM {JobTally._meta.db_table} "  # noqa: S608
            f"WHERE team_id = %s{shown}"
        )
        counts: dict[str, int] = {}
        with connections[self.db].cursor() as cursor:
            cursor.execute(query, [team.pk])
            for status, count in cursor.fetchall():
                counts[status] = counts.get(status, 0) + count
        return counts


class JobTally(models.Model):
    """How many of a team's jobs are in each status, kept up to date by ``Job.save``.

    The history shows these counts on every view; counting them from the jobs reads every
    one of the team's jobs (10 ms per 100,000 on SQLite), reading them here costs the same
    for any number. Queryset ``update``/``bulk_create`` and raw SQL skip ``Job.save``: after
    those, ``services.job_tallies_rebuild`` counts again.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="job_tallies")
    status = models.CharField(max_length=16, choices=JobStatus.choices)
    archived = models.BooleanField()
    count = models.IntegerField(default=0)

    objects = JobTallyManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "status", "archived"], name="one_tally_per_bucket"
            )
        ]

    def __str__(self) -> str:
        archived = " (archived)" if self.archived else ""
        return f"{self.team_id}: {self.count} {self.status}{archived}"


class JobQuerySet(models.QuerySet["Job"]):
    def active(self) -> JobQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def with_people(self) -> JobQuerySet:
        return self.select_related("submitted_by", "team")

    def visible_to(self, user) -> JobQuerySet:
        """Jobs of every team the person belongs to (anything else is a 404 for them).

        Staff review every team's submissions, so they see every job.
        """
        if user.is_staff:
            return self.all()
        return self.filter(team__memberships__user=user)


class JobManager(models.Manager.from_queryset(JobQuerySet)):
    def visible_one(self, *, user, pk: int) -> Job | None:
        """The job if the person may see it, in one plain query.

        This is the status poll's lookup, which everyone watching a job repeats every few
        seconds; as hand-written SQL it costs a third of what the ORM's compiled join does.
        """
        if user.is_staff:
            return self.filter(pk=pk).first()
        job, membership = Job._meta.db_table, Membership._meta.db_table
        query = (
            f"SELECT j.* FROM {job} j JOIN {membership} m ON m.team_id = j.team_id "  # noqa: S608
            "WHERE j.id = %s AND m.user_id = %s"
        )
        return next(iter(self.raw(query, [pk, user.pk])), None)

    def finished_for(self, *, user, since: datetime, limit: int) -> list[Job]:
        """The person's jobs that succeeded or failed after ``since``, newest first.

        The "your lip-sync is ready" notices: every page a person loads asks this, almost
        always finding nothing, so it is hand-written SQL too (the ORM's compiling costs ten
        times the indexed look-up). Only what a notice shows is read.
        """
        query = (
            "SELECT id, status, mode, text, audio_name, audio_url "  # noqa: S608
            f"FROM {Job._meta.db_table} WHERE submitted_by_id = %s AND status IN (%s, %s) "
            "AND finished_at > %s ORDER BY finished_at DESC LIMIT %s"
        )
        # As the ORM would write it (on SQLite, naive UTC text that compares as stored).
        since = connections[self.db].ops.adapt_datetimefield_value(since)
        params = [user.pk, JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, since, limit]
        return list(self.raw(query, params))


class Job(models.Model):
    """One lip-sync job: what a person asked for, and everything Kling said about it."""

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

    # Inputs, named as Kling names them.
    video_id = models.CharField(_("Kling video ID"), max_length=128, blank=True)
    video_url = models.URLField(_("video link"), max_length=2000, blank=True)
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
    audio_url = models.URLField(_("audio link"), max_length=2000, blank=True)
    audio_file = models.FileField(_("audio file"), upload_to="audio/%Y/%m/", blank=True)
    audio_name = models.CharField(_("audio file name"), max_length=255, blank=True)

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
    stored_video = models.FileField(_("studio copy"), upload_to="results/%Y/%m/", blank=True)
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

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    processing_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)

    objects = JobManager()

    _TALLY_FIELDS = frozenset({"team", "team_id", "status", "archived_at"})

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["submitted_by", "submission_key"], name="one_job_per_submission"
            ),
            models.CheckConstraint(
                condition=(models.Q(video_id="") ^ models.Q(video_url="")),
                name="exactly_one_video_source",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_check_at"]),
            models.Index(fields=["team", "archived_at", "-created_at"]),
            # Counts per status under a search or filter read this index alone, not the table.
            models.Index(fields=["team", "archived_at", "status"]),
            # "Your lip-sync is ready" notices: a person's recently finished jobs.
            models.Index(fields=["submitted_by", "finished_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.summary}"

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and self._TALLY_FIELDS.isdisjoint(update_fields):
            super().save(*args, **kwargs)
            return
        with transaction.atomic(using=kwargs.get("using")):
            was = self._stored_bucket()
            super().save(*args, **kwargs)
            JobTally.objects.move(was=was, now=self._bucket_after(was, update_fields))

    def get_absolute_url(self) -> str:
        return reverse("tasks:detail", args=[self.pk])

    def delete(self, *args, **kwargs):
        with transaction.atomic(using=kwargs.get("using")):
            JobTally.objects.move(was=self._stored_bucket(), now=None)
            return super().delete(*args, **kwargs)

    def _stored_bucket(self) -> TallyBucket | None:
        """Where the tallies count this job now, read from its row (locked until the end of
        the save): what this object remembers could be stale, partial or a copy's."""
        if self.pk is None:
            return None
        row = Job.objects.select_for_update().filter(pk=self.pk)
        stored = row.values_list("team_id", "status", "archived_at").first()
        if stored is None:
            return None
        team_id, status, archived_at = stored
        return (team_id, status, archived_at is not None)

    def _bucket_after(self, was: TallyBucket | None, update_fields) -> TallyBucket:
        """Where the job is counted after a save that wrote ``update_fields`` (None: all)."""
        team_id, status, archived = was or (None, None, None)
        fields = self._TALLY_FIELDS if update_fields is None or was is None else update_fields
        if {"team", "team_id"} & set(fields):
            team_id = self.team_id
        if "status" in fields:
            status = str(self.status)
        if "archived_at" in fields:
            archived = self.archived_at is not None
        return (team_id, status, archived)

    @property
    def summary(self) -> str:
        if self.mode == JobMode.TEXT:
            return self.text
        return self.audio_name or self.audio_url.rsplit("/", 1)[-1]

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

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


class LoginFailure(models.Model):
    """A failed log-in, kept for a while to slow down password guessing."""

    username = models.CharField(max_length=150, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.username} from {self.ip} at {self.created_at:%Y-%m-%d %H:%M}"
