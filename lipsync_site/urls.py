from django.contrib import admin
from django.urls import include, path

from lipsync_site.env import envbool
from tasks_app import views
from tasks_app.auth_views import StudioLoginView

urlpatterns = [
    path("", views.index, name="index"),
    path("tasks/", include("tasks_app.urls")),
    path("kling/callback/<int:job_id>/<str:token>/", views.kling_callback, name="kling_callback"),
    path("accounts/login/", StudioLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("account/", views.account, name="account"),
    path("teams/switch/", views.team_switch, name="team_switch"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]

# `make bench` only: a bare view behind the same middleware and login, as its baseline.
if envbool("BENCH_VIEWS", False):
    urlpatterns += [path("", include("lipsync_site.bench_urls"))]
