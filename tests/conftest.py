"""Shared fixtures: a Kling simulator over real HTTP, a logged-in person, and the worker."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import (
    assert_no_failed_tasks,
    keeping_the_test_connection,
    make_member,
    make_worker,
)
from kling_faults import FaultySimulator
from local_http import LoopbackOnly
from media_files import AudioFormat, audio_bytes

from tasks_app.models import Job, Team
from tasks_app.simulator import ManualClock, SimulatorConfig


def _use_a_file_for_the_sqlite_test_database() -> None:
    """Give SQLite's test database a file, as the studio's own database has.

    Django's default in-memory test database is one shared-cache connection pool, where a
    write by the worker thread makes the live server's reads fail at once with "database table
    is locked" (shared-cache locks ignore the busy timeout). A file in WAL mode with the
    settings' timeout lets the three threads wait for each other. This runs when the test
    session starts, before any test database exists, so every test uses the file.
    The file lives in a fresh temporary folder: parallel sessions must not share it.
    """
    database = settings.DATABASES["default"]
    test = database.setdefault("TEST", {})
    if database["ENGINE"] != "django.db.backends.sqlite3" or test.get("NAME"):
        return
    folder = tempfile.mkdtemp(prefix="studio-test-db-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    test["NAME"] = os.path.join(folder, "test.sqlite3")


_use_a_file_for_the_sqlite_test_database()


@pytest.fixture
def sim_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def start_kling(settings) -> Iterator[Callable[..., FaultySimulator]]:
    """Start a simulator with the given config and point the studio at it (a FaultySimulator,
    so a test can also make it fail: see tests/kling_faults.py)."""
    started: list[FaultySimulator] = []

    def start(**config) -> FaultySimulator:
        sim = FaultySimulator(SimulatorConfig(**config)).start()
        started.append(sim)
        settings.KLING_API_BASE_URL = sim.api_url
        # As in demo mode: the fetch guard lets the result copy read the simulator's files.
        settings.KLING_SIMULATOR_URL = sim.url
        settings.KLING_API_KEY = config.get("api_key", "demo-key")
        settings.KLING_ACCESS_KEY = None
        settings.KLING_SECRET_KEY = None
        settings.KLING_READ_TIMEOUT = 2
        settings.KLING_CONNECT_TIMEOUT = 1
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def kling(start_kling, sim_clock) -> FaultySimulator:
    """A simulator whose clock the test moves (no sleeping)."""
    return start_kling(now=sim_clock, submitted_seconds=3, processing_seconds=10)


@pytest.fixture
def team(db) -> Team:
    return Team.objects.create(name="Studio A")


@pytest.fixture
def other_team(db) -> Team:
    return Team.objects.create(name="Studio B")


@pytest.fixture
def user(team):
    """Alice, a member of team A."""
    return make_member("alice", team)


@pytest.fixture
def teammate(team):
    """Carol, another member of team A."""
    return make_member("carol", team)


@pytest.fixture
def other_user(other_team):
    """Bob, a member of team B only."""
    return make_member("bob", other_team)


@pytest.fixture
def alice(client: Client, user) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def carol(teammate) -> Client:
    """A logged-in client for Carol, Alice's teammate in team A."""
    client = Client()
    client.force_login(teammate)
    return client


def run_worker() -> int:
    """Run every task that is due now, as the worker would; return how many ran."""
    before = DBTaskResult.objects.exclude(status="READY").count()
    with keeping_the_test_connection():
        make_worker("test-worker").run()
    return DBTaskResult.objects.exclude(status="READY").count() - before


def make_due() -> None:
    """Bring every scheduled run forward to now (the queue's clock, not a mock)."""
    DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now())


@pytest.fixture
def worker() -> Callable[[], int]:
    """Run due tasks and fail the test if one of them raised."""

    def run(*, all_scheduled: bool = False) -> int:
        if all_scheduled:
            make_due()
        count = run_worker()
        assert_no_failed_tasks()
        return count

    return run


# --- Added for the app-level tests (forms, pages, callbacks, commands) ------------------------


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Uploads and result copies go to a throwaway folder, never the repo's media/."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def bob(other_user) -> Client:
    """A logged-in client for Bob, who is in team B only."""
    client = Client()
    client.force_login(other_user)
    return client


@functools.cache
def _tone(format: AudioFormat) -> bytes:
    # Three seconds: the studio measures every track, and Kling takes 2 s at the least.
    return audio_bytes(seconds=3, format=format)


@pytest.fixture
def wav_bytes() -> bytes:
    """A real, playable WAV file: a 3 s tone."""
    return _tone("wav")


@pytest.fixture
def mp3_bytes() -> bytes:
    """A real, playable MP3 file: a 3 s tone."""
    return _tone("mp3")


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Each test starts with empty caches (rendered history rows, the typical job time)."""
    yield
    for cache in caches.all(initialized_only=True):
        cache.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Hashing a test password with the production hasher costs ~0.4 s per person made."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Added for the team, history, results and notice tests -------------------------------------


@pytest.fixture
def run_job(worker, sim_clock) -> Callable[[Job], Job]:
    """``run_job(job)``: send it, let the simulator's clock pass its end, and run the worker
    (which also runs the follow-up tasks: the result copy and the e-mail); the job has then
    ended. Needs a simulator started with ``sim_clock`` (the ``kling`` fixture, or
    ``start_kling(now=sim_clock, ...)``) whose jobs take under 60 simulated seconds."""

    def run(job: Job) -> Job:
        worker()
        sim_clock.advance(60)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.is_terminal, job.status_detail
        return job

    return run


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    """Pages render without a collectstatic run (a fresh clone has no manifest).

    WhiteNoise then finds files as it does in development, instead of scanning STATIC_ROOT
    each time a test client builds its middleware.
    """
    settings.WHITENOISE_AUTOREFRESH = True
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


# --- Added for media in object storage (tests/s3.py) --------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server over HTTP on a free port, for the whole session; its endpoint URL."""
    from s3 import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3_server, settings):
    """A fresh, empty bucket on ``s3_server``, and the studio's default storage in it, set up
    as ``AWS_STORAGE_BUCKET_NAME`` and friends set it up (MEDIA_ROOT stays the autouse
    ``media_root``, which nothing should then write to)."""
    from s3 import bucket_settings, new_bucket

    made = new_bucket(s3_server)
    for name, value in bucket_settings(made).items():
        setattr(settings, name, value)
    # Last: changing STORAGES makes Django drop the storage it made, so the next file
    # operation builds an S3Storage from the settings above.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage"},
    }
    return made


@pytest.fixture
def guard_rail() -> Iterator[LoopbackOnly]:
    """The transport for a test's links: real HTTP on this machine, anything else refused
    and, at the end, a failure."""
    transport = LoopbackOnly()
    yield transport
    assert transport.elsewhere == [], "a connection off this machine was attempted"
