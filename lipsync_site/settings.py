"""Settings for Lip-Sync Studio, all read from the environment (see README and .env.example)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from lipsync_site import email_url
from lipsync_site.env import envbool, envcache, envfloat, envint, envlist, envstr, envurl

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DEBUG", False)

_DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = envstr("SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG else None)
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "django_tasks",
    "django_tasks_db",
    "axes",
    "tasks_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "tasks_app.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "tasks_app.middleware.ProfileMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tasks_app.middleware.OutOfRangeInputMiddleware",
    # Last, as django-axes asks: it turns a locked-out log-in into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out account or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "lipsync_site.urls"
WSGI_APPLICATION = "lipsync_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "tasks_app.context_processors.studio",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to the same file: WAL lets readers carry on while
    # one writes, IMMEDIATE takes the write lock up front so transactions wait rather than fail.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "tasks:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

# One cache per process by default (fine on one machine); CACHE_URL=redis://... shares one
# between nodes. The submission limit and failed log-ins are counted in the database; the
# password-reset limit and the media-check reuse are shared through this cache (see README,
# "Running on several machines").
CACHES = {"default": envcache("CACHE_URL")}

# Audio is sent to Kling inside the JSON body, so uploads are capped at Kling's limit.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

SESSION_COOKIE_HTTPONLY = True

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
    if envbool("BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# E-mail from one URL (lipsync_site/email_url.py), e.g. smtp+tls://user:pass@host:587; without
# it, the older EMAIL_BACKEND alone (the console by default: e-mails are written to the log).
_EMAIL_URL = envstr("EMAIL_URL")
if _EMAIL_URL and envstr("EMAIL_BACKEND"):
    raise ImproperlyConfigured("Set EMAIL_URL or EMAIL_BACKEND, not both.")
_email = email_url.parse_email_url(_EMAIL_URL) if _EMAIL_URL else {}
EMAIL_BACKEND: str = _email.get("EMAIL_BACKEND") or envstr("EMAIL_BACKEND", email_url.CONSOLE)
EMAIL_HOST: str = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT: int = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER: str = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD: str = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS: bool = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL: bool = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT: int | None = _email.get("EMAIL_TIMEOUT")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "webmaster@localhost")
if "@" not in DEFAULT_FROM_EMAIL:
    raise ImproperlyConfigured(
        f"DEFAULT_FROM_EMAIL must be an e-mail address, not {DEFAULT_FROM_EMAIL!r}"
    )
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Password reset is offered only when e-mail really leaves the server (see lipsync_site/urls.py),
# at most PASSWORD_RESETS_PER_HOUR times an hour per address asked for and per client.
PASSWORD_RESET_ENABLED = EMAIL_BACKEND not in email_url.NOT_SENDING
PASSWORD_RESETS_PER_HOUR = envint("PASSWORD_RESETS_PER_HOUR", 3, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Kling -----------------------------------------------------------------------------------

KLING_DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
KLING_API_KEY = envstr("KLING_API_KEY")
KLING_ACCESS_KEY = envstr("KLING_ACCESS_KEY")
KLING_SECRET_KEY = envstr("KLING_SECRET_KEY")
if bool(KLING_ACCESS_KEY) != bool(KLING_SECRET_KEY):
    raise ImproperlyConfigured("KLING_ACCESS_KEY and KLING_SECRET_KEY must be set together.")
_has_credentials = bool(KLING_API_KEY or KLING_ACCESS_KEY)

# Demo mode talks to the built-in simulator (a separate process `make run` starts) exactly as
# it would talk to Kling: only the base URL and the key differ.
KLING_DEMO = envbool("KLING_DEMO", not _has_credentials)
KLING_SIMULATOR_URL = envurl("KLING_SIMULATOR_URL", "http://127.0.0.1:8765")
if KLING_DEMO:
    KLING_API_BASE_URL = KLING_SIMULATOR_URL
    KLING_API_KEY, KLING_ACCESS_KEY, KLING_SECRET_KEY = "demo-key", None, None
else:
    if not _has_credentials:
        raise ImproperlyConfigured(
            "KLING_DEMO is off but no Kling credentials are set: set KLING_API_KEY, or "
            "KLING_ACCESS_KEY and KLING_SECRET_KEY."
        )
    KLING_API_BASE_URL = envurl("KLING_API_BASE_URL", KLING_DEFAULT_BASE_URL)
    if SECRET_KEY == _DEV_SECRET_KEY:
        # Sessions signed with a published key could be forged on a studio spending credits.
        raise ImproperlyConfigured(
            "Live Kling mode needs its own SECRET_KEY: the built-in development key is public. "
            "Set SECRET_KEY to a long random value (see .env.example)."
        )
    # Keys and tokens must not cross the network in clear text; a local peer (a test double,
    # a reseller's sidecar) can be allowed on purpose.
    KLING_ALLOW_HTTP = envbool("KLING_ALLOW_HTTP", False)
    if KLING_API_BASE_URL.startswith("http://") and not KLING_ALLOW_HTTP:
        raise ImproperlyConfigured(
            "KLING_API_BASE_URL must start with https:// (Kling keys would travel in clear "
            "text); set KLING_ALLOW_HTTP=1 only for a local peer."
        )

KLING_CONNECT_TIMEOUT = envint("KLING_CONNECT_TIMEOUT", 5, minimum=1)
KLING_READ_TIMEOUT = envint("KLING_READ_TIMEOUT", 30, minimum=1)

SITE_URL = envurl("SITE_URL")
KLING_WEBHOOK_SECRET = envstr("KLING_WEBHOOK_SECRET")

# An uploaded source video reaches Kling as a signed link under SITE_URL (tasks_app.source_links),
# valid this long. Without SITE_URL, demo mode links to the address `make run` serves on, where
# the simulator fetches it from this machine; live mode cannot take uploads then.
SOURCE_LINK_HOURS = envfloat("SOURCE_LINK_HOURS", 48.0, above=0)
DEMO_STUDIO_URL = f"http://127.0.0.1:{envint('PORT', 8000, minimum=1)}"

# --- Media storage ---------------------------------------------------------------------------
# Uploads, posters and result copies live on this machine's disk (MEDIA_ROOT) unless a bucket
# is named: then in any S3-compatible object store, through django-storages, configured by its
# own setting names, so that every web node and worker reaches every file. Objects stay
# private: people get them through short-lived presigned links the studio's views hand out
# after their permission check, and Kling gets an uploaded source as a presigned link valid
# SOURCE_LINK_HOURS (tasks_app/storage.py, tasks_app/source_links.py).
AWS_STORAGE_BUCKET_NAME = envstr("AWS_STORAGE_BUCKET_NAME")
if AWS_STORAGE_BUCKET_NAME:
    AWS_S3_ENDPOINT_URL = envurl("AWS_S3_ENDPOINT_URL")  # unset: Amazon S3 itself
    AWS_S3_REGION_NAME = envstr("AWS_S3_REGION_NAME")
    # Unset: boto3 finds credentials itself (an instance role, ~/.aws).
    AWS_ACCESS_KEY_ID = envstr("AWS_ACCESS_KEY_ID")
    AWS_SECRET_ACCESS_KEY = envstr("AWS_SECRET_ACCESS_KEY")
    if bool(AWS_ACCESS_KEY_ID) != bool(AWS_SECRET_ACCESS_KEY):
        raise ImproperlyConfigured(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together."
        )
    # Presigned links (signature version 4) last at most seven days.
    if SOURCE_LINK_HOURS > 7 * 24:
        raise ImproperlyConfigured(
            "SOURCE_LINK_HOURS must be at most 168 with a bucket (AWS_STORAGE_BUCKET_NAME): "
            f"presigned links last at most seven days, not {SOURCE_LINK_HOURS:g} hours."
        )
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = True
    AWS_QUERYSTRING_EXPIRE = int(SOURCE_LINK_HOURS * 3600)
    AWS_S3_FILE_OVERWRITE = False
    AWS_S3_SIGNATURE_VERSION = "s3v4"
    # A file read through the storage spills to a temporary file past this, not to memory.
    AWS_S3_MAX_MEMORY_SIZE = FILE_UPLOAD_MAX_MEMORY_SIZE
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage"}

# Kling's documented limits on the source video: every video is measured against them before it
# is sent, and the hints say them. The live service has been seen to accept more, and Kling's
# own message is shown when it disagrees.
KLING_VIDEO_MIN_SECONDS = envint("KLING_VIDEO_MIN_SECONDS", 2, minimum=1)
KLING_VIDEO_MAX_SECONDS = envint("KLING_VIDEO_MAX_SECONDS", 10, minimum=1)
KLING_VIDEO_MIN_SIDE = envint("KLING_VIDEO_MIN_SIDE", 720, minimum=1)
KLING_VIDEO_MAX_SIDE = envint("KLING_VIDEO_MAX_SIDE", 1920, minimum=1)
KLING_MAX_AUDIO_BYTES = envint("KLING_MAX_AUDIO_BYTES", 5 * 1024 * 1024, minimum=1024)
KLING_VIDEO_MAX_BYTES = envint("KLING_VIDEO_MAX_BYTES", 100 * 1024 * 1024, minimum=1024)
KLING_AUDIO_MIN_SECONDS = envint("KLING_AUDIO_MIN_SECONDS", 2, minimum=1)
KLING_AUDIO_MAX_SECONDS = envint("KLING_AUDIO_MAX_SECONDS", 60, minimum=1)
# The longest one check of a source video or audio (fetching, probing, the face check) may
# hold a web worker; past it the person is told the studio could not read it in time.
MEDIA_CHECK_SECONDS = envint("MEDIA_CHECK_SECONDS", 20, minimum=1)

# The worker's schedule: how often an active job is checked, and how sending backs off.
KLING_POLL_FAST_SECONDS = envint("KLING_POLL_FAST_SECONDS", 5, minimum=1)
KLING_POLL_MAX_SECONDS = envint("KLING_POLL_MAX_SECONDS", 60, minimum=1)
KLING_RETRY_BASE_SECONDS = envint("KLING_RETRY_BASE_SECONDS", 5, minimum=1)
KLING_RETRY_MAX_SECONDS = envint("KLING_RETRY_MAX_SECONDS", 600, minimum=1)
KLING_MAX_SEND_ATTEMPTS = envint("KLING_MAX_SEND_ATTEMPTS", 15, minimum=1)
# How long a create with an unknown outcome may take to show up in Kling's task list.
KLING_RECONCILE_GRACE_SECONDS = envint("KLING_RECONCILE_GRACE_SECONDS", 30, minimum=0)
KLING_SLOW_AFTER_MINUTES = envint("KLING_SLOW_AFTER_MINUTES", 15, minimum=1)
# A job Kling has not finished this long after it got it has one last check, then fails.
KLING_JOB_DEADLINE_MINUTES = envint("KLING_JOB_DEADLINE_MINUTES", 120, minimum=1)

# The studio keeps its own copy of every result (Kling deletes its copy after 30 days).
RESULT_MAX_BYTES = envint("RESULT_MAX_BYTES", 300 * 1024 * 1024, minimum=1024)
RESULT_STORE_ATTEMPTS = envint("RESULT_STORE_ATTEMPTS", 8, minimum=1)
# One copy may take this long, redirects included; a stalled server is cut off sooner, by
# KLING_READ_TIMEOUT.
RESULT_FETCH_DEADLINE_SECONDS = envint("RESULT_FETCH_DEADLINE_SECONDS", 600, minimum=1)
# Links the studio fetches (tasks_app/fetch.py) may not lead to private or local addresses,
# except on these hosts (`host` or `host:port`), e.g. an object store inside the network.
# Demo mode adds its simulator by itself. Checked here so that a typo stops start-up like any
# other malformed setting; tasks_app.fetch.parse_allowed_hosts reads it.
MEDIA_FETCH_ALLOWED_HOSTS = envlist("MEDIA_FETCH_ALLOWED_HOSTS", [])
for _entry in MEDIA_FETCH_ALLOWED_HOSTS:
    _host = re.fullmatch(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?", _entry)
    if not _host or int(_host[1] or 0) > 65535:
        raise ImproperlyConfigured(
            f"MEDIA_FETCH_ALLOWED_HOSTS must list host or host:port names, not {_entry!r}"
        )
# Kling deletes its copy of a result after this many days (its link is the fallback until).
KLING_RESULT_LIFETIME_DAYS = 30

# Abuse limits: jobs per person per minute, and failed log-ins (studio and admin alike) per
# account and per address in 15 minutes, counted by django-axes.
SUBMISSIONS_PER_MINUTE = envint("SUBMISSIONS_PER_MINUTE", 10, minimum=1)
# Rows one batch may have (each row is one job; a batch counts as one submission).
BATCH_MAX_ROWS = envint("BATCH_MAX_ROWS", 200, minimum=1)
LOGIN_FAILURES_PER_ACCOUNT = envint("LOGIN_FAILURES_PER_ACCOUNT", 5, minimum=1)
LOGIN_FAILURES_PER_IP = envint("LOGIN_FAILURES_PER_IP", 20, minimum=1)
AXES_HANDLER = "tasks_app.auth_views.LoginGuard"
AXES_FAILURE_LIMIT = LOGIN_FAILURES_PER_ACCOUNT
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_CALLABLE = "tasks_app.auth_views.login_username"
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_CALLABLE = "tasks_app.auth_views.locked_out"
# A success must not wipe the failures recorded for its address: anyone with an account
# could otherwise guess at another's password without end.
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False
# How many proxies of ours stand in front of the studio, each adding the address it was
# called from to X-Forwarded-For. With none, the header is ignored (anyone can send it).
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0, minimum=0)
if TRUSTED_PROXY_COUNT:
    AXES_IPWARE_META_PRECEDENCE_ORDER: tuple[str, ...] = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    # django-ipware counts the proxies listed in the header, not the one that called us, and
    # takes the entry our outermost proxy wrote; what a client put before it is ignored.
    AXES_IPWARE_PROXY_COUNT = TRUSTED_PROXY_COUNT - 1
    IPWARE_STRICT = False
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)

# Tasks one worker process runs at once (each mostly waits on Kling).
WORKER_THREADS = envint("WORKER_THREADS", 16, minimum=1)
# Each worker process reports itself this often; none heard from for the second figure, and
# pages of jobs waiting to be sent say that the studio's worker is not running.
WORKER_HEARTBEAT_SECONDS = envint("WORKER_HEARTBEAT_SECONDS", 15, minimum=1)
WORKER_SILENT_AFTER_SECONDS = envint("WORKER_SILENT_AFTER_SECONDS", 60, minimum=1)
# A job's run still not done this long after its lease ran out was lost with its worker (killed,
# say): the sweep of another worker schedules it again. Result copies likewise, after their
# download's deadline.
WORKER_SWEEP_GRACE_SECONDS = envint("WORKER_SWEEP_GRACE_SECONDS", 90, minimum=1)
# Whom people should tell when the worker is not running (a name, an address); shown as is.
STUDIO_CONTACT = envstr("STUDIO_CONTACT", "")
