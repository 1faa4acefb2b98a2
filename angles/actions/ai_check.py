"""The AI activation check behind tests/test_gpt5_activation.py: auth, model, structured output, storage."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

from angles.engines import enrichment
from angles.engines.decision_model import text_hash, validate
from angles.services import openai_model as ai
from angles.storage import migrations, open_storage

logger = logging.getLogger(__name__)

SAMPLE = (
    "Decision: encrypt the nightly database backups and rotate the encryption key every quarter, "
    "because the backups leave our servers."
)
CHECK_NAMES = ("auth", "model available", "structured output valid", "analysis stored")


def run_ai_check(settings) -> dict:
    """Check the AI path end to end (a handful of tiny requests), or the offline analyser when no key is set."""
    if not settings.ai_enabled:
        return _offline_check(settings)
    checks: list[dict] = []
    analyser = ai.OnlineAnalyser(settings, max_retries=ai.CHECK_MAX_RETRIES, timeout=60.0)
    tokens = 0
    try:
        info = analyser.retrieve_model()
        _add(checks, "auth", True, f"key accepted by {settings.openai_base_url or 'https://api.openai.com/v1'}")
        _add(checks, "model available", True, f"{info['id']} (owned by {info['owned_by']})")
    except ai.AIServiceError as exc:
        if exc.kind == "not_found":
            _add(checks, "auth", True, "key accepted")
            _add(checks, "model available", False, str(exc))
        else:
            _add(checks, "auth", False, str(exc))
            for name in CHECK_NAMES[1:]:
                _add(checks, name, False, "not checked: the service refused or did not answer")
            return _result(settings, checks, analyser.requests, tokens)
    try:
        analysis = analyser.analyse(SAMPLE)
        _add(
            checks,
            "structured output valid",
            True,
            f"type={analysis['type']} priority={analysis['priority']} confidence={analysis['confidence']:.2f} "
            f"from {analysis['response_model'] or settings.openai_model}",
        )
    except (ai.AIServiceError, ai.MalformedAnswerError) as exc:
        _add(checks, "structured output valid", False, str(exc))
    tokens += analyser.tokens
    ok, detail, used = _stored_check(settings, expect_model=settings.openai_model)
    tokens += used["tokens"]
    _add(checks, "analysis stored", ok, detail)
    return _result(settings, checks, analyser.requests + used["requests"], tokens)


def _offline_check(settings) -> dict:
    checks: list[dict] = []
    analysis = enrichment.offline_analysis(SAMPLE, "OPENAI_API_KEY is not set")
    try:
        ai.validate_analysis(analysis)
        _add(
            checks,
            "offline analyser",
            True,
            f"type={analysis['type']} priority={analysis['priority']} model={analysis['model']}",
        )
    except ai.MalformedAnswerError as exc:
        _add(checks, "offline analyser", False, str(exc))
    ok, detail, _ = _stored_check(settings, expect_model=ai.OFFLINE)
    _add(checks, "analysis stored", ok, detail)
    return _result(settings, checks, 0, 0)


def _stored_check(settings, *, expect_model: str) -> tuple[bool, str, dict]:
    """Enrich one decision in a scratch SQLite database (never the operator's) and read it back, twice."""
    with tempfile.TemporaryDirectory(prefix="angles-ai-check-") as tmp:
        scratch = dataclasses.replace(
            settings, database_kind="sqlite", database_url=f"sqlite:///{Path(tmp) / 'scratch.db'}"
        )
        logger.info("AI check: storing a sample decision in the scratch database %s", scratch.sqlite_path)
        with open_storage(scratch) as storage:
            migrations.migrate(storage)
            row = validate({"decision": SAMPLE})
            storage.upsert_decisions([row])
            first = enrichment.enrich_decisions(storage, scratch)
            stored = storage.get_decision(row["id"])
            second = enrichment.enrich_decisions(storage, scratch)
    used = {"requests": first["requests"] + second["requests"], "tokens": first["tokens"] + second["tokens"]}
    analysis = (stored or {}).get("ai_analysis") or {}
    if analysis.get("model") != expect_model:
        reason = analysis.get("offline_reason") or "no analysis stored"
        return False, f"stored analysis came from {analysis.get('model')!r}, not {expect_model!r}: {reason}", used
    if stored["ai_hash"] != text_hash(SAMPLE):
        return False, "stored ai_hash does not match the decision text", used
    if second["requests"] or second["skipped_unchanged"] != 1:
        return False, "an unchanged decision was analysed again", used
    return True, f"model={analysis['model']} stored in a scratch database; unchanged text made no new request", used


def _add(checks: list[dict], name: str, ok: bool, detail: str) -> None:
    checks.append({"name": name, "status": "PASS" if ok else "FAIL", "detail": detail})
    (logger.info if ok else logger.error)("AI check %s: %s: %s", name, "PASS" if ok else "FAIL", detail)


def _result(settings, checks: list[dict], requests: int, tokens: int) -> dict:
    passed = all(c["status"] == "PASS" for c in checks)
    configured = settings.ai_enabled
    return {
        "configured": configured,
        "mode": "online" if configured else "offline",
        "model": settings.openai_model if configured else ai.OFFLINE,
        "checks": checks,
        "passed": passed,
        "requests": requests,
        "tokens": tokens,
        # Every check is about the external service, so a failure maps to exit 3 (external API).
        "exit_code": 0 if passed else (3 if configured else 1),
    }
