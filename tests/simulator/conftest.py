"""Fixtures for the simulator's tests: the simulator on a real local socket, a clock the
tests move, and a server that receives its callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kling_faults import FaultySimulator
from simulator_helpers import CallbackReceiver

from tasks_app.simulator import (
    DEFAULT_ASSETS_DIR,
    DEMO_RESULT_NAME,
    KlingSimulator,
    ManualClock,
    SimulatorConfig,
)

SimulatorT = TypeVar("SimulatorT", bound=KlingSimulator)

# Timings that let a task run its whole course in half a second of real time.
FAST_TIMINGS: dict[str, Any] = {
    "submitted_seconds": 0.2,
    "processing_seconds": 0.3,
    "tick_seconds": 0.02,
    "callback_timeout": 2.0,
}


def _fake_video() -> bytes:
    # Not a playable film, but shaped like the start of an MP4 and with bytes that differ from
    # one offset to the next, so that a wrong range shows.
    header = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    return header + bytes(i % 251 for i in range(20_000))


@pytest.fixture(scope="session")
def fake_video() -> bytes:
    """The bytes of the fake demo result video in ``fake_assets_dir``."""
    return _fake_video()


@pytest.fixture(scope="session")
def fake_assets_dir(tmp_path_factory: pytest.TempPathFactory, fake_video: bytes) -> Path:
    """A temporary assets directory holding a small fake ``demo-result.mp4``."""
    directory = tmp_path_factory.mktemp("kling-assets")
    (directory / DEMO_RESULT_NAME).write_bytes(fake_video)
    return directory


@pytest.fixture
def make_simulator(fake_assets_dir: Path) -> Iterator[Callable[..., KlingSimulator]]:
    """A factory: ``make_simulator(**config)`` starts a simulator, stopped after the test.

    Defaults: 127.0.0.1 on a free port, fast timings (see ``FAST_TIMINGS``), the real demo
    video when it is there and a fake one otherwise. Keyword arguments are
    :class:`SimulatorConfig` fields and override the defaults.
    """
    with _starter(KlingSimulator, fake_assets_dir) as factory:
        yield factory


@pytest.fixture
def make_faulty_simulator(fake_assets_dir: Path) -> Iterator[Callable[..., FaultySimulator]]:
    """Like ``make_simulator``, for a simulator that can be told to fail (tests/kling_faults)."""
    with _starter(FaultySimulator, fake_assets_dir) as factory:
        yield factory


@contextmanager
def _starter(cls: type[SimulatorT], fake_assets_dir: Path) -> Iterator[Callable[..., SimulatorT]]:
    started: list[SimulatorT] = []

    def factory(**config: Any) -> SimulatorT:
        options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, **FAST_TIMINGS}
        if not (DEFAULT_ASSETS_DIR / DEMO_RESULT_NAME).is_file():
            options["assets_dir"] = fake_assets_dir
        options.update(config)
        simulator = cls(SimulatorConfig(**options))
        simulator.start()
        started.append(simulator)
        return simulator

    try:
        yield factory
    finally:
        for simulator in reversed(started):
            simulator.stop()


@pytest.fixture
def simulator(make_simulator: Callable[..., KlingSimulator]) -> KlingSimulator:
    """A running simulator with the default config and fast timings (API key "demo-key")."""
    return make_simulator()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    yield receiver
    receiver.close()
