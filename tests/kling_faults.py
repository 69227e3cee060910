"""Fault injection for tests: a Kling simulator that answers chosen calls badly.

The product simulator (``tasks_app.simulator``) only answers as Kling would; it leaves one
hook, ``KlingSimulator.override_answer``, which :class:`FaultySimulator` uses to answer the
next matching calls with an error envelope, raw bytes (a proxy's page, truncated JSON) or a
dropped connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks_app.simulator import ApiError, KlingSimulator, Override, SimulatorConfig


@dataclass(slots=True)
class _Fault:
    method: str
    path_suffix: str
    times: int
    override: Override

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method == method and path.endswith(self.path_suffix)


class FaultySimulator(KlingSimulator):
    """A :class:`KlingSimulator` whose next calls can be made to fail. Thread-safe.

    A call matches a fault when its method equals ``method`` and its path (without query
    string and reseller prefix) ends with ``path_suffix``: ``("POST", "/lip-sync")`` is a
    create, ``("GET", "/lip-sync")`` a list, ``("GET", f"/{task_id}")`` a query. Faults apply
    before authentication, in the order they were added. With ``take_effect`` the call is
    first handled normally (a create does create its task) and only its answer is replaced.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        super().__init__(config)
        self._faults: list[_Fault] = []

    def inject(
        self,
        method: str,
        path_suffix: str,
        *,
        http_status: int,
        code: int,
        message: str,
        times: int = 1,
        take_effect: bool = False,
    ) -> None:
        """Answer the next ``times`` matching calls with Kling's error envelope."""
        error = ApiError(http_status, code, message)
        self._add(method, path_suffix, times, Override(error=error, after_handling=take_effect))

    def inject_raw(
        self,
        method: str,
        path_suffix: str,
        *,
        body: bytes,
        http_status: int,
        content_type: str = "text/html; charset=utf-8",
        times: int = 1,
        take_effect: bool = False,
    ) -> None:
        """Answer the next ``times`` matching calls with ``body`` as is."""
        raw = (http_status, body, content_type)
        self._add(method, path_suffix, times, Override(raw=raw, after_handling=take_effect))

    def inject_disconnect(
        self, method: str, path_suffix: str, *, times: int = 1, take_effect: bool = False
    ) -> None:
        """Close the connection of the next ``times`` matching calls without answering.

        With ``take_effect`` a create does create its task first: the client cannot know,
        which is exactly the "outcome unknown" case the reference warns about.
        """
        self._add(method, path_suffix, times, Override(after_handling=take_effect))

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()

    def override_answer(self, method: str, path: str) -> Override | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault.override
        return None

    def _add(self, method: str, path_suffix: str, times: int, override: Override) -> None:
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_suffix, times, override))
