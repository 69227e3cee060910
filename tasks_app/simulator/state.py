"""The simulator's state and the tasks' lifecycle: what a Kling account holds and how its tasks
move from ``submitted`` to ``succeed`` or ``failed`` as the clock passes.

One simulator process serves every web and worker process, so its state lives in memory,
guarded by one lock. Task progress is derived from the clock (injectable, see
:class:`~tasks_app.simulator.config.ManualClock`), so tests move time instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from tasks_app.kling.types import TaskStatus

from .callbacks import CallbackAttempt, CallbackSender
from .config import ASSETS_PATH, DEMO_RESULT_NAME, SimulatorConfig
from .server import Override, RecordedRequest, Route, SimulatorServer
from .sources import source_problem
from .validation import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    VideoSource,
    authenticate,
    not_found,
    page_param,
    too_many_running,
    validate_create,
)

logger = logging.getLogger("kling.simulator")

NO_FACE_MARKER: Final = "noface"
NO_FACE_MESSAGE: Final = "The model did not detect a human"

# What every successful task costs in the demo, and how long its videos last (the reference
# only shows durations as strings of seconds).
DEMO_DEDUCTION: Final = "5"
DEMO_DURATION: Final = "5.1"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(slots=True)
class _Task:
    task_id: str
    seq: int
    # Times in Unix milliseconds, as the protocol shows them: whole numbers keep the
    # transitions exactly submitted_seconds / processing_seconds apart.
    created_at: int
    processing_at: int
    final_at: int
    will_fail: bool
    parent_video: dict[str, str]
    callback_url: str | None
    status: TaskStatus = TaskStatus.SUBMITTED
    status_msg: str = ""
    updated_at: int = 0
    result_video: dict[str, str] | None = None
    # Set once the source video was downloaded (``SimulatorConfig.fetch_sources``), with
    # ``source_problem`` saying why it could not be; None when it is not downloaded at all.
    source_fetched: threading.Event | None = None
    source_problem: str | None = None

    def to_object(self) -> dict[str, Any]:
        """The task object of the protocol (query data, list item, callback body)."""
        obj: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": self.status.value,
            "task_status_msg": self.status_msg,
            "task_info": {"parent_video": dict(self.parent_video)},
            "task_result": {"videos": [dict(self.result_video)] if self.result_video else []},
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.status is TaskStatus.SUCCEED:
            obj["final_unit_deduction"] = DEMO_DEDUCTION
        return obj


class KlingSimulator:
    """An in-process Kling lip-sync API on a real HTTP socket.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. The inspection
    properties are thread-safe and meant for tests.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self._clock = self.config.now
        self._lock = threading.RLock()
        self._tasks: dict[str, _Task] = {}
        # Ids of result videos this simulator produced -> their video objects, so a later
        # create can reuse them as video_id with a faithful parent_video.
        self._videos: dict[str, dict[str, str]] = {}
        self._requests: deque[RecordedRequest] = deque(maxlen=self.config.request_log_size)
        self._callbacks = CallbackSender(lambda: self.config)
        self._seq = 0
        self._created_count = 0
        self._create_calls = 0
        self._query_count = 0
        self._list_count = 0
        self._max_running = 0
        self._server: SimulatorServer | None = None
        # Where result video URLs point; fixed at start() so it outlives stop().
        self._result_base = self.config.public_url or "http://127.0.0.1"
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()

    # ---- lifecycle of the server -----------------------------------------------------------

    def start(self) -> Self:
        """Bind the socket and serve from daemon threads. Returns self."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = SimulatorServer(self, self.config.host, self.config.port)
        self._server = server
        self._result_base = self.config.public_url or self.url
        self._stopping.clear()
        server.start(poll_interval=self.config.tick_seconds)
        self._ticker = threading.Thread(target=self._tick_loop, name="kling-sim-clock", daemon=True)
        self._ticker.start()
        self._callbacks.start()
        logger.info("Kling simulator serving on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and end the background threads."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.stop()
        self._callbacks.stop()
        if self._ticker is not None:
            self._ticker.join(timeout=self.config.tick_seconds + 2)
            self._ticker = None
        self._server = None
        logger.info("Kling simulator stopped")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL of the running simulator, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.url

    @property
    def api_url(self) -> str:
        """The base URL a client should use, including the reseller prefix when set."""
        return self.url + self.config.prefix

    # ---- inspection for tests ----------------------------------------------------------------

    @property
    def created_count(self) -> int:
        """Tasks created (creates answered with an error are not counted)."""
        with self._lock:
            return self._created_count

    @property
    def create_calls(self) -> int:
        """Create calls received, whatever their answer (overridden answers included)."""
        with self._lock:
            return self._create_calls

    @property
    def query_count(self) -> int:
        """Query calls received (``GET .../lip-sync/{id}``), whatever their answer."""
        with self._lock:
            return self._query_count

    @property
    def list_count(self) -> int:
        """List calls received (``GET .../lip-sync``), whatever their answer."""
        with self._lock:
            return self._list_count

    @property
    def max_running(self) -> int:
        """The highest number of simultaneously non-final tasks seen so far."""
        with self._lock:
            return self._max_running

    @property
    def running_count(self) -> int:
        """How many tasks are not final now (by the clock)."""
        self._await_sources()
        with self._lock:
            return self._advance_all()

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """A snapshot of every task object (as a query would return it now), oldest first."""
        self._await_sources()
        with self._lock:
            self._advance_all()
            return {task_id: task.to_object() for task_id, task in self._tasks.items()}

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent requests answered (up to ``config.request_log_size``), in order."""
        with self._lock:
            return list(self._requests)

    @property
    def callbacks(self) -> list[CallbackAttempt]:
        """Every callback delivery attempt so far, in order."""
        return self._callbacks.attempts

    # ---- what the HTTP handler calls ---------------------------------------------------------

    def override_answer(self, method: str, path: str) -> Override | None:
        """Hook: another answer for this API request, or None to answer it as Kling would.

        The handler asks once per API request (not for ``/assets/``), after counting it and
        before authenticating it; ``path`` has no query string and no reseller prefix. The
        simulator itself never overrides an answer: this is where a subclass injects faults
        (the tests' ``FaultySimulator`` in ``tests/kling_faults.py``), so that the product
        keeps no fault machinery of its own.
        """
        return None

    def note_call(self, route: Route | None) -> None:
        with self._lock:
            if route == "create":
                self._create_calls += 1
            elif route == "query":
                self._query_count += 1
            elif route == "list":
                self._list_count += 1

    def record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def authenticate(self, header: str | None) -> str:
        """Check an Authorization header; returns the scheme that accepted it."""
        return authenticate(header, self.config, self._clock())

    def handle_create(self, body: object) -> dict[str, Any]:
        source, callback_url = validate_create(body, self._videos_snapshot())
        with self._lock:
            running = self._advance_all()
            limit = self.config.concurrency_limit
            if limit is not None and running >= limit:
                raise too_many_running(running, limit)
            task = self._new_task(source, callback_url)
            self._created_count += 1
            self._max_running = max(self._max_running, running + 1)
            fetching = source[0] == "video_url" and self.config.fetch_sources
            if fetching:
                # Before the lock is let go, so that no tick can move the task on first.
                task.source_fetched = threading.Event()
        logger.info("task %s submitted", task.task_id)
        if fetching:
            self._fetch_source(task, source[1])
        return {
            "task_id": task.task_id,
            "task_status": task.status.value,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
        }

    def handle_query(self, task_id: str) -> dict[str, Any]:
        self._await_sources([task_id])
        with self._lock:
            self._advance_all()
            task = self._tasks.get(task_id)
            if task is None:
                raise not_found(f"Task not found: {task_id}")
            return task.to_object()

    def handle_list(self, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        page = page_param(params, "pageNum", 1, None)
        size = page_param(params, "pageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        self._await_sources()
        with self._lock:
            self._advance_all()
            newest_first = sorted(
                self._tasks.values(), key=lambda task: (task.created_at, task.seq), reverse=True
            )
            start = (page - 1) * size
            return [task.to_object() for task in newest_first[start : start + size]]

    # ---- the source video --------------------------------------------------------------------

    def _fetch_source(self, task: _Task, url: str) -> None:
        """Download the start of the task's video in the background, as Kling does while a
        task is ``submitted``; the task stays there until ``task.source_fetched`` is set."""
        fetched = task.source_fetched
        assert fetched is not None

        def fetch() -> None:
            problem = source_problem(url, timeout=self.config.fetch_timeout)
            if problem:
                logger.info("task %s: %s", task.task_id, problem)
            with self._lock:
                task.source_problem = problem
                fetched.set()

        threading.Thread(target=fetch, name=f"kling-sim-fetch-{task.task_id}", daemon=True).start()

    def _await_sources(self, task_ids: Iterable[str] | None = None) -> None:
        """Wait for the downloads that hold tasks in ``submitted`` past their time.

        A download takes real time while a test's clock may stand still: waiting here, before
        answering, makes a task's status depend on the clock alone. Bounded by the download's
        own timeout.
        """
        with self._lock:
            now = _ms(self._clock())
            tasks = (
                self._tasks.values()
                if task_ids is None
                else [task for task in map(self._tasks.get, task_ids) if task is not None]
            )
            pending = [
                task.source_fetched
                for task in tasks
                if task.source_fetched is not None
                and not task.source_fetched.is_set()
                and now >= task.processing_at
            ]
        deadline = time.monotonic() + self.config.fetch_timeout * 2
        for fetched in pending:
            fetched.wait(max(0.0, deadline - time.monotonic()))

    # ---- task progress -----------------------------------------------------------------------

    def _new_task(self, source: VideoSource, callback_url: str | None) -> _Task:
        kind, value = source
        if kind == "video_id":
            known = self._videos.get(value)
            parent = dict(known) if known else self._video(value, f"video={value}")
        else:
            parent = {"id": self._new_id(), "url": value, "duration": DEMO_DURATION}
        now = _ms(self._clock())
        processing_at = now + _ms(self.config.submitted_seconds)
        self._seq += 1
        task = _Task(
            task_id=self._new_id(),
            seq=self._seq,
            created_at=now,
            processing_at=processing_at,
            final_at=processing_at + _ms(self.config.processing_seconds),
            # Kling fails a video in which it finds no face; the demo lets anyone try that.
            will_fail=NO_FACE_MARKER in value.lower(),
            parent_video=parent,
            callback_url=callback_url,
            updated_at=now,
        )
        self._tasks[task.task_id] = task
        return task

    def _advance_all(self) -> int:
        """Bring every task up to the clock; returns how many are not final. Needs the lock."""
        now = _ms(self._clock())
        running = 0
        for task in self._tasks.values():
            self._advance(task, now)
            if not task.status.is_final:
                running += 1
        return running

    def _advance(self, task: _Task, now: int) -> None:
        # Step through each transition the clock has passed, so a callback goes out for each
        # one, in order, even when the clock jumped over several at once.
        if task.status is TaskStatus.SUBMITTED and now >= task.processing_at:
            if task.source_fetched is not None:
                if not task.source_fetched.is_set():
                    return  # Kling has not got the video yet
                if task.source_problem:
                    task.status = TaskStatus.FAILED
                    task.status_msg = task.source_problem
                    task.updated_at = task.processing_at
                    self._announce(task)
                    return
            task.status = TaskStatus.PROCESSING
            task.updated_at = task.processing_at
            self._announce(task)
        if task.status is TaskStatus.PROCESSING and now >= task.final_at:
            task.updated_at = task.final_at
            if task.will_fail:
                task.status = TaskStatus.FAILED
                task.status_msg = NO_FACE_MESSAGE
            else:
                task.status = TaskStatus.SUCCEED
                video_id = self._new_id()
                task.result_video = self._video(video_id, f"task={task.task_id}")
                self._videos[video_id] = dict(task.result_video)
            self._announce(task)

    def _announce(self, task: _Task) -> None:
        logger.info("task %s is now %s", task.task_id, task.status.value)
        if task.callback_url is not None:
            body = json.dumps(task.to_object(), ensure_ascii=False).encode()
            self._callbacks.send(task.callback_url, task.task_id, task.status.value, body)

    def _tick_loop(self) -> None:
        # Status changes happen by the clock even when nobody asks, and callbacks must go out
        # then, so look regularly.
        while not self._stopping.wait(self.config.tick_seconds):
            with self._lock:
                self._advance_all()

    # ---- helpers -------------------------------------------------------------------------------

    def _new_id(self) -> str:
        """An unused 18-digit numeric id, the shape of Kling's task and video ids."""
        with self._lock:
            while True:
                candidate = str(10**17 + secrets.randbelow(9 * 10**17))
                if candidate not in self._tasks and candidate not in self._videos:
                    return candidate

    def _video(self, video_id: str, query: str) -> dict[str, str]:
        return {
            "id": video_id,
            "url": f"{self._result_base}{ASSETS_PATH}{DEMO_RESULT_NAME}?{query}",
            "duration": DEMO_DURATION,
        }

    def _videos_snapshot(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._videos)
