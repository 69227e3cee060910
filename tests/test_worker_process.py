"""The worker as `make run` starts it: its own process, several threads, a clean stop."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks_app.kling.simulator import KlingSimulator, SimulatorConfig

ROOT = Path(__file__).resolve().parents[1]

CREATE_JOBS = """
import uuid
from decimal import Decimal
from django.contrib.auth import get_user_model
from tasks_app import services
from tasks_app.models import Membership, Team
person = get_user_model().objects.create_user("wendy", password="x")
team = Team.objects.create(name="Night shift")
Membership.objects.create(team=team, user=person)
for i in range(6):
    services.job_create(
        team=team, submitted_by=person, submission_key=uuid.uuid4(),
        job_input=services.JobInput(
            mode="text2video", video_id=f"8603278123456789{i:02d}", text=f"Line {i}",
            voice_id="genshin_vindi2", voice_language="en", voice_speed=Decimal("1.0"),
        ),
    )
"""


def manage(env: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        **kwargs,
    )


@pytest.fixture
def studio_env(tmp_path) -> dict:
    sim = KlingSimulator(SimulatorConfig(create_latency=1.0)).start()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'studio.sqlite3'}",
        "KLING_DEMO": "1",
        "KLING_SIMULATOR_URL": sim.url,
        "MEDIA_ROOT": str(tmp_path / "media"),
        "SITE_URL": "",
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "shell", "-c", CREATE_JOBS)
    env["_sim"] = sim.url
    yield env | {"_db": str(tmp_path / "studio.sqlite3")}
    sim.stop()


def sent_jobs(db: str) -> int:
    with sqlite3.connect(db) as conn:
        query = "SELECT count(*) FROM tasks_app_job WHERE kling_task_id IS NOT NULL"
        return conn.execute(query).fetchone()[0]


def send_spread_seconds(db: str) -> float:
    """Seconds between the first and the last job's answer from Kling."""
    with sqlite3.connect(db) as conn:
        query = (
            "SELECT (julianday(max(sent_at)) - julianday(min(sent_at))) * 86400 FROM tasks_app_job"
        )
        return conn.execute(query).fetchone()[0]


class TestTheWorkerProcess:
    def test_it_sends_jobs_side_by_side_and_stops_cleanly_on_sigterm(self, studio_env):
        env = {k: v for k, v in studio_env.items() if not k.startswith("_")}
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "studio_worker", "--threads", "6", "--interval", "0.1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            started = time.monotonic()
            while sent_jobs(studio_env["_db"]) < 6 and time.monotonic() - started < 60:
                time.sleep(0.1)
            assert sent_jobs(studio_env["_db"]) == 6
            # Each create takes 1 s on the simulator: one after another, the answers would
            # spread over 5 s or more; side by side they arrive together.
            assert send_spread_seconds(studio_env["_db"]) < 2.5
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, output
        assert "running 6 thread(s)" in output
        assert "Traceback" not in output
