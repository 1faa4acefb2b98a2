"""Typed, validated settings read once from the environment and `.env`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from angles.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATABASE_URL = "sqlite:///data/angles.db"
SUPABASE_KEY_NAMES = (
    "SUPABASE_KEY",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_SERVICE_KEY",
    "SUPABASE_ANON_KEY",
)
# Every variable that holds a credential: a malformed setting's error message never shows their values.
SECRET_NAMES = (
    *SUPABASE_KEY_NAMES,
    "NOTION_TOKEN",
    "NOTION_API_KEY",
    "OPENAI_API_KEY",
    "GITHUB_TOKEN",
    "BACKUP_PASSPHRASE",
)
# A value longer than this is described in an error message, not quoted: it may be a pasted key.
SHOWN_VALUE_MAX = 24
# The largest number any numeric setting accepts unless it has a tighter bound: beyond it timers and timeouts overflow.
NUMBER_MAX = 1e9
MINUTES_PER_WEEK = 7 * 24 * 60
HOURS_PER_YEAR = 366 * 24
SECONDS_PER_HOUR = 3600
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_PASSPHRASE_LENGTH = 12


@dataclass(frozen=True)
class Settings:
    home: Path
    database_kind: str  # sqlite, postgres or supabase: DATABASE_URL, then Supabase REST, then SQLite
    database_url: str
    supabase_url: str | None
    supabase_key: str | None
    supabase_rpm: float
    notion_token: str | None
    notion_database_id: str | None
    notion_base_url: str
    notion_rps: float
    openai_api_key: str | None
    openai_model: str
    openai_base_url: str | None
    ai_max_per_run: int
    backup_remote: str | None
    backup_branch: str
    github_token: str | None
    git_username: str | None
    git_email: str | None
    health_host: str
    health_port: int
    log_level: str
    health_interval_minutes: float
    sync_interval_hours: float
    backup_time: str
    restore_drill_day: str
    restore_drill_time: str
    log_rotation_day: str
    log_rotation_time: str
    cleanup_time: str
    export_retention_days: int
    log_gzip_days: int
    cpu_warning: float
    cpu_critical: float
    memory_warning: float
    memory_critical: float
    disk_warning: float
    disk_critical: float
    load_warning: float
    load_critical: float
    backup_warning_hours: float
    backup_critical_hours: float
    verify_warning_hours: float
    sync_success_warning: float
    sync_success_critical: float
    scheduler_stale_seconds: float
    health_timeout_seconds: float
    health_disabled_checks: tuple[str, ...]
    batch_size: int
    extra_secrets: tuple[str, ...] = field(default=())
    log_max_mb: float = 50.0
    log_archive_max_mb: float = 1000.0
    scheduler_jobs_file: Path | None = None
    healthchecks_url: str | None = None
    healthchecks_job_urls: tuple[tuple[str, str], ...] = ()
    alert_urls: tuple[str, ...] = ()
    alert_level: str = "warning"
    alert_repeat_hours: float = 24.0
    backup_passphrase: str | None = None
    mcp_agent_name: str = "mcp"
    mcp_allowed_origins: tuple[str, ...] = ()
    mcp_writes_per_minute: int = 60
    mcp_token_cache_seconds: float = 5.0
    mcp_http_url: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def active_logs_dir(self) -> Path:
        return self.home / "logs" / "active"

    @property
    def backup_history_log(self) -> Path:
        """One line per backup, restore and verify run: the history operators tail."""
        return self.home / "logs" / "backup.log"

    @property
    def export_dir(self) -> Path:
        return self.home / "export"

    @property
    def sqlite_path(self) -> Path:
        raw = self.database_url[len("sqlite:///") :]
        path = Path(raw)
        return path if path.is_absolute() else self.home / path

    @property
    def notion_enabled(self) -> bool:
        return bool(self.notion_token and self.notion_database_id)

    @property
    def ai_enabled(self) -> bool:
        return bool(self.openai_api_key)

    @property
    def backup_remote_url(self) -> str:
        """The backup remote as git understands it; a local bare repository by default."""
        if self.backup_remote:
            return self.backup_remote
        return str(self.data_dir / "backup-remote.git")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured secret value, for redaction."""
        values = [
            self.supabase_key,
            self.notion_token,
            self.openai_api_key,
            self.github_token,
            _url_password(self.database_url),
            _url_password(self.backup_remote or ""),
            self.backup_passphrase,
            *self.extra_secrets,
            *(part for url in self.alert_target_urls for part in _alert_url_secrets(url)),
        ]
        return tuple(v for v in values if v and len(v) >= 6)

    @property
    def alert_target_urls(self) -> tuple[str, ...]:
        """Every configured alert URL (healthchecks bases and Apprise URLs); each may carry a key in its path."""
        return tuple(
            u for u in (self.healthchecks_url, *(u for _, u in self.healthchecks_job_urls), *self.alert_urls) if u
        )


def _alert_url_secrets(url: str) -> list[str]:
    """A ping key, webhook token or password inside an alert URL: the whole URL and every long dot-free part.

    Host names keep their dots and stay readable in logs; keys and tokens (ping keys, UUIDs, Slack or Telegram
    tokens) are long runs without one.
    """
    parts = re.split(r"[/:@?&=#]", url.split("://", 1)[-1])
    return [url, *(p for p in parts if len(p) >= 16 and "." not in p)]


def _url_password(url: str) -> str | None:
    try:
        return urlparse(url).password
    except ValueError:
        return None


def _shown(value: str) -> str:
    """What follows a variable's name in an error message: `='value'` when short, described when long."""
    if len(value) > SHOWN_VALUE_MAX:
        return f" (a value of {len(value)} characters)"
    return f"={value!r}"


def env_secrets(env: dict[str, str]) -> tuple[str, ...]:
    """Credential values present in raw settings, for redacting an error met before Settings exists."""
    values = [env.get(name) for name in SECRET_NAMES]
    values += [_url_password(env.get(name) or "") for name in ("DATABASE_URL", "BACKUP_REMOTE", "REPO_URL")]
    return tuple(v.strip() for v in values if v and len(v.strip()) >= 6)


class _Reader:
    """Reads variables from the merged environment, collecting the first error."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def text(self, *names: str, default: str | None = None) -> str | None:
        for name in names:
            value = self.env.get(name)
            if value is not None and value.strip() != "":
                return value.strip()
        return default

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float = 0.0,
        maximum: float = NUMBER_MAX,
        integer: bool = False,
    ):
        raw = self.text(name)
        if raw is None:
            return int(default) if integer else default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise ConfigError(f"{name}{_shown(raw)} is not {kind}") from None
        # NaN fails both comparisons, infinity the second.
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}{_shown(raw)} must lie between {minimum:g} and {maximum:g}")
        return value

    def port(self, name: str, default: int) -> int:
        return self.number(name, default, minimum=1, maximum=65535, integer=True)

    def clock(self, name: str, default: str) -> str:
        raw = self.text(name, default=default)
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", raw):
            raise ConfigError(f"{name}{_shown(raw)} is not a UTC time of day as HH:MM")
        return raw

    def weekday(self, name: str, default: str) -> str:
        raw = self.text(name, default=default)
        if raw.lower() not in WEEKDAYS:
            # The value as given: a secret pasted here must still match the redactor.
            raise ConfigError(f"{name}{_shown(raw)} is not a weekday name (monday … sunday)")
        return raw.lower()

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.text(name, default=default)
        if raw.upper() not in choices:
            raise ConfigError(f"{name}{_shown(raw)} must be one of {', '.join(choices)}")
        return raw.upper()

    def url(self, name: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
        if value is None:
            return None
        parsed = _parse_url(name, value, port=True)
        if parsed.scheme not in schemes or not parsed.netloc:
            raise ConfigError(f"{name} must be an {' or '.join(schemes)} URL, got {parsed.scheme or 'no'} scheme")
        return value.rstrip("/")


def _parse_url(name: str, value: str, *, port: bool = False):
    try:
        parsed = urlparse(value)
        if port:
            # Parsed lazily by urllib; reading it here makes "host:abc" this one error too.
            parsed.port  # noqa: B018
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL ({exc})") from None
    return parsed


def _database_url(reader: _Reader) -> str:
    raw = reader.text("DATABASE_URL", default=DEFAULT_DATABASE_URL)
    scheme = raw.split(":", 1)[0].lower()
    if scheme in ("postgres", "postgresql"):
        parsed = _parse_url("DATABASE_URL", raw)
        if not parsed.hostname and "host=" not in parsed.query:
            raise ConfigError("DATABASE_URL has no host (expected postgresql://user:pass@host:port/db)")
        return raw
    if scheme == "sqlite":
        if not raw.startswith("sqlite:///") or len(raw) <= len("sqlite:///"):
            raise ConfigError("DATABASE_URL must look like sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return raw
    raise ConfigError(
        f"DATABASE_URL scheme {scheme[:SHOWN_VALUE_MAX]!r} is not supported (use postgresql:// or sqlite:///)"
    )


def _backup_remote(reader: _Reader) -> str | None:
    remote = reader.text("BACKUP_REMOTE", "REPO_URL")
    if remote:
        return remote
    repo = reader.text("GITHUB_REPO")
    if repo is None:
        return None
    if repo.startswith(("https://", "git@", "ssh://", "file://", "/")):
        return repo
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ConfigError(f"GITHUB_REPO{_shown(repo)} must be owner/name")
    return f"https://github.com/{repo.removesuffix('.git')}.git"


def load_settings(env: dict[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Read and validate every setting; the real environment wins over `.env`.

    A malformed setting raises ConfigError naming the variable, with no credential in its message.
    """
    if env is None:
        env = dict(os.environ)
    home = Path(env.get("ANGLES_HOME") or PROJECT_ROOT).resolve()
    if dotenv:
        env = {**_read_dotenv(home / ".env"), **env}
    try:
        return _settings(home, _Reader(env))
    except ConfigError as exc:
        from angles.logs import Redactor

        raise ConfigError(Redactor(env_secrets(env))(str(exc))) from None


def ensure_home(settings: Settings) -> None:
    """Create ANGLES_HOME when missing; ConfigError naming it when that is impossible."""
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"ANGLES_HOME={settings.home} cannot be created: {exc.strerror or exc}") from None
    if not settings.home.is_dir():
        raise ConfigError(f"ANGLES_HOME={settings.home} is not a directory")


def _settings(home: Path, r: _Reader) -> Settings:
    supabase_url = r.url("SUPABASE_URL", r.text("SUPABASE_URL"), ("https", "http"))
    database_url = _database_url(r)
    supabase_key = r.text(*SUPABASE_KEY_NAMES)
    if r.text("DATABASE_URL"):
        database_kind = "sqlite" if database_url.startswith("sqlite") else "postgres"
    elif supabase_url and supabase_key:
        database_kind = "supabase"
    else:
        database_kind = "sqlite"
    health_interval = r.number("HEALTH_INTERVAL_MINUTES", 5, minimum=0.01, maximum=MINUTES_PER_WEEK)
    thresholds = {}
    for metric, warn, crit in (("CPU", 80, 95), ("MEMORY", 80, 95), ("DISK", 85, 95)):
        w = r.number(f"{metric}_WARNING", warn)
        c = r.number(f"{metric}_CRITICAL", crit)
        if c < w or c > 100:
            raise ConfigError(f"{metric}_CRITICAL={c:g} must lie between {metric}_WARNING ({w:g}) and 100")
        thresholds[metric.lower()] = (w, c)
    load = _rising_pair(r, "LOAD", 1.5, 4.0)
    backup_hours = _rising_pair(r, "BACKUP", 26, 72, suffix="_HOURS")
    sync_warning = r.number("SYNC_SUCCESS_WARNING", 90)
    sync_critical = r.number("SYNC_SUCCESS_CRITICAL", 50)
    if sync_critical > sync_warning or sync_warning > 100:
        raise ConfigError(
            f"SYNC_SUCCESS_CRITICAL={sync_critical:g} must not exceed SYNC_SUCCESS_WARNING ({sync_warning:g}), "
            "which must not exceed 100"
        )
    return Settings(
        home=home,
        database_kind=database_kind,
        database_url=database_url,
        supabase_url=supabase_url,
        supabase_key=supabase_key,
        supabase_rpm=r.number("SUPABASE_RPM", 100, minimum=1),
        notion_token=r.text("NOTION_TOKEN", "NOTION_API_KEY"),
        notion_database_id=r.text("NOTION_DATABASE_ID"),
        notion_base_url=r.url(
            "NOTION_BASE_URL", r.text("NOTION_BASE_URL", default="https://api.notion.com"), ("https", "http")
        ),
        notion_rps=r.number("NOTION_RPS", 3.0, minimum=0.01),
        openai_api_key=r.text("OPENAI_API_KEY"),
        openai_model=r.text("OPENAI_MODEL", default="gpt-5"),
        openai_base_url=r.url("OPENAI_BASE_URL", r.text("OPENAI_BASE_URL"), ("https", "http")),
        ai_max_per_run=r.number("AI_MAX_PER_RUN", 50, integer=True),
        backup_remote=_backup_remote(r),
        backup_branch=r.text("BACKUP_BRANCH", default="main"),
        github_token=r.text("GITHUB_TOKEN"),
        git_username=r.text("GIT_USERNAME"),
        git_email=r.text("GIT_EMAIL"),
        health_host=r.text("HEALTH_HOST", default="127.0.0.1"),
        health_port=r.port("HEALTH_PORT", 5000),
        log_level=r.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
        health_interval_minutes=health_interval,
        sync_interval_hours=r.number("SYNC_INTERVAL_HOURS", 6, minimum=0.001, maximum=HOURS_PER_YEAR),
        backup_time=r.clock("BACKUP_TIME", "02:00"),
        restore_drill_day=r.weekday("RESTORE_DRILL_DAY", "sunday"),
        restore_drill_time=r.clock("RESTORE_DRILL_TIME", "03:00"),
        log_rotation_day=r.weekday("LOG_ROTATION_DAY", "sunday"),
        log_rotation_time=r.clock("LOG_ROTATION_TIME", "00:05"),
        cleanup_time=r.clock("CLEANUP_TIME", "04:00"),
        export_retention_days=r.number("EXPORT_RETENTION_DAYS", 30, integer=True, minimum=1),
        log_gzip_days=r.number("LOG_GZIP_DAYS", 14, integer=True, minimum=1),
        cpu_warning=thresholds["cpu"][0],
        cpu_critical=thresholds["cpu"][1],
        memory_warning=thresholds["memory"][0],
        memory_critical=thresholds["memory"][1],
        disk_warning=thresholds["disk"][0],
        disk_critical=thresholds["disk"][1],
        load_warning=load[0],
        load_critical=load[1],
        backup_warning_hours=backup_hours[0],
        backup_critical_hours=backup_hours[1],
        verify_warning_hours=r.number("VERIFY_WARNING_HOURS", 192, minimum=0.01),
        sync_success_warning=sync_warning,
        sync_success_critical=sync_critical,
        scheduler_stale_seconds=r.number("SCHEDULER_STALE_SECONDS", 180, minimum=1),
        health_timeout_seconds=r.number("HEALTH_TIMEOUT_SECONDS", 5, minimum=0.1, maximum=SECONDS_PER_HOUR),
        health_disabled_checks=_name_list(r.text("HEALTH_DISABLED_CHECKS", default="")),
        batch_size=r.number("BATCH_SIZE", 500, integer=True, minimum=1),
        log_max_mb=r.number("LOG_MAX_MB", 50, minimum=0.001),
        log_archive_max_mb=r.number("LOG_ARCHIVE_MAX_MB", 1000, minimum=0.001),
        scheduler_jobs_file=_optional_path(home, r.text("SCHEDULER_JOBS_FILE")),
        backup_passphrase=_passphrase(r.env),
        healthchecks_url=r.url("HEALTHCHECKS_URL", r.text("HEALTHCHECKS_URL"), ("https", "http")),
        healthchecks_job_urls=_healthchecks_job_urls(r),
        alert_urls=tuple(u.strip() for u in (r.text("ALERT_URLS") or "").split(",") if u.strip()),
        alert_level=r.choice("ALERT_LEVEL", "WARNING", ("WARNING", "CRITICAL")).lower(),
        alert_repeat_hours=r.number("ALERT_REPEAT_HOURS", 24),
        mcp_agent_name=_agent_name(r.text("MCP_AGENT_NAME", default="mcp")),
        mcp_allowed_origins=_origins(r.text("MCP_ALLOWED_ORIGINS", default="")),
        mcp_writes_per_minute=r.number("MCP_WRITES_PER_MINUTE", 60, integer=True, minimum=1),
        mcp_token_cache_seconds=r.number("MCP_TOKEN_CACHE_SECONDS", 5, maximum=60),
        mcp_http_url=r.url("MCP_HTTP_URL", r.text("MCP_HTTP_URL"), ("https", "http")),
    )


def _healthchecks_job_urls(r: _Reader) -> tuple[tuple[str, str], ...]:
    """HEALTHCHECKS_URL_<JOB> overrides as (job, URL) pairs; HEALTHCHECKS_URL_BACKUP belongs to the job backup."""
    prefix = "HEALTHCHECKS_URL_"
    names = sorted(name for name in r.env if name.startswith(prefix) and len(name) > len(prefix))
    pairs = []
    for name in names:
        url = r.url(name, r.text(name), ("https", "http"))
        if url:
            pairs.append((name[len(prefix) :].lower(), url))
    return tuple(pairs)


def _passphrase(env: dict[str, str]) -> str | None:
    """BACKUP_PASSPHRASE exactly as given (spaces count); unset or empty leaves backups unencrypted."""
    value = env.get("BACKUP_PASSPHRASE") or None
    if value is not None and len(value) < MIN_PASSPHRASE_LENGTH:
        raise ConfigError(
            f"BACKUP_PASSPHRASE must be at least {MIN_PASSPHRASE_LENGTH} characters (a long passphrase, kept safe: "
            "without it the encrypted backups cannot be restored)"
        )
    return value


def _rising_pair(r: _Reader, prefix: str, warn: float, crit: float, *, suffix: str = "") -> tuple[float, float]:
    """A warning/critical pair where higher is worse, critical never below warning."""
    w = r.number(f"{prefix}_WARNING{suffix}", warn)
    c = r.number(f"{prefix}_CRITICAL{suffix}", crit)
    if c < w:
        raise ConfigError(f"{prefix}_CRITICAL{suffix}={c:g} must not be below {prefix}_WARNING{suffix} ({w:g})")
    return w, c


def _name_list(raw: str) -> tuple[str, ...]:
    return tuple(sorted({part.strip().lower() for part in raw.split(",") if part.strip()}))


AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _agent_name(raw: str) -> str:
    if not AGENT_NAME.fullmatch(raw):
        raise ConfigError(
            f"MCP_AGENT_NAME={raw!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return raw


def _origins(raw: str) -> tuple[str, ...]:
    """Browser origins as a browser sends them: scheme://host[:port], no path."""
    origins = []
    for part in raw.split(","):
        origin = part.strip().rstrip("/").lower()
        if not origin:
            continue
        parsed = urlparse(origin)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path or parsed.query:
            raise ConfigError(
                f"MCP_ALLOWED_ORIGINS entry {part.strip()!r} is not an origin like https://app.example.com"
            )
        origins.append(origin)
    return tuple(sorted(set(origins)))


def _optional_path(home: Path, raw: str | None) -> Path | None:
    if raw is None:
        return None
    path = Path(raw).expanduser()
    return path if path.is_absolute() else home / path


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}
