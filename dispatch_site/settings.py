"""Settings, read from the environment (see README: Configuration)."""

import ipaddress
import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DISPATCH_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_flag(name: str, default: bool = False) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }


def _env_origins(name: str) -> list[str]:
    """A comma-separated list of exact origins (``scheme://host[:port]``), lower-cased."""
    origins = []
    for raw in os.environ.get(name, "").split(","):
        origin = raw.strip().rstrip("/").lower()
        if not origin:
            continue
        parts = urlsplit(origin)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            parts = urlsplit("")
        if (
            parts.scheme not in {"http", "https"}
            or not parts.hostname
            or "*" in origin
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise ImproperlyConfigured(
                f"{name}: {raw.strip()!r} is not an origin like https://app.example.com "
                "(exact origins only: no wildcard, no path)"
            )
        origins.append(origin)
    return origins


def _env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A comma-separated list of addresses or networks (``10.0.0.0/8``, ``::1``)."""
    networks = []
    for raw in os.environ.get(name, "").split(","):
        if not raw.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(raw.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {raw.strip()!r} is not an address or a network like 10.0.0.0/8"
            ) from None
    return networks


def _secret_key() -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_flag("DEBUG")
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
    if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "csp",
    "django_htmx",
    "ninja",
    "chat",
    "metrics",
]

MIDDLEWARE = [
    # First: it answers CORS preflights itself and must add its headers to every response,
    # including those other middleware produce (docs/security.md, CORS).
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy (django-csp, plus this site's WebSocket origin) and
    # Permissions-Policy on every response.
    "dispatch_site.headers.SecurityHeadersMiddleware",
    # The web app's CSS/JS (and htmx, vendored by django-htmx) are served by this same process:
    # a self-hosted server needs no separate static file server in front of it.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-htmx's, synchronous only: the whole chain then runs in the request's thread in
    # one go instead of hopping between threads for every hook (dispatch_site/middleware.py).
    "dispatch_site.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "dispatch_site.urls"
ASGI_APPLICATION = "dispatch_site.asgi.application"

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
                "chat.pages.theme_context",
            ],
        },
    },
]

# Database: SQLite under var/ by default, PostgreSQL (or anything dj-database-url knows)
# when DATABASE_URL is set.
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DISPATCH_SQLITE_PATH", str(VAR_DIR / "dispatch.sqlite3")),
            # Keep the connection: reopening SQLite (and its PRAGMAs) for every database call
            # of every event cost about a quarter of a busy worker's database thread.
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue on the
                # busy timeout instead of failing on lock upgrade; WAL lets readers go on.
                "transaction_mode": "IMMEDIATE",
                "timeout": float(os.environ.get("DISPATCH_SQLITE_TIMEOUT", "30")),
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: Redis when REDIS_URL is set (several workers), else in-memory (one process).
if os.environ.get("REDIS_URL"):
    # Redis pub/sub: a group message is one PUBLISH, delivered to the workers whose sockets
    # listen. Nothing is stored: the channel layer is only a notification path, the database
    # is the log (a client that missed events reads `?sinceSeq=`).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.overrides.channel_layer.InMemoryChannelLayer",
            "CONFIG": {"capacity": 5000},
        }
    }

# Turn ownership: each worker beats for its running turns; a turn whose heartbeat is older than
# the stale limit is sealed `interrupted` by another worker's sweep (only with several workers).
DISPATCH_HEARTBEAT_SECONDS = float(os.environ.get("DISPATCH_HEARTBEAT_SECONDS", "5"))
DISPATCH_STALE_SECONDS = float(os.environ.get("DISPATCH_STALE_SECONDS", "30"))
# A worker told to stop (SIGTERM) lets its running turns finish for at most this many seconds
# (docs/deploy.md); turns still running then are sealed ``interrupted``.
DISPATCH_DRAIN_SECONDS = float(os.environ.get("DISPATCH_DRAIN_SECONDS", "600"))

# The Dispatch config file (credentials, tools, MCP servers). Optional.
DISPATCH_CONFIG = os.environ.get("DISPATCH_CONFIG", "dispatch.toml")
# Where conversations' working directories live when a conversation sets no cwd.
DISPATCH_WORKSPACE_ROOT = Path(os.environ.get("DISPATCH_WORKSPACE_ROOT", VAR_DIR / "workspace"))

# Attachments (chat.services.attachments): the storage their bytes live in, a named storage of
# Django's storage API. FileSystemStorage under var/attachments by default, never served by the
# static files: only the owner downloads a file, through the API. Any django-storages backend
# works instead (DISPATCH_ATTACHMENTS_STORAGE=storages.backends.s3.S3Storage, its options as
# JSON in DISPATCH_ATTACHMENTS_STORAGE_OPTIONS; keep the bucket private).
DISPATCH_ATTACHMENTS_STORAGE = os.environ.get(
    "DISPATCH_ATTACHMENTS_STORAGE", "django.core.files.storage.FileSystemStorage"
)
try:
    _attachments_options = json.loads(os.environ.get("DISPATCH_ATTACHMENTS_STORAGE_OPTIONS", "{}"))
except ValueError as exc:
    raise ImproperlyConfigured(f"DISPATCH_ATTACHMENTS_STORAGE_OPTIONS: not JSON: {exc}") from None
if not isinstance(_attachments_options, dict):
    raise ImproperlyConfigured("DISPATCH_ATTACHMENTS_STORAGE_OPTIONS must be a JSON object")
if DISPATCH_ATTACHMENTS_STORAGE == "django.core.files.storage.FileSystemStorage":
    _attachments_options = {
        "location": str(VAR_DIR / "attachments"),
        "base_url": None,  # no public URL: files are served by the API, to their owner
        "file_permissions_mode": 0o600,
        "directory_permissions_mode": 0o700,
        **_attachments_options,
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": {"BACKEND": DISPATCH_ATTACHMENTS_STORAGE, "OPTIONS": _attachments_options},
}
# One attached file (413 above it), attachments per message (400 above it), and an image's
# pixels (a decompression bomb is a small file of enormous dimensions; 400 above it).
DISPATCH_ATTACHMENT_MAX_BYTES = int(os.environ.get("DISPATCH_ATTACHMENT_MAX_BYTES", "10485760"))
DISPATCH_ATTACHMENTS_PER_MESSAGE = int(os.environ.get("DISPATCH_ATTACHMENTS_PER_MESSAGE", "10"))
DISPATCH_IMAGE_MAX_PIXELS = int(os.environ.get("DISPATCH_IMAGE_MAX_PIXELS", "40000000"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The throttle comes first: it refuses password sign-ins while the client's address or the
# account name is throttled, and authenticates nobody itself (chat.throttle).
AUTHENTICATION_BACKENDS = [
    "chat.throttle.SignInThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise serves it too (empty unless collectstatic ran)
# Serve straight from the apps' and project's static dirs: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # The level and the logger on every line: an operator greps for WARNING and ERROR.
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}

# ---------------------------------------------------------------- hardening (docs/security.md)

# DISPATCH_HTTPS=1: the site is served over HTTPS (directly or by a TLS-terminating proxy).
DISPATCH_HTTPS = _env_flag("DISPATCH_HTTPS")
SESSION_COOKIE_SECURE = DISPATCH_HTTPS
CSRF_COOKIE_SECURE = DISPATCH_HTTPS
# A proxy that already redirects http → https can turn Django's redirect off.
SECURE_SSL_REDIRECT = DISPATCH_HTTPS and _env_flag("DISPATCH_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = (
    int(os.environ.get("DISPATCH_HSTS_SECONDS", "31536000")) if DISPATCH_HTTPS else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = DISPATCH_HTTPS and _env_flag(
    "DISPATCH_HSTS_INCLUDE_SUBDOMAINS", default=True
)
SECURE_HSTS_PRELOAD = DISPATCH_HTTPS and _env_flag("DISPATCH_HSTS_PRELOAD", default=True)
# Behind a reverse proxy that terminates TLS: trust its X-Forwarded-Proto, and count sign-in
# failures under the address it appends to X-Forwarded-For (only then — a client could send
# those headers itself to a server it reaches directly).
DISPATCH_BEHIND_PROXY = _env_flag("DISPATCH_BEHIND_PROXY")
if DISPATCH_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Response headers (SecurityMiddleware; these are Django's defaults, stated here on purpose).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Browser features the app never uses, off for every page (dispatch_site.headers).
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)

# Origins whose images in model output load by themselves; every other origin's image is a
# link the user clicks to open it (chat.render). Exact origins, comma-separated.
DISPATCH_IMAGE_ORIGINS = _env_origins("DISPATCH_IMAGE_ORIGINS")

# Content-Security-Policy (django-csp). No inline script except by nonce, no inline style,
# images from this site, data: URLs and DISPATCH_IMAGE_ORIGINS; connect-src also gets the
# ws:/wss: origin of the requested host per request (dispatch_site.headers).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:", *DISPATCH_IMAGE_ORIGINS],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# CORS (django-cors-headers): browser clients served from these exact origins may call the
# JSON API with a bearer token, and open WebSockets (chat.auth). No cookies cross-origin:
# a session is for the web app on its own origin only.
DISPATCH_CORS_ORIGINS = _env_origins("DISPATCH_CORS_ORIGINS")
CORS_ALLOWED_ORIGINS = DISPATCH_CORS_ORIGINS
CORS_ALLOW_CREDENTIALS = False
CORS_EXPOSE_HEADERS = ["X-Conversation-Id"]

# Request size limits: whole request bodies, and one chat message (chat.schemas → 400).
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("DISPATCH_MAX_REQUEST_BYTES", str(2_621_440)))
DISPATCH_MAX_MESSAGE_CHARS = int(os.environ.get("DISPATCH_MAX_MESSAGE_CHARS", "200000"))
# A conversation imported with POST /conversations/import (its own limit: exports of long
# conversations are larger than any other request body).
DISPATCH_MAX_IMPORT_BYTES = int(os.environ.get("DISPATCH_MAX_IMPORT_BYTES", str(50 * 2**20)))
# One WebSocket frame: room for a longest message even when JSON escapes every character.
DISPATCH_MAX_FRAME_CHARS = int(
    os.environ.get("DISPATCH_MAX_FRAME_CHARS", str(6 * DISPATCH_MAX_MESSAGE_CHARS + 65536))
)

# Failed sign-ins (chat.throttle): per client address (wrong passwords, login links and API
# tokens) and per account name (wrong passwords), per window; 0 turns a counter off.
DISPATCH_SIGNIN_WINDOW = int(os.environ.get("DISPATCH_SIGNIN_WINDOW", "900"))
DISPATCH_SIGNIN_ADDRESS_LIMIT = int(os.environ.get("DISPATCH_SIGNIN_ADDRESS_LIMIT", "30"))
DISPATCH_SIGNIN_ACCOUNT_LIMIT = int(os.environ.get("DISPATCH_SIGNIN_ACCOUNT_LIMIT", "10"))

# Turns a user may start per window (chat.ratelimit); 0 turns the limit off. Counters live in
# the cache: per process by default, shared by every worker when REDIS_URL is set.
DISPATCH_TURN_RATE_LIMIT = int(os.environ.get("DISPATCH_TURN_RATE_LIMIT", "20"))
DISPATCH_TURN_RATE_WINDOW = int(os.environ.get("DISPATCH_TURN_RATE_WINDOW", "60"))
if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": "dispatch",
        }
    }

# ---------------------------------------------------------------- observability (docs/deploy.md)

# Prometheus metrics of each worker at /-/metrics (chat.observe): off (404) unless a bearer
# token or an allow-list of addresses is set; either admits a scraper. Traces: the standard
# OTEL_* variables (chat.observe.tracing).
DISPATCH_PROMETHEUS_TOKEN = os.environ.get("DISPATCH_PROMETHEUS_TOKEN", "").strip()
DISPATCH_PROMETHEUS_ALLOW = _env_networks("DISPATCH_PROMETHEUS_ALLOW")
