"""Views that exist only for `make bench` (mounted by ``lipsync_site.urls`` when BENCH_VIEWS=1).

The bare view is the benchmark's baseline: it goes through every middleware of the site,
login included, and then does as little as a Django view can, so a page's cost over it is
the page's own work.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET


@require_GET
def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [path("bench/bare/", bare, name="bench_bare")]
