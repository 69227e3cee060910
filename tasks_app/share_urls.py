"""The public pages of share links (no log-in; see ``tasks_app.share_views``)."""

from django.urls import path

from tasks_app import share_views

urlpatterns = [
    path("<str:token>/", share_views.share_page, name="share_page"),
    path("<str:token>/video.mp4", share_views.share_video, name="share_video"),
]
