"""``/healthz``: whether this node can serve, for a load balancer.

200 when the database and the media storage both answer, 503 naming the part that does not.
No log-in, no secrets (what went wrong goes to the log, not the answer), and cheap: one trivial
query and one listing of an empty prefix, nothing written. The answer is for machines, so its
words are fixed tokens, not translated.
"""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.core.files.storage import default_storage
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

# Listed, never written: on object storage a listing of a missing bucket fails, where asking
# whether one key exists would only say "no".
HEALTH_PREFIX = "healthz/"


def database_answers() -> bool:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        logger.warning("Health check: the database does not answer", exc_info=True)
        return False
    return True


def storage_answers() -> bool:
    try:
        default_storage.listdir(HEALTH_PREFIX)
    except FileNotFoundError:
        # A local folder nothing was stored in yet: the file system answered.
        return True
    except Exception:
        logger.warning("Health check: the media storage does not answer", exc_info=True)
        return False
    return True


@login_not_required  # load balancers ask without logging in
@never_cache
@require_safe  # GET, or HEAD as some load balancers send
def healthz(request: HttpRequest) -> JsonResponse:
    parts = {"database": database_answers(), "storage": storage_answers()}
    failing = [name for name, answers in parts.items() if not answers]
    body: dict[str, object] = {
        name: "ok" if answers else "failing" for name, answers in parts.items()
    }
    body["status"] = "failing" if failing else "ok"
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)
