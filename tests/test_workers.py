"""Workers report themselves; a job waiting to be sent says when no worker is there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from django.utils import timezone
from factories import make_job, put_job
from nodes import manage

from tasks_app.models import JobStatus, WorkerHeartbeat
from tasks_app.services import workers

ROOT = Path(__file__).resolve().parents[1]
NO_WORKER = "worker is not running, so nothing is being sent to Kling"
HTMX = {"HTTP_HX_REQUEST": "true"}


def beat(worker_id: str = "w1", *, seconds_ago: float = 0) -> WorkerHeartbeat:
    started = timezone.now() - timedelta(hours=1)
    workers.worker_beat(worker_id=worker_id, hostname="node-a", pid=4242, started_at=started)
    seen = timezone.now() - timedelta(seconds=seconds_ago)
    WorkerHeartbeat.objects.filter(worker_id=worker_id).update(last_seen_at=seen)
    return WorkerHeartbeat.objects.get(worker_id=worker_id)


def overdue_job(user, minutes: float = 2):
    return put_job(make_job(user), next_check_at=timezone.now() - timedelta(minutes=minutes))


class TestHeartbeats:
    def test_a_worker_seen_within_the_minute_counts_and_an_older_one_does_not(self, db):
        assert not workers.worker_seen_recently()
        beat("old", seconds_ago=61)
        assert not workers.worker_seen_recently()
        beat("fresh", seconds_ago=5)
        assert workers.worker_seen_recently()

    def test_a_worker_that_stopped_as_asked_no_longer_counts(self, db):
        beat("w1")
        workers.worker_stop(worker_id="w1")
        assert not workers.worker_seen_recently()
        assert WorkerHeartbeat.objects.get(worker_id="w1").stopped_at is not None

    def test_a_beat_updates_one_row_per_worker_and_forgets_week_old_ones(self, db):
        beat("w1")
        beat("w1")
        beat("gone", seconds_ago=8 * 24 * 3600)
        beat("w1")
        assert list(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == ["w1"]


class TestTheJobPageWithoutAWorker:
    def test_an_overdue_job_says_the_worker_is_not_running_and_whom_to_tell(
        self, alice, user, settings
    ):
        settings.STUDIO_CONTACT = "Sam at ops@example.com"
        job = overdue_job(user)

        page = alice.get(job.get_absolute_url()).content.decode()
        polled = alice.get(job.get_absolute_url(), {"shown": "pending"}, **HTMX).content.decode()

        assert NO_WORKER in page and NO_WORKER in polled
        assert "Please tell Sam at ops@example.com." in page

    def test_without_a_contact_it_says_to_tell_whoever_runs_the_studio(self, alice, user):
        page = alice.get(overdue_job(user).get_absolute_url()).content.decode()
        assert "Please tell whoever runs the studio." in page

    def test_a_job_waiting_for_later_says_so_too_but_a_sent_or_held_one_does_not(self, alice, user):
        later = put_job(make_job(user), next_check_at=timezone.now() + timedelta(minutes=5))
        sent = put_job(overdue_job(user), status=JobStatus.SENT, kling_task_id="task-9")
        held = put_job(overdue_job(user), needs_person=True, next_check_at=None)

        assert NO_WORKER in alice.get(later.get_absolute_url()).content.decode()
        assert NO_WORKER not in alice.get(sent.get_absolute_url()).content.decode()
        assert NO_WORKER not in alice.get(held.get_absolute_url()).content.decode()

    def test_a_worker_heard_from_within_the_minute_silences_it(self, alice, user):
        job = overdue_job(user)
        beat("w1", seconds_ago=61)
        assert NO_WORKER in alice.get(job.get_absolute_url()).content.decode()
        beat("w2", seconds_ago=10)
        assert NO_WORKER not in alice.get(job.get_absolute_url()).content.decode()


class TestTheAdmin:
    def test_staff_see_each_worker_and_whether_it_still_reports(self, client, db):
        from django.contrib.auth import get_user_model

        admin = get_user_model().objects.create_superuser("root", password="x")
        client.force_login(admin)
        beat("alive", seconds_ago=3)
        beat("silent", seconds_ago=300)
        beat("done")
        workers.worker_stop(worker_id="done")

        body = client.get("/admin/tasks_app/workerheartbeat/").content.decode()

        for worker_id, state in [
            ("alive", "Running"),
            ("silent", "Not heard from"),
            ("done", "Stopped"),
        ]:
            row = body[body.index(worker_id) :].split("</tr>", 1)[0]
            assert state in row, (worker_id, row)


STATE = """
from tasks_app.models import WorkerHeartbeat
for w in WorkerHeartbeat.objects.all():
    print("heartbeat", w.pid, w.stopped_at is not None)
"""


class TestTheWorkerProcessReports:
    def test_a_running_worker_reports_itself_and_says_when_it_stops(self, tmp_path):
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'studio.sqlite3'}",
            "KLING_DEMO": "1",
            "MEDIA_ROOT": str(tmp_path / "media"),
            "WORKER_HEARTBEAT_SECONDS": "1",
        }

        def heartbeats() -> list[list[str]]:
            lines = manage(env, "shell", "-c", STATE).stdout.splitlines()
            return [line.split()[1:] for line in lines if line.startswith("heartbeat ")]

        manage(env, "migrate", "--noinput", "-v", "0")
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "studio_worker", "--threads", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not (rows := heartbeats()):
                assert time.monotonic() < deadline, "the worker never reported itself"
                time.sleep(0.2)
            assert rows == [[str(worker.pid), "False"]]
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, output
        assert heartbeats() == [[str(worker.pid), "True"]]
