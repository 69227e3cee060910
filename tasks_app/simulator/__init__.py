"""A local simulator of Kling's lip-sync API, spoken over real HTTP (plain Python, no Django).

Without Kling credentials the studio runs in demo mode against it (``make run`` starts it as
its own process: ``python -m tasks_app.simulator --port 8765``), and the test suite uses it as
a local server. It implements the protocol of ``shared/kling-api.md``: the same paths,
envelopes, error codes, authentication schemes, validation messages and callback signing as
Kling. It shares the client's names for wire values (task statuses, modes, languages, the
voice table) but none of the client's request building or answer parsing, so that it checks
the client honestly.

The package, by concern:

* :mod:`.config`: :class:`SimulatorConfig` and :class:`ManualClock`;
* :mod:`.state`: :class:`KlingSimulator`, its tasks and their lifecycle by the clock;
* :mod:`.validation`: what a request must be (authorization, create bodies, paging), and
  Kling's error answers;
* :mod:`.callbacks`: callbacks, signed with the ``standardwebhooks`` library;
* :mod:`.server`: the HTTP server and handler, and the demo result video;
* :mod:`.samples`: the demo's sample source videos, made with PyAV on first use;
* :mod:`.cli`: the command line.

Demo behaviour worth knowing:

* every task succeeds after ``submitted_seconds + processing_seconds``, except when the source
  video's id or URL contains ``noface``: then it fails with "The model did not detect a human"
  (not charged, like on Kling);
* result videos all point at ``/assets/demo-result.mp4?task=<task id>``, served with HTTP range
  support so a browser can play and seek;
* ``/samples/<name>`` serves the sample source videos the studio's form offers in demo mode
  (``SAMPLE_NAMES``: one that passes every check, one without a face, one too long, one too
  small), with range support too.

Faults (errors, proxy pages, dropped connections) are not the product's business: a subclass
answers through the :meth:`KlingSimulator.override_answer` hook (the tests'
``FaultySimulator``).
"""

from .callbacks import CallbackAttempt, sign_webhook, webhook_signer
from .cli import main
from .config import DEFAULT_ASSETS_DIR, DEMO_RESULT_NAME, ManualClock, SimulatorConfig
from .samples import SAMPLE_NAMES, SAMPLES, SAMPLES_PATH, Sample, sample_bytes
from .server import API_PATH, Override, RecordedRequest
from .state import NO_FACE_MESSAGE, KlingSimulator
from .validation import ApiError

__all__ = [
    "API_PATH",
    "DEFAULT_ASSETS_DIR",
    "DEMO_RESULT_NAME",
    "NO_FACE_MESSAGE",
    "SAMPLES",
    "SAMPLES_PATH",
    "SAMPLE_NAMES",
    "ApiError",
    "CallbackAttempt",
    "KlingSimulator",
    "ManualClock",
    "Override",
    "RecordedRequest",
    "Sample",
    "SimulatorConfig",
    "main",
    "sample_bytes",
    "sign_webhook",
    "webhook_signer",
]
