from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from lipsync_site.env import envbool
from tasks_app import health, source_links, team_views, views
from tasks_app.auth_views import (
    StudioLoginView,
    ThrottledPasswordResetView,
    language_set,
    password_reset_only_with_email,
)

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", health.healthz, name="healthz"),
    path("tasks/", include("tasks_app.urls")),
    path("kling/callback/<int:job_id>/<str:token>/", views.kling_callback, name="kling_callback"),
    # Kling downloads uploaded source videos here (a signed link, no log-in).
    path("sources/<str:token>/<str:name>", source_links.source_video, name="source_video"),
    # A finished video shared with people without an account (tasks_app.share_views).
    path("share/", include("tasks_app.share_urls")),
    path("accounts/login/", StudioLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    # Answered only when e-mail is configured (see ``password_reset_only_with_email``).
    path(
        "accounts/password_reset/",
        password_reset_only_with_email(ThrottledPasswordResetView.as_view()),
        name="password_reset",
    ),
    path(
        "accounts/password_reset/done/",
        password_reset_only_with_email(auth_views.PasswordResetDoneView.as_view()),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        password_reset_only_with_email(auth_views.PasswordResetConfirmView.as_view()),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        password_reset_only_with_email(auth_views.PasswordResetCompleteView.as_view()),
        name="password_reset_complete",
    ),
    path("account/", views.account, name="account"),
    path("teams/switch/", views.team_switch, name="team_switch"),
    path("team/", team_views.team_detail, name="team"),
    path("team/usage/", team_views.team_usage, name="team_usage"),
    path("team/budget/", team_views.team_budget, name="team_budget"),
    path("team/members/add/", team_views.team_member_add, name="team_member_add"),
    path(
        "team/members/<int:membership_id>/role/",
        team_views.team_member_role,
        name="team_member_role",
    ),
    path(
        "team/members/<int:membership_id>/remove/",
        team_views.team_member_remove,
        name="team_member_remove",
    ),
    # Django's switch, also storing a logged-in person's choice for their e-mails.
    path("i18n/setlang/", language_set, name="set_language"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]

# `make bench` only: a bare view behind the same middleware and login, as its baseline.
if envbool("BENCH_VIEWS", False):
    urlpatterns += [path("", include("lipsync_site.bench_urls"))]
