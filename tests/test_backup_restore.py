"""Backups to a real git remote and restores from it: round trip, corruption, two hosts, secrets, auth, dry runs."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from angles.actions.backup import run_backup
from angles.actions.restore import run_restore, run_verify
from angles.config import load_settings
from angles.engines import backup_format as snapshot
from angles.engines.decision_model import COLUMNS, TYPES, validate
from angles.storage import migrations, open_storage

ROOT = Path(__file__).resolve().parent.parent

WORDS = (
    "adopt migrate postgres überprüfung décision 決定 решение تصميم 🚀 naïve façade "
    'quote" back\\slash tab\there line\nbreak para\u2028sep zero\u200bwidth'
).split(" ")


# An encrypted branch holds one sealed file per table and the manifest, nothing in plaintext.
SEALED_TREE = sorted([f"{table.file}.enc" for table in snapshot.TABLES] + ["manifest.json"])


def make_settings(home: Path, **env):
    return load_settings({"ANGLES_HOME": str(home), **{k: str(v) for k, v in env.items()}}, dotenv=False)


def open_migrated(settings):
    storage = open_storage(settings)
    migrations.migrate(storage)
    return storage


def git(*args, cwd: Path, check: bool = True, env: dict | None = None) -> str:
    full = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        **(env or {}),
    }
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=full)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def stamp(rng: random.Random) -> str:
    day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    return f"{day}T{clock}.{rng.randint(0, 999999):06d}Z"


def varied_decisions(count: int, seed: int = 5) -> list[dict]:
    """Non-ASCII, 20,000-character texts, nulls, nested analyses, supersession links: what real vaults hold."""
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        length = 20_000 if n % 250 == 0 else rng.randint(3, 40)
        text = " ".join(rng.choice(WORDS) for _ in range(length))[: 20_000 if n % 250 == 0 else None]
        record = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "decision": text.strip() or "empty?",
            "date": f"20{rng.randint(20, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "type": rng.choice(TYPES),
            "priority": rng.choice(("P0", "P1", "P2", None)),
            "tags": rng.sample(["infra", "ai", "Kosten", "リスク", "legal"], rng.randint(0, 3)),
            "active": rng.random() > 0.2,
            "comment": None if rng.random() < 0.5 else " ".join(rng.choice(WORDS) for _ in range(8)),
            "created_at": stamp(rng),
            "updated_at": stamp(rng),
            "synced": rng.random() > 0.5,
        }
        row = validate(record, f"row {n}")
        if rng.random() < 0.3:
            row["ai_analysis"] = {
                "summary": rng.choice(WORDS),
                "impact": {"score": rng.randint(1, 5), "areas": rng.sample(["cost", "risk", "people"], 2)},
                "recommendations": [rng.choice(WORDS), None],
                "confidence": rng.random(),
            }
            row["ai_hash"] = hashlib.sha256(str(n).encode()).hexdigest()
            row["priority_source"] = "ai"
        if rng.random() < 0.1:
            row["notion_page_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            row["notion_last_edited"] = stamp(rng)
            row["synced_at"] = stamp(rng)
        if rng.random() < 0.05:
            row["deleted_at"] = stamp(rng)
        if rows and rng.random() < 0.05:
            # Only earlier rows, so the seed insert satisfies the foreign key in list order.
            row["superseded_by"] = rng.choice(rows)["id"]
        # Every column present: the SQLite backend batches rows by their column set, keeping list order.
        rows.append({column: row.get(column) for column in COLUMNS})
    return rows


def seed(settings, rows) -> None:
    with open_migrated(settings) as storage:
        storage.upsert_decisions(rows, atomic=True)


def dump(settings) -> list[dict]:
    with open_storage(settings, create=False) as storage:
        return list(storage.iter_decisions())


def wipe_database(settings) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(settings.sqlite_path) + suffix).unlink(missing_ok=True)


def guarded_remote(path: Path) -> Path:
    """A bare remote that refuses any non-fast-forward update (a force push) and logs every push."""
    git("init", "-q", "--bare", "-b", "main", str(path), cwd=path.parent)
    git("config", "receive.denyNonFastForwards", "true", cwd=path)
    git("config", "core.logAllRefUpdates", "always", cwd=path)
    hook = path / "hooks" / "update"
    hook.write_text(
        "#!/bin/sh\n"
        "zero=0000000000000000000000000000000000000000\n"
        'if [ "$2" != "$zero" ] && ! git merge-base --is-ancestor "$2" "$3"; then\n'
        '  echo "REJECTED $1 $2 $3" >> "$GIT_DIR/pushes.log"; echo "non-fast-forward refused" >&2; exit 1\n'
        "fi\n"
        'echo "ACCEPTED $1 $2 $3" >> "$GIT_DIR/pushes.log"\n'
    )
    hook.chmod(0o755)
    return path


def remote_commits(remote: Path, branch: str = "main") -> list[str]:
    return git("rev-list", branch, cwd=remote).split()


def file_hashes(root: Path, skip=("-wal", "-shm")) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith(skip):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_ten_thousand_varied_decisions_survive_backup_wipe_restore(home):
    settings = make_settings(home)
    rows = varied_decisions(10_000)
    seed(settings, rows)
    before = dump(settings)
    assert len(before) == 10_000
    first = run_backup(settings)
    assert first["result"] == "committed" and first["decisions"] == 10_000
    assert first["message"].startswith("backup ") and "10000 decisions (+10000 ~0 -0)" in first["message"]
    backed_up = (home / "data" / "backup-repo" / "decision_vault.jsonl").read_bytes()

    wipe_database(settings)
    result = run_restore(settings, restore_decisions=True)

    assert result["drift"]["only_backup"]["count"] == 10_000
    assert result["restored"]["upserted"] == 10_000
    assert dump(settings) == before
    again = run_backup(settings)
    assert again["result"] == "unchanged"
    assert (home / "data" / "backup-repo" / "decision_vault.jsonl").read_bytes() == backed_up
    long_rows = [r for r in dump(settings) if len(r["decision"]) == 20_000]
    assert long_rows and any("\u2028" in r["decision"] for r in long_rows)


def test_unchanged_data_makes_no_commit_and_says_so(home, run_script):
    seed(make_settings(home), varied_decisions(20))
    first = run_script("run_backup_now.py")
    assert first.returncode == 0, first.stderr
    assert "20 decisions (+20 ~0 -0)" in first.stdout
    second = run_script("run_backup_now.py")
    assert second.returncode == 0, second.stderr
    assert "nothing changed since the last backup: no commit" in second.stdout
    assert len(remote_commits(home / "data" / "backup-remote.git")) == 1
    history = (home / "logs" / "backup.log").read_text().splitlines()
    assert len(history) == 2 and "backup completed" in history[0] and "unchanged" in history[1]
    assert "backup completed" in (home / "logs" / "active" / "backup.log").read_text()


def test_commit_message_counts_added_changed_and_removed_decisions(home):
    settings = make_settings(home)
    rows = varied_decisions(30)
    seed(settings, [r for r in rows if not r.get("superseded_by")])
    run_backup(settings)
    with open_storage(settings) as storage:
        survivors = list(storage.iter_decisions())
        storage.update_decision(survivors[0]["id"], {"comment": "changed after the backup"})
        storage.delete_decisions([survivors[1]["id"]])
        storage.upsert_decisions(varied_decisions(3, seed=99))
    result = run_backup(settings)
    assert result["result"] == "committed"
    assert f"{len(survivors) + 2} decisions (+3 ~1 -1)" in result["message"]
    log = git("log", "--format=%s", "main", cwd=home / "data" / "backup-remote.git").splitlines()
    assert log[0] == result["message"] and len(log) == 2


def test_manifest_records_checksums_counts_schema_time_and_version(home):
    settings = make_settings(home)
    seed(settings, varied_decisions(12))
    run_backup(settings)
    clone = home / "data" / "backup-repo"
    manifest = json.loads((clone / "manifest.json").read_text())
    data = (clone / "decision_vault.jsonl").read_bytes()
    assert manifest["files"]["decision_vault.jsonl"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["files"]["decision_vault.jsonl"]["rows"] == 12 == data.count(b"\n")
    assert manifest["schema_version"] == migrations.latest_version("sqlite")
    assert manifest["tool_version"] and manifest["created_at"].endswith("Z")
    ids = [json.loads(line)["id"] for line in data.splitlines()]
    assert ids == sorted(ids)
    assert all(line.startswith(b'{"id":') for line in data.splitlines())


def test_activity_alone_is_committed_once_the_last_backup_is_a_day_old(home, monkeypatch):
    from datetime import timedelta

    import angles.actions.backup as action

    settings = make_settings(home)
    seed(settings, varied_decisions(5))
    run_backup(settings)
    with open_storage(settings) as storage:
        storage.record_activity("memory_sync", "sync", "completed", "3 pages")
    assert run_backup(settings)["result"] == "unchanged"
    monkeypatch.setattr(action, "ACTIVITY_ONLY_EVERY", timedelta(0))
    result = run_backup(settings)
    assert result["result"] == "committed" and "(+0 ~0 -0)" in result["message"]
    activity = (home / "data" / "backup-repo" / "agent_activity.jsonl").read_text()
    assert "memory_sync" in activity


def test_a_tampered_backup_file_is_refused_and_the_database_left_alone(home, run_script, tmp_path_factory):
    settings = make_settings(home)
    seed(settings, varied_decisions(40))
    run_backup(settings)
    with open_storage(settings) as storage:
        victim = next(storage.iter_decisions())["id"]
        storage.delete_decisions([victim])
    before = dump(settings)
    work = tmp_path_factory.mktemp("tamper") / "w"
    git("clone", "-q", str(home / "data" / "backup-remote.git"), str(work), cwd=work.parent)
    data = bytearray((work / "decision_vault.jsonl").read_bytes())
    middle = len(data) // 2
    data[middle] = ord("x") if data[middle] != ord("x") else ord("y")
    (work / "decision_vault.jsonl").write_bytes(bytes(data))
    git("commit", "-qam", "flip one byte", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)

    done = run_script("restore_from_github.py", "--restore-decisions")

    assert done.returncode == 1
    assert "decision_vault.jsonl" in done.stderr and "SHA-256" in done.stderr
    assert "Traceback" not in done.stderr
    assert dump(settings) == before


def test_a_corrupt_object_in_the_remote_is_refused_and_the_database_left_alone(home, run_script):
    settings = make_settings(home)
    seed(settings, varied_decisions(40))
    run_backup(settings)
    with open_storage(settings) as storage:
        storage.delete_decisions([next(storage.iter_decisions())["id"]])
    before = dump(settings)
    remote = home / "data" / "backup-remote.git"
    blob = git("rev-parse", "main:decision_vault.jsonl", cwd=remote).strip()
    (pack,) = (remote / "objects" / "pack").glob("*.pack")
    listing = git("verify-pack", "-v", str(pack.with_suffix(".idx")), cwd=remote)
    _, _, _, stored, offset = next(line.split()[:5] for line in listing.splitlines() if line.startswith(blob))
    pack.chmod(0o644)
    data = bytearray(pack.read_bytes())
    data[int(offset) + int(stored) // 2] ^= 0x01
    pack.write_bytes(bytes(data))

    done = run_script("restore_from_github.py", "--restore-decisions")

    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert dump(settings) == before


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda w: (w / "agent_activity.jsonl").unlink(), "agent_activity.jsonl"),
        (lambda w: (w / "manifest.json").write_text("{not json"), "manifest.json"),
        (lambda w: (w / "manifest.json").unlink(), "manifest.json"),
    ],
    ids=["missing-file", "unparsable-manifest", "missing-manifest"],
)
def test_an_incomplete_backup_is_refused_naming_the_file(home, run_script, tmp_path_factory, damage, named):
    settings = make_settings(home)
    seed(settings, varied_decisions(10))
    run_backup(settings)
    wipe_database(settings)
    work = tmp_path_factory.mktemp("damage") / "w"
    git("clone", "-q", str(home / "data" / "backup-remote.git"), str(work), cwd=work.parent)
    damage(work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "damage", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)

    done = run_script("restore_from_github.py", "--restore-decisions")

    assert done.returncode == 1
    assert named in done.stderr
    assert dump(settings) == []


def push_broken_line(home: Path, tmp_path_factory, index: int, damage) -> None:
    """Push a backup whose decisions line `index` (from 0) is damaged, with a manifest that agrees with it."""
    work = tmp_path_factory.mktemp("badjson") / "w"
    git("clone", "-q", str(home / "data" / "backup-remote.git"), str(work), cwd=work.parent)
    path = work / "decision_vault.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[index] = damage(lines[index])
    path.write_bytes(b"".join(lines))
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["files"]["decision_vault.jsonl"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (work / "manifest.json").write_text(json.dumps(manifest))
    git("commit", "-qam", "consistent but broken", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)


def test_an_unparsable_line_is_refused_even_when_the_manifest_agrees(home, tmp_path_factory):
    from angles.errors import AnglesError

    settings = make_settings(home)
    seed(settings, varied_decisions(10))
    run_backup(settings)
    push_broken_line(home, tmp_path_factory, 3, lambda line: b'{"id": "broken\n')
    before = dump(settings)
    with pytest.raises(AnglesError, match=r"decision_vault.jsonl line 4"):
        run_restore(settings, restore_decisions=True, prune=True)
    assert dump(settings) == before


def test_two_hosts_take_turns_on_one_remote_without_losing_a_commit_or_forcing(tmp_path):
    remote = guarded_remote(tmp_path / "shared.git")
    host_a = make_settings(tmp_path / "a", BACKUP_REMOTE=remote)
    host_b = make_settings(tmp_path / "b", BACKUP_REMOTE=remote)
    seed(host_a, varied_decisions(10, seed=1))
    seed(host_b, varied_decisions(10, seed=2))

    c1 = run_backup(host_a)["commit"]
    c2 = run_backup(host_b)["commit"]
    with open_storage(host_a) as storage:
        storage.upsert_decisions(varied_decisions(1, seed=3))
    c3 = run_backup(host_a)["commit"]

    # Another host pushes while B is pushing: B's pre-push hook lands a commit on the remote first.
    other = tmp_path / "other"
    git("clone", "-q", str(remote), str(other), cwd=tmp_path)
    (other / "note.txt").write_text("pushed by a third host\n")
    git("add", "note.txt", cwd=other)
    git("commit", "-qm", "third host", cwd=other)
    intruder = git("rev-parse", "HEAD", cwd=other).strip()
    hook = tmp_path / "b" / "data" / "backup-repo" / ".git" / "hooks" / "pre-push"
    hook.write_text(
        "#!/bin/sh\n"
        f'if [ ! -f "{tmp_path}/fired" ]; then touch "{tmp_path}/fired"; '
        f'(unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE; cd "{other}" && git push -q origin main); fi\n'
    )
    hook.chmod(0o755)
    with open_storage(host_b) as storage:
        storage.upsert_decisions(varied_decisions(2, seed=4))
    last = run_backup(host_b)

    assert last["result"] == "committed" and last["attempts"] == 2
    history = remote_commits(remote)
    assert history[0] == last["commit"]
    for commit in (c1, c2, c3, intruder):
        assert commit in history
    assert git("rev-list", "--merges", "main", cwd=remote).strip() == ""
    pushes = (remote / "pushes.log").read_text()
    # Six updates passed the hook: c1, c2, c3, the intruder, B's first try (then refused: ref moved), B's retry.
    assert "REJECTED" not in pushes
    assert pushes.count("ACCEPTED") == 6
    assert "12 decisions (+12 ~0 -11)" in last["message"]

    # The guard is real: a forced rewrite of the branch is refused.
    git("reset", "-q", "--hard", c1, cwd=other)
    forced = subprocess.run(["git", "push", "--force", "origin", "main"], cwd=other, capture_output=True, text=True)
    assert forced.returncode != 0 and remote_commits(remote)[0] == last["commit"]


def _fake_token(prefix: str) -> str:
    # Built at run time so no token-shaped literal is committed.
    return prefix + "".join("abcdefghijKLMNOPQRST0123456789"[(i * 7) % 30] for i in range(36))


ORDINARY = "Ship disk-encryption-at-rest, the task-management-system-v2 and the risk-assessment-spreadsheet"


def test_credential_like_text_is_backed_up_and_restored_exactly_and_only_reported(home, run_script):
    configured = 'configured "quoted\\ value-4711'
    shaped = _fake_token("ghp_")
    as_key = _fake_token("sk-proj-")
    settings = make_settings(home, OPENAI_API_KEY=configured)
    rows = [r for r in varied_decisions(20) if not r.get("superseded_by")]
    rows[3]["decision"] = f"Rotate the OpenAI key {configured} next week"
    rows[7]["comment"] = f"temporary token\n{shaped} for the CI job"
    rows[9]["ai_analysis"] = {as_key: "a token used as a key", "summary": "plain"}
    rows[11]["decision"] = ORDINARY
    seed(settings, rows)
    before = dump(settings)
    with open_storage(settings) as storage:
        storage.record_activity("memory_sync", "sync", "failed", f"401 with Authorization: Bearer {shaped}")

    done = run_script("run_backup_now.py", env={"OPENAI_API_KEY": configured})

    assert done.returncode == 0, done.stderr
    for row in (rows[3], rows[7], rows[9]):
        assert f"record {row['id']} looks like it holds a credential" in done.stdout
    assert rows[11]["id"] not in done.stdout
    clone = home / "data" / "backup-repo"
    backed_up = (clone / "decision_vault.jsonl").read_bytes()
    assert backed_up == b"".join(snapshot.encode_row(snapshot.DECISIONS, r) for r in before)
    manifest = json.loads((clone / "manifest.json").read_text())
    reported = {(r["table"], r["id"]): r["fields"] for r in manifest["credential_like"]}
    assert reported[("decision_vault", rows[3]["id"])] == ["decision"]
    assert reported[("decision_vault", rows[7]["id"])] == ["comment"]
    assert reported[("decision_vault", rows[9]["id"])] == ["ai_analysis"]
    assert ("decision_vault", rows[11]["id"]) not in reported
    assert any(table == "agent_activity" for table, _ in reported)
    logs = [done.stdout, done.stderr] + [p.read_text(errors="replace") for p in (home / "logs").rglob("*.log")]
    assert any(rows[3]["id"] in text for text in logs[2:]), "the warning reached the logs"
    for text in logs:
        assert configured not in text and shaped not in text and as_key not in text

    wipe_database(settings)
    restored = run_script("restore_from_github.py", "--restore-decisions")

    assert restored.returncode == 0, restored.stderr
    assert dump(settings) == before
    assert "[REDACTED]" not in json.dumps(dump(settings))


def test_a_restore_of_an_older_redacting_backup_keeps_the_live_value(home, tmp_path_factory):
    settings = make_settings(home)
    rows = [r for r in varied_decisions(6) if not r.get("superseded_by")]
    seed(settings, rows)
    run_backup(settings)
    # Backups written before credentials were only reported hold [REDACTED] and say so in the manifest.
    work = tmp_path_factory.mktemp("legacy") / "w"
    git("clone", "-q", str(home / "data" / "backup-remote.git"), str(work), cwd=work.parent)
    path = work / "decision_vault.jsonl"
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    victim = records[2]
    victim["decision"] = "[REDACTED]"
    victim["priority"] = "P0" if victim["priority"] != "P0" else "P1"
    path.write_bytes(b"".join(snapshot.encode_row(snapshot.DECISIONS, r) for r in records))
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["files"]["decision_vault.jsonl"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest.pop("credential_like")
    manifest["redactions"] = [{"table": "decision_vault", "id": victim["id"], "fields": ["decision"]}]
    (work / "manifest.json").write_text(json.dumps(manifest))
    git("commit", "-qam", "an older backup format", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    with open_storage(settings) as storage:
        original = storage.get_decision(victim["id"])["decision"]

    run_restore(settings, restore_decisions=True)

    with open_storage(settings) as storage:
        live = storage.get_decision(victim["id"])
    assert live["decision"] == original and live["priority"] == victim["priority"]


def test_dry_runs_leave_the_project_and_the_data_untouched(tmp_path, run_script):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / ".gitignore", project / ".gitignore")
    git("init", "-q", "-b", "main", cwd=project)
    git("add", ".gitignore", cwd=project)
    git("commit", "-qm", "project", cwd=project)
    settings = make_settings(project)
    seed(settings, varied_decisions(15))
    run_backup(settings)
    with open_storage(settings) as storage:
        storage.upsert_decisions(varied_decisions(2, seed=8))
    data_before = file_hashes(project / "data")
    env = {"ANGLES_HOME": str(project)}

    backup = run_script("run_backup_now.py", "--dry-run", env=env)
    plan = run_script("restore_from_github.py", "--dry-run", "--restore-decisions", "--prune", env=env)
    report = run_script("restore_from_github.py", "--dry-run", env=env)

    assert backup.returncode == 0 and "would commit 17 decisions (+2 ~0 -0)" in backup.stdout
    assert plan.returncode == 0 and "would restore: 0 decisions upserted, 2 pruned" in plan.stdout
    assert report.returncode == 0 and "only live: 2" in report.stdout
    assert git("status", "--porcelain", cwd=project) == ""
    assert file_hashes(project / "data") == data_before
    assert not (project / "logs" / "backup.log").exists() or "dry" not in (project / "logs" / "backup.log").read_text()
    assert len(dump(settings)) == 17


def test_restore_keeps_live_rows_unless_pruned_and_newer_live_edits_unless_told(home, run_script):
    settings = make_settings(home)
    rows = [r for r in varied_decisions(25) if not r.get("superseded_by")]
    seed(settings, rows)
    run_backup(settings)
    extra = varied_decisions(1, seed=77)[0]
    older = {"decision": "changed, dated before the backup", "updated_at": "2000-01-01T00:00:00.000000Z"}
    with open_storage(settings) as storage:
        storage.upsert_decisions([extra])
        storage.update_decision(rows[0]["id"], {"decision": "edited after the backup"})
        storage.update_decision(rows[2]["id"], older)
        storage.delete_decisions([rows[1]["id"]])

    done = run_script("restore_from_github.py", "--restore-decisions", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["drift"]["only_backup"] == {"count": 1, "first_ids": [rows[1]["id"]]}
    assert report["drift"]["changed"]["first_ids"] == sorted([rows[0]["id"], rows[2]["id"]])
    assert report["drift"]["newer_live"]["first_ids"] == [rows[0]["id"]]
    assert report["drift"]["only_live"]["first_ids"] == [extra["id"]]
    assert report["restored"] == {
        "upserted": 2,
        "written": 2,
        "pruned": 0,
        "kept_newer": 1,
        "skipped": [],
        "history_restored": 0,
        "links_restored": 0,
    }
    live = {r["id"]: r for r in dump(settings)}
    assert extra["id"] in live and rows[1]["id"] in live
    assert live[rows[0]["id"]]["decision"] == "edited after the backup"
    assert live[rows[2]["id"]]["decision"] == rows[2]["decision"]

    taken = run_script("restore_from_github.py", "--restore-decisions", "--prefer-backup")
    assert taken.returncode == 0, taken.stderr
    assert "restored: 1 decisions upserted in one transaction, 0 pruned, 0 kept" in taken.stdout
    assert {r["id"]: r for r in dump(settings)}[rows[0]["id"]]["decision"] == rows[0]["decision"]

    pruned = run_script("restore_from_github.py", "--restore-decisions", "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "1 pruned" in pruned.stdout
    assert extra["id"] not in {r["id"] for r in dump(settings)}
    assert "restore completed" in (home / "logs" / "backup.log").read_text()


def test_a_restore_hands_every_live_version_it_replaces_to_the_history_hook(home):
    from angles.engines import restore_plan

    settings = make_settings(home)
    rows = [r for r in varied_decisions(8) if not r.get("superseded_by")]
    seed(settings, rows)
    run_backup(settings)
    extra = validate({"decision": "only live", "type": "process"})
    with open_storage(settings) as storage:
        storage.upsert_decisions([extra])
        storage.update_decision(rows[0]["id"], {"decision": "edited later"})
        storage.update_decision(rows[1]["id"], {"decision": "dated earlier", "updated_at": "2000-01-01T00:00:00Z"})
        expected = [storage.get_decision(rows[1]["id"]), storage.get_decision(extra["id"])]
    handed: list[dict] = []
    with open_storage(settings) as storage, restore_plan.verified_checkout(settings) as checkout:
        found = restore_plan.drift(checkout, storage)
        result = restore_plan.restore_decisions(checkout, storage, found, prune=True, on_replace=handed.append)
    assert handed == expected
    assert result["kept_newer"] == 1 and result["pruned"] == 1


def test_prune_refuses_to_delete_a_row_a_kept_newer_edit_links_to(home, run_script):
    settings = make_settings(home)
    rows = [r for r in varied_decisions(6) if not r.get("superseded_by")]
    seed(settings, rows)
    run_backup(settings)
    target = validate({"decision": "the replacement, only live", "type": "process"})
    with open_storage(settings) as storage:
        storage.upsert_decisions([target])
        storage.update_decision(rows[0]["id"], {"superseded_by": target["id"]})
    before = dump(settings)

    refused = run_script("restore_from_github.py", "--restore-decisions", "--prune")

    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert f"--prune would delete decision {target['id']}" in refused.stderr and "--prefer-backup" in refused.stderr
    assert dump(settings) == before
    taken = run_script("restore_from_github.py", "--restore-decisions", "--prune", "--prefer-backup")
    assert taken.returncode == 0, taken.stderr
    assert target["id"] not in {r["id"] for r in dump(settings)}


def test_restore_at_an_older_commit_or_date_picks_that_backup(home, run_script):
    settings = make_settings(home)
    seed(settings, varied_decisions(5))
    first = run_backup(settings)["commit"]
    time.sleep(1.1)
    with open_storage(settings) as storage:
        storage.upsert_decisions(varied_decisions(3, seed=31))
    second = run_backup(settings)["commit"]
    remote = home / "data" / "backup-remote.git"
    first_time = git("show", "-s", "--format=%cI", first, cwd=remote).strip()

    by_commit = json.loads(run_script("restore_from_github.py", "--dry-run", "--at", first[:10], "--json").stdout)
    by_date = json.loads(run_script("restore_from_github.py", "--dry-run", "--at", first_time, "--json").stdout)
    latest = json.loads(run_script("restore_from_github.py", "--dry-run", "--json").stdout)
    too_early = run_script("restore_from_github.py", "--dry-run", "--at", "2001-01-01")

    assert by_commit["commit"] == first and by_commit["drift"]["only_live"]["count"] == 3
    assert by_date["commit"] == first
    assert latest["commit"] == second and latest["drift"]["unchanged"] == 8
    assert too_early.returncode == 1 and "no backup at or before 2001-01-01" in too_early.stderr


def test_a_date_shifted_out_of_range_is_one_line_naming_at(home, run_script):
    settings = make_settings(home)
    seed(settings, varied_decisions(2))
    run_backup(settings)
    for at in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        done = run_script("restore_from_github.py", "--dry-run", "--at", at)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [done.stderr.strip()]
        assert "--at" in done.stderr and "unexpected" not in done.stderr


def test_restore_drill_verifies_a_fresh_clone_and_records_both_state_keys(home, run_script):
    settings = make_settings(home)
    seed(settings, varied_decisions(50))
    run_backup(settings)
    before = dump(settings)

    result = run_verify(settings)

    assert result["exit_code"] == 0 and result["result"] == "ok"
    scratch = result["verification"]["scratch_restore"]
    assert scratch == {"rows_expected": 50, "rows_restored": 50, "counts_match": True, "identical": True}
    assert dump(settings) == before
    with open_storage(settings) as storage:
        last = json.loads(storage.get_state("backup.last"))
        verified = json.loads(storage.get_state("backup.last_verified"))
        agents = {(a["agent_name"], a["status"]) for a in storage.iter_activity()}
    assert last["result"] == "committed" and last["decisions"] == 50 and last["commit"]
    assert verified["result"] == "ok" and verified["level"] == "restore" and verified["time"]
    assert ("backup", "completed") in agents and ("verify", "completed") in agents

    door = run_script("restore_from_github.py", "--verify-only", "--level", "live")
    assert door.returncode == 0, door.stderr
    assert "restore drill passed" in door.stdout and "spot check" in door.stdout


def test_a_failed_drill_is_stored_as_last_verified(home, tmp_path_factory):
    from angles.errors import AnglesError

    settings = make_settings(home)
    seed(settings, varied_decisions(5))
    run_backup(settings)
    work = tmp_path_factory.mktemp("drill") / "w"
    git("clone", "-q", str(home / "data" / "backup-remote.git"), str(work), cwd=work.parent)
    with open(work / "decision_vault.jsonl", "a") as handle:
        handle.write("\n")
    git("commit", "-qam", "append", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    with pytest.raises(AnglesError):
        run_verify(settings)
    with open_storage(settings) as storage:
        verified = json.loads(storage.get_state("backup.last_verified"))
    assert verified["result"] == "failed" and "decision_vault.jsonl" in verified["error"]


def test_restore_on_a_fresh_machine_with_no_backup_says_so(home, run_script):
    done = run_script("restore_from_github.py", "--dry-run")
    assert done.returncode == 1
    assert "no backup yet" in done.stderr


def test_the_embedded_default_works_from_a_fresh_clone(home, run_script):
    first = run_script("run_backup_now.py")
    assert first.returncode == 0, first.stderr
    assert (home / "data" / "backup-remote.git" / "HEAD").is_file()
    assert run_script("restore_from_github.py", "--dry-run").returncode == 0
    restored = run_script("restore_from_github.py", "--restore-decisions")
    assert restored.returncode == 0, restored.stderr


def test_an_out_of_order_backend_still_writes_an_id_sorted_file(tmp_path):
    from angles.engines.credential_scan import CredentialScanner

    rows = [{"id": i, "agent_name": "x"} for i in (3, 1, 2)]
    result = snapshot.write_table(tmp_path, snapshot.ACTIVITY, rows, CredentialScanner(), [])
    lines = (tmp_path / "agent_activity.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [1, 2, 3]
    assert result["sha256"] == hashlib.sha256((tmp_path / "agent_activity.jsonl").read_bytes()).hexdigest()


def test_every_token_shape_the_log_filter_knows_is_reported_in_backup_records():
    from angles.engines.credential_scan import CredentialScanner

    shapes = [
        _fake_token("sk-proj-"),
        _fake_token("ghp_"),
        _fake_token("gho_"),
        _fake_token("github_pat_"),
        _fake_token("secret_"),
        _fake_token("ntn_"),
        _fake_token("sb_secret_"),
        "eyJ" + _fake_token("h")[:20] + ".eyJ" + _fake_token("p")[:30] + "." + _fake_token("s")[:30],
        "postgresql://vault:hunter2hunter2@db.internal:5432/x",
    ]
    configured = 'configured "quoted\\ value'
    scanner = CredentialScanner((configured, "postgres"))
    for shape in [*shapes, configured]:
        for record in ({"id": "1", "comment": f"see {shape} here"}, {"id": "1", "comment": {shape: "as a key"}}):
            line = snapshot.encode_text(record, ("id", "comment"))
            assert scanner.may_match(line.encode()) and scanner.line_may_match(line), shape
            assert scanner.fields(record) == ["comment"], shape
    for ordinary in (ORDINARY, "though high", "postgres runs the vault", "sk-learn-style-pipeline-api-docs"):
        record = {"id": "1", "comment": ordinary}
        assert scanner.fields(record) == [], ordinary


def test_an_unreachable_remote_is_retried_then_fails_with_one_line_not_exit_4(home, monkeypatch):
    import socket

    import angles.services.git_remote as backup_module
    from angles.errors import AnglesError, BackupAuthError

    monkeypatch.setattr(backup_module, "TRANSIENT_RETRIES", (0.0,))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(home, BACKUP_REMOTE=f"http://127.0.0.1:{port}/backup.git")
    seed(settings, varied_decisions(3))
    with pytest.raises(AnglesError) as failure:
        run_backup(settings)
    assert not isinstance(failure.value, BackupAuthError)
    assert failure.value.exit_code == 1
    assert f"127.0.0.1:{port}" in str(failure.value) and "\n" not in str(failure.value)
    with open_storage(settings) as storage:
        assert json.loads(storage.get_state("backup.last"))["result"] == "failed"


def test_the_next_backup_repairs_a_remote_file_that_no_longer_matches_its_manifest(home, tmp_path_factory):
    settings = make_settings(home)
    seed(settings, varied_decisions(30))
    run_backup(settings)
    work = tmp_path_factory.mktemp("repair") / "w"
    git("clone", "-q", str(home / "data" / "backup-remote.git"), str(work), cwd=work.parent)
    lines = (work / "decision_vault.jsonl").read_bytes().splitlines(keepends=True)
    (work / "decision_vault.jsonl").write_bytes(b"".join(lines[:-1]))
    git("commit", "-qam", "lose the last line", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)

    repaired = run_backup(settings)

    assert repaired["result"] == "committed" and "30 decisions (+1 ~0 -0)" in repaired["message"]
    assert run_verify(settings)["result"] == "ok"


def test_a_backup_run_by_the_scheduler_still_writes_backup_log(home):
    import logging

    from angles.logs import setup_logging

    settings = make_settings(home)
    seed(settings, varied_decisions(3))
    setup_logging("scheduler", settings, console=False)
    root = logging.getLogger()
    try:
        run_backup(settings)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
    assert "backup completed" in (home / "logs" / "active" / "backup.log").read_text()
    assert "backup completed" in (home / "logs" / "active" / "scheduler.log").read_text()


@pytest.mark.postgres
def test_a_sqlite_backup_restores_into_postgres_row_for_row(home, pg_url):
    sqlite_settings = make_settings(home)
    rows = varied_decisions(2_000, seed=11)
    seed(sqlite_settings, rows)
    before = dump(sqlite_settings)
    run_backup(sqlite_settings)
    pg_settings = make_settings(home, DATABASE_URL=pg_url)

    result = run_restore(pg_settings, restore_decisions=True)

    assert result["restored"]["upserted"] == 2_000
    assert dump(pg_settings) == before
    assert run_restore(pg_settings, dry_run=True)["drift"]["unchanged"] == 2_000


@pytest.mark.postgres
def test_a_nul_row_from_an_old_sqlite_vault_is_skipped_by_a_postgres_restore_not_fatal(home, pg_url, run_script):
    sqlite_settings = make_settings(home)
    rows = varied_decisions(50, seed=12)
    poisoned = rows[20]["id"]
    rows[20] = {**rows[20], "decision": "stored before validation \u0000 refused it"}
    # Straight through storage, as SQLite accepted it before validate() refused NUL characters.
    seed(sqlite_settings, rows)
    migrated = run_script("run_migration.py")
    assert migrated.returncode == 0 and poisoned in migrated.stdout and "NUL character" in migrated.stdout
    run_backup(sqlite_settings)

    done = run_script("restore_from_github.py", "--restore-decisions", env={"DATABASE_URL": pg_url})

    assert done.returncode == 1, done.stderr
    assert "restored: 49 decisions upserted" in done.stdout
    assert "1 decision(s) not restored" in done.stdout and poisoned in done.stdout
    pg_settings = make_settings(home, DATABASE_URL=pg_url)
    restored = {row["id"] for row in dump(pg_settings)}
    assert restored == {row["id"] for row in rows} - {poisoned}


def test_restore_writes_each_linked_row_once_with_its_target_first():
    from angles.engines.restore_plan import in_link_order

    rows = [
        {"id": "a", "superseded_by": "d"},
        {"id": "b", "superseded_by": None},
        {"id": "c", "superseded_by": "a"},
        {"id": "d", "superseded_by": None},
        {"id": "e", "superseded_by": "f"},
        {"id": "f", "superseded_by": "e"},
        {"id": "g", "superseded_by": "live"},
    ]
    out = list(in_link_order(iter(rows), {"live"}))
    ids = [r["id"] for r in out]
    assert sorted(ids[:5]) == ["a", "b", "c", "d", "g"]
    assert ids.index("d") < ids.index("a") < ids.index("c")
    # Only a cycle needs the two-step write.
    assert ids[5:] == ["e", "f", "e", "f"]
    assert [r["superseded_by"] for r in out[5:]] == [None, None, "f", "e"]


def test_an_empty_database_never_overwrites_a_backup_that_holds_decisions(home, run_script):
    settings = make_settings(home)
    seed(settings, varied_decisions(8))
    run_backup(settings)
    commits = remote_commits(home / "data" / "backup-remote.git")

    done = run_script("run_backup_now.py", env={"DATABASE_URL": f"sqlite:///{home}/data/typo.db"})

    assert done.returncode == 1
    assert "refusing to back up 0 decisions over a backup that holds 8" in done.stderr
    assert remote_commits(home / "data" / "backup-remote.git") == commits


def _push_from_elsewhere(remote: Path, work: Path) -> str:
    git("clone", "-q", str(remote), str(work), cwd=work.parent)
    (work / "note.txt").write_text("pushed by another host\n")
    git("add", "note.txt", cwd=work)
    git("commit", "-qm", "another host", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def test_git_locks_left_by_a_killed_backup_are_cleared_and_the_next_backup_succeeds(home, run_script, tmp_path):
    settings = make_settings(home)
    seed(settings, varied_decisions(10))
    run_backup(settings)
    remote = home / "data" / "backup-remote.git"
    # The remote moved on since, so the next fetch must update the tracking ref whose lock is left behind.
    other = _push_from_elsewhere(remote, tmp_path / "other")
    clone_git = home / "data" / "backup-repo" / ".git"
    locks = [clone_git / "index.lock", clone_git / "refs/remotes/origin/main.lock", remote / "refs/heads/main.lock"]
    for lock in locks:
        lock.write_text("")
    with open_storage(settings) as storage:
        storage.upsert_decisions(varied_decisions(2, seed=9))

    done = run_script("run_backup_now.py")

    assert done.returncode == 0, done.stderr
    assert "12 decisions (+2 ~0 -0)" in done.stdout
    assert not any(lock.exists() for lock in locks)
    log = (home / "logs" / "active" / "backup.log").read_text()
    for lock in locks:
        assert f"removed the stale git lock file {lock}" in log
    assert other in remote_commits(remote)


def test_a_push_refused_while_nothing_else_pushed_is_not_blamed_on_a_moving_remote(tmp_path):
    from angles.errors import AnglesError

    remote = guarded_remote(tmp_path / "shared.git")
    settings = make_settings(tmp_path / "a", BACKUP_REMOTE=remote)
    seed(settings, varied_decisions(5))
    run_backup(settings)
    # A lock this young in a remote other hosts may push to could be theirs: it stays, and the push fails.
    lock = remote / "refs" / "heads" / "main.lock"
    lock.write_text("")
    with open_storage(settings) as storage:
        storage.upsert_decisions(varied_decisions(1, seed=3))

    with pytest.raises(AnglesError) as refused:
        run_backup(settings)

    message = str(refused.value)
    assert "refused the push although no other host pushed" in message and "main.lock" in message
    assert "kept moving" not in message
    assert lock.exists()
    old = time.time() - 300
    os.utime(lock, (old, old))
    assert run_backup(settings)["result"] == "committed"
    assert not lock.exists()


def _backend_settings(home: Path, backend: str, request):
    if backend == "postgres":
        return make_settings(home, DATABASE_URL=request.getfixturevalue("pg_url"))
    return make_settings(home)


def _refuse_deleting(settings, decision_id: str) -> None:
    """A trigger that makes deleting one decision fail, as a database error would mid-restore."""
    if settings.database_kind == "postgres":
        import psycopg

        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$"
                " LANGUAGE plpgsql"
            )
            conn.execute(
                "CREATE TRIGGER refuse BEFORE DELETE ON decision_vault FOR EACH ROW"
                f" WHEN (OLD.id = '{decision_id}') EXECUTE FUNCTION refuse()"
            )
    else:
        import sqlite3

        with sqlite3.connect(settings.sqlite_path) as conn:
            conn.execute(
                f"CREATE TRIGGER refuse BEFORE DELETE ON decision_vault WHEN OLD.id = '{decision_id}'"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_restore_prune_of_linked_live_only_rows_is_one_transaction(home, request, backend, run_script):
    settings = _backend_settings(home, backend, request)
    rows = [r for r in varied_decisions(12) if not r.get("superseded_by")]
    seed(settings, rows)
    run_backup(settings)
    # Live-only rows linked to each other, the target sorting first: deleting in id order breaks the link.
    target = validate({"id": "00000000-0000-4000-8000-000000000001", "decision": "newer", "type": "process"})
    linked = validate({"id": "ffffffff-0000-4000-8000-000000000001", "decision": "older", "type": "process"})
    linked["superseded_by"] = target["id"]
    with open_storage(settings) as storage:
        storage.upsert_decisions([target, linked])
        storage.update_decision(rows[0]["id"], {"decision": "edited", "updated_at": "2020-01-01T00:00:00.000000Z"})
    env = {"DATABASE_URL": settings.database_url} if backend == "postgres" else {}

    _refuse_deleting(settings, linked["id"])
    before = dump(settings)
    failed = run_script("restore_from_github.py", "--restore-decisions", "--prune", env=env)

    assert failed.returncode == 2, failed.stderr
    assert dump(settings) == before, "the upsert was rolled back with the failed delete"

    if backend == "postgres":
        import psycopg

        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse ON decision_vault")
    else:
        import sqlite3

        with sqlite3.connect(settings.sqlite_path) as conn:
            conn.execute("DROP TRIGGER refuse")
    done = run_script("restore_from_github.py", "--restore-decisions", "--prune", env=env)

    assert done.returncode == 0, done.stderr
    assert "restored: 1 decisions upserted in one transaction, 2 pruned" in done.stdout
    live = {r["id"]: r for r in dump(settings)}
    assert target["id"] not in live and linked["id"] not in live
    assert live[rows[0]["id"]]["decision"] == rows[0]["decision"]


def test_a_killed_restore_leaves_no_clone_behind_once_the_next_restore_starts(home, run_script, tmp_path, monkeypatch):
    import fcntl
    import signal
    import sys

    from angles.scratch import OWNER

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    settings = make_settings(home)
    seed(settings, varied_decisions(3000))
    run_backup(settings)
    env = {k: v for k, v in os.environ.items() if k != "ANGLES_HOME"}
    env.update(ANGLES_HOME=str(home), TMPDIR=str(scratch))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "restore_from_github.py"), "--restore-decisions"], cwd=home, env=env
    )
    deadline = time.monotonic() + 60
    while not list(scratch.glob("angles-restore-*/backup/.git/objects")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed,) = scratch.glob("angles-restore-*")
    old_unowned = scratch / "angles-restore-from-an-older-version"
    young_unowned = scratch / "angles-restore-being-created"
    for folder in (old_unowned, young_unowned):
        folder.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(old_unowned, (two_hours_ago, two_hours_ago))

    # A restore still running holds the lock on its folder's owner file.
    live = scratch / "angles-restore-still-running"
    live.mkdir()
    owner = os.open(live / OWNER, os.O_RDWR | os.O_CREAT)
    fcntl.flock(owner, fcntl.LOCK_EX)

    done = run_script("restore_from_github.py", "--dry-run", env={"TMPDIR": str(scratch)})

    os.close(owner)
    assert done.returncode == 0, done.stderr
    assert live.exists(), "a folder its process still owns is left alone"
    assert not killed.exists() and not old_unowned.exists() and young_unowned.exists()
    log = (home / "logs" / "active" / "restore.log").read_text()
    assert f"removed {killed} (" in log and "left behind by an interrupted run" in log


PASSPHRASE = "a long passphrase for the backup tests"


def _all_objects(remote: Path) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"], cwd=remote, capture_output=True, check=True
    ).stdout


def test_an_encrypted_backup_holds_no_plaintext_and_restores_exactly(home, run_script):
    settings = make_settings(home, BACKUP_PASSPHRASE=PASSPHRASE)
    rows = varied_decisions(300)
    rows[5]["decision"] = "A sentence that must never reach the remote in plaintext"
    seed(settings, rows)
    before = dump(settings)
    env = {"BACKUP_PASSPHRASE": PASSPHRASE}

    done = run_script("run_backup_now.py", env=env)

    assert done.returncode == 0, done.stderr
    assert "encrypted" in done.stdout
    remote = home / "data" / "backup-remote.git"
    objects = _all_objects(remote)
    assert b"must never reach the remote" not in objects and rows[5]["id"].encode() not in objects
    assert git("ls-tree", "--name-only", "main", cwd=remote).split() == SEALED_TREE
    texts = [done.stdout, done.stderr] + [p.read_text(errors="replace") for p in (home / "logs").rglob("*.log")]
    assert all(PASSPHRASE not in text for text in texts)

    wipe_database(settings)
    restored = run_script("restore_from_github.py", "--restore-decisions", env=env)
    drill = run_script("restore_from_github.py", "--verify-only", "--level", "live", env=env)

    assert restored.returncode == 0, restored.stderr
    assert "encrypted" in restored.stdout
    assert dump(settings) == before
    assert drill.returncode == 0 and "restore drill passed" in drill.stdout


@pytest.mark.parametrize(
    "script",
    [("restore_from_github.py", "--dry-run"), ("restore_from_github.py", "--verify-only"), ("run_backup_now.py",)],
    ids=["restore", "drill", "backup"],
)
def test_a_missing_or_wrong_passphrase_is_one_line_and_exit_1(home, run_script, script):
    settings = make_settings(home, BACKUP_PASSPHRASE=PASSPHRASE)
    seed(settings, varied_decisions(20))
    run_backup(settings)
    with open_storage(settings) as storage:
        storage.upsert_decisions(varied_decisions(1, seed=5))
    remote = home / "data" / "backup-remote.git"
    commits = remote_commits(remote)

    missing = run_script(*script)
    wrong = run_script(*script, env={"BACKUP_PASSPHRASE": "not the passphrase at all"})

    for done in (missing, wrong):
        assert done.returncode == 1, done.stdout
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert "BACKUP_PASSPHRASE" in done.stderr and "not the passphrase at all" not in done.stderr
    if script[0] == "restore_from_github.py":
        assert "is encrypted: set BACKUP_PASSPHRASE" in missing.stderr
    else:
        assert "are encrypted but BACKUP_PASSPHRASE is not set" in missing.stderr
    assert "is not the passphrase" in wrong.stderr
    assert remote_commits(remote) == commits


def test_a_short_passphrase_is_refused_without_echoing_it(home, run_script):
    done = run_script("run_backup_now.py", env={"BACKUP_PASSPHRASE": "short-pass"})
    assert done.returncode == 1
    assert "BACKUP_PASSPHRASE must be at least 12 characters" in done.stderr and "short-pass" not in done.stderr


def _sealed_records(data: bytes) -> list[bytes]:
    from angles.engines.backup_crypto import MAGIC

    records, offset = [], len(MAGIC)
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        records.append(data[offset : offset + 4 + size])
        offset += 4 + size
    return records


def test_changed_rows_change_only_their_own_encrypted_records(home, monkeypatch):
    from angles.engines.backup_crypto import BackupCipher

    settings = make_settings(home, BACKUP_PASSPHRASE=PASSPHRASE)
    seed(settings, [r for r in varied_decisions(400) if not r.get("superseded_by")])
    run_backup(settings)
    sealed = home / "data" / "backup-repo" / "decision_vault.jsonl.enc"
    first = _sealed_records(sealed.read_bytes())
    with open_storage(settings) as storage:
        rows = list(storage.iter_decisions())
        for row in rows[::50]:
            storage.update_decision(row["id"], {"comment": "revised"})
        storage.upsert_decisions([validate({"decision": "one more", "type": "process"})])
    sealed_tables: list[str] = []
    original = BackupCipher.seal
    monkeypatch.setattr(
        BackupCipher, "seal", lambda self, table, line: sealed_tables.append(table) or original(self, table, line)
    )

    result = run_backup(settings)

    second = _sealed_records(sealed.read_bytes())
    assert result["result"] == "committed" and f"(+1 ~{len(rows[::50])} -0)" in result["message"]
    assert len(second) == len(first) + 1
    assert len(set(second) - set(first)) == len(rows[::50]) + 1
    assert sealed_tables.count("decision_vault") == len(rows[::50]) + 1, "unchanged records were reused"
    manifest = json.loads((home / "data" / "backup-repo" / "manifest.json").read_text())
    cipher = BackupCipher.for_manifest(PASSPHRASE, manifest, "test")
    plain = home / "data" / "backup-repo" / ".git" / "angles-plain" / "decision_vault.jsonl"
    resealed = cipher.seal_lines("decision_vault", plain.read_bytes().splitlines(keepends=True), home / "fresh")
    assert (home / "fresh").read_bytes() == sealed.read_bytes() and resealed == manifest["files"][
        "decision_vault.jsonl"
    ]["sealed_sha256"]
    assert run_verify(settings)["result"] == "ok"


def test_switching_encryption_on_removes_the_plaintext_files_from_the_branch(home):
    settings = make_settings(home)
    seed(settings, varied_decisions(30))
    run_backup(settings)
    encrypted = make_settings(home, BACKUP_PASSPHRASE=PASSPHRASE)
    with open_storage(settings) as storage:
        storage.upsert_decisions(varied_decisions(2, seed=8))

    result = run_backup(encrypted)

    assert result["result"] == "committed" and "32 decisions (+2 ~0 -0)" in result["message"]
    remote = home / "data" / "backup-remote.git"
    tree = git("ls-tree", "--name-only", "main", cwd=remote).split()
    assert tree == SEALED_TREE
    assert run_verify(encrypted)["result"] == "ok"


@pytest.mark.parametrize("damage", ["record", "manifest"])
def test_an_altered_encrypted_backup_is_refused_and_the_database_left_alone(home, run_script, tmp_path_factory, damage):
    settings = make_settings(home, BACKUP_PASSPHRASE=PASSPHRASE)
    seed(settings, varied_decisions(40))
    run_backup(settings)
    wipe_database(settings)
    work = tmp_path_factory.mktemp("sealed") / "w"
    git("clone", "-q", str(home / "data" / "backup-remote.git"), str(work), cwd=work.parent)
    if damage == "record":
        path = work / "decision_vault.jsonl.enc"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        expected = "does not decrypt (damaged or altered)"
    else:
        manifest = json.loads((work / "manifest.json").read_text())
        manifest["files"]["decision_vault.jsonl"]["rows"] = 39
        (work / "manifest.json").write_text(json.dumps(manifest))
        expected = "file list was altered"
    git("commit", "-qam", "alter", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)

    done = run_script("restore_from_github.py", "--restore-decisions", env={"BACKUP_PASSPHRASE": PASSPHRASE})

    assert done.returncode == 1 and expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert dump(settings) == []


@pytest.fixture
def second_pg_url(pg_url):
    """Another fresh PostgreSQL database beside pg_url, dropped afterwards."""
    import psycopg

    admin = os.environ.get("ANGLES_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"angles_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{admin.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _vault_with_history_and_links(settings) -> list[dict]:
    """Varied decisions (links forward and backward in id order, analyses, escapes) with history rows and links."""
    from angles.engines.decision_model import link_id

    rows = varied_decisions(1_500, seed=21)
    seed(settings, rows)
    with open_storage(settings) as storage:
        for row in rows[:40]:
            storage.update_decision(row["id"], {"decision": row["decision"] + " (revised)"}, source="cli")
        for a, b in zip(rows[100:130], rows[200:230], strict=True):
            link = {"from_id": a["id"], "to_id": b["id"], "kind": "relates_to", "source": "cli"}
            storage.add_link({**link, "id": link_id(a["id"], b["id"], "relates_to"), "created_at": a["created_at"]})
    return rows


def _everything(settings, leave_out: set[str] = frozenset()) -> tuple[list, list, list]:
    with open_storage(settings, create=False) as storage:
        decisions = [r for r in storage.iter_decisions() if r["id"] not in leave_out]
        history = [h for h in storage.iter_history() if h["decision_id"] not in leave_out]
        links = list(storage.iter_links())
    return decisions, history, links


@pytest.mark.postgres
def test_a_restore_into_empty_postgres_leaves_the_same_vault_as_the_merge_into_a_used_one(
    home, pg_url, second_pg_url, caplog
):
    sqlite_settings = make_settings(home)
    rows = _vault_with_history_and_links(sqlite_settings)
    expected = _everything(sqlite_settings)
    run_backup(sqlite_settings)
    empty = make_settings(home, DATABASE_URL=pg_url)
    used = make_settings(home, DATABASE_URL=second_pg_url)
    live_only = validate({"decision": "already here", "type": "process"})
    with open_migrated(used) as storage:
        storage.upsert_decisions([live_only])

    with caplog.at_level("INFO", logger="angles.storage.postgres"):
        copied = run_restore(empty, restore_decisions=True)
        merged = run_restore(used, restore_decisions=True)

    assert not [r for r in caplog.records if "merged instead" in r.getMessage()]
    assert copied["restored"]["upserted"] == merged["restored"]["upserted"] == len(rows)
    assert _everything(empty) == _everything(used, {live_only["id"]}) == expected
    assert any(r["superseded_by"] for r in expected[0]) and expected[1] and expected[2]


@pytest.mark.postgres
def test_a_row_written_live_during_a_restore_into_empty_postgres_is_merged_not_lost(home, pg_url, monkeypatch, caplog):
    from angles.storage.postgres import PostgresStorage

    sqlite_settings = make_settings(home)
    rows = varied_decisions(600, seed=22)
    seed(sqlite_settings, rows)
    expected = dump(sqlite_settings)
    run_backup(sqlite_settings)
    victim = sorted(rows, key=lambda r: r["id"])[300]
    restore_lines = PostgresStorage.restore_lines

    def with_a_writer_in_between(self, items, **kwargs):
        # Another writer adds the same id after the drift found the table empty: that batch's COPY conflicts.
        meanwhile = {"superseded_by": None, "decision": "written live meanwhile", "updated_at": "2001-01-01T00:00:00Z"}
        self.upsert_decisions([{**victim, **meanwhile}])
        return restore_lines(self, items, batch=50, **kwargs)

    monkeypatch.setattr(PostgresStorage, "restore_lines", with_a_writer_in_between)
    pg_settings = make_settings(home, DATABASE_URL=pg_url)
    with caplog.at_level("INFO", logger="angles.storage.postgres"):
        result = run_restore(pg_settings, restore_decisions=True)

    assert result["restored"]["upserted"] == 600
    assert dump(pg_settings) == expected
    with open_storage(pg_settings) as storage:
        history = storage.history_of(victim["id"])
    assert [h["previous"]["decision"] for h in history] == ["written live meanwhile"]
    assert history[0]["source"] == "restore"
    assert len([r for r in caplog.records if "merged instead of copied" in r.getMessage()]) == 1


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_unparsable_line_is_refused_by_a_restore_into_an_empty_database_before_commit(
    home, request, backend, tmp_path_factory
):
    from angles.errors import AnglesError

    settings = make_settings(home)
    seed(settings, varied_decisions(3_000, seed=23))
    run_backup(settings)
    push_broken_line(home, tmp_path_factory, 2_500, lambda line: line.replace(b'"decision":"', b'"decision":"\\x', 1))
    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{home}/data/empty.db"
    empty = make_settings(home, DATABASE_URL=url)

    with pytest.raises(AnglesError, match=r"decision_vault.jsonl line 2501 is not a JSON record"):
        run_restore(empty, restore_decisions=True)
    with open_storage(empty) as storage:
        assert storage.count_decisions() == 0
