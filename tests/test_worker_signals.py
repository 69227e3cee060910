"""``studio_worker`` stops on SIGTERM (what a process manager or a container stop sends) as on
Ctrl-C: it finishes the task in hand, leaves nothing claimed, and exits 0."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nodes import manage

from tasks_app.simulator import KlingSimulator, SimulatorConfig

ROOT = Path(__file__).resolve().parents[1]

# The create call answers this long after Kling made the task: long enough to signal the
# worker while it waits for the answer.
CREATE_SECONDS = 4.0

CREATE_JOB = """
import uuid
from decimal import Decimal
from django.contrib.auth import get_user_model
from tasks_app.services import submitting
from tasks_app.models import Membership, Team
person = get_user_model().objects.create_user("wendy", password="x")
team = Team.objects.create(name="Night shift")
Membership.objects.create(team=team, user=person)
submitting.job_create(
    team=team, submitted_by=person, submission_key=uuid.uuid4(),
    job_input=submitting.JobInput(
        mode="text2video", video_id="860327812345678901", text="Line one",
        voice_id="genshin_vindi2", voice_language="en", voice_speed=Decimal("1.0"),
    ),
)
"""

STATE = """
import json
from django_tasks_db.models import DBTaskResult
from tasks_app.models import Job
job = Job.objects.get()
print(json.dumps({
    "kling_task_id": job.kling_task_id,
    "status": job.status,
    "running": DBTaskResult.objects.filter(status="RUNNING").count(),
    "successful": DBTaskResult.objects.filter(status="SUCCESSFUL").count(),
}))
"""


@dataclass
class Node:
    env: dict[str, str]
    sim: KlingSimulator


def state(env: dict[str, str]) -> dict:
    return json.loads(manage(env, "shell", "-c", STATE).stdout.strip().splitlines()[-1])


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    """A worker process, returned once it says it is running (its signal handlers set)."""
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "studio_worker", "--threads", "2", "--interval", "0.1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert worker.stdout is not None
    for line in worker.stdout:
        if "running 2 thread(s)" in line:
            return worker
    raise AssertionError(f"the worker exited with code {worker.wait()} before running")


def wait_for(condition, *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A studio with one job waiting to be sent, its own database file, and a simulator."""
    sim = KlingSimulator(SimulatorConfig(create_latency=CREATE_SECONDS)).start()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'studio.sqlite3'}",
        "KLING_DEMO": "1",
        "KLING_SIMULATOR_URL": sim.url,
        "MEDIA_ROOT": str(tmp_path / "media"),
        "SITE_URL": "",
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    yield Node(env=env, sim=sim)
    sim.stop()


class TestStudioWorkerOnSigterm:
    def test_an_idle_worker_stops_at_once_with_code_0(self, node: Node):
        worker = start_worker(node.env)
        try:
            time.sleep(0.5)  # waiting for work
            assert worker.poll() is None
            signalled = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=15)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 0, output
        assert time.monotonic() - signalled < 5
        assert "Stopping after the tasks under way" in output
        assert re.search(r"Worker \w+ stopped", output)
        assert "Traceback" not in output

    def test_a_worker_sending_a_job_finishes_it_then_exits_0_with_nothing_claimed(self, node: Node):
        manage(node.env, "shell", "-c", CREATE_JOB)
        worker = start_worker(node.env)
        try:
            # Kling has made the task; the worker is waiting for the answer.
            assert wait_for(lambda: len(node.sim.tasks) == 1, seconds=30)
            signalled = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=CREATE_SECONDS + 30)
        finally:
            if worker.poll() is None:
                worker.kill()
        stopped_after = time.monotonic() - signalled

        assert worker.returncode == 0, output
        assert "Traceback" not in output
        # It waited for the answer rather than dropping the job mid-call...
        assert stopped_after >= CREATE_SECONDS - 1.5, output
        after = state(node.env)
        (task_id,) = node.sim.tasks
        # ...so the job knows its Kling task, nothing is left claimed, and nothing was sent twice.
        assert after["kling_task_id"] == task_id
        assert after["status"] != "pending"
        assert after["running"] == 0
        assert after["successful"] >= 1
        assert len(node.sim.tasks) == 1

    def test_a_worker_started_again_follows_the_job_without_sending_it_twice(self, node: Node):
        manage(node.env, "shell", "-c", CREATE_JOB)
        first = start_worker(node.env)
        try:
            assert wait_for(lambda: len(node.sim.tasks) == 1, seconds=30)
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=CREATE_SECONDS + 30)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == 0

        second = start_worker(node.env)
        try:
            # Its next check is due within seconds (KLING_POLL_FAST_SECONDS); the simulator
            # task ends after 15 s.
            assert wait_for(lambda: state(node.env)["status"] == "succeeded", seconds=60)
        finally:
            second.send_signal(signal.SIGTERM)
            output, _ = second.communicate(timeout=CREATE_SECONDS + 30)
        assert second.returncode == 0, output
        assert len(node.sim.tasks) == 1
        assert state(node.env)["running"] == 0
