"""Browser tests: Debian's Chromium, driven by Playwright, against a live studio.

Each test gets the whole studio running in this process: Django's live server, the Kling
simulator on a port of its own, and the background worker in a thread.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import PASSWORD, make_member, make_worker
from playwright.sync_api import Browser, Page, Playwright, Response, expect, sync_playwright

from tasks_app.models import Team
from tasks_app.services.workers import worker_beat
from tasks_app.simulator import KlingSimulator

# Playwright's sync API keeps an event loop in the test's thread; Django refuses ORM calls
# from a thread with a running loop unless told that this is deliberate.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


_reports = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_reports, {})
    return any(report.failed for report in reports.values())


def save_screenshot(page: Page, name: str) -> Path:
    """Save the whole page to test-artifacts/<name>.png (gitignored) for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


# --- The browser -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(
            "The browser tests need Debian's Chromium at /usr/bin/chromium: run "
            "./scripts/ensure-chromium, or sudo apt-get install -y chromium."
        )
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


# --- The studio --------------------------------------------------------------------------------


class BackgroundWorker:
    """django-tasks-db's worker, polling the queue from a thread as `studio_worker` would."""

    def __init__(self) -> None:
        self.worker = make_worker("browser-test-worker", batch=False, interval=0.2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="studio-worker", daemon=True)
        self.stopped = threading.Event()
        self.heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as err:
            self.error = err
        finally:
            connections.close_all()

    def _beat(self) -> None:
        # As `studio_worker` does: job pages say when no worker has reported itself lately.
        started = timezone.now()
        while not self.stopped.is_set():
            worker_beat(
                worker_id="browser-test-worker",
                hostname="localhost",
                pid=os.getpid(),
                started_at=started,
            )
            self.stopped.wait(5)
        connections.close_all()

    def start(self) -> None:
        worker_beat(
            worker_id="browser-test-worker",
            hostname="localhost",
            pid=os.getpid(),
            started_at=timezone.now(),
        )
        self.heartbeat.start()
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.heartbeat.join(timeout=15)
        self.worker.running = False
        # A task in progress finishes first; its longest wait is one call to the simulator.
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the worker thread did not stop"
        if self.error is not None:
            raise AssertionError(f"the worker crashed: {self.error!r}") from self.error


@dataclass
class Studio:
    url: str
    kling: KlingSimulator
    username: str
    password: str = PASSWORD

    def log_in(self, page: Page, *, then: str = "/tasks/new/") -> None:
        """Ask for a page, get sent to the login form, fill it in, land on the page."""
        page.goto(then)
        expect(page).to_have_url(re.compile(r"/accounts/login/"))
        form = page.locator('form[action$="/accounts/login/"]')
        form.locator("#id_username").fill(self.username)
        form.locator("#id_password").fill(self.password)
        form.locator('button[type="submit"]').click()
        expect(page).to_have_url(f"{self.url}{then}")


@pytest.fixture
def studio(live_server, start_kling, settings) -> Iterator[Studio]:
    """The studio in demo mode, its simulator, its worker, and Alice, who may log in."""
    settings.KLING_DEMO = True
    # The worker checks a sent job every second rather than every five.
    settings.KLING_POLL_FAST_SECONDS = 1
    # Serve static files from the source folders: no collectstatic manifest needed.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    kling = start_kling(submitted_seconds=1, processing_seconds=3)

    make_member("alice", Team.objects.create(name="Studio A"))

    worker = BackgroundWorker()
    worker.start()
    try:
        yield Studio(url=live_server.url, kling=kling, username="alice")
    finally:
        worker.stop()
    failed = DBTaskResult.objects.filter(status="FAILED")
    assert not failed.exists(), [(r.task_path, r.traceback) for r in failed]


@pytest.fixture
def page(browser: Browser, studio: Studio, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser tab (no cookies) on the live studio; fails on server or script errors."""
    context = browser.new_context(
        base_url=studio.url, viewport={"width": 1280, "height": 900}, locale="en-US"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []

    def on_response(response: Response) -> None:
        if response.status >= 500:
            problems.append(f"HTTP {response.status} from {response.request.method} {response.url}")

    page.on("response", on_response)
    page.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    yield page
    failed = _failed(request)
    if failed:
        save_screenshot(page, f"{request.node.name}-failure")
    context.close()
    # A failed test has already said what went wrong, usually because of the same problem.
    assert failed or not problems, problems


@pytest.fixture
def screenshot(page: Page) -> Callable[[str], Path]:
    """screenshot("name") saves the tab's whole page to test-artifacts/name.png."""
    return lambda name: save_screenshot(page, name)
