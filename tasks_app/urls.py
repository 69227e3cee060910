from django.urls import path

from tasks_app import batch_views, share_views, views

app_name = "tasks"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("live/", views.job_list_live, name="live"),
    path("new/", views.job_create, name="create"),
    path("new/check/", views.job_check, name="check"),
    path("<int:pk>/", views.job_detail, name="detail"),
    path("<int:pk>/retry/", views.job_retry, name="retry"),
    path("<int:pk>/cancel/", views.job_cancel, name="cancel"),
    path("<int:pk>/archive/", views.job_archive, name="archive"),
    path("<int:pk>/video/", views.job_video, name="video"),
    path("<int:pk>/audio/", views.job_audio, name="audio"),
    path("<int:pk>/poster.jpg", views.job_poster, name="poster"),
    path("<int:pk>/share/", share_views.job_share, name="share"),
    path("<int:pk>/share/<int:share_pk>/revoke/", share_views.share_revoke, name="share_revoke"),
    path("batch/new/", views.batch_create, name="batch_create"),
    path("batch/template.csv", views.batch_template, name="batch_template"),
    path("batch/<int:pk>/", batch_views.batch_detail, name="batch"),
    path("batch/<int:pk>/retry/", batch_views.batch_retry, name="batch_retry"),
    path("batch/<int:pk>/cancel/", batch_views.batch_cancel, name="batch_cancel"),
    path("batch/<int:pk>/archive/", batch_views.batch_archive, name="batch_archive"),
    path("batch/<int:pk>/download.zip", batch_views.batch_download, name="batch_download"),
]
