"""The studio on two machines: two web processes and two workers, each with its own empty
MEDIA_ROOT and its own process cache, sharing PostgreSQL, an S3 bucket (moto's server over
HTTP) and Redis, with Kling's simulator.

A person uploads on node A, watches the job on node B and plays the result from node B;
then one worker is SIGKILLed while it has a create on its way to Kling in a run of 20 jobs,
and the other finishes them all: none lost, none sent twice, nothing on any node's disk.

PostgreSQL only (``TEST_DATABASE_URL``, as CI's second run sets it); Redis from
``TEST_REDIS_URL`` (scripts/with-redis; a failure in CI without it, a skip elsewhere).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import global_settings
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import PASSWORD, TEXT_FORM, make_member
from media_files import video_bytes
from nodes import Node, Person, database_url, files_under, free_port, wait_for, web_is_up
from s3 import ACCESS_KEY, REGION, SECRET_KEY, Bucket, new_bucket

from tasks_app.models import Job, JobStatus, Team
from tasks_app.simulator import KlingSimulator, SimulatorConfig
from tasks_app.simulator.config import DEFAULT_ASSETS_DIR, DEMO_RESULT_NAME

pytestmark = pytest.mark.django_db(transaction=True)

JOBS_IN_THE_RUN = 20
# Each create call waits this long on Kling's side after making the task, so that a worker
# killed in the middle of the run has a create whose answer it never gets.
CREATE_LATENCY = 1.5
KLING_READ_TIMEOUT = 3
KLING_CONNECT_TIMEOUT = 1
# A job whose step died with its worker is held for the step's lease (the call's timeouts
# plus 30 s), then waits the sweep's grace (shortened here) before the other worker takes it.
SWEEP_GRACE_SECONDS = 5
RECOVERY_SECONDS = KLING_CONNECT_TIMEOUT + KLING_READ_TIMEOUT + 30 + SWEEP_GRACE_SECONDS
HTMX = {"HX-Request": "true"}


@pytest.fixture
def postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("several machines share PostgreSQL: needs TEST_DATABASE_URL")


@pytest.fixture
def redis_url() -> str:
    """A real Redis; in CI its absence is a failure, elsewhere a skip that says why."""
    url = os.environ.get("TEST_REDIS_URL", "")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("TEST_REDIS_URL is not set: run the tests under scripts/with-redis")
    pytest.skip("needs Redis: run under scripts/with-redis (it sets TEST_REDIS_URL)")


@dataclass
class Studio:
    """The running studio: its nodes, its Kling, its bucket, and what each node keeps."""

    web_a: str
    web_b: str
    workers: list[Node]
    nodes: list[Node]
    kling: KlingSimulator
    bucket: Bucket
    media_roots: dict[str, Path]

    def files_on_nodes(self) -> dict[str, list[Path]]:
        return {name: files_under(root) for name, root in self.media_roots.items()}

    def consoles(self) -> str:
        return "\n".join(node.tail() for node in self.nodes)


def node_env(
    *, name: str, media_root: Path, kling: KlingSimulator, bucket: Bucket, redis_url: str
) -> dict[str, str]:
    """One node's environment: what every node shares (the database, the bucket, Redis,
    Kling, the secret key) and its own MEDIA_ROOT. Nothing else of the developer's."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "KLING_", "DATABASE_", "CACHE_", "MEDIA_", "SITE_URL"))
    }
    return inherited | {
        "DATABASE_URL": database_url(connection.settings_dict),
        "AWS_STORAGE_BUCKET_NAME": bucket.name,
        "AWS_S3_ENDPOINT_URL": bucket.endpoint,
        "AWS_S3_REGION_NAME": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "CACHE_URL": redis_url,
        "MEDIA_ROOT": str(media_root),
        "KLING_DEMO": "1",
        "KLING_SIMULATOR_URL": kling.url,
        "KLING_CONNECT_TIMEOUT": str(KLING_CONNECT_TIMEOUT),
        "KLING_READ_TIMEOUT": str(KLING_READ_TIMEOUT),
        "KLING_POLL_FAST_SECONDS": "1",
        "KLING_RETRY_BASE_SECONDS": "1",
        "WORKER_SWEEP_GRACE_SECONDS": str(SWEEP_GRACE_SECONDS),
        # The test's clip is small; a deployment may lower the limits the same way.
        "KLING_VIDEO_MIN_SIDE": "240",
        "SUBMISSIONS_PER_MINUTE": "100",
        "SECRET_KEY": "test-only-secret-key",
        # DEBUG serves static files from the source folders: a fresh clone has no
        # collectstatic manifest for DEBUG=0 to look names up in.
        "DEBUG": "1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        "STUDIO_NODE": name,
    }


@pytest.fixture
def studio(postgres, redis_url, tmp_path, request) -> Iterator[Studio]:
    """Two web nodes (``runstudio --web-only``) and two workers (``studio_worker``), started
    as real processes on the test database, with their consoles shown if the test fails."""
    s3_server = request.getfixturevalue("s3_server")  # only once the skips above are passed
    kling = KlingSimulator(
        SimulatorConfig(
            # Long enough for both uploads to be seen running on node B.
            submitted_seconds=1,
            processing_seconds=8,
            # Kling downloads an uploaded source as it would: from the bucket's link.
            fetch_sources=True,
            request_log_size=1000,
        )
    ).start()
    bucket = new_bucket(s3_server)
    logs = tmp_path / "logs"
    logs.mkdir()
    media_roots: dict[str, Path] = {}
    nodes: list[Node] = []

    def start(name: str, *args: str) -> Node:
        media_roots[name] = tmp_path / f"media-{name}"
        media_roots[name].mkdir()
        env = node_env(
            name=name,
            media_root=media_roots[name],
            kling=kling,
            bucket=bucket,
            redis_url=redis_url,
        )
        node = Node(name, list(args), env=env, log_dir=logs)
        nodes.append(node)
        return node

    worker = ("studio_worker", "--threads", "4", "--interval", "0.2", "--sweep-every", "1")
    port_a, port_b = free_port(), free_port()
    try:
        for name, port in (("web-a", port_a), ("web-b", port_b)):
            start(name, "runstudio", "--web-only", "--port", str(port), "--web-workers", "2")
        workers = [start("worker-1", *worker), start("worker-2", *worker)]
        for node in workers:
            node.wait_for_line(r"Worker \w+ running 4 thread")
        web_a, web_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        for url in (web_a, web_b):
            wait_for(
                f"{url}/healthz to answer 200",
                functools.partial(web_is_up, url),
                seconds=60,
                every=0.2,
                explain=lambda: "\n".join(node.tail() for node in nodes),
            )
        yield Studio(
            web_a=web_a,
            web_b=web_b,
            workers=workers,
            nodes=nodes,
            kling=kling,
            bucket=bucket,
            media_roots=media_roots,
        )
    finally:
        for node in reversed(nodes):
            node.stop()
        kling.stop()
        # Shown by pytest only when the test failed: what each process said.
        print("\n".join(node.tail(150) for node in nodes))


@pytest.fixture
def person(studio, settings) -> Iterator[Person]:
    """Alice, who logs in: her password hashed as the nodes check it (not the tests' fast
    hasher, which they do not know)."""
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    make_member("alice", Team.objects.create(name="Studio A"))
    someone = Person()
    yield someone
    someone.close()


def job_states() -> str:
    rows = Job.objects.order_by("pk").values_list("pk", "status", "status_detail", "stored_video")
    return "\n".join(
        f"job {pk}: {status}, copy={bool(copy)}: {detail}" for pk, status, detail, copy in rows
    )


def redis_key(name: str) -> str:
    """The key under which Django's cache keeps ``name`` (default prefix and version)."""
    return f":1:{name}"


def watch(person: Person, node: str, pks: list[int], studio: Studio) -> dict[int, httpx.Response]:
    """Follow the jobs' statuses on ``node`` as their pages do (htmx), all at once, until the
    studio says to stop polling each (286); every answer before that is a 200."""
    seen: dict[int, list[int]] = {pk: [] for pk in pks}
    final: dict[int, httpx.Response] = {}

    def done() -> dict[int, httpx.Response] | None:
        for pk in set(pks) - set(final):
            answer = person.http.get(f"{node}/tasks/{pk}/", headers=HTMX)
            seen[pk].append(answer.status_code)
            if answer.status_code == 286:
                final[pk] = answer
        return final if len(final) == len(pks) else None

    wait_for(
        f"jobs {pks} to end, watched on {node}",
        done,
        seconds=60,
        every=0.3,
        explain=lambda: f"answers {seen}\n{job_states()}\n{studio.consoles()}",
    )
    for pk, answers in seen.items():
        assert set(answers) <= {200, 286}, (pk, answers)
        assert answers.count(200) >= 1, (pk, answers)  # watched while it ran, not only at its end
    return final
    return final


class TestTwoNodes:
    def test_uploads_on_node_a_are_watched_and_played_on_node_b_with_nothing_on_any_disk(
        self, studio, person, redis_url
    ):
        clips = [video_bytes(seconds=3, width=480, height=360, fps=fps) for fps in (5, 6)]
        person.log_in(studio.web_a, username="alice", password=PASSWORD)
        form = TEXT_FORM | {"video_source": "video_file", "video_id": ""}

        # Without JavaScript: the file goes with the form, to node A.
        posted = person.submit_job(
            studio.web_a,
            form | {"submission_key": str(uuid.uuid4())},
            files={"video_file": ("posted clip.mp4", clips[0], "video/mp4")},
        )
        # With it: the page sends the file to be checked as soon as it is picked (node A
        # checks and keeps it), and the form, sent later, carries only the kept file's token;
        # the load balancer hands that to node B, which finds the file and its facts.
        before = set(studio.bucket.object_keys())
        token = person.check_job_form(
            studio.web_a,
            form | {"submission_key": str(uuid.uuid4())},
            files={"video_file": ("checked clip.mp4", clips[1], "video/mp4")},
        )
        [staged] = [
            k for k in set(studio.bucket.object_keys()) - before if k.startswith("sources/")
        ]
        facts_key = redis_key(f"source-facts:staged:{hashlib.sha256(staged.encode()).hexdigest()}")
        assert redis.Redis.from_url(redis_url).exists(facts_key)  # shared, not node A's own
        checked = person.submit_job(
            studio.web_b, form | {"submission_key": str(uuid.uuid4()), "video_staged": token}
        )

        # Node B shows both as they run, until each is done.
        for answer in watch(person, studio.web_b, [posted, checked], studio).values():
            assert "badge-succeeded" in answer.text
        jobs = {job.pk: job for job in Job.objects.filter(pk__in=[posted, checked])}
        assert {job.status for job in jobs.values()} == {JobStatus.SUCCEEDED}
        assert jobs[posted].video_name == "posted clip.mp4"
        assert jobs[checked].video_name == "checked clip.mp4"
        assert jobs[checked].video_file.name == staged  # the file node A kept, not a copy

        # Kling read each upload from the bucket, through a presigned link.
        tasks = studio.kling.tasks
        assert set(tasks) == {job.kling_task_id for job in jobs.values()}
        for pk, clip in zip((posted, checked), clips, strict=True):
            source = tasks[jobs[pk].kling_task_id]["task_info"]["parent_video"]["url"]
            assert source.startswith(f"{studio.bucket.endpoint}/{studio.bucket.name}/")
            assert "X-Amz-Signature=" in source
            assert studio.bucket.read(jobs[pk].video_file.name) == clip

        # The result copies land in the bucket, written by whichever worker took them.
        def copied() -> list[Job]:
            done = Job.objects.filter(pk__in=jobs).exclude(stored_video="")
            return list(done) if len(done) == len(jobs) else []

        jobs = {
            job.pk: job
            for job in wait_for(
                "the result copies",
                copied,
                seconds=30,
                explain=lambda: f"{job_states()}\n{studio.consoles()}",
            )
        }
        # Each copy is Kling's result labelled "AI-generated" (test_ai_label.py): about as long.
        kling_result = (DEFAULT_ASSETS_DIR / DEMO_RESULT_NAME).read_bytes()
        copies = {pk: studio.bucket.read(job.stored_video.name) for pk, job in jobs.items()}
        for pk, job in jobs.items():
            assert len(copies[pk]) == job.stored_size
            assert abs(len(copies[pk]) - len(kling_result)) < 1024

        for pk in jobs:
            # Node B plays each: a short presigned link to the object, serving its bytes...
            page = person.http.get(f"{studio.web_b}/tasks/{pk}/")
            assert page.status_code == 200
            assert f"/tasks/{pk}/video/" in page.text
            answer = person.http.get(f"{studio.web_b}/tasks/{pk}/video/")
            assert answer.status_code == 302, answer.text[:2000]
            link = answer.headers["location"]
            assert link.startswith(f"{studio.bucket.endpoint}/{studio.bucket.name}/")
            played = httpx.get(link, timeout=30)
            assert played.status_code == 200
            assert played.content == copies[pk]
            assert played.headers["content-type"] == "video/mp4"
            # ...and seeking in it (a player asks for ranges).
            part = httpx.get(link, headers={"Range": "bytes=100-199"}, timeout=30)
            assert part.status_code == 206
            assert part.content == copies[pk][100:200]
            # The poster, made on node A from the upload, streams from node B.
            poster = person.http.get(f"{studio.web_b}/tasks/{pk}/poster.jpg")
            assert poster.status_code == 200
            assert poster.content[:3] == b"\xff\xd8\xff"
            # Someone not logged in gets no link from node B.
            stranger = httpx.get(f"{studio.web_b}/tasks/{pk}/video/", timeout=30)
            assert stranger.status_code == 302
            assert "/accounts/login/" in stranger.headers["location"]

        keys = set(studio.bucket.object_keys())
        for job in jobs.values():
            assert {job.video_file.name, job.poster.name, job.stored_video.name} <= keys
        assert studio.files_on_nodes() == {name: [] for name in studio.media_roots}
        assert not DBTaskResult.objects.filter(status="FAILED").exists()

    def test_a_worker_killed_mid_run_loses_nothing_and_the_other_sends_each_job_once(
        self, studio, person
    ):
        person.log_in(studio.web_a, username="alice", password=PASSWORD)
        killed, survivor = studio.workers
        killed_name = killed.wait_for_line(r"Worker (\w+) running")[1]
        survivor_name = survivor.wait_for_line(r"Worker (\w+) running")[1]
        # Kling takes a few seconds over each job, so that the plug is pulled before any job
        # of the run has finished (no result copy is under way in the worker then).
        studio.kling.config = dataclasses.replace(
            studio.kling.config,
            create_latency=CREATE_LATENCY,
            submitted_seconds=2,
            processing_seconds=10,
        )
        video_ids = [f"86032781234567{row:04d}" for row in range(JOBS_IN_THE_RUN)]

        # Submitted on both nodes in turn, as a load balancer spreads a person's requests.
        jobs: dict[int, str] = {}
        for row, video_id in enumerate(video_ids):
            node = studio.web_a if row % 2 == 0 else studio.web_b
            form = TEXT_FORM | {
                "video_id": video_id,
                "text": f"Line {row}",
                "submission_key": str(uuid.uuid4()),
            }
            jobs[person.submit_job(node, form)] = video_id
        assert len(jobs) == JOBS_IN_THE_RUN

        # The moment to pull the plug: the worker is in the middle of a create that Kling has
        # already acted on, its answer still on the way, and no job has finished yet.
        def held_mid_create() -> list[int]:
            if Job.objects.filter(pk__in=jobs, status=JobStatus.SUCCEEDED).exists():
                raise AssertionError("a job finished before the worker could be killed")
            running = DBTaskResult.objects.filter(
                status="RUNNING", task_path__endswith="advance_job"
            ).values_list("worker_ids", "args_kwargs")
            held = [
                int(args["args"][0])
                for worker_ids, args in running
                if any(str(w).startswith(f"{killed_name}-") for w in worker_ids)
            ]
            made = {task["task_info"]["parent_video"]["id"] for task in studio.kling.tasks.values()}
            mid_create = Job.objects.filter(
                pk__in=held, kling_task_id=None, send_started_at__isnull=False
            )
            return [job.pk for job in mid_create if job.video_id in made]

        held = wait_for(
            "the first worker to be in the middle of a create",
            held_mid_create,
            seconds=30,
            every=0.05,
            explain=lambda: f"{job_states()}\n{studio.consoles()}",
        )

        killed_at = timezone.now()
        killed.kill()

        assert killed.process.returncode == -9
        some_sent = Job.objects.filter(pk__in=jobs).exclude(kling_task_id=None).count()
        assert some_sent < JOBS_IN_THE_RUN  # killed in the middle of the run, not after it

        def all_done() -> bool:
            finished = Job.objects.filter(pk__in=jobs, status=JobStatus.SUCCEEDED)
            return finished.exclude(stored_video="").count() == JOBS_IN_THE_RUN

        wait_for(
            f"the other worker to finish all {JOBS_IN_THE_RUN} jobs",
            all_done,
            seconds=RECOVERY_SECONDS + 60,
            every=0.5,
            explain=lambda: f"{job_states()}\n{studio.consoles()}",
        )

        # 0 lost: every job succeeded and has its copy in the bucket.
        finished = Job.objects.filter(pk__in=jobs)
        statuses = sorted(finished.values_list("status", flat=True))
        assert statuses == [JobStatus.SUCCEEDED] * JOBS_IN_THE_RUN
        keys = set(studio.bucket.object_keys())
        assert {job.stored_video.name for job in finished} <= keys
        # 0 sent twice: one create per job, one task per job, each task the job's own.
        tasks = studio.kling.tasks
        assert studio.kling.create_calls == JOBS_IN_THE_RUN
        assert len(tasks) == JOBS_IN_THE_RUN
        owners = {job.kling_task_id: job for job in finished}
        assert set(owners) == set(tasks)
        for task_id, job in owners.items():
            assert tasks[task_id]["task_info"]["parent_video"]["id"] == jobs[job.pk]
        # The create the killed worker never heard back about was found on Kling, not redone.
        for pk in held:
            notes = list(Job.objects.get(pk=pk).events.values_list("note", flat=True))
            assert "Found on Kling after a lost answer" in notes, notes
        assert "Rescheduled" in survivor.console()
        assert survivor.running
        # Everything run since the kill was run by the other worker.
        since = DBTaskResult.objects.filter(started_at__gt=killed_at)
        runners = {
            str(w).rsplit("-", 1)[0]
            for ids in since.values_list("worker_ids", flat=True)
            for w in ids
        }
        assert runners == {survivor_name}

        assert studio.files_on_nodes() == {name: [] for name in studio.media_roots}
        assert not DBTaskResult.objects.filter(status="FAILED").exists()
