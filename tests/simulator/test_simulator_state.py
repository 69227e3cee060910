"""The simulator's state and lifecycle: its config and clock, creating tasks, moving them
through their statuses by the clock, listing them, and the account's concurrency limit.

Time is moved with a ManualClock wherever possible; one lifecycle test relies on the
simulator's own background thread.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from simulator_helpers import (
    API,
    WEBHOOK_SECRET,
    MakeSimulator,
    assert_error,
    audio_body,
    client_for,
    create,
    query,
    text_body,
    without,
)

from tasks_app.simulator import (
    DEMO_RESULT_NAME,
    NO_FACE_MESSAGE,
    KlingSimulator,
    ManualClock,
    SimulatorConfig,
)

# ---- configuration and clock -----------------------------------------------------------------


class TestSimulatorConfig:
    def test_it_normalises_the_reseller_prefix(self) -> None:
        assert SimulatorConfig(prefix="kling/").prefix == "/kling"
        assert SimulatorConfig(prefix="/kling").prefix == "/kling"
        assert SimulatorConfig(prefix="/").prefix == ""

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({"submitted_seconds": -1}, id="negative-timing"),
            pytest.param({"concurrency_limit": 0}, id="zero-concurrency"),
            pytest.param({"access_key": "ak"}, id="access-key-without-secret"),
            pytest.param({"api_key": None}, id="no-credentials-at-all"),
            pytest.param({"webhook_secret": "whsec_%%%"}, id="webhook-secret-not-base64"),
        ],
    )
    def test_it_refuses_an_inconsistent_config(self, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            SimulatorConfig(**options)

    def test_its_repr_does_not_show_the_webhook_secret(self) -> None:
        assert WEBHOOK_SECRET not in repr(SimulatorConfig(webhook_secret=WEBHOOK_SECRET))


class TestManualClock:
    def test_it_stands_still_until_advanced(self) -> None:
        clock = ManualClock(start=100.0)
        assert clock() == 100.0
        assert clock.advance(2.5) == 102.5
        assert clock() == 102.5

    def test_it_refuses_to_go_back_in_time(self) -> None:
        with pytest.raises(ValueError):
            ManualClock(start=1.0).advance(-1)


# ---- create ----------------------------------------------------------------------------------


class TestCreate:
    def test_it_answers_with_the_create_envelope(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            envelope = client.post(API, json=text_body()).json()
        assert envelope["code"] == 0
        assert envelope["message"] == "SUCCEED"
        assert envelope["request_id"]
        data = envelope["data"]
        assert set(data) == {"task_id", "task_status", "created_at", "updated_at"}
        assert data["task_status"] == "submitted"
        assert data["created_at"] == data["updated_at"] == round(clock() * 1000)

    def test_it_gives_each_task_a_distinct_18_digit_numeric_id(
        self, simulator: KlingSimulator
    ) -> None:
        with client_for(simulator) as client:
            ids = [create(client) for _ in range(5)]
        assert len(set(ids)) == 5
        assert all(len(task_id) == 18 and task_id.isdigit() for task_id in ids)
        assert simulator.created_count == 5

    def test_it_accepts_an_audio_file_task(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            create(client, audio_body())

    def test_it_accepts_an_audio_url_task(self, simulator: KlingSimulator) -> None:
        body = audio_body(audio_type="url", audio_url="https://cdn.example.com/a.mp3")
        with client_for(simulator) as client:
            create(client, without(body, "audio_file"))

    def test_it_accepts_a_reseller_task_id_next_to_a_video_id(
        self, simulator: KlingSimulator
    ) -> None:
        body = without(text_body(video_id="842211903355666432", task_id="abc=="), "video_url")
        with client_for(simulator) as client:
            create(client, body)

    def test_it_records_the_body_for_inspection(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            create(client)
        assert simulator.requests[-1].body == text_body()
        assert simulator.create_calls == 1

    def test_it_describes_the_source_video_in_task_info(self, simulator: KlingSimulator) -> None:
        with client_for(simulator) as client:
            task = query(client, create(client))
        parent = task["task_info"]["parent_video"]
        assert parent["url"] == "https://cdn.example.com/talking-head.mp4"
        assert parent["id"].isdigit()
        assert isinstance(parent["duration"], str)

    def test_it_accepts_a_result_video_id_as_a_later_source(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            first = create(client)
            clock.advance(60)
            result = query(client, first)["task_result"]["videos"][0]
            second = create(client, without(text_body(video_id=result["id"]), "video_url"))
            assert query(client, second)["task_info"]["parent_video"] == result


# ---- lifecycle -------------------------------------------------------------------------------


class TestLifecycle:
    @pytest.fixture
    def sim(self, make_simulator: MakeSimulator, clock: ManualClock) -> KlingSimulator:
        return make_simulator(now=clock, submitted_seconds=3, processing_seconds=12)

    def test_it_moves_a_task_through_its_statuses_by_the_clock(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        start_ms = round(clock() * 1000)
        with client_for(sim) as client:
            task_id = create(client)
            clock.advance(2.9)
            assert query(client, task_id)["task_status"] == "submitted"
            clock.advance(0.2)
            processing = query(client, task_id)
            clock.advance(12)
            done = query(client, task_id)
        assert processing["task_status"] == "processing"
        assert processing["updated_at"] == start_ms + 3000
        assert processing["task_result"]["videos"] == []
        assert "final_unit_deduction" not in processing
        assert done["task_status"] == "succeed"
        assert done["created_at"] == start_ms
        assert done["updated_at"] == start_ms + 15000

    def test_a_successful_task_carries_its_result_video_and_charge(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        with client_for(sim) as client:
            task_id = create(client)
            clock.advance(15)
            task = query(client, task_id)
        assert task["task_status_msg"] == ""
        assert task["final_unit_deduction"] == "5"
        [video] = task["task_result"]["videos"]
        assert video["id"].isdigit() and len(video["id"]) == 18
        assert video["id"] != task_id
        assert video["url"] == f"{sim.url}/assets/{DEMO_RESULT_NAME}?task={task_id}"
        assert isinstance(video["duration"], str)
        float(video["duration"])

    @pytest.mark.parametrize(
        "source",
        [
            {"video_url": "https://cdn.example.com/noface-landscape.mp4"},
            {"video_id": "noface-842211903355"},
        ],
    )
    def test_a_video_without_a_face_fails_uncharged(
        self, sim: KlingSimulator, clock: ManualClock, source: dict[str, str]
    ) -> None:
        body = without(text_body(), "video_url")
        body["input"].update(source)
        with client_for(sim) as client:
            task_id = create(client, body)
            clock.advance(3)
            assert query(client, task_id)["task_status"] == "processing"
            clock.advance(12)
            task = query(client, task_id)
        assert task["task_status"] == "failed"
        assert task["task_status_msg"] == NO_FACE_MESSAGE
        assert task["task_result"]["videos"] == []
        assert "final_unit_deduction" not in task

    def test_it_answers_an_unknown_task_with_404_and_1203(self, sim: KlingSimulator) -> None:
        with client_for(sim) as client:
            assert_error(client.get(f"{API}/999999999999999999"), 404, 1203)

    def test_it_counts_queries(self, sim: KlingSimulator) -> None:
        with client_for(sim) as client:
            task_id = create(client)
            query(client, task_id)
            query(client, task_id)
            client.get(f"{API}/999999999999999999")
        assert sim.query_count == 3

    def test_its_task_snapshot_follows_the_clock(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        with client_for(sim) as client:
            task_id = create(client)
        assert sim.tasks[task_id]["task_status"] == "submitted"
        clock.advance(20)
        assert sim.tasks[task_id]["task_status"] == "succeed"

    def test_a_task_runs_its_course_in_real_time(self, simulator: KlingSimulator) -> None:
        seen: list[str] = []
        with client_for(simulator) as client:
            task_id = create(client)
            deadline = time.monotonic() + 5
            while not seen or seen[-1] not in ("succeed", "failed"):
                assert time.monotonic() < deadline, seen
                status = query(client, task_id)["task_status"]
                if not seen or seen[-1] != status:
                    seen.append(status)
                time.sleep(0.03)
        assert seen == ["submitted", "processing", "succeed"]


# ---- list ------------------------------------------------------------------------------------


class TestList:
    @pytest.fixture
    def sim(self, make_simulator: MakeSimulator, clock: ManualClock) -> KlingSimulator:
        return make_simulator(now=clock)

    def _create_tasks(self, sim: KlingSimulator, clock: ManualClock, count: int) -> list[str]:
        with client_for(sim) as client:
            ids = []
            for _ in range(count):
                ids.append(create(client))
                clock.advance(0.001)
            return ids

    def test_it_lists_tasks_newest_first(self, sim: KlingSimulator, clock: ManualClock) -> None:
        ids = self._create_tasks(sim, clock, 3)
        with client_for(sim) as client:
            envelope = client.get(API).json()
        assert envelope["code"] == 0
        assert [task["task_id"] for task in envelope["data"]] == ids[::-1]

    def test_it_keeps_creation_order_for_tasks_created_in_the_same_millisecond(
        self, sim: KlingSimulator
    ) -> None:
        with client_for(sim) as client:
            ids = [create(client) for _ in range(3)]
            listed = [task["task_id"] for task in client.get(API).json()["data"]]
        assert listed == ids[::-1]

    def test_it_pages_through_tasks(self, sim: KlingSimulator, clock: ManualClock) -> None:
        ids = self._create_tasks(sim, clock, 5)[::-1]
        with client_for(sim) as client:
            pages = [
                [
                    t["task_id"]
                    for t in client.get(API, params={"pageNum": n, "pageSize": 2}).json()["data"]
                ]
                for n in (1, 2, 3, 4)
            ]
        assert pages == [ids[0:2], ids[2:4], ids[4:5], []]

    def test_it_lists_full_task_objects(self, sim: KlingSimulator, clock: ManualClock) -> None:
        [task_id] = self._create_tasks(sim, clock, 1)
        clock.advance(60)
        with client_for(sim) as client:
            [listed] = client.get(API).json()["data"]
            assert listed == query(client, task_id)

    @pytest.mark.parametrize(
        "params",
        [{"pageNum": 0}, {"pageSize": 0}, {"pageSize": 501}, {"pageNum": "one"}],
    )
    def test_it_rejects_bad_paging_with_1201(
        self, sim: KlingSimulator, params: dict[str, Any]
    ) -> None:
        with client_for(sim) as client:
            assert_error(client.get(API, params=params), 400, 1201)

    def test_it_defaults_to_30_per_page_and_counts_calls(
        self, sim: KlingSimulator, clock: ManualClock
    ) -> None:
        self._create_tasks(sim, clock, 31)
        with client_for(sim) as client:
            assert len(client.get(API).json()["data"]) == 30
            assert len(client.get(API, params={"pageNum": 2}).json()["data"]) == 1
        assert sim.list_count == 2


# ---- concurrency -----------------------------------------------------------------------------


class TestConcurrency:
    def test_it_refuses_a_create_beyond_the_limit_with_429_and_1303(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock, concurrency_limit=2)
        with client_for(sim) as client:
            create(client)
            create(client)
            assert_error(client.post(API, json=text_body()), 429, 1303)
        assert sim.created_count == 2
        assert sim.create_calls == 3

    def test_queries_and_lists_do_not_count_against_the_limit(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock, concurrency_limit=1)
        with client_for(sim) as client:
            task_id = create(client)
            assert client.get(f"{API}/{task_id}").status_code == 200
            assert client.get(API).status_code == 200

    def test_a_task_frees_its_slot_when_it_ends_even_by_failing(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock, concurrency_limit=1)
        noface = text_body(video_url="https://cdn.example.com/noface.mp4")
        with client_for(sim) as client:
            create(client, noface)
            clock.advance(sim.config.submitted_seconds)
            assert_error(client.post(API, json=text_body()), 429, 1303)  # processing holds it
            clock.advance(sim.config.processing_seconds)
            create(client)

    def test_it_tracks_the_most_tasks_running_at_once(
        self, make_simulator: MakeSimulator, clock: ManualClock
    ) -> None:
        sim = make_simulator(now=clock)
        with client_for(sim) as client:
            for _ in range(3):
                create(client)
            assert sim.running_count == 3
            clock.advance(60)
            create(client)
        assert sim.running_count == 1
        assert sim.max_running == 3
