"""The worker as `make run` starts it: its own process, several threads, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nodes import manage

from tasks_app.simulator import KlingSimulator, SimulatorConfig

ROOT = Path(__file__).resolve().parents[1]

CREATE_JOBS = """
import uuid
from decimal import Decimal
from django.contrib.auth import get_user_model
from tasks_app.services import submitting
from tasks_app.models import Membership, Team
person = get_user_model().objects.create_user("wendy", password="x")
team = Team.objects.create(name="Night shift")
Membership.objects.create(team=team, user=person)
for i in range(6):
    submitting.job_create(
        team=team, submitted_by=person, submission_key=uuid.uuid4(),
        job_input=submitting.JobInput(
            mode="text2video", video_id=f"8603278123456789{i:02d}", text=f"Line {i}",
            voice_id="genshin_vindi2", voice_language="en", voice_speed=Decimal("1.0"),
        ),
    )
"""


@pytest.fixture
def studio_env(tmp_path) -> Iterator[dict[str, str]]:
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
    yield env
    sim.stop()


SENT = """
from django.db.models import Max, Min
from tasks_app.models import Job
sent = Job.objects.exclude(kling_task_id=None)
times = sent.aggregate(first=Min("sent_at"), last=Max("sent_at"))
spread = (times["last"] - times["first"]).total_seconds() if sent.exists() else 0
print(sent.count(), spread)
"""


def sent_jobs(env: dict) -> tuple[int, float]:
    """How many jobs of the worker's database Kling has answered, and the seconds between the
    first and the last answer (read by the studio itself, as another process would)."""
    count, spread = manage(env, "shell", "-c", SENT).stdout.split()[-2:]
    return int(count), float(spread)


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
            while (sent := sent_jobs(env))[0] < 6 and time.monotonic() - started < 60:
                time.sleep(0.1)
            count, spread = sent
            assert count == 6
            # Each create takes 1 s on the simulator: one after another, the answers would
            # spread over 5 s or more; side by side they arrive together.
            assert spread < 2.5
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, output
        assert "running 6 thread(s)" in output
        assert "Traceback" not in output
