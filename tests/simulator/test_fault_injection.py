"""Fault injection (tests/kling_faults.py): a FaultySimulator answers chosen calls with
errors, raw bytes or a dropped connection, through the product simulator's one hook."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from kling_faults import FaultySimulator
from simulator_helpers import API, assert_error, client_for, create, query, text_body

from tasks_app.simulator import ApiError, KlingSimulator, Override

MakeFaulty = Callable[..., FaultySimulator]


@pytest.fixture
def simulator(make_faulty_simulator: MakeFaulty) -> FaultySimulator:
    return make_faulty_simulator()


class TestFaultInjection:
    def test_an_injected_error_answers_the_next_matching_calls_then_stops(
        self, simulator: FaultySimulator
    ) -> None:
        simulator.inject("POST", "/lip-sync", http_status=500, code=5000, message="boom", times=2)
        with client_for(simulator) as client:
            for _ in range(2):
                envelope = assert_error(client.post(API, json=text_body()), 500, 5000)
                assert envelope["message"] == "boom"
            create(client)
        assert simulator.created_count == 1
        assert simulator.create_calls == 3

    def test_an_injected_error_only_matches_its_method_and_path(
        self, simulator: FaultySimulator
    ) -> None:
        with client_for(simulator) as client:
            task_id = create(client)
            simulator.inject("GET", f"/{task_id}", http_status=429, code=1302, message="slow")
            assert client.get(API).status_code == 200  # a list, not the query
            assert create(client)  # a POST
            assert_error(client.get(f"{API}/{task_id}"), 429, 1302)
            assert query(client, task_id)["task_id"] == task_id

    def test_injected_errors_come_before_authentication(self, simulator: FaultySimulator) -> None:
        simulator.inject("GET", "/lip-sync", http_status=401, code=1004, message="expired")
        with client_for(simulator, None) as client:
            assert_error(client.get(API), 401, 1004)

    def test_an_injected_raw_answer_is_sent_as_is(self, simulator: FaultySimulator) -> None:
        page = b"<html><body>502 Bad Gateway</body></html>"
        simulator.inject_raw("POST", "/lip-sync", body=page, http_status=502)
        with client_for(simulator) as client:
            response = client.post(API, json=text_body())
        assert response.status_code == 502
        assert response.content == page
        assert response.headers["content-type"].startswith("text/html")
        assert simulator.created_count == 0

    def test_a_fault_that_takes_effect_still_creates_the_task(
        self, simulator: FaultySimulator
    ) -> None:
        simulator.inject_raw(
            "POST", "/lip-sync", body=b'{"code":0,"data":{"task_', http_status=200, take_effect=True
        )
        with client_for(simulator) as client:
            response = client.post(API, json=text_body())
            with pytest.raises(json.JSONDecodeError):
                response.json()
            assert len(client.get(API).json()["data"]) == 1
        assert simulator.created_count == 1

    def test_an_injected_disconnect_gives_no_answer(self, simulator: FaultySimulator) -> None:
        simulator.inject_disconnect("POST", "/lip-sync")
        with client_for(simulator) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                client.post(API, json=text_body())
            create(client)
        assert simulator.created_count == 1

    def test_a_disconnect_after_the_create_leaves_a_task_to_reconcile(
        self, simulator: FaultySimulator
    ) -> None:
        simulator.inject_disconnect("POST", "/lip-sync", take_effect=True)
        with client_for(simulator) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                client.post(API, json=text_body())
            [task] = client.get(API).json()["data"]
        assert task["task_status"] == "submitted"

    def test_clear_faults_forgets_pending_faults(self, simulator: FaultySimulator) -> None:
        simulator.inject("GET", "/lip-sync", http_status=500, code=5000, message="x", times=5)
        simulator.clear_faults()
        with client_for(simulator) as client:
            assert client.get(API).status_code == 200

    def test_it_refuses_to_inject_a_fault_for_zero_calls(self, simulator: FaultySimulator) -> None:
        with pytest.raises(ValueError):
            simulator.inject("GET", "/x", http_status=500, code=5000, message="x", times=0)

    def test_faults_match_prefixed_paths_too(self, make_faulty_simulator: MakeFaulty) -> None:
        sim = make_faulty_simulator(prefix="kling")
        sim.inject("GET", API, http_status=503, code=5001, message="maintenance")
        with client_for(sim) as client:
            assert_error(client.get(f"/kling{API}"), 503, 5001)

    def test_faults_are_taken_in_the_order_they_were_added(
        self, simulator: FaultySimulator
    ) -> None:
        simulator.inject("GET", "/lip-sync", http_status=503, code=5001, message="first")
        simulator.inject("GET", "/lip-sync", http_status=500, code=5000, message="second")
        with client_for(simulator) as client:
            assert assert_error(client.get(API), 503, 5001)["message"] == "first"
            assert assert_error(client.get(API), 500, 5000)["message"] == "second"
            assert client.get(API).status_code == 200


class TestTheHook:
    def test_the_product_simulator_keeps_no_faults_and_overrides_nothing(
        self, make_simulator: Callable[..., KlingSimulator]
    ) -> None:
        sim = make_simulator()
        assert not hasattr(sim, "inject")
        assert sim.override_answer("POST", API) is None

    def test_an_override_is_an_error_or_a_raw_answer_not_both(self) -> None:
        with pytest.raises(ValueError):
            Override(error=ApiError(500, 5000, "x"), raw=(502, b"x", "text/plain"))
