"""The backup remote: the only module that talks to it (git via GitPython), owning auth, retries and error mapping.

The token reaches git only through the environment of each git process: GIT_ASKPASS points at a small
script that prints $ANGLES_GIT_USERNAME / $ANGLES_GIT_TOKEN, and credential helpers are switched off with
GIT_CONFIG_* variables so git never stores it. Remote URLs are kept without credentials.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import git

from angles.errors import AnglesError, BackupAuthError
from angles.locks import locked
from angles.logs import redactor

logger = logging.getLogger(__name__)

NETWORK_TIMEOUT_S = 600
PUSH_ATTEMPTS = 5
# A push holds its ref lock for well under a second; a lock this old in a shared remote is left by a killed git.
SHARED_LOCK_STALE_S = 60.0
CLONE_REPACK_LOOSE = 40
TRANSIENT_RETRIES = (1.0, 3.0)

# Prints $ANGLES_GIT_USERNAME or $ANGLES_GIT_TOKEN for git's prompts; it holds no secret itself.
ASKPASS = Path(__file__).resolve().with_name("git_askpass.sh")

AUTH_FAILURE = re.compile(
    r"authentication failed|could not read (username|password)|terminal prompts disabled|access denied"
    r"|invalid username or (password|token)|returned error: 40[13]|permission denied \(publickey"
    r"|not authorized|401 unauthorized|403 forbidden|write access to repository not granted",
    re.IGNORECASE,
)
REMOTE_MOVED = re.compile(
    r"\[rejected\]|non-fast-forward|fetch first|failed to update ref|failed to lock|cannot lock ref"
    r"|incorrect old value|stale info",
    re.IGNORECASE,
)
TRANSIENT = re.compile(
    r"could not resolve host|connection (refused|reset|timed out)|operation timed out|early eof"
    r"|rpc failed|returned error: 5\d\d|temporary failure|unexpected disconnect",
    re.IGNORECASE,
)

# What GitPython puts in stderr after killing a git process that overran kill_after_timeout.
TIMED_OUT = re.compile(r"Timeout: the command .* did not complete in ([\d.]+) secs", re.DOTALL)


class RemoteMovedError(AnglesError):
    """The remote refused a push the way it does when its branch moved on; fetch and try again on top."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


def clear_stale_locks(git_dir: Path, *, older_than: float = 0.0) -> list[Path]:
    """Delete git's *.lock files in a repository (older than `older_than` seconds); the ones deleted.

    Git creates them while it writes and removes them when done; a git process killed meanwhile (kill -9,
    a power cut) leaves them, and every later git command that needs that file refuses to run.
    """
    removed = []
    now = time.time()
    for lock in git_dir.rglob("*.lock"):
        try:
            if now - lock.stat().st_mtime < older_than:
                continue
            lock.unlink()
        except OSError:
            continue
        logger.warning("removed the stale git lock file %s (left by an interrupted git process)", lock)
        removed.append(lock)
    return removed


def strip_credentials(url: str) -> tuple[str, str | None, str | None]:
    """Split user and password out of an http(s) URL so only the bare URL is ever stored."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None, None
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host)), parts.username, parts.password


class BackupRemote:
    """Where backups go (BACKUP_REMOTE or the default bare repository under data/) and how to authenticate."""

    def __init__(self, settings):
        self.settings = settings
        self.url, url_user, url_token = strip_credentials(settings.backup_remote_url)
        self.token = settings.github_token or url_token
        self.username = settings.git_username or url_user or "x-access-token"
        self.branch = settings.backup_branch
        self.is_default = settings.backup_remote is None

    def describe(self) -> str:
        return redactor()(self.url)

    @property
    def local_path(self) -> Path | None:
        """The bare repository's folder when the remote is on this machine (the default, or a path/file:// URL)."""
        if self.url.startswith("file://"):
            return Path(urlsplit(self.url).path)
        if "://" in self.url or re.match(r"^[\w.-]+@[\w.-]+:", self.url):
            return None
        return Path(self.url)

    @property
    def exists_locally(self) -> bool:
        """False only for the default bare repository before the first backup created it."""
        return not self.is_default or Path(self.url).joinpath("HEAD").is_file()

    def clear_stale_locks(self) -> list[Path]:
        """Clear lock files an interrupted push left in a remote on this machine; call with backup_lock held.

        The default remote is this host's alone, so backup_lock makes any lock in it stale. A remote path other
        hosts may push to keeps locks younger than SHARED_LOCK_STALE_S: one of them may be pushing right now.
        """
        local = self.local_path
        if local is None or not (local / "HEAD").is_file():
            return []
        return clear_stale_locks(local, older_than=0.0 if self.is_default else SHARED_LOCK_STALE_S)

    def create_default(self) -> None:
        """Create the default local bare repository on first use."""
        if self.exists_locally:
            return
        path = Path(self.url)
        path.mkdir(parents=True, exist_ok=True)
        git.Repo.init(path, bare=True, initial_branch=self.branch)
        logger.info("created the local backup remote %s", path)

    def env(self) -> dict[str, str]:
        """Environment for every git process: no prompts, no credential helpers, the token via askpass."""
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": "",
            "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
            "GIT_HTTP_LOW_SPEED_TIME": "60",
            "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=30"),
            "ANGLES_GIT_USERNAME": self.username,
            "ANGLES_GIT_TOKEN": self.token or "",
            # Always ours, even without a token, so a desktop askpass inherited from the shell never pops up.
            "GIT_ASKPASS": str(self._askpass()),
        }
        return env

    def _askpass(self) -> Path:
        if os.access(ASKPASS, os.X_OK):
            return ASKPASS
        # A checkout that lost the executable bit: keep a private executable copy under data/.
        copy = self.settings.data_dir / "git-askpass.sh"
        if not copy.is_file() or copy.read_bytes() != ASKPASS.read_bytes():
            copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy.with_name(copy.name + ".tmp")
            tmp.write_bytes(ASKPASS.read_bytes())
            tmp.chmod(0o700)
            os.replace(tmp, copy)
        return copy

    def check(self, timeout: float | None = None) -> str | None:
        """Ask the remote for the backup branch without cloning (auth and reachability); its tip or None.

        With a timeout (monitors) git gets one attempt and is killed when the time runs out.
        """
        if not self.exists_locally:
            return None
        runner = git.Git()
        runner.update_environment(**self.env())
        args = ("--heads", self.url, f"refs/heads/{self.branch}")
        if timeout is None:
            out = _call(self, runner, "ls_remote", *args, network=True)
        else:
            out = _call(self, runner, "ls_remote", *args, network=True, retries=False, kill_after_timeout=timeout)
        return out.split()[0] if out.strip() else None

    def existing_clone(self, path: Path) -> BackupClone | None:
        """The persistent clone at `path` as it is (no fetch, nothing created), or None."""
        if not (path / ".git").is_dir():
            return None
        return BackupClone(self, git.Repo(path))

    def open_clone(self, path: Path) -> BackupClone:
        """The persistent clone at `path`, created when missing, its origin pointing at the bare URL.

        Call with backup_lock held: lock files found in the clone were left by an interrupted backup and go.
        """
        if (path / ".git").is_dir():
            clear_stale_locks(path / ".git")
            repo = git.Repo(path)
        else:
            path.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(path, initial_branch=self.branch)
        clone = BackupClone(self, repo)
        clone.set_origin()
        return clone


class BackupClone:
    """One local clone of the backup remote: fetch, compare, commit, push without force, check out history."""

    def __init__(self, remote: BackupRemote, repo: git.Repo):
        self.remote = remote
        self.repo = repo
        self.repo.git.update_environment(**remote.env())
        self.path = Path(repo.working_tree_dir)
        self.git_dir = Path(repo.git_dir)

    def close(self) -> None:
        """Stop GitPython's persistent cat-file processes (the scheduler runs for months)."""
        self.repo.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def git(self, command: str, *args, network: bool = False, **kwargs) -> str:
        return _call(self.remote, self.repo.git, command, *args, network=network, **kwargs)

    def set_origin(self) -> None:
        names = [r.name for r in self.repo.remotes]
        if "origin" not in names:
            self.git("remote", "add", "origin", self.remote.url)
        elif self.repo.remotes.origin.url != self.remote.url:
            self.git("remote", "set-url", "origin", self.remote.url)

    @property
    def tracking(self) -> str:
        return f"refs/remotes/origin/{self.remote.branch}"

    def fetch(self, *, depth: int | None = None) -> str | None:
        """Fetch the backup branch; the remote tip, or None when the remote has no backup yet."""
        branch = self.remote.branch
        # --keep stores the received pack as it is: below 100 objects git would otherwise unpack them into
        # loose objects, zlib-compressing every file again (seconds for a large decisions file).
        args = ["--keep", "origin", "--prune", f"+refs/heads/{branch}:{self.tracking}"]
        if depth:
            args.insert(0, f"--depth={depth}")
        try:
            self.git("fetch", *args, network=True)
        except _MissingBranchError:
            return None
        return self.rev(self.tracking)

    def borrow_packs(self) -> bool:
        """Hardlink (or copy) the packs of a remote on this machine into this clone; whether any was taken.

        A full (not shallow: a shallow fetch transfers everything again) fetch then finds the objects already
        here, where streaming a large backup through git's pack protocol inflates and hashes every object
        again (seconds per million decisions). Packs are immutable, so a link is as good as a copy; whatever
        a concurrent repack removed meanwhile is simply fetched.
        """
        local = self.remote.local_path
        source = local / "objects" / "pack" if local is not None else None
        if source is None or not source.is_dir():
            return False
        borrowed = False
        target = Path(self.repo.git_dir) / "objects" / "pack"
        target.mkdir(parents=True, exist_ok=True)
        for pack in sorted(source.glob("pack-*.pack")):
            # The .idx goes last: git uses a pack only once its index is there.
            pair = [(f, target / f.name) for f in (pack, pack.with_suffix(".idx"))]
            try:
                for src, dst in pair:
                    _link_or_copy(src, dst)
                borrowed = True
            except OSError as exc:
                logger.debug("not borrowing %s (%s); the fetch transfers it", pack.name, exc)
                for _, dst in pair:
                    dst.unlink(missing_ok=True)
        return borrowed

    def rev(self, ref: str) -> str | None:
        try:
            return self.repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except git.GitCommandError:
            return None

    def reset_to_remote(self) -> str | None:
        """Make the working tree exactly the remote tip (or an empty branch before the first backup)."""
        tip = self.rev(self.tracking)
        branch = self.remote.branch
        if tip:
            if self._current_branch() != f"refs/heads/{branch}":
                self.git("checkout", "-q", "--force", "-B", branch, tip)
            self.git("reset", "-q", "--hard", tip)
        else:
            if self._current_branch() != f"refs/heads/{branch}":
                self.git("checkout", "-q", "--orphan", branch)
            if self.head():
                self.git("reset", "-q", "--hard", "HEAD")
        self.git("clean", "-q", "-fdx")
        return tip

    def _current_branch(self) -> str | None:
        try:
            return self.repo.git.symbolic_ref("-q", "HEAD").strip()
        except git.GitCommandError:
            return None

    def head(self) -> str | None:
        return self.rev("HEAD")

    def head_file(self, name: str) -> bytes | None:
        """A file as committed at HEAD (not as in the working tree), or None."""
        if self.head() is None:
            return None
        try:
            return self.repo.head.commit.tree[name].data_stream.read()
        except KeyError:
            return None

    def modified(self, name: str) -> bool:
        """Whether a tracked file in the working tree differs from HEAD."""
        return bool(self.git("status", "--porcelain", "--", name).strip())

    def head_lines(self, name: str) -> Iterator[bytes]:
        from angles.engines.backup_format import iter_lines

        data = self.head_file(name)
        return iter_lines([data]) if data else iter(())

    def commit(self, message: str) -> str:
        identity = {
            "GIT_AUTHOR_NAME": self.remote.settings.git_username or "Angles backup",
            "GIT_AUTHOR_EMAIL": self.remote.settings.git_email or "backup@angles.invalid",
        }
        identity["GIT_COMMITTER_NAME"] = identity["GIT_AUTHOR_NAME"]
        identity["GIT_COMMITTER_EMAIL"] = identity["GIT_AUTHOR_EMAIL"]
        self.git("add", "-A")
        with self.repo.git.custom_environment(**identity):
            self.git("commit", "-q", "--no-verify", "--no-gpg-sign", "-m", message)
        return self.head()

    def push(self) -> None:
        """Push the branch, never forced; RemoteMovedError when another host pushed first."""
        branch = self.remote.branch
        self.git("push", "origin", f"refs/heads/{branch}:refs/heads/{branch}", network=True)

    def maintain(self) -> None:
        """Repack with deltas so each backup costs about its changed rows on disk (git stores new blobs whole).

        Hosted remotes (GitHub) repack on their side; a remote on this machine is repacked after every push.
        Our own clone only once enough loose objects piled up, since nothing reads its history size.
        """
        places = []
        local = self.remote.local_path
        if local is not None and local.is_dir():
            places.append(git.Git(local))
        if self._loose_objects() >= CLONE_REPACK_LOOSE:
            places.append(self.repo.git)
        for runner in places:
            try:
                runner.repack("-a", "-d", "-q")
            except git.GitCommandError as exc:
                logger.warning("git repack failed (the backup itself is fine): %s", _first_lines(_stderr(exc)))

    def _loose_objects(self) -> int:
        try:
            stats = self.repo.git.count_objects("-v")
        except git.GitCommandError:
            return 0
        for line in stats.splitlines():
            if line.startswith("count:"):
                return int(line.split(":")[1])
        return 0

    def move_onto_remote(self) -> None:
        """Put HEAD on the remote tip, keeping our files, so the next commit lands on top of theirs."""
        tip = self.rev(self.tracking)
        if tip:
            self.git("reset", "-q", "--soft", tip)

    def resolve(self, at: str | None) -> str:
        """The commit to restore: the remote tip, a commit/ref, or the newest backup at or before a date."""
        tip = self.rev(self.tracking)
        if tip is None:
            raise AnglesError(f"the backup remote {self.remote.describe()} holds no backup on {self.remote.branch}")
        if not at:
            return tip
        for candidate in (f"refs/remotes/origin/{at}", at):
            sha = self.rev(candidate)
            if sha:
                return sha
        moment = _as_moment(at)
        sha = self.repo.git.rev_list("-1", f"--before={moment}", self.tracking).strip()
        if not sha:
            raise AnglesError(f"no backup at or before {at} on {self.remote.branch}")
        return sha

    def checkout(self, sha: str) -> None:
        self.git("checkout", "-q", "--detach", "--force", sha)
        self.git("clean", "-q", "-fdx")

    def commit_time(self, sha: str) -> str:
        return self.repo.git.show("-s", "--format=%cI", sha).strip()


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copyfile(src, dst)


def _as_moment(at: str) -> str:
    from datetime import UTC, datetime
    from datetime import time as dtime

    from angles.engines.decision_model import parse_timestamp

    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", at):
            moment = datetime.combine(datetime.fromisoformat(at).date(), dtime(23, 59, 59), tzinfo=UTC)
        else:
            moment = parse_timestamp(at)
        return moment.astimezone(UTC).isoformat()
    except ValueError:
        raise AnglesError(f"--at {at!r} is neither a commit of the backup remote nor a date (YYYY-MM-DD)") from None
    except OverflowError:
        # A time-zone shift out of years 1-9999, e.g. 0001-01-01T00:00:00+01:00.
        raise AnglesError(f"--at {at!r} lies outside the dates a backup can have") from None


class _MissingBranchError(Exception):
    pass


def _call(
    remote: BackupRemote, runner: git.Git, command: str, *args, network: bool = False, retries: bool = True, **kwargs
) -> str:
    """Run one git command, retrying transient network failures, mapping failures to domain errors."""
    if network:
        kwargs.setdefault("kill_after_timeout", NETWORK_TIMEOUT_S)
    delays = list(TRANSIENT_RETRIES) if network and retries else []
    while True:
        try:
            return getattr(runner, command.replace("-", "_"))(*args, **kwargs)
        except git.GitCommandError as exc:
            stderr = _stderr(exc)
            if network and delays and TRANSIENT.search(stderr):
                delay = delays.pop(0)
                logger.warning("git %s: %s; retrying in %.0fs", command, _first_lines(stderr), delay)
                time.sleep(delay)
                continue
            raise _map_error(remote, command, stderr) from None
        except OSError as exc:
            raise AnglesError(f"cannot run git {command}: {exc}") from None


def _stderr(exc: git.GitCommandError) -> str:
    parts = []
    for raw, label in ((exc.stderr, "stderr:"), (exc.stdout, "stdout:")):
        text = raw if isinstance(raw, str) else str(raw or "")
        text = text.strip()
        if text.startswith(label):
            text = text[len(label) :].strip()
        parts.append(text.strip("'").strip())
    return "\n".join(p for p in parts if p)


def _first_lines(stderr: str, count: int = 2) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.strip().startswith("hint:")]
    text = " / ".join(lines[:count]) or "no message from git"
    clean = redactor()(text)
    return re.sub(r"(https?://)[^/\s@]+@", r"\1", clean)


def _map_error(remote: BackupRemote, command: str, stderr: str) -> Exception:
    where = remote.describe()
    if "couldn't find remote ref" in stderr.lower():
        return _MissingBranchError()
    overrun = TIMED_OUT.search(stderr)
    if overrun:
        verb = command.replace("_", "-")
        return AnglesError(f"git {verb}: the backup remote {where} did not answer within {overrun.group(1)} s")
    if AUTH_FAILURE.search(stderr):
        hint = "set GITHUB_TOKEN (and GIT_USERNAME)" if not remote.token else "check GITHUB_TOKEN and GIT_USERNAME"
        return BackupAuthError(f"backup remote {where} rejected the credentials ({_first_lines(stderr, 1)}); {hint}")
    if command == "push" and REMOTE_MOVED.search(stderr):
        return RemoteMovedError(f"backup remote {where} moved on during the push", _first_lines(stderr))
    if command in ("fetch", "push", "ls_remote", "ls-remote"):
        verb = command.replace("_", "-")
        return AnglesError(f"git {verb} with the backup remote {where} failed: {_first_lines(stderr)}")
    return AnglesError(f"git {command} in the backup clone failed: {_first_lines(stderr)}")


def backup_lock(settings, wait_s: float = 120.0):
    """One backup at a time per host (the scheduler and a manual run share the clone)."""
    path = settings.data_dir / "backup.lock"
    return locked(path, wait=wait_s, busy=f"another backup is still running (lock {path} held)")
