#!/usr/bin/env python
"""`make bench`: the studio's performance figures, each taken side by side with the bare view.

Everything runs on this machine: gunicorn as ``manage.py runstudio`` starts it, the real
background worker (``manage.py studio_worker``), the Kling simulator (in this process, so its
counters can be read directly) and load generators on loopback (httpx clients in threads, or
in one asyncio loop for the 200 pollers). The database is a throwaway SQLite file, or, with
``TEST_DATABASE_URL=postgres://…``, a throwaway PostgreSQL database made next to the one named
there (``<name>_bench``) and dropped at the end.

Page figures are *added time over the bare view*: ``/bench/bare/`` (``lipsync_site/
bench_urls.py``, mounted with ``BENCH_VIEWS=1``) runs in the same gunicorn, behind the same
middleware and login check, with the same database settings (persistent connections
included), and answers "ok"; each page is timed in the same rounds as the bare view.

The script prints a table (metric, measured, bare view, added, target, pass/fail) and writes
it into BENCHMARKS.md, in the section of the database it ran on (the ``bench:sqlite:…`` or
``bench:postgresql:…`` markers), keeping the rest of the file. A missed target is reported,
not an error: the exit status is non-zero only when the harness itself breaks.

For working on the bench: ``BENCH_ONLY=1,3`` runs some scenarios, ``BENCH_HISTORY_SIZES=
1000,20000`` seeds smaller histories; either leaves BENCHMARKS.md alone.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

USERNAME = "bench"
PASSWORD = "bench-password-not-secret"  # noqa: S105 - a throwaway account in a throwaway DB
HTMX = {"HX-Request": "true"}
BARE = "/bench/bare/"
# The whole run stops by itself after this, whatever hangs (seeding 1.1 million jobs and
# waiting for PostgreSQL's autovacuum take most of it).
RUN_LIMIT_SECONDS = 30 * 60
# gunicorn as `manage.py runstudio` starts it (tasks_app/management/commands/runstudio.py).
WEB_WORKERS, WEB_THREADS = 2, 4

# The targets of issue #14. Added milliseconds are over the bare view, in the same run.
HISTORY_SIZES = (1_000, 100_000, 1_000_000)
HISTORY_ROWS = 50  # rows on a history page
HISTORY_ROUNDS, HISTORY_WARMUP = 200, 5
HISTORY_MEDIAN_ADDED_MS, HISTORY_P95_ADDED_MS = 20.0, 30.0
HISTORY_FLAT_MS = 3.0  # the largest history's median within this of the smallest's
HISTORY_MAX_QUERIES = 8
HISTORY_MEMBERS = 4  # submitters per history team
HISTORY_ACTIVE = 10  # running jobs at the top of each history, whatever its size
POLL_CPU_ADDED_MS = 2.5
POLL_MAX_QUERIES = 4
CROWD_CLIENTS, CROWD_SECONDS, CROWD_P95_MS = 200, 60.0, 250.0
CROWD_TIMEOUT = 10.0  # a poll that takes longer counts as an error
CROWD_BARE_SECONDS = 30.0  # the same crowd on the bare view, as an instrument
POLL_EVERY = 2.0  # the job page's hx-trigger="every 2s"
WATCH_SECONDS, WATCHERS = 60.0, 50
REFRESH_JOBS, REFRESH_LATENCY, REFRESH_TARGET_SECONDS = 500, 0.2, 10.0
# Issue #16: two worker processes take at most this share of one's time per job (the simulator
# here sets no limit of Kling's on queries, so none binds).
REFRESH_TWO_WORKERS_RATIO = 0.6
FORM_POST_P95_SECONDS = 0.2
RSS_LIMIT_MB = 120

# Seeding: jobs a seeding process makes per task, and how many processes.
SEED_CHUNK = 20_000
SEED_PROCESSES = max(1, min(2, os.cpu_count() or 1))


class HarnessError(RuntimeError):
    """The benchmark itself broke (as opposed to a figure missing its target)."""


@dataclass(frozen=True)
class Row:
    metric: str
    measured: str
    bare: str  # the bare view's figure, or "-"
    added: str  # measured minus bare, or "-"
    target: str
    passed: bool | None  # None: shown for information, no target

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "-"}[self.passed]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)  # shown with the machine's

    def add(self, *args: Any) -> None:
        self.rows.append(Row(*args))
        row = self.rows[-1]
        print(f"  -> {row.metric}: {row.measured} ({row.verdict})", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)


# --- Small helpers -----------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def plus_ms(seconds: float) -> str:
    return f"{seconds * 1000:+.1f} ms"


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; return the seconds it took, or raise HarnessError."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise HarnessError(f"no VmRSS for pid {pid}")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far.

    On a machine shared with other work, CPU time per request is steadier than wall time.
    """
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def short_sql(sql: str, width: int = 190) -> str:
    """A query without its column list and literals (long, and they say little)."""
    sql = re.sub(r"^SELECT .*? FROM", "SELECT … FROM", sql)
    return re.sub(r"'[^']*'", "?", sql)[:width]


def children_of(pid: int) -> list[int]:
    """Child pids, read from /proc (gunicorn's web workers are the master's children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces; the parent pid is the 2nd field after ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def env_ints(name: str) -> tuple[int, ...]:
    """A comma-separated list of integers from the environment (empty when unset)."""
    raw = os.environ.get(name, "")
    try:
        return tuple(int(part.replace("_", "")) for part in raw.split(",") if part.strip())
    except ValueError:
        raise HarnessError(f"{name} must be comma-separated integers, not {raw!r}") from None


# --- Processes -------------------------------------------------------------------------------


class Processes:
    """Every child process the bench starts, each in its own session, stopped by pid."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        logfile = (self.logdir / f"{name}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
            argv,
            cwd=ROOT,
            env=env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running[name] = process
        return process

    def log_text(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, *, timeout: float = 15.0) -> None:
        process = self.running.pop(name, None)
        if process is None or process.poll() is not None:
            return
        # SIGTERM lets a worker finish the task it is running; after that, it is killed.
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def check_alive(self, name: str) -> None:
        process = self.running[name]
        if process.poll() is not None:
            tail = self.log_text(name)[-3000:]
            raise HarnessError(f"{name} exited with code {process.returncode}:\n{tail}")


def base_env(tmp: Path, sim_port: int, database_url: str) -> dict[str, str]:
    """The environment of every studio process: the bench's database, demo Kling, the bare view.

    Everything else (persistent connections, their health checks, the middleware) is the
    project's own settings, as a deployment has them.
    """
    env = dict(os.environ)
    # `make bench` sets these three; running the script directly still works.
    env.setdefault("SECRET_KEY", "bench-only-secret-key")
    env.setdefault("DEBUG", "0")
    env.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1")
    env |= {
        "DJANGO_SETTINGS_MODULE": "lipsync_site.settings",
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(tmp / "media"),
        "KLING_DEMO": "1",
        "KLING_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}",
        "BENCH_VIEWS": "1",
        # Plain HTTP on loopback: a Secure session cookie would never be sent back.
        "SECURE_COOKIES": "0",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "SITE_URL": "",  # no callbacks: the worker's own schedule is what is measured
        # The media scenario's file server is on loopback, which the fetch guard refuses
        # unless it is allow-listed.
        "MEDIA_FETCH_ALLOWED_HOSTS": "127.0.0.1",
    }
    for name in ("KLING_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_API_BASE_URL"):
        env.pop(name, None)
    return env


def start_web(procs: Processes, env: dict[str, str], port: int) -> str:
    """gunicorn with the arguments `manage.py runstudio` gives it (its access log included)."""
    procs.start(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "lipsync_site.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WEB_WORKERS),
            "--threads",
            str(WEB_THREADS),
            "--access-logfile",
            "-",
        ],
        env,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        procs.check_alive("web")
        try:
            return httpx.get(f"{base}/accounts/login/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, timeout=60, what="gunicorn to answer")
    return base


@contextmanager
def studio_workers(
    procs: Processes, env: dict[str, str], count: int, threads: int | None = None
) -> Iterator[list[int]]:
    """Run ``count`` real worker processes (``threads`` each, default: the setting's); yield
    their pids once each is polling the queue."""
    names = [f"worker{i}" for i in range(count)]
    command = [sys.executable, "manage.py", "studio_worker"]
    if threads:
        command += ["--threads", str(threads)]
    for name in names:
        procs.start(name, command, env)

    def all_ready() -> bool:
        # db_worker logs its start-up line at INFO whatever LOG_LEVEL says.
        for name in names:
            procs.check_alive(name)
        return all("Starting worker" in procs.log_text(name) for name in names)

    try:
        wait_for(all_ready, timeout=60 + 5 * count, what=f"{count} worker(s) to start")
        yield [procs.running[name].pid for name in names]
    finally:
        for name in names:
            procs.stop(name)


@contextmanager
def simulator(port: int, **config: Any) -> Iterator[Any]:
    """The Kling simulator in this process, on the port every studio process was told about."""
    from tasks_app.simulator import KlingSimulator, SimulatorConfig

    sim = KlingSimulator(SimulatorConfig(host="127.0.0.1", port=port, **config)).start()
    try:
        yield sim
    finally:
        sim.stop()


# --- The database ------------------------------------------------------------------------------


@dataclass
class Database:
    """The throwaway database of this run, and how to describe and drop it."""

    vendor: str  # "sqlite" or "postgresql", as Django names them
    studio_url: str  # DATABASE_URL of every studio process
    label: str = ""
    drop: Callable[[], None] | None = None

    @property
    def title(self) -> str:
        return {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[self.vendor]


def database_for_run(tmp: Path) -> Database:
    """SQLite in ``tmp``, unless TEST_DATABASE_URL names a PostgreSQL server."""
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url.startswith(("postgres://", "postgresql://", "pgsql://")):
        return Database("postgresql", url)
    if url:
        log(f"TEST_DATABASE_URL is not PostgreSQL ({urlsplit(url).scheme}); using SQLite")
    return Database("sqlite", f"sqlite:///{tmp / 'bench.sqlite3'}")


def create_database(db: Database, env: dict[str, str]) -> None:
    """Make the run's tables; on PostgreSQL, in a throwaway database first.

    PostgreSQL: Django's own test-database machinery makes ``<name>_bench`` on the server of
    TEST_DATABASE_URL (dropping one a killed run left behind) and drops it at the end, so the
    database named there is never written to. Every studio process is then pointed at it.
    """
    from django.core.management import call_command
    from django.db import connection

    if db.vendor == "sqlite":
        call_command("migrate", interactive=False, verbosity=0)
        version = ".".join(str(n) for n in connection.get_database_version())
        db.label = f"SQLite {version} (WAL), a throwaway file"
        return
    given = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{given}_bench"
    try:
        name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    except Exception as exc:
        raise HarnessError(f"cannot create a throwaway database next to {given!r}: {exc}") from exc

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        connection.creation.destroy_test_db(given, verbosity=0)

    db.drop = drop
    parts = urlsplit(db.studio_url)
    db.studio_url = urlunsplit(parts._replace(path=f"/{name}"))
    env["DATABASE_URL"] = os.environ["DATABASE_URL"] = db.studio_url
    version = ".".join(str(n) for n in connection.get_database_version())
    db.label = f"PostgreSQL {version}, a throwaway database ({name}) on {parts.hostname}"


def connection_settings() -> str:
    from django.conf import settings

    database = settings.DATABASES["default"]
    age = database.get("CONN_MAX_AGE", 0)
    checks = "on" if database.get("CONN_HEALTH_CHECKS") else "off"
    kept = "none (a connection per request)" if age == 0 else f"{age} s"
    return f"CONN_MAX_AGE {kept}, health checks {checks}"


# --- Django, in this process -----------------------------------------------------------------


def setup_django(env: dict[str, str], db: Database) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    create_database(db, env)
    # The pages name static files through whitenoise's manifest, as in production.
    call_command("collectstatic", interactive=False, verbosity=0)


def make_team(name: str = "Bench team") -> Any:
    from tasks_app.models import Team

    return Team.objects.create(name=name)


def add_member(team: Any, username: str, *, can_log_in: bool = True) -> Any:
    from django.contrib.auth import get_user_model

    from tasks_app.models import Membership, TeamRole

    # Hashing a password costs a third of a second: only people who log in over HTTP have one.
    person = get_user_model().objects.create_user(
        username, password=PASSWORD if can_log_in else None
    )
    Membership.objects.create(team=team, user=person, role=TeamRole.ADMIN)
    return person


def new_job(team: Any, person: Any, **fields: Any) -> Any:
    """An unsaved text job as the form would store it, running at Kling; ``fields`` override."""
    from tasks_app.models import Job, JobMode, JobStatus

    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "team": team,
        "submitted_by": person,
        "submission_key": uuid.uuid4(),
        "mode": JobMode.TEXT,
        "video_id": "bench_video",
        "text": "Hello from the benchmark",
        "voice_id": "genshin_vindi2",
        "voice_language": "en",
        "voice_speed": Decimal("1.0"),
        "status": JobStatus.PROCESSING,
        "status_detail": "Kling is making the video.",
        "created_at": now,
        "sent_at": now,
        "processing_at": now,
    }
    return Job(**(values | fields))


def in_process_client(person: Any) -> Any:
    from django.test import Client

    # The Makefile's ALLOWED_HOSTS has no "testserver".
    client = Client(HTTP_HOST="localhost")
    client.force_login(person)
    return client


def count_queries(
    client: Any, path: str, headers: dict[str, str] | None = None
) -> list[tuple[str, float]]:
    """The SQL one request runs, each with its execution time (in this process, through the
    full middleware stack)."""
    from django.db import connection

    queries: list[tuple[str, float]] = []

    def timed(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, *args)
        finally:
            queries.append((sql, time.perf_counter() - began))

    with connection.execute_wrapper(timed):
        response = client.get(path, headers=headers or {})
    if response.status_code != 200:
        raise HarnessError(f"in-process GET {path} answered {response.status_code}")
    return queries


# --- Seeding the histories ---------------------------------------------------------------------
#
# A history of a million jobs, through the ORM only: `bulk_create` in seeding processes (the
# ORM's time goes to preparing each row's 50 columns in Python, so two processes on two cores
# take about half as long). Rows are built by copying one model instance's fields rather than
# through `Job(...)`, which costs a third of the time again. On SQLite each INSERT is its own
# transaction, begun DEFERRED, so one process prepares its next rows while the other writes.


@dataclass(frozen=True)
class SeedTask:
    team_id: int
    member_ids: tuple[int, ...]
    start: int  # index of the first job (0 is the newest of the team)
    count: int
    now: float  # Unix time the histories end at
    key_base: int  # submission keys are key_base + index: unique, and in index order


def _seed_process_init() -> None:
    """A seeding process: Django set up from the environment the bench process set."""
    import django

    django.setup()
    from django.db import connection

    if connection.vendor == "sqlite":
        options = connection.settings_dict.setdefault("OPTIONS", {})
        options["transaction_mode"] = "DEFERRED"


@cache
def _job_template() -> dict[str, Any]:
    """The fields every seeded job shares, as an instance's attributes."""
    from tasks_app.models import Job, JobMode, JobStatus

    job = Job(
        mode=JobMode.TEXT,
        video_id="bench_video",
        voice_id="genshin_vindi2",
        voice_language="en",
        voice_speed=Decimal("1.0"),
        status=JobStatus.SUCCEEDED,
        kling_status="succeed",
    )
    values = dict(job.__dict__)
    del values["_state"]
    return values


def history_job(task: SeedTask, index: int) -> Any:
    """Job number ``index`` of a team's history (0 is the newest): a mix like a real one.

    The newest HISTORY_ACTIVE are running; of the rest, 6% failed, 3% were cancelled, 1%
    are archived, the others succeeded. One in ten used an audio track. A job a minute.
    """
    from django.db.models.base import ModelState

    from tasks_app.models import Job, JobMode, JobStatus

    created = datetime.fromtimestamp(task.now - 60 * (index + 1), UTC)
    values = dict(_job_template())
    values |= {
        "team_id": task.team_id,
        "submitted_by_id": task.member_ids[index % len(task.member_ids)],
        "submission_key": uuid.UUID(int=task.key_base + index),
        "text": f"Benchmark line number {index}",
        "created_at": created,
        "sent_at": created + timedelta(seconds=2),
        "processing_at": created + timedelta(seconds=5),
        "kling_task_id": f"bench-{task.team_id:04d}-{index:09d}",
    }
    if index % 10 == 5:
        values |= {
            "mode": JobMode.AUDIO,
            "text": "",
            "voice_id": "",
            "voice_language": "",
            "voice_speed": None,
            "audio_url": f"https://example.com/audio/{index}.mp3",
        }
    if index < HISTORY_ACTIVE:
        values |= {"status": JobStatus.PROCESSING, "kling_status": "processing"}
        if index % 3 == 0:
            values |= {
                "status": JobStatus.PENDING,
                "kling_status": "",
                "kling_task_id": None,
                "sent_at": None,
                "processing_at": None,
            }
        values["status_detail"] = "Kling is making the video."
    else:
        finished = created + timedelta(seconds=60 + index % 90)
        values["finished_at"] = finished
        kind = index % 100
        if kind < 6:
            values |= {
                "status": JobStatus.FAILED,
                "kling_status": "failed",
                "status_detail": "Kling could not make this video.",
                "error_detail": "The model did not detect a human",
            }
        elif kind < 9:
            values |= {"status": JobStatus.CANCELLED, "status_detail": "Cancelled."}
        else:
            values |= {
                "status_detail": "Your lip-synced video is ready.",
                "result_video_id": f"result-{index}",
                "result_duration": 5.0,
                "credits": Decimal("1.00"),
            }
            if kind == 9:
                values["archived_at"] = finished + timedelta(days=1)
    job = Job.__new__(Job)
    job.__dict__.update(values)
    job._state = ModelState()
    return job


def _seed_chunk(task: SeedTask) -> int:
    """Store jobs ``task.start`` to ``task.start + task.count`` of a team's history."""
    from django.db import connection, transaction

    from tasks_app.models import Job

    if connection.vendor == "sqlite":
        # One INSERT (as many rows as SQLite takes parameters for) per transaction.
        fields = [f for f in Job._meta.concrete_fields if not f.primary_key]
        step = connection.ops.bulk_batch_size(fields, [None] * 1000)
        atomic = False
    else:
        step, atomic = 1000, True
    end = task.start + task.count
    with transaction.atomic() if atomic else nullcontext():
        for first in range(task.start, end, step):
            jobs = [history_job(task, i) for i in range(first, min(end, first + step))]
            Job.objects.bulk_create(jobs, batch_size=step)
    return task.count


def seed_histories(teams: list[tuple[Any, list[Any], int]]) -> float:
    """Give each (team, members, size) a history of ``size`` jobs; return the seconds it took."""
    from django.db import connections

    now = time.time()
    tasks = [
        SeedTask(
            team_id=team.pk,
            member_ids=tuple(m.pk for m in members),
            start=start,
            count=min(SEED_CHUNK, size - start),
            now=now,
            key_base=team.pk << 40,
        )
        for team, members, size in teams
        for start in range(0, size, SEED_CHUNK)
    ]
    total = sum(task.count for task in tasks)
    log(f"    seeding {total:,} jobs in {SEED_PROCESSES} processes")
    began = time.monotonic()
    # Spawned, not forked: each process sets Django up and opens its own connection.
    connections.close_all()
    pool = ProcessPoolExecutor(
        SEED_PROCESSES,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_seed_process_init,
    )
    try:
        futures = [pool.submit(_seed_chunk, task) for task in tasks]
        done, shown = 0, 0
        for future in as_completed(futures):
            done += future.result()
            if done * 10 // total > shown:
                shown = done * 10 // total
                log(f"    {done:,} of {total:,} jobs ({time.monotonic() - began:.0f} s)")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return time.monotonic() - began


@cache
def _table_stats_model() -> Any:
    """PostgreSQL's statistics of one table (the pg_stat_user_tables view), as a model."""
    from django.db import models

    class TableStats(models.Model):
        relid = models.BigIntegerField(primary_key=True)
        relname = models.CharField(max_length=64)
        n_live_tup = models.BigIntegerField()
        n_mod_since_analyze = models.BigIntegerField()
        n_ins_since_vacuum = models.BigIntegerField()
        last_autovacuum = models.DateTimeField(null=True)
        last_autoanalyze = models.DateTimeField(null=True)

        class Meta:
            app_label = "bench"
            managed = False
            db_table = "pg_stat_user_tables"

        def __str__(self) -> str:
            return self.relname

    return TableStats


def wait_for_autovacuum(limit: float = 240.0) -> str:
    """On PostgreSQL, wait until autovacuum has nothing left to do on the jobs table.

    A history that grew over months has been vacuumed and analysed as it grew; one loaded a
    minute ago has neither planner statistics nor a visibility map, and autovacuum would start
    on it in the middle of the measurements. So the bench waits for autovacuum to catch up,
    as it does on a live server: until the rows added since its last vacuum and analyse are
    below the thresholds that would start another (PostgreSQL's defaults: 1,000 + 20% of the
    table inserted, 50 + 10% changed).
    """
    from django.db import connection

    from tasks_app.models import Job

    if connection.vendor != "postgresql":
        return ""
    stats = _table_stats_model().objects.filter(relname=Job._meta.db_table)
    began = time.monotonic()
    while True:
        row = stats.first()
        settled = (
            row is not None
            and row.last_autovacuum is not None
            and row.last_autoanalyze is not None
            and row.n_ins_since_vacuum <= 1000 + 0.2 * row.n_live_tup
            and row.n_mod_since_analyze <= 50 + 0.1 * row.n_live_tup
        )
        waited = time.monotonic() - began
        if settled and row is not None:
            return (
                f"caught up {waited:.0f} s after seeding; {row.n_ins_since_vacuum:,} of "
                f"{row.n_live_tup:,} rows inserted since its last vacuum of the jobs table "
                "(not yet marked all-visible for index-only scans)"
            )
        if waited > limit:
            return f"autovacuum had not caught up {limit:.0f} s after seeding (measured anyway)"
        time.sleep(2)


# --- Load generation over HTTP -----------------------------------------------------------------


@dataclass
class Load:
    latencies: list[float]
    errors: int
    seconds: float


def login(base: str, username: str) -> dict[str, str]:
    """Log in through the real form; return the cookies a browser would keep."""
    with httpx.Client(base_url=base, timeout=10) as client:
        page = client.get("/accounts/login/")
        token = csrf_token(page.text)
        answer = client.post(
            "/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        )
        if answer.status_code != 302 or "sessionid" not in client.cookies:
            raise HarnessError(f"log-in failed: HTTP {answer.status_code}")
        return dict(client.cookies)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    if match is None:
        raise HarnessError("no CSRF token in the page")
    return match.group(1)


def fresh_form(client: httpx.Client, path: str) -> dict[str, str]:
    """A form page's CSRF token and fresh submission key, as a browser would post them."""
    form = client.get(path)
    key = re.search(r'name="submission_key" value="([^"]+)"', form.text)
    if form.status_code != 200 or key is None:
        raise HarnessError(f"GET {path} answered {form.status_code}")
    return {"csrfmiddlewaretoken": csrf_token(form.text), "submission_key": key.group(1)}


def hammer(
    base: str,
    path: str,
    cookies: dict[str, str],
    *,
    threads: int,
    seconds: float,
    max_requests: int,
    headers: dict[str, str] | None = None,
) -> Load:
    """As many GETs as ``threads`` keep-alive clients manage, bounded in time and count."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start_gate = threading.Barrier(threads + 1)
    deadline = 0.0

    def run() -> None:
        nonlocal errors
        with httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=30) as client:
            start_gate.wait()
            while time.monotonic() < deadline:
                began = time.perf_counter()
                status = client.get(path).status_code
                took = time.perf_counter() - began
                with lock:
                    if status == 200:
                        latencies.append(took)
                    else:
                        errors += 1
                    if len(latencies) + errors >= max_requests:
                        return

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + seconds
    began = time.monotonic()
    start_gate.wait()
    for worker in workers:
        worker.join(seconds + 60)
    return Load(latencies, errors, time.monotonic() - began)


@dataclass(frozen=True)
class Series:
    """Something timed by `interleaved_latencies`: a path, as one logged-in person."""

    name: str
    path: str
    cookies: dict[str, str]


def interleaved_latencies(
    base: str, series: list[Series], *, rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Each series once per round, in turn, so each is timed without queueing behind the
    others and drift on the machine hits all of them alike. One keep-alive connection per
    series (so one web process serves all of its requests, warmed by the warm-up rounds);
    the order rotates from round to round."""
    timings: dict[str, list[float]] = {s.name: [] for s in series}
    clients = {s.name: httpx.Client(base_url=base, cookies=s.cookies, timeout=30) for s in series}
    try:
        for index in range(warmup + rounds):
            shift = index % len(series)
            for s in series[shift:] + series[:shift]:
                began = time.perf_counter()
                response = clients[s.name].get(s.path)
                took = time.perf_counter() - began
                if response.status_code != 200:
                    raise HarnessError(f"GET {s.path} ({s.name}) answered {response.status_code}")
                if index >= warmup:
                    timings[s.name].append(took)
    finally:
        for client in clients.values():
            client.close()
    return timings


def post_text_job(client: httpx.Client, text: str) -> tuple[int, float]:
    """Submit the job form as a person would; return the new job's id and the POST's time."""
    data = fresh_form(client, "/tasks/new/") | {
        "video_source": "video_id",
        "video_id": "bench_video",
        "mode": "text2video",
        "text": text,
        "voice_id": "genshin_vindi2",
        "voice_language": "en",
        "voice_speed": "1.0",
        "consent": "on",
    }
    began = time.perf_counter()
    answer = client.post("/tasks/new/", data=data)
    took = time.perf_counter() - began
    match = re.fullmatch(r"/tasks/(\d+)/", answer.headers.get("location", ""))
    if answer.status_code != 302 or match is None:
        errors = re.findall(r'class="errorlist[^>]*>(.*?)</(?:ul|div)>', answer.text, re.S)
        raise HarnessError(f"POST /tasks/new/ answered {answer.status_code}: {errors}")
    return int(match.group(1)), took


def poll_once(client: httpx.Client, path: str) -> int:
    """GET ``path``, retrying once on a dropped connection, as browsers do for a GET.

    gunicorn closes a kept-alive connection after 2 s idle, the very period of the page's
    poll, so now and then a request meets a connection the server is just closing.
    A status of 0 stands for a poll that failed twice over the network.
    """
    for attempt in (1, 2):
        try:
            return client.get(path).status_code
        except httpx.TransportError:
            if attempt == 2:
                return 0
    return 0


# A poll's outcome in the crowd: an HTTP status, or one of these.
TIMEOUT, NETWORK = -1, 0
POLL_OK = {200, 286}  # 286: htmx's "stop polling", sent once the job has finished


async def poll_once_async(client: httpx.AsyncClient, path: str) -> tuple[int, bool]:
    """GET ``path`` as `poll_once` does; return the outcome and whether it was retried."""
    for attempt in (1, 2):
        try:
            return (await client.get(path)).status_code, attempt == 2
        except httpx.TimeoutException:
            return TIMEOUT, attempt == 2
        except httpx.TransportError:
            if attempt == 2:
                return NETWORK, True
    return NETWORK, True


@dataclass
class Crowd:
    outcomes: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # of every poll, errors included
    retried: int = 0


async def crowd_poll(
    base: str, cookies: dict[str, str], paths: list[str], *, seconds: float, every: float
) -> Crowd:
    """One client per path, each polling it every ``every`` s for ``seconds`` s, as an open
    job page does; their starts spread over the first period, like people arriving. All in
    one thread: one connection per client, no thread per client."""
    crowd = Crowd()
    loop = asyncio.get_running_loop()
    # Made before the clock starts, sharing one TLS context (never used on loopback HTTP):
    # httpx otherwise loads the CA bundle for each client, 20 ms that would stall the loop,
    # and so every request in flight, 200 times over.
    tls = ssl.create_default_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(
            base_url=base,
            cookies=cookies,
            headers=HTMX,
            timeout=CROWD_TIMEOUT,
            limits=limits,
            verify=tls,
        )
        for _ in paths
    ]

    async def poll(number: int, http: httpx.AsyncClient, path: str) -> None:
        await asyncio.sleep(every * number / len(paths))
        next_at = loop.time()
        deadline = next_at + seconds
        while loop.time() < deadline:
            began = time.perf_counter()
            outcome, retried = await poll_once_async(http, path)
            crowd.latencies.append(time.perf_counter() - began)
            crowd.outcomes.append(outcome)
            crowd.retried += retried
            next_at += every
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    try:
        await asyncio.gather(
            *(
                poll(n, http, path)
                for n, (http, path) in enumerate(zip(clients, paths, strict=True))
            )
        )
    finally:
        for http in clients:
            await http.aclose()
    return crowd


# --- The scenarios ---------------------------------------------------------------------------


@dataclass
class Bench:
    base: str
    cookies: dict[str, str]
    person: Any
    team: Any
    procs: Processes
    env: dict[str, str]
    sim_port: int
    report: Report
    history_sizes: tuple[int, ...]

    @property
    def worker_threads(self) -> int:
        from django.conf import settings

        return settings.WORKER_THREADS

    def member(self, username: str) -> dict[str, str]:
        """A new member of the team, logged in; their cookies."""
        add_member(self.team, username)
        return login(self.base, username)

    def web_pids(self) -> list[int]:
        return children_of(self.procs.running["web"].pid)


def cancel_leftovers() -> None:
    """End the scenario's running jobs and empty the queue, so the next scenario starts clean
    (a worker started later would otherwise pick them up and call the simulator)."""
    from django_tasks_db.models import DBTaskResult

    from tasks_app.models import ACTIVE_STATUSES, Job, JobStatus

    Job.objects.filter(status__in=ACTIVE_STATUSES).update(
        status=JobStatus.CANCELLED, next_check_at=None
    )
    DBTaskResult.objects.all().delete()


def bench_status_poll(b: Bench) -> None:
    """1. The job page's status poll: server CPU per request over the bare view's, its SQL."""
    log("1/9 status poll vs bare view")
    job = new_job(b.team, b.person, kling_task_id="bench-partial")
    job.save()
    # As the page polls: saying what its timeline shows (a change sends the timeline too).
    poll = f"/tasks/{job.pk}/?shown=processing"

    client = in_process_client(b.person)
    cold = count_queries(client, poll, HTMX)
    warm = count_queries(client, poll, HTMX)
    bare_queries = count_queries(client, BARE)

    # Short interleaved rounds, so drift on the machine (other work, CPU boost) hits both.
    threads, rounds, seconds = 8, 6, 2.5
    web = b.web_pids()
    views = {"bare": (BARE, None), "poll": (poll, HTMX)}
    requests = dict.fromkeys(views, 0)
    took = dict.fromkeys(views, 0.0)
    cpu = dict.fromkeys(views, 0.0)
    for path, headers in views.values():  # warm-up
        hammer(
            b.base, path, b.cookies, threads=threads, seconds=1, max_requests=10**4, headers=headers
        )
    for _ in range(rounds):
        for kind, (path, headers) in views.items():
            cpu_before = cpu_seconds(web)
            load = hammer(
                b.base,
                path,
                b.cookies,
                threads=threads,
                seconds=seconds,
                max_requests=10**5,
                headers=headers,
            )
            if load.errors:
                raise HarnessError(f"{load.errors} non-200 answers from {path} under load")
            cpu[kind] += cpu_seconds(web) - cpu_before
            requests[kind] += len(load.latencies)
            took[kind] += load.seconds
    rps = {kind: requests[kind] / took[kind] for kind in views}
    cpu_per = {kind: cpu[kind] / requests[kind] for kind in views}
    added = cpu_per["poll"] - cpu_per["bare"]
    b.report.add(
        "Status poll: server CPU per request",
        ms(cpu_per["poll"]),
        ms(cpu_per["bare"]),
        plus_ms(added),
        f"<= bare + {POLL_CPU_ADDED_MS} ms",
        added * 1000 <= POLL_CPU_ADDED_MS,
    )
    most = max(len(warm), len(cold))
    b.report.add(
        "Status poll: SQL queries",
        str(len(warm)) if len(cold) == len(warm) else f"{len(warm)} ({len(cold)} first)",
        str(len(bare_queries)),
        f"{len(warm) - len(bare_queries):+d}",
        f"<= {POLL_MAX_QUERIES}",
        most <= POLL_MAX_QUERIES,
    )
    b.report.note(
        f"Status poll (`GET /tasks/<id>/` with `HX-Request`, a running job): {threads} client "
        f"threads, {rounds} interleaved rounds of {seconds} s per view. Server CPU is the "
        f"gunicorn workers' user+system time (/proc) over {requests['poll']:,} polls and "
        f"{requests['bare']:,} bare requests, divided by their number. Throughput, for "
        f"information: {rps['poll']:.0f} polls/s against {rps['bare']:.0f} bare requests/s "
        f"(wall time, moved by other work on the machine). Queries: {len(warm)} once warm, "
        f"{len(cold)} on this process's first poll:\n"
        + "\n".join(f"    - `{short_sql(sql)}`" for sql, _ in warm)
    )


def bench_history(b: Bench) -> None:
    """2. The history page at each size, in the same rounds as the bare view; its SQL."""
    sizes = b.history_sizes
    log(f"2/9 history page at {', '.join(f'{s:,}' for s in sizes)} jobs")
    histories = []
    for size in sizes:
        team = make_team(f"History of {size:,}")
        members = [
            add_member(team, f"history{size}-{k}", can_log_in=k == 0)
            for k in range(HISTORY_MEMBERS)
        ]
        histories.append((team, members, size))
    seeding = seed_histories(histories)
    total = sum(sizes)
    log(f"    {total:,} jobs stored in {seeding:.0f} s")
    b.report.facts.append(
        (
            "History seeded",
            f"{total:,} jobs in {seeding:.0f} s (ORM `bulk_create`, {SEED_PROCESSES} processes)",
        )
    )
    vacuum = wait_for_autovacuum()
    if vacuum:
        log(f"    {vacuum}")
        b.report.facts.append(("Autovacuum", vacuum))

    series = []
    queries: dict[int, list[tuple[str, float]]] = {}
    for _team, members, size in histories:
        person = members[0]
        client = in_process_client(person)
        count_queries(client, "/tasks/")  # warm this process's caches first
        queries[size] = count_queries(client, "/tasks/")
        cookies = login(b.base, person.get_username())
        page = httpx.get(f"{b.base}/tasks/", cookies=cookies, timeout=30)
        rows = page.text.count('id="job-row-')
        if page.status_code != 200 or rows != HISTORY_ROWS:
            raise HarnessError(
                f"history of {size:,}: HTTP {page.status_code} with {rows} rows, not {HISTORY_ROWS}"
            )
        series.append(Series(f"{size}", "/tasks/", cookies))
    bare_queries = count_queries(in_process_client(histories[0][1][0]), BARE)
    series.insert(0, Series("bare", BARE, series[0].cookies))
    timings = interleaved_latencies(b.base, series, rounds=HISTORY_ROUNDS, warmup=HISTORY_WARMUP)
    bare = timings["bare"]
    median = {size: statistics.median(timings[f"{size}"]) for size in sizes}
    p95 = {size: percentile(timings[f"{size}"], 95) for size in sizes}
    bare_median, bare_p95 = statistics.median(bare), percentile(bare, 95)
    for size in sizes:
        added = median[size] - bare_median
        b.report.add(
            f"History page median, {size:,} jobs",
            ms(median[size]),
            ms(bare_median),
            plus_ms(added),
            f"<= bare + {HISTORY_MEDIAN_ADDED_MS:.0f} ms",
            added * 1000 <= HISTORY_MEDIAN_ADDED_MS,
        )
    for size in sizes:
        added = p95[size] - bare_p95
        b.report.add(
            f"History page p95, {size:,} jobs",
            ms(p95[size]),
            ms(bare_p95),
            plus_ms(added),
            f"<= bare + {HISTORY_P95_ADDED_MS:.0f} ms",
            added * 1000 <= HISTORY_P95_ADDED_MS,
        )
    small, large = sizes[0], sizes[-1]
    growth = median[large] - median[small]
    b.report.add(
        f"History median, {large:,} vs {small:,} jobs",
        ms(median[large]),
        "-",
        f"{plus_ms(growth)} over {small:,}",
        f"within {HISTORY_FLAT_MS:.0f} ms of {small:,}",
        abs(growth) * 1000 <= HISTORY_FLAT_MS,
    )
    counts = [len(queries[size]) for size in sizes]
    b.report.add(
        "History page SQL queries",
        " / ".join(str(n) for n in counts) + " (" + " / ".join(f"{s:,}" for s in sizes) + ")",
        str(len(bare_queries)),
        f"{max(counts) - len(bare_queries):+d}",
        f"<= {HISTORY_MAX_QUERIES} at every size",
        max(counts) <= HISTORY_MAX_QUERIES,
    )
    slowest = sorted(queries[large], key=lambda q: q[1], reverse=True)
    b.report.note(
        f"History page (`GET /tasks/`, page 1, {HISTORY_ROWS} rows): one team per size, each "
        f"with {HISTORY_MEMBERS} submitters; the newest {HISTORY_ACTIVE} jobs of each are "
        "running, the rest 90% succeeded, 6% failed, 3% cancelled, 1% archived, a job a "
        f"minute. One client, {HISTORY_ROUNDS} rounds after {HISTORY_WARMUP} warm-up rounds, "
        "each round one request of each size and one of the bare view, in rotating order, "
        "each series on its own keep-alive connection. Medians: "
        + ", ".join(f"{s:,}: {ms(median[s])}" for s in sizes)
        + f"; bare view {ms(bare_median)} (p95 {ms(bare_p95)}). SQL time of one page "
        "(in-process, the sum of its queries' execute times): "
        + ", ".join(f"{s:,}: {sum(t for _, t in queries[s]) * 1000:.1f} ms" for s in sizes)
        + ". "
        f"The {len(queries[large])} queries at {large:,} jobs, slowest first (time to "
        "execute, in-process, one request; SQLite's row fetching comes after it):\n"
        + "\n".join(
            f"    - {took * 1000:.2f} ms `{short_sql(sql, 400 if n == 0 else 190)}`"
            for n, (sql, took) in enumerate(slowest)
        )
    )
    # The histories' running jobs would be picked up by the worker of later scenarios.
    cancel_leftovers()


def bench_crowd(b: Bench) -> None:
    """3. 200 people with a job page open, each polling its status every 2 s for 60 s; and,
    as an instrument, the same crowd on the bare view."""
    log(f"3/9 {CROWD_CLIENTS} clients polling job pages for {CROWD_SECONDS:.0f} s")
    from tasks_app.models import Job

    jobs = Job.objects.bulk_create(
        new_job(b.team, b.person, kling_task_id=f"bench-crowd-{n}") for n in range(CROWD_CLIENTS)
    )
    # The bare view first: what this server and machine do with the same crowd when each
    # request does nothing; then the polls the target is about.
    bare = run_crowd(b, [BARE] * CROWD_CLIENTS, CROWD_BARE_SECONDS)
    polls = run_crowd(b, [f"/tasks/{job.pk}/?shown=processing" for job in jobs], CROWD_SECONDS)
    cancel_leftovers()
    label = f"{CROWD_CLIENTS} clients polling, {CROWD_SECONDS:.0f} s"
    b.report.add(
        f"{label}: errors",
        f"{polls.errors} of {polls.count:,}",
        f"{bare.errors} of {bare.count:,}",
        "-",
        "0",
        polls.errors == 0,
    )
    b.report.add(
        f"{label}: p95",
        ms(polls.p95),
        ms(bare.p95),
        plus_ms(polls.p95 - bare.p95),
        f"< {CROWD_P95_MS:.0f} ms",
        polls.p95 * 1000 < CROWD_P95_MS,
    )
    b.report.note(
        f"Polling crowd: {CROWD_CLIENTS} clients, each with its own connection, polling the "
        f"status of its own running job every {POLL_EVERY:.0f} s (the page's hx-trigger) for "
        f"{CROWD_SECONDS:.0f} s, their starts spread over the first {POLL_EVERY:.0f} s; one "
        f"asyncio loop in the bench process, against gunicorn as `runstudio` starts it "
        f"({WEB_WORKERS} workers x {WEB_THREADS} threads). A poll is an error when it answers "
        f"anything but 200 or 286, takes over {CROWD_TIMEOUT:.0f} s, or fails over the network "
        "twice (one retry when gunicorn closed an idle kept-alive connection, as a browser "
        f"retries). Polls: {polls.describe()} Before it, the same crowd on the bare view for "
        f"{CROWD_BARE_SECONDS:.0f} s: {bare.describe()}"
    )


@dataclass(frozen=True)
class CrowdRun:
    crowd: Crowd
    wall: float
    server_cpu: float  # the gunicorn workers' CPU seconds
    client_cpu: float  # the bench process's CPU seconds
    load: str  # the 1-minute load average at the end

    @property
    def count(self) -> int:
        return len(self.crowd.outcomes)

    @property
    def p95(self) -> float:
        return percentile(self.crowd.latencies, 95)

    @property
    def other(self) -> Counter[int]:
        return Counter(o for o in self.crowd.outcomes if o > 0 and o not in POLL_OK)

    @property
    def errors(self) -> int:
        outcomes = self.crowd.outcomes
        return outcomes.count(TIMEOUT) + outcomes.count(NETWORK) + sum(self.other.values())

    def describe(self) -> str:
        latencies, outcomes = self.crowd.latencies, self.crowd.outcomes
        return (
            f"{self.count:,} requests in {self.wall:.0f} s ({self.count / self.wall:.0f}/s); "
            f"median {ms(statistics.median(latencies))}, p95 {ms(self.p95)}, max "
            f"{ms(max(latencies))}; errors: {outcomes.count(TIMEOUT)} timeouts, "
            f"{outcomes.count(NETWORK)} network failures, {sum(self.other.values())} other "
            f"answers{describe_statuses(self.other)}; {self.crowd.retried} retried once; "
            f"server CPU per request {self.server_cpu / self.count * 1000:.2f} ms; the "
            f"clients used {self.client_cpu / self.wall:.0%} of one core; 1-minute load "
            f"average at the end {self.load}."
        )


def run_crowd(b: Bench, paths: list[str], seconds: float) -> CrowdRun:
    web = b.web_pids()
    cpu_before, began, own_before = cpu_seconds(web), time.monotonic(), sum(os.times()[:2])
    crowd = asyncio.run(crowd_poll(b.base, b.cookies, paths, seconds=seconds, every=POLL_EVERY))
    run = CrowdRun(
        crowd,
        time.monotonic() - began,
        cpu_seconds(web) - cpu_before,
        sum(os.times()[:2]) - own_before,
        load_average(),
    )
    if not run.count:
        raise HarnessError("the crowd made no requests")
    return run


def describe_statuses(statuses: Counter[int]) -> str:
    return (
        " (" + ", ".join(f"{n} x {code}" for code, n in statuses.most_common()) + ")"
        if statuses
        else ""
    )


def bench_create(b: Bench) -> None:
    """4. The form POST while Kling takes 3 s per create: the POST must not wait for Kling."""
    log("4/9 form POST with a slow Kling create")
    from django.conf import settings

    create_latency, posts = 3.0, 21
    # The studio takes at most SUBMISSIONS_PER_MINUTE jobs a minute from one person: the
    # POSTs come from several people, in turn.
    people = math.ceil(posts / (settings.SUBMISSIONS_PER_MINUTE - 1))
    clients = [
        httpx.Client(base_url=b.base, cookies=b.member(f"poster{n}"), timeout=30)
        for n in range(people)
    ]
    with (
        simulator(b.sim_port, create_latency=create_latency) as sim,
        studio_workers(b.procs, b.env, 1),
    ):
        for client in clients:
            post_text_job(client, "Warm-up line")
        # The worker is now inside a 3 s create; the POSTs below land while it waits.
        took = [post_text_job(clients[n % people], f"Bench line {n}")[1] for n in range(posts)]
        wait_for(lambda: sim.create_calls >= 1, timeout=20, what="the worker's first create")
        creates = sim.create_calls
    for client in clients:
        client.close()
    cancel_leftovers()
    p95 = percentile(took, 95)
    b.report.add(
        f"Form POST p95 (Kling create {create_latency:.0f} s)",
        ms(p95),
        "-",
        "-",
        f"< {FORM_POST_P95_SECONDS} s",
        p95 < FORM_POST_P95_SECONDS,
    )
    b.report.note(
        f"Form POST: {posts} sequential submissions by {people} people in turn (the studio "
        f"takes {settings.SUBMISSIONS_PER_MINUTE} a minute from one person), each after a GET "
        f"of the form for its CSRF token and submission key; median "
        f"{ms(statistics.median(took))}, max {ms(max(took))}; meanwhile the worker made "
        f"{creates} create call(s) to the simulator, "
        f"each answered after {create_latency:.0f} s."
    )


def task_queries(sim: Any, task_id: str | None) -> int:
    path = f"/v1/videos/lip-sync/{task_id}"
    return sum(1 for r in sim.requests if r.method == "GET" and r.path == path)


def watch(base: str, cookies: dict[str, str], job_id: int, seconds: float) -> list[int]:
    """Poll a job's status partial every 2 s like an open page; return the statuses seen."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, cookies=cookies, headers=HTMX, timeout=30) as client:
        while time.monotonic() < deadline:
            began = time.monotonic()
            statuses.append(poll_once(client, f"/tasks/{job_id}/"))
            pause = min(POLL_EVERY - (time.monotonic() - began), deadline - time.monotonic())
            time.sleep(max(0.0, pause))
    return statuses


def bench_watchers(b: Bench) -> None:
    """5. Kling queries while 50 people watch one job for 60 s, against a job with 1 watcher."""
    log(f"5/9 {WATCHERS} watchers vs 1 watcher for {WATCH_SECONDS:.0f} s")
    from django.conf import settings

    from tasks_app.models import Job

    with (
        simulator(
            b.sim_port, submitted_seconds=2, processing_seconds=600, request_log_size=100_000
        ) as sim,
        studio_workers(b.procs, b.env, 1),
    ):
        with httpx.Client(base_url=b.base, cookies=b.member("watched"), timeout=30) as client:
            crowd_id, _ = post_text_job(client, "Watched by fifty")
            lone_id, _ = post_text_job(client, "Watched by one")
        jobs = Job.objects.filter(pk__in=[crowd_id, lone_id])
        wait_for(
            lambda: all(j.kling_task_id for j in jobs.all()),
            timeout=30,
            what="both jobs to reach Kling",
        )
        task = dict(jobs.values_list("pk", "kling_task_id"))
        before = {pk: task_queries(sim, tid) for pk, tid in task.items()}
        with ThreadPoolExecutor(WATCHERS + 1) as pool:
            polls = [
                pool.submit(watch, b.base, b.cookies, crowd_id, WATCH_SECONDS)
                for _ in range(WATCHERS)
            ]
            polls.append(pool.submit(watch, b.base, b.cookies, lone_id, WATCH_SECONDS))
            statuses = [s for f in polls for s in f.result()]
        after = {pk: task_queries(sim, tid) for pk, tid in task.items()}
        active = all(j.is_active for j in jobs.all())
    cancel_leftovers()
    if any(s != 200 for s in statuses) or not active:
        raise HarnessError("a watched job stopped being active or a poll failed")
    crowd, lone = after[crowd_id] - before[crowd_id], after[lone_id] - before[lone_id]
    schedule = int(WATCH_SECONDS // settings.KLING_POLL_FAST_SECONDS)
    b.report.add(
        f"Kling queries, {WATCHERS} watchers x {WATCH_SECONDS:.0f} s",
        str(crowd),
        "-",
        "-",
        f"<= schedule ({schedule})",
        crowd <= schedule,
    )
    b.report.add(
        f"Kling queries, {WATCHERS} vs 1 watcher",
        str(crowd),
        "-",
        "-",
        f"1 watcher's ({lone}) +-1",
        abs(crowd - lone) <= 1,
    )
    b.report.note(
        f"Watchers: {len(statuses)} status polls served (every {POLL_EVERY:.0f} s per watcher, "
        f"as the page's hx-trigger); the schedule is one query per "
        f"{settings.KLING_POLL_FAST_SECONDS} s in a job's first minute at Kling. "
        "Web processes never call Kling; only the worker does."
    )


def make_kling_tasks(sim: Any, count: int) -> list[str]:
    """Create ``count`` tasks on the simulator, concurrently (each call takes 0.2 s)."""
    from tasks_app.kling import ApiKeyAuth, KlingClient, LipSyncRequest, TextSpeech, VideoSource

    request = LipSyncRequest(
        video=VideoSource(video_id="bench_video"),
        speech=TextSpeech(text="Refresh me", voice_id="genshin_vindi2", voice_language="en"),
    )
    with (
        KlingClient(base_url=sim.api_url, auth=ApiKeyAuth("demo-key")) as kling,
        ThreadPoolExecutor(25) as pool,
    ):
        return list(pool.map(lambda _: kling.create_task(request).task_id, range(count)))


def schedule_all_now(job_ids: list[int]) -> datetime:
    """Make every job due now, the way a callback does, all visible at one commit."""
    from django.db import transaction

    from tasks_app.models import Job
    from tasks_app.services import lifecycle

    with transaction.atomic():
        for job in Job.objects.filter(pk__in=job_ids):
            if not lifecycle.job_request_check(job=job):
                raise HarnessError(f"job {job.pk} could not be scheduled")
        t0 = datetime.now(UTC)
    return t0


@dataclass(frozen=True)
class Refresh:
    done: int
    seconds: float
    cpu_ms_per_job: float  # the worker processes' CPU time, per refreshed job
    rss_mb: float  # one worker process's resident memory at the end
    failed: int  # jobs whose last query to Kling failed


def refresh_run(
    b: Bench, job_ids: list[int], threads: int, limit: float, processes: int = 1
) -> Refresh:
    """Refresh every job with ``processes`` worker processes of ``threads`` threads each, for
    at most ``limit`` s."""
    from django_tasks_db.models import DBTaskResult

    from tasks_app.models import Job

    DBTaskResult.objects.all().delete()
    with studio_workers(b.procs, b.env, processes, threads) as pids:
        cpu_before = cpu_seconds(pids)
        t0 = schedule_all_now(job_ids)
        began = time.monotonic()
        # A failed query sets last_checked_at too, and poll_errors; only answers count.
        refreshed = Job.objects.filter(pk__in=job_ids, last_checked_at__gt=t0, poll_errors=0)
        done = 0
        while time.monotonic() - began < limit:
            done = refreshed.count()
            if done == len(job_ids):
                break
            time.sleep(0.1)
        seconds = time.monotonic() - began
        cpu = cpu_seconds(pids) - cpu_before
        rss = vm_rss_mb(pids[0])
    failed = Job.objects.filter(pk__in=job_ids, poll_errors__gt=0).count()
    return Refresh(done, seconds, cpu / max(1, done) * 1000, rss, failed)


def bench_refresh(b: Bench) -> None:
    """6. The worker refreshing 500 active jobs while every Kling call takes 200 ms."""
    log(f"6/9 refreshing {REFRESH_JOBS} active jobs, Kling latency {ms(REFRESH_LATENCY)}")
    from tasks_app.models import Job

    with simulator(
        b.sim_port,
        request_latency=REFRESH_LATENCY,
        submitted_seconds=1,
        processing_seconds=86_400,
    ) as sim:
        task_ids = make_kling_tasks(sim, REFRESH_JOBS)
        # Running for 20 minutes: each check is then followed by the next one a minute later,
        # so no job is checked twice while the run lasts.
        sent = datetime.now(UTC) - timedelta(minutes=20)
        jobs = Job.objects.bulk_create(
            new_job(
                b.team,
                b.person,
                kling_task_id=tid,
                created_at=sent,
                sent_at=sent,
                processing_at=sent,
                kling_status="processing",
            )
            for tid in task_ids
        )
        job_ids = [job.pk for job in jobs]
        queries_before = sim.query_count
        # The worker as it runs (several threads), and for comparison the same process with
        # one thread, i.e. one task at a time.
        one = refresh_run(b, job_ids, 1, limit=30)
        one_rate = one.done / one.seconds
        projected = REFRESH_JOBS / one_rate if one_rate else float("inf")
        threads = b.worker_threads
        many = refresh_run(b, job_ids, threads, limit=60)
        # Issue #16: a second worker process (on another machine, say) shares the queue.
        two = refresh_run(b, job_ids, threads, limit=60, processes=2)
        queries = sim.query_count - queries_before
    cancel_leftovers()
    within = many.done == REFRESH_JOBS and many.seconds <= REFRESH_TARGET_SECONDS
    b.report.add(
        f"Refresh {REFRESH_JOBS} jobs, 1 worker ({threads} threads)",
        f"{many.done} in {many.seconds:.1f} s",
        "-",
        "-",
        f"all in <= {REFRESH_TARGET_SECONDS:.0f} s",
        within,
    )
    cores = os.cpu_count() or 1
    b.report.note(
        f"Refresh: {REFRESH_JOBS} processing jobs made due at once (as by callbacks), every "
        f"simulator call delayed {ms(REFRESH_LATENCY)}. One `studio_worker` process with "
        f"{threads} threads (the default, `WORKER_THREADS`): {many.done} in "
        f"{many.seconds:.1f} s. The same process with one thread does {one_rate:.1f} jobs/s, "
        f"so {REFRESH_JOBS} would take ~{projected:.0f} s (that run stopped after "
        f"{one.seconds:.0f} s with {one.done} done). Worker CPU per refresh: "
        f"{many.cpu_ms_per_job:.0f} ms (so {REFRESH_JOBS} refreshes need at least "
        f"{REFRESH_JOBS * many.cpu_ms_per_job / 1000 / cores:.1f} s of this machine's "
        f"{cores} cores); the worker process holds {many.rss_mb:.0f} MB. "
        f"Kling queries made: {queries}; failed: {one.failed + many.failed + two.failed}."
    )
    # Time per job, so that a run cut off at its limit still compares.
    per_job_one = many.seconds / max(1, many.done)
    per_job_two = two.seconds / max(1, two.done)
    ratio = per_job_two / per_job_one
    b.report.add(
        f"Refresh {REFRESH_JOBS} jobs, 2 workers ({threads} threads each) vs 1",
        f"{two.done} in {two.seconds:.1f} s = {ratio:.2f} of one",
        "-",
        "-",
        f"<= {REFRESH_TWO_WORKERS_RATIO} of one",
        two.done == REFRESH_JOBS and ratio <= REFRESH_TWO_WORKERS_RATIO,
    )
    b.report.note(
        f"Two workers: the same {REFRESH_JOBS} jobs made due again, refreshed by two "
        f"`studio_worker` processes of {threads} threads sharing the queue in the database, "
        f"as two machines would: {two.done} in {two.seconds:.1f} s against one process's "
        f"{many.done} in {many.seconds:.1f} s, i.e. {ratio:.2f} of its time per job (target "
        f"<= {REFRESH_TWO_WORKERS_RATIO}, until Kling's limit binds: the simulator sets none "
        f"on queries). Worker CPU per refresh with two: {two.cpu_ms_per_job:.0f} ms; on this "
        f"machine's {cores} cores, shared with gunicorn and the simulator, CPU rather than "
        "Kling's latency may set the pace."
    )


def bench_memory(b: Bench) -> None:
    """7. A gunicorn web worker's resident memory after everything above."""
    log("7/9 web worker memory")
    workers = b.web_pids()
    if not workers:
        raise HarnessError("gunicorn has no worker processes")
    rss = {pid: vm_rss_mb(pid) for pid in workers}
    biggest = max(rss.values())
    b.report.add(
        "Web worker RSS after the runs",
        f"{biggest:.0f} MB",
        "-",
        "-",
        f"< {RSS_LIMIT_MB} MB",
        biggest < RSS_LIMIT_MB,
    )
    b.report.note(
        f"Memory: VmRSS of each gunicorn worker ({WEB_WORKERS} workers x {WEB_THREADS} threads, "
        "as `runstudio` starts them): " + ", ".join(f"{v:.0f} MB" for v in rss.values()) + "."
    )


# --- 8. Reading source media (issue #11) -------------------------------------------------------

MEDIA_CHECK_TARGET_SECONDS = 1.5
UPLOAD_GROWTH_LIMIT_MB = 30
LINK_READ_LIMIT_MB = 5


def _media_file(path: Path, *, megabytes: int, faststart: bool = False) -> bytes:
    """A real 1080p MP4 of about ``megabytes`` MB with a face, made with PyAV (tests' maker)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from media_files import make_video

    # At grain 32 a 1080p keyframe is about 2 MB; 8 frames a second, a keyframe every 0.25 s.
    seconds = max(2.0, megabytes / 8.3)
    make_video(
        path,
        seconds=seconds,
        width=1920,
        height=1080,
        face=True,
        fps=8,
        grain=32,
        keyframe_seconds=0.25,
        faststart=faststart,
    )
    return path.read_bytes()


def _check_form(client: httpx.Client) -> dict[str, str]:
    return fresh_form(client, "/tasks/new/") | {
        "mode": "text2video",
        "text": "Bench",
        "voice_id": "genshin_vindi2",
        "voice_language": "en",
        "voice_speed": "1.0",
    }


def _peak_rss_during(pids: list[int], action: Callable[[], Any]) -> tuple[float, float, Any]:
    """(resident MB before, at most while ``action`` runs, ``action``'s result), for the web
    worker whose memory grew most (the one that took the request)."""
    before = {pid: vm_rss_mb(pid) for pid in pids}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in pids:
                peak[pid] = max(peak[pid], vm_rss_mb(pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = action()
    finally:
        done.set()
        sampler.join()
    grown = max(pids, key=lambda pid: peak[pid] - before[pid])
    return before[grown], peak[grown], result


def _bytes_served(requests: list[tuple[str, dict[str, str]]], size: int) -> int:
    """What a file server sent for these requests: each range, or the whole file."""
    total = 0
    for _path, headers in requests:
        match = re.fullmatch(r"bytes=([0-9]+)-([0-9]*)", headers.get("Range", ""))
        if match is None:
            total += size
            continue
        first, last = int(match[1]), min(int(match[2] or size - 1), size - 1)
        total += max(0, last - first + 1)
    return total


def bench_media(b: Bench) -> None:
    """8. Reading source media: checking an uploaded 50 MB MP4, a web worker's memory while a
    100 MB upload streams in, and the bytes read to check a 100 MB linked MP4."""
    log("8/9 source media: an upload checked, memory while uploading, bytes read from a link")
    tmp = Path(b.env["MEDIA_ROOT"]).parent
    upload = _media_file(tmp / "upload-50.mp4", megabytes=50)
    big = _media_file(tmp / "upload-100.mp4", megabytes=100, faststart=True)
    with httpx.Client(base_url=b.base, cookies=b.member("media"), timeout=120) as client:
        # Warm: the first check of a process loads PyAV and the face model.
        warm = {"video_file": ("warm.mp4", upload, "video/mp4")}
        data = _check_form(client) | {"video_source": "video_file"}
        client.post("/tasks/new/check/", data=data, files=warm)

        timings = []
        for _ in range(3):
            data = _check_form(client) | {"video_source": "video_file"}
            began = time.perf_counter()
            answer = client.post(
                "/tasks/new/check/",
                data=data,
                files={"video_file": ("clip.mp4", upload, "video/mp4")},
            )
            timings.append(time.perf_counter() - began)
            if answer.status_code != 200 or "face" not in answer.text.lower():
                raise HarnessError(f"the check answered {answer.status_code}")
        took = statistics.median(timings)
        b.report.add(
            f"Check of an uploaded {len(upload) / 1e6:.0f} MB MP4 (face check included)",
            ms(took),
            "-",
            "-",
            f"< {MEDIA_CHECK_TARGET_SECONDS} s",
            took < MEDIA_CHECK_TARGET_SECONDS,
        )

        pids = b.web_pids()
        data = _check_form(client) | {"video_source": "video_file"}
        before, peak, answer = _peak_rss_during(
            pids,
            lambda: client.post(
                "/tasks/new/check/", data=data, files={"video_file": ("big.mp4", big, "video/mp4")}
            ),
        )
        growth = peak - before
        b.report.add(
            f"Web worker memory growth during a {len(big) / 1e6:.0f} MB upload",
            f"{growth:.1f} MB",
            "-",
            "-",
            f"< {UPLOAD_GROWTH_LIMIT_MB} MB",
            growth < UPLOAD_GROWTH_LIMIT_MB,
        )

        from local_http import serving

        with serving(big, mode="ranged") as server:
            data = _check_form(client) | {
                "video_source": "video_url",
                "video_url": f"{server.url}/ranged/clip.mp4",
            }
            answer = client.post("/tasks/new/check/", data=data)
            if answer.status_code != 200:
                raise HarnessError(f"the link check answered {answer.status_code}")
            served = _bytes_served(server.requests, len(big))
        b.report.add(
            f"Bytes read to check a {len(big) / 1e6:.0f} MB linked MP4 (index first)",
            f"{served / 1e6:.1f} MB",
            "-",
            "-",
            f"< {LINK_READ_LIMIT_MB} MB",
            served < LINK_READ_LIMIT_MB * 1e6,
        )
    b.report.note(
        f"Source media: 1080p H.264 clips with a face made with PyAV ({len(upload) / 1e6:.0f} MB "
        f"and {len(big) / 1e6:.0f} MB, the larger with its index first). The upload check is "
        f"POST /tasks/new/check/ through gunicorn, median of 3 after one warm-up: "
        + ", ".join(ms(t) for t in timings)
        + ". Memory: VmRSS of the web worker that took the upload, sampled every 20 ms, "
        f"{before:.0f} MB before and {peak:.0f} MB at most while the "
        f"{len(big) / 1e6:.0f} MB upload streamed to disk. "
        "The link is served on loopback (allow-listed with MEDIA_FETCH_ALLOWED_HOSTS) and the "
        "bytes it sent are counted at the server."
    )


# --- 9. Batches (issue #12) ----------------------------------------------------------------------

BATCH_ROWS = 200
BATCH_POST_TARGET_SECONDS = 1.0
ZIP_RESULTS, ZIP_RESULT_MB = 200, 1
ZIP_GROWTH_LIMIT_MB = 20


def _batch_form(client: httpx.Client, lines: int) -> dict[str, str]:
    return fresh_form(client, "/tasks/batch/new/") | {
        "way": "lines",
        "video_source": "video_id",
        "video_id": "860327812345678901",
        "lines": "\n".join(f"Bench batch line number {n}" for n in range(1, lines + 1)),
        "voice_id": "genshin_vindi2",
        "voice_language": "en",
        "voice_speed": "1.0",
        "consent": "on",
    }


def _finished_batch(b: Bench, rows: int, megabytes: int) -> int:
    """A batch of ``rows`` finished jobs, each with a stored result copy of ``megabytes`` MB
    of random bytes (as incompressible as a video); its id."""
    from django.core.files.base import ContentFile

    from tasks_app.models import Batch, JobStatus

    batch = Batch.objects.create(team=b.team, created_by=b.person)
    chunk = os.urandom(megabytes * 1024 * 1024)
    for row in range(1, rows + 1):
        job = new_job(
            b.team,
            b.person,
            batch=batch,
            batch_row=row,
            text=f"Batch result number {row}",
            status=JobStatus.SUCCEEDED,
            finished_at=datetime.now(UTC),
            kling_task_id=f"bench-zip-{batch.pk}-{row}",
        )
        job.stored_video.save(f"result-{row}.mp4", ContentFile(chunk), save=False)
        job.stored_size = len(chunk)
        job.save()
    return batch.pk


def bench_batches(b: Bench) -> None:
    """9. Batches: the POST of a 200-row batch (no Kling call in it), and a web worker's memory
    while it streams the ZIP of 200 results."""
    log("9/9 batches: a 200-row batch POST, memory while streaming a ZIP of 200 results")
    took = []
    with (
        simulator(b.sim_port) as sim,
        httpx.Client(base_url=b.base, cookies=b.member("batcher"), timeout=60) as client,
    ):
        # No worker runs: any Kling call during the POST would be the web process's own.
        for _ in range(3):
            data = _batch_form(client, BATCH_ROWS)
            began = time.perf_counter()
            answer = client.post("/tasks/batch/new/", data=data)
            took.append(time.perf_counter() - began)
            if answer.status_code != 302 or "/tasks/batch/" not in answer.headers["location"]:
                raise HarnessError(f"the batch POST answered {answer.status_code}")
        kling_calls = len(sim.requests)
    cancel_leftovers()
    median = statistics.median(took)
    b.report.add(
        f"POST of a {BATCH_ROWS}-row batch (median of 3)",
        ms(median),
        "-",
        "-",
        f"< {BATCH_POST_TARGET_SECONDS:.0f} s, no Kling call",
        median < BATCH_POST_TARGET_SECONDS and kling_calls == 0,
    )

    batch_id = _finished_batch(b, ZIP_RESULTS, ZIP_RESULT_MB)

    def download() -> int:
        size = 0
        path = f"/tasks/batch/{batch_id}/download.zip"
        with (
            httpx.Client(base_url=b.base, cookies=b.cookies, timeout=120) as client,
            client.stream("GET", path) as answer,
        ):
            if answer.status_code != 200:
                raise HarnessError(f"the ZIP answered {answer.status_code}")
            for part in answer.iter_bytes():
                size += len(part)
        return size

    download()  # warm: the first download of a process imports what it needs
    before, peak, size = _peak_rss_during(b.web_pids(), download)
    growth = peak - before
    b.report.add(
        f"Web worker memory growth streaming a ZIP of {ZIP_RESULTS} results",
        f"{growth:.1f} MB",
        "-",
        "-",
        f"< {ZIP_GROWTH_LIMIT_MB} MB",
        growth < ZIP_GROWTH_LIMIT_MB,
    )
    b.report.note(
        f"Batches: {BATCH_ROWS} lines on one Kling video ID posted through the batch page "
        "(after a GET for its CSRF token and submission key), 3 times: "
        + ", ".join(ms(t) for t in took)
        + f"; the simulator received {kling_calls} request(s) meanwhile (no worker ran). The "
        f"ZIP: {ZIP_RESULTS} finished rows, each a stored {ZIP_RESULT_MB} MB copy, streamed "
        f"through gunicorn ({size / 1e6:.0f} MB); VmRSS of the web worker that sent it, sampled "
        f"every 20 ms: {before:.0f} MB before, {peak:.0f} MB at most."
    )


# --- Output ----------------------------------------------------------------------------------


def command_line(db: Database) -> str:
    if db.vendor == "postgresql":
        return "`scripts/with-postgres make bench` (scripts/bench.py, TEST_DATABASE_URL set)"
    return "`make bench` (scripts/bench.py)"


def machine(db: Database) -> list[tuple[str, str]]:
    import django

    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    gunicorn = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Command", command_line(db)),
        ("CPUs (nproc)", f"{os.cpu_count()} x {cpu}"),
        ("Memory", f"{int(memory) / 1024 / 1024:.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("Django", django.get_version()),
        ("Server", f"{gunicorn}, {WEB_WORKERS} workers x {WEB_THREADS} threads"),
        ("Database", db.label),
        ("Connections", connection_settings()),
        ("Load generator", "httpx clients in the bench process, on loopback"),
    ]


HEAD = ("Metric", "Measured", "Bare view", "Added", "Target", "Result")


def cells(row: Row) -> tuple[str, ...]:
    return (row.metric, row.measured, row.bare, row.added, row.target, row.verdict)


def table(rows: list[Row]) -> list[str]:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return lines


def print_table(rows: list[Row]) -> None:
    body = [cells(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(HEAD, *body, strict=False)]
    for line in (HEAD, *body):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))


def markers(vendor: str) -> tuple[str, str]:
    return f"<!-- bench:{vendor}:begin -->", f"<!-- bench:{vendor}:end -->"


def write_markdown(db: Database, report: Report, seconds: float) -> Path:
    """Replace this database's section of BENCHMARKS.md; everything else is kept."""
    path = ROOT / "BENCHMARKS.md"
    begin, end = markers(db.vendor)
    facts = [*machine(db), *report.facts, ("Run time", f"{seconds:.0f} s")]
    generated = [
        begin,
        "<!-- Written by `make bench`; edit outside these markers. -->",
        "",
        f"## {db.title}: last run",
        "",
        *(f"- **{key}:** {value}" for key, value in facts),
        "",
        *table(report.rows),
        "",
        f"### How each figure was taken ({db.title})",
        "",
        *(f"- {text}" for text in report.notes),
        end,
    ]
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in old and end in old:
        before, rest = old.split(begin, 1)
        after = rest.split(end, 1)[1]
    else:
        before, after = old.rstrip("\n") + "\n\n", "\n"
    path.write_text(before + "\n".join(generated) + after)
    return path


# --- Main ------------------------------------------------------------------------------------


def on_timeout(signum: int, frame: FrameType | None) -> None:
    raise HarnessError(f"the run took longer than {RUN_LIMIT_SECONDS} s")


SCENARIOS: tuple[Callable[[Bench], None], ...] = (
    bench_status_poll,
    bench_history,
    bench_crowd,
    bench_create,
    bench_watchers,
    bench_refresh,
    bench_memory,
    bench_media,
    bench_batches,
)


def main() -> int:
    signal.signal(signal.SIGALRM, on_timeout)
    signal.alarm(RUN_LIMIT_SECONDS)
    began = time.monotonic()
    load_at_start = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="lipsync-bench-"))
    procs = Processes(tmp)
    report = Report()
    db = database_for_run(tmp)
    # For working on the bench: some scenarios, smaller histories. BENCHMARKS.md is then
    # left alone, since its table would not be the real one.
    only = set(env_ints("BENCH_ONLY"))
    sizes = env_ints("BENCH_HISTORY_SIZES") or HISTORY_SIZES
    partial = bool(only) or sizes != HISTORY_SIZES
    try:
        sim_port, web_port = free_port(), free_port()
        env = base_env(tmp, sim_port, db.studio_url)
        log(f"{db.title} database; logs in {tmp}")
        setup_django(env, db)
        log(f"{db.label}; {connection_settings()}")
        team = make_team()
        person = add_member(team, USERNAME)
        base = start_web(procs, env, web_port)
        b = Bench(base, login(base, USERNAME), person, team, procs, env, sim_port, report, sizes)
        loads = [f"start {load_at_start}"]
        for number, scenario in enumerate(SCENARIOS, start=1):
            if not only or number in only:
                scenario(b)
                procs.check_alive("web")
                loads.append(f"after {number} {load_average()}")
        report.facts.append(
            (
                "Other work on the machine",
                "1-minute load average, the bench's own processes included, after each "
                "scenario: " + ", ".join(loads),
            )
        )
    except BaseException as exc:
        print_table(report.rows)
        if not isinstance(exc, HarnessError | KeyboardInterrupt):
            traceback.print_exc()
        print(f"\nbench: the harness broke: {exc!r}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
        procs.stop_all()
        if db.drop is not None:
            try:
                db.drop()
            except Exception as exc:  # report it: the figures still stand
                print(f"bench: could not drop the throwaway database: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.monotonic() - began
    print()
    print_table(report.rows)
    print("\n" + "\n".join(f"- {text}" for text in report.notes) + "\n")
    missed = [r.metric for r in report.rows if r.passed is False]
    print(f"Missed: {', '.join(missed)}." if missed else "Every target met.")
    if partial:
        print("BENCH_ONLY or BENCH_HISTORY_SIZES set: BENCHMARKS.md left as it was.")
    else:
        path = write_markdown(db, report, seconds)
        print(f"Written to {path.relative_to(ROOT)}, {db.title} section ({seconds:.0f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
