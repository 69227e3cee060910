"""Kling misbehaving in every way we know of: each job still ends right, once, in plain words.

Kling is the simulator over real HTTP; its faults are injected per call. The worker is the real
django-tasks-db worker, run one task at a time so the schedule each failure leaves behind can be
read before the next task runs.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from html import unescape
from pathlib import Path

import httpx
import pytest
from django.db import OperationalError, connection, connections
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper
from django.test import Client
from django.urls import resolve, reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import (
    TEXT_FORM,
    assert_no_failed_tasks,
    keeping_the_test_connection,
    make_job,
    make_worker,
)

from tasks_app.kling import (
    ApiKeyAuth,
    ErrorKind,
    KlingClient,
    KlingError,
    LipSyncRequest,
    TextSpeech,
    VideoSource,
)
from tasks_app.models import Job, JobStatus
from tasks_app.services import lifecycle
from tasks_app.simulator import KlingSimulator

STATUS_DETAIL = re.compile(r'data-testid="status-detail">(.*?)</p>', re.S)
# Words that only a programmer should ever read.
TECHNICAL = (
    "Traceback",
    "KlingError",
    "Kling error",
    "request_id",
    "httpx",
    "Exception",
    "retryable",
    "outcome unknown",
    "HTTP ",
)
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
TRUNCATED = b'{"code": 0, "message": "SUCCEED", "request_id": "r-1", "data": {"task_id": "86'


# --- Driving the worker and reading what the person sees ----------------------------------------


def run_one_task() -> bool:
    """Run the next due task as a worker would; return whether one was due.

    As in the conftest's ``run_worker``, the worker keeps the test's database connection.
    """
    if not DBTaskResult.objects.ready().exists():
        return False
    with keeping_the_test_connection():
        make_worker("fault-worker", max_tasks=1).run()
    assert_no_failed_tasks()
    return True


@dataclass
class Schedule:
    """The waits the studio chose after each failed attempt, per job, in seconds."""

    # job id -> {send attempt -> wait before sending again}
    resend_waits: dict[int, dict[int, float]] = field(default_factory=dict)
    # job id -> {failed checks in a row -> wait before checking again}
    poll_waits: dict[int, dict[int, float]] = field(default_factory=dict)
    # job id -> every status text the person could read on the job page while it ran
    texts: dict[int, list[str]] = field(default_factory=dict)

    def note(self, job_ids: list[int], started) -> None:
        for job in Job.objects.filter(pk__in=job_ids):
            # What the job's page says at this moment (pages are read between rounds too).
            self.texts.setdefault(job.pk, []).append(job.status_detail)
            if job.next_check_at is None:
                continue
            wait = (job.next_check_at - started).total_seconds()
            if job.status == JobStatus.PENDING and job.send_attempts and not job.send_started_at:
                self.resend_waits.setdefault(job.pk, {}).setdefault(job.send_attempts, wait)
            if job.status != JobStatus.PENDING and job.poll_errors:
                self.poll_waits.setdefault(job.pk, {}).setdefault(job.poll_errors, wait)


def drive(
    client: Client,
    jobs: list[Job],
    sim_clock,
    *,
    after_step: Callable[[], None] | None = None,
    after_round: Callable[[int], None] | None = None,
    rounds: int = 40,
) -> Schedule:
    """Run every due task one by one, read each job's page, move time on; until all end."""
    ids = [job.pk for job in jobs]
    schedule = Schedule()
    for round_no in range(rounds):
        DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now())
        while True:
            started = timezone.now()
            if not run_one_task():
                break
            schedule.note(ids, started)
            if after_step is not None:
                after_step()
        for job in jobs:
            schedule.texts.setdefault(job.pk, []).append(status_text(client, job))
        if after_round is not None:
            after_round(round_no)
        if not Job.objects.filter(pk__in=ids).active().exists():
            return schedule
        sim_clock.advance(5)
    raise AssertionError(f"jobs still active after {rounds} rounds")


def status_text(client: Client, job: Job) -> str:
    """The status sentence on the job's page, as its live poll shows it."""
    response = client.get(job.get_absolute_url(), headers={"HX-Request": "true"})
    assert response.status_code in (200, 286)
    page = response.content.decode()
    for word in TECHNICAL:
        assert word not in page, (word, page)
    (detail,) = STATUS_DETAIL.findall(page)
    return unescape(detail).strip()


def assert_plain(text: str) -> None:
    assert text
    # No HTTP statuses or Kling codes (times like 12:04:31 have two digits at most).
    assert not re.search(r"\d{3,}", text), text
    for word in TECHNICAL:
        assert word not in text, text


def submit_through_form(client: Client, count: int) -> list[Job]:
    jobs = []
    for i in range(count):
        data = TEXT_FORM | {"video_id": f"86032781234567{i:04d}", "text": f"Line number {i}"}
        response = client.post(reverse("tasks:create"), data)
        assert response.status_code == 302, response.content.decode()[:2000]
        jobs.append(Job.objects.get(pk=resolve(response["Location"]).kwargs["pk"]))
    return jobs


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the simulator")
        time.sleep(0.01)


def set_sim(kling: KlingSimulator, **changes) -> None:
    """Change how the running simulator behaves (its config is read on every request)."""
    kling.config = dataclasses.replace(kling.config, **changes)


@pytest.fixture
def studio(settings):
    """Short waits so a test sees several retries in a few seconds of real time."""
    settings.KLING_RETRY_BASE_SECONDS = 1
    settings.KLING_RETRY_MAX_SECONDS = 60
    settings.KLING_RECONCILE_GRACE_SECONDS = 0
    return settings


# --- Faults on the create call ----------------------------------------------------------------


@dataclass(frozen=True)
class CreateFault:
    arm: Callable[[KlingSimulator, object], None]
    #: "succeeded" once the fault clears, or "failed" for faults no retry can fix.
    outcome: str
    #: What the person reads on the job page while it waits, or once it failed.
    words: str
    sim: dict = field(default_factory=dict)
    #: The studio cannot know whether Kling made the task, so it must look before resending.
    lost_answer: bool = False
    #: How many times each job is sent again after the fault (2+ shows whether waits grow).
    resends: int = 0
    #: Called after each task the worker runs, e.g. to end a fault that is not counted.
    after_step: Callable[[KlingSimulator], None] | None = None


def inject(http_status: int, code: int, message: str, *, times: int, take_effect=False):
    def arm(kling, settings):
        kling.inject(
            "POST",
            "/lip-sync",
            http_status=http_status,
            code=code,
            message=message,
            times=times,
            take_effect=take_effect,
        )

    return arm


def inject_raw(body: bytes, http_status: int, *, times: int, take_effect=False, ctype=None):
    def arm(kling, settings):
        kling.inject_raw(
            "POST",
            "/lip-sync",
            body=body,
            http_status=http_status,
            content_type=ctype or "text/html; charset=utf-8",
            times=times,
            take_effect=take_effect,
        )

    return arm


def disconnect(*, times: int, take_effect: bool):
    def arm(kling, settings):
        kling.inject_disconnect("POST", "/lip-sync", times=times, take_effect=take_effect)

    return arm


def read_timeout_of_one_second(kling, settings):
    settings.KLING_READ_TIMEOUT = 1


def key_revoked_on_klings_side(kling, settings):
    set_sim(kling, api_key="sk-rotated-after-a-leak")


def hang_ends_once_both_creates_hung(kling):
    if kling.config.request_latency and kling.create_calls == 2:
        set_sim(kling, request_latency=0.0)
        # The hung calls still run on Kling's side once they wake up.
        wait_for(lambda: kling.created_count == 2)


WAITING_BUSY = "Kling is busy, will retry at"
LOST = "lost Kling's answer and is checking whether the job arrived"

CREATE_FAULTS = {
    "5000 server error": CreateFault(
        inject(500, 5000, "Internal server error", times=4),
        "succeeded",
        "Kling had a problem on its side",
        resends=2,
    ),
    "5001 maintenance": CreateFault(
        inject(503, 5001, "Service unavailable", times=4),
        "succeeded",
        "Kling had a problem on its side",
        resends=2,
    ),
    "5002 gateway timeout, task not made": CreateFault(
        inject(504, 5002, "Gateway timeout", times=4),
        "succeeded",
        LOST,
        lost_answer=True,
        resends=2,
    ),
    "5002 gateway timeout, task made anyway": CreateFault(
        inject(504, 5002, "Gateway timeout", times=2, take_effect=True),
        "succeeded",
        LOST,
        lost_answer=True,
    ),
    "1302 rate limit": CreateFault(
        inject(429, 1302, "Too many requests", times=4),
        "succeeded",
        "Kling asked the studio to slow down",
        resends=2,
    ),
    "1303 too many tasks running": CreateFault(
        inject(429, 1303, "Parallel task limit reached", times=4),
        "succeeded",
        "Waiting for a free slot",
        resends=2,
    ),
    "answer slower than the read timeout": CreateFault(
        read_timeout_of_one_second,
        "succeeded",
        LOST,
        sim={"create_latency": 1.5},
        lost_answer=True,
    ),
    "every call hangs, then Kling recovers": CreateFault(
        read_timeout_of_one_second,
        "succeeded",
        LOST,
        sim={"request_latency": 1.5},
        lost_answer=True,
        after_step=hang_ends_once_both_creates_hung,
    ),
    "connection dropped before Kling saw the request": CreateFault(
        disconnect(times=4, take_effect=False),
        "succeeded",
        LOST,
        lost_answer=True,
        resends=2,
    ),
    "connection dropped after Kling made the task": CreateFault(
        disconnect(times=2, take_effect=True),
        "succeeded",
        LOST,
        lost_answer=True,
    ),
    "a proxy's HTML error page": CreateFault(
        inject_raw(HTML_502, 502, times=4),
        "succeeded",
        LOST,
        lost_answer=True,
        resends=2,
    ),
    "truncated JSON after Kling made the task": CreateFault(
        inject_raw(TRUNCATED, 200, times=2, take_effect=True, ctype="application/json"),
        "succeeded",
        LOST,
        lost_answer=True,
    ),
    "an empty success answer": CreateFault(
        inject_raw(b"", 200, times=2, ctype="application/json"),
        "succeeded",
        LOST,
        lost_answer=True,
        resends=1,
    ),
    "401 after the key was revoked on Kling's side": CreateFault(
        key_revoked_on_klings_side, "failed", "Kling refused the studio's key"
    ),
    "401 code 1000 authentication failed": CreateFault(
        inject(401, 1000, "Authentication failed", times=2),
        "failed",
        "Kling refused the studio's key",
    ),
    "1102 no credits left": CreateFault(
        inject(429, 1102, "Resource pack exhausted", times=2),
        "failed",
        "The Kling account has run out of credits",
    ),
}


@pytest.mark.django_db
class TestFaultsWhenSendingAJob:
    @pytest.mark.parametrize("name", list(CREATE_FAULTS))
    def test_every_job_ends_right_once_and_in_plain_words(
        self, name, studio, start_kling, sim_clock, alice
    ):
        fault = CREATE_FAULTS[name]
        kling = start_kling(now=sim_clock, submitted_seconds=3, processing_seconds=10, **fault.sim)
        fault.arm(kling, studio)
        jobs = submit_through_form(alice, 2)

        after = None
        if fault.after_step is not None:
            after = lambda: fault.after_step(kling)  # noqa: E731
        schedule = drive(alice, jobs, sim_clock, after_step=after)

        # Every job ended, in the state the fault calls for.
        for job in jobs:
            job.refresh_from_db()
        assert {job.status for job in jobs} == {fault.outcome}
        assert all(job.next_check_at is None and job.finished_at for job in jobs)

        # None was made twice on Kling: one task per job that reached it, each its own.
        reached = [job.kling_task_id for job in jobs if job.kling_task_id]
        assert len(set(reached)) == len(reached)
        assert kling.created_count == len(reached)
        assert set(reached) <= set(kling.tasks)
        if fault.outcome == "succeeded":
            assert len(reached) == len(jobs)
        else:
            assert reached == []
            assert kling.create_calls == len(jobs)  # refused for good: never sent again

        if fault.lost_answer:
            # Kling's task list was read before anything was sent again.
            assert kling.list_count > 0
            assert kling.create_calls == len(jobs) * (1 + fault.resends)
        else:
            assert kling.list_count == 0

        # Each send again waited longer than the one before.
        for job in jobs:
            waits = schedule.resend_waits.get(job.pk, {})
            assert len(waits) == fault.resends, waits
            ordered = [waits[attempt] for attempt in sorted(waits)]
            assert all(w > 0.5 for w in ordered), ordered
            assert all(b > a + 0.5 for a, b in itertools.pairwise(ordered)), ordered

        # What the person read was plain, and said what was going on.
        for job in jobs:
            texts = schedule.texts[job.pk]
            for text in texts:
                assert_plain(text)
            assert any(fault.words in text for text in texts), texts
            page = alice.get(job.get_absolute_url())
            assert page.status_code == 200
            badge = "Ready" if fault.outcome == "succeeded" else "Failed"
            assert f'badge-{fault.outcome}">{badge}<' in page.content.decode()


# --- Faults on the status query -------------------------------------------------------------


@dataclass(frozen=True)
class PollFault:
    arm: Callable[[KlingSimulator, object, Job], None]
    #: How many checks in a row fail.
    failures: int = 3
    clear: Callable[[KlingSimulator], None] | None = None


def inject_get(http_status: int, code: int, message: str):
    def arm(kling, settings, job):
        kling.inject(
            "GET",
            f"/{job.kling_task_id}",
            http_status=http_status,
            code=code,
            message=message,
            times=3,
        )

    return arm


def inject_get_raw(body: bytes, http_status: int, ctype: str = "text/html"):
    def arm(kling, settings, job):
        path = f"/{job.kling_task_id}"
        kling.inject_raw(
            "GET", path, body=body, http_status=http_status, content_type=ctype, times=3
        )

    return arm


def disconnect_get(take_effect: bool):
    def arm(kling, settings, job):
        kling.inject_disconnect("GET", f"/{job.kling_task_id}", times=3, take_effect=take_effect)

    return arm


def hang_queries(kling, settings, job):
    settings.KLING_READ_TIMEOUT = 1
    set_sim(kling, request_latency=1.5)


def revoke_key(kling, settings, job):
    set_sim(kling, api_key="sk-rotated-after-a-leak")


POLL_FAULTS = {
    "5000 server error": PollFault(inject_get(500, 5000, "Internal server error")),
    "5001 maintenance": PollFault(inject_get(503, 5001, "Service unavailable")),
    "5002 gateway timeout": PollFault(inject_get(504, 5002, "Gateway timeout")),
    "1302 rate limit": PollFault(inject_get(429, 1302, "Too many requests")),
    "1303 too many tasks running": PollFault(inject_get(429, 1303, "Parallel task limit")),
    "queries hang past the read timeout": PollFault(
        hang_queries, failures=2, clear=lambda kling: set_sim(kling, request_latency=0.0)
    ),
    "connection dropped": PollFault(disconnect_get(take_effect=False)),
    "connection dropped after Kling answered": PollFault(disconnect_get(take_effect=True)),
    "a proxy's HTML error page": PollFault(inject_get_raw(HTML_502, 502)),
    "truncated JSON": PollFault(inject_get_raw(TRUNCATED, 200, "application/json")),
    "401 after the key was revoked, then restored": PollFault(
        revoke_key, clear=lambda kling: set_sim(kling, api_key="demo-key")
    ),
}


@pytest.mark.django_db
class TestFaultsWhenCheckingAJob:
    @pytest.mark.parametrize("name", list(POLL_FAULTS))
    def test_the_job_keeps_polling_with_growing_waits_and_finishes(
        self, name, studio, kling, sim_clock, alice
    ):
        fault = POLL_FAULTS[name]
        (job,) = submit_through_form(alice, 1)
        assert run_one_task()
        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        fault.arm(kling, studio, job)
        queries = kling.query_count

        def after_round(round_no: int) -> None:
            current = Job.objects.get(pk=job.pk)
            if round_no == 0:
                assert current.poll_errors >= 1
            if current.poll_errors:
                # Still waiting on Kling, never given up on.
                assert current.status == JobStatus.SENT
            if current.poll_errors >= fault.failures and fault.clear is not None:
                fault.clear(kling)

        schedule = drive(alice, [job], sim_clock, after_round=after_round)

        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert job.poll_errors == 0
        assert job.error_detail == ""
        assert kling.query_count > queries + fault.failures
        assert kling.create_calls == kling.created_count == 1
        waits = schedule.poll_waits[job.pk]
        ordered = [waits[n] for n in sorted(waits)]
        assert len(ordered) == fault.failures
        assert all(b > a + 0.5 for a, b in itertools.pairwise(ordered)), ordered
        for text in schedule.texts[job.pk]:
            assert_plain(text)


# --- Hanging answers, at the client ---------------------------------------------------------


def mock_client(handler) -> KlingClient:
    return KlingClient(
        base_url="https://kling.example",
        auth=ApiKeyAuth("sk-test"),
        transport=httpx.MockTransport(handler),
    )


def a_request() -> LipSyncRequest:
    speech = TextSpeech(text="Hello", voice_id="genshin_vindi2", voice_language="en")
    return LipSyncRequest(video=VideoSource(video_id="860327812345678901"), speech=speech)


class TestHangingAnswersAtTheClient:
    @pytest.mark.parametrize(
        ("exc", "kind", "create_outcome_unknown"),
        [
            (httpx.ReadTimeout, ErrorKind.TIMEOUT, True),
            (httpx.WriteTimeout, ErrorKind.TIMEOUT, True),
            (httpx.RemoteProtocolError, ErrorKind.NETWORK, True),
            (httpx.ReadError, ErrorKind.NETWORK, True),
            (httpx.ConnectTimeout, ErrorKind.TIMEOUT, False),
            (httpx.ConnectError, ErrorKind.NETWORK, False),
        ],
    )
    def test_a_call_that_never_answers_is_retryable_and_a_create_may_exist(
        self, exc, kind, create_outcome_unknown
    ):
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc("no answer", request=request)

        with mock_client(handler) as client:
            with pytest.raises(KlingError) as created:
                client.create_task(a_request())
            with pytest.raises(KlingError) as queried:
                client.get_task("860327812345678901")

        assert created.value.kind == queried.value.kind == kind
        assert created.value.retryable and queried.value.retryable
        assert created.value.outcome_unknown is create_outcome_unknown
        assert queried.value.outcome_unknown is False
        for err in (created.value, queried.value):
            assert "sk-test" not in str(err) + repr(err)
            assert "Traceback" not in err.user_message
        if create_outcome_unknown:
            assert "may or may not have been created" in created.value.user_message


# --- The worker killed in the middle of sending -------------------------------------------------


def kill_thread(thread: threading.Thread) -> None:
    """Stop a thread at its next Python instruction, as a killed process stops."""
    assert thread.ident is not None  # started
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit)
    )
    assert done == 1


@pytest.mark.django_db(transaction=True)
class TestAWorkerKilledWhileSending:
    def test_after_a_restart_the_job_is_found_on_kling_and_never_sent_twice(
        self, user, start_kling, sim_clock, worker
    ):
        kling = start_kling(
            now=sim_clock, submitted_seconds=3, processing_seconds=10, create_latency=1.0
        )
        job = make_job(user)
        # A worker claims the job's run ...
        DBTaskResult.objects.filter(status="READY").update(
            status="RUNNING", started_at=timezone.now()
        )
        died = threading.Event()

        def doomed_worker() -> None:
            try:
                lifecycle.job_advance(job_id=job.pk, due=job.next_check_at)
            except SystemExit:
                died.set()
            finally:
                connections.close_all()

        thread = threading.Thread(target=doomed_worker)
        thread.start()
        # ... its create reaches Kling, and the process dies while the answer is on its way.
        wait_for(lambda: kling.create_calls == 1)
        kill_thread(thread)
        thread.join(timeout=10)
        assert died.is_set()

        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert job.send_started_at is not None
        assert job.kling_task_id is None
        assert job.next_check_at is not None
        assert job.next_check_at > timezone.now()  # the dead worker's lease
        wait_for(lambda: kling.created_count == 1)  # Kling did make the task
        assert worker() == 0  # and nothing is scheduled any more

        # A restart after the lease ran out (time moved on by rewriting the job's clock).
        gone = timedelta(minutes=10)
        Job.objects.filter(pk=job.pk).update(
            next_check_at=job.next_check_at - gone, send_started_at=job.send_started_at - gone
        )
        assert lifecycle.job_sweep() == 1
        worker()

        job.refresh_from_db()
        (task_id,) = kling.tasks
        assert job.status == JobStatus.SENT
        assert job.kling_task_id == task_id
        assert kling.list_count > 0
        assert kling.create_calls == kling.created_count == 1
        assert "Found on Kling after a lost answer" in job.events.values_list("note", flat=True)

        sim_clock.advance(14)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert kling.created_count == 1


# --- The database away for a moment ---------------------------------------------------------


def a_closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DatabaseUnreachable:
    """The studio's database stops answering: the open connection is dropped and connecting
    again fails (SQLite: the database file's folder is gone; PostgreSQL: nothing listens on
    the port). Either way Django raises OperationalError, as in a real outage."""

    def __init__(self, gone_folder: Path) -> None:
        self.gone_folder = gone_folder

    def __enter__(self) -> DatabaseUnreachable:
        # ``connection`` is a proxy; the backend's own wrapper says what kind it is.
        wrapper = connections[connection.alias]
        assert not (isinstance(wrapper, SQLiteDatabaseWrapper) and wrapper.is_in_memory_db())
        self.saved = dict(connection.settings_dict)
        connection.close()
        if connection.vendor == "sqlite":
            connection.settings_dict["NAME"] = str(self.gone_folder / "db.sqlite3")
        else:
            connection.settings_dict["HOST"] = "127.0.0.1"
            connection.settings_dict["PORT"] = str(a_closed_port())
        with pytest.raises(OperationalError):
            connection.ensure_connection()
        return self

    def __exit__(self, *exc_info) -> None:
        connection.close()
        connection.settings_dict.update(self.saved)


@pytest.mark.django_db(transaction=True)
class TestTheDatabaseAwayForAMoment:
    def test_a_poll_gets_the_plain_error_page_and_the_next_one_works(self, user, tmp_path):
        job = make_job(user)
        browser = Client(raise_request_exception=False)
        browser.force_login(user)
        poll = {"HX-Request": "true"}
        assert browser.get(job.get_absolute_url(), headers=poll).status_code == 200

        with DatabaseUnreachable(tmp_path / "gone"):
            response = browser.get(job.get_absolute_url(), headers=poll)

        assert response.status_code == 500
        assert "500.html" in [t.name for t in response.templates]
        page = response.content.decode()
        assert "Something went wrong on our side" in page
        assert "Nothing you submitted is lost" in page
        for word in ("Traceback", "OperationalError", "unable to open", "refused", "SELECT"):
            assert word not in page

        response = browser.get(job.get_absolute_url(), headers=poll)
        assert response.status_code == 200
        assert "Waiting for the studio's worker" in unescape(response.content.decode())
