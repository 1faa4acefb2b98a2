"""Decision analysis: which decisions need it, the model's answer or the offline analyser's, a per-run cost guard.

The model is reached through angles.services.openai_model.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from datetime import timedelta

from angles.engines.decision_model import TYPES, parse_timestamp, text_hash, to_iso, utc_now
from angles.runs import Run
from angles.services.openai_model import OFFLINE, AIServiceError, MalformedAnswerError, OnlineAnalyser

logger = logging.getLogger(__name__)

# Word prefixes per type, matched at word starts ("auth" finds "authentication").
KEYWORDS = {
    "security": "security, secure, auth, password, encrypt, vulnerab, secret, token, permission, access control, "
    "2fa, mfa, tls, ssl, breach, attack, firewall",
    "ethical": "ethic, privacy, bias, fair, consent, transparen, harm, gdpr, moral, accountab",
    "architecture": "architect, microservice, monolith, schema, component, layer, event-driven, queue, scalab, "
    "infrastructure, database, storage, api design, service boundar",
    "technical": "library, framework, python, code, refactor, bug, performance, test, deploy, version, dependenc, "
    "upgrade, migrat, sql, cache, index, build",
    "process": "process, workflow, review, meeting, sprint, release, onboarding, standup, retro, checklist, "
    "approval, on-call, documentation, policy",
    "product": "feature, user, customer, ux, pricing, roadmap, launch, dashboard, mvp, feedback, usability",
    "strategy": "strategy, strategic, market, vision, goal, partner, invest, growth, compet, business, revenue, "
    "long-term, mission, expansion",
}
URGENT = "critical, urgent, immediately, asap, outage, breach, blocker, data loss, incident, p0"
IMPORTANT = "important, should, soon, deadline, risk, priority, required, must, p1"


def _pattern(words: str) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(re.escape(w.strip()) for w in words.split(",")) + ")")


TYPE_PATTERNS = {kind: _pattern(words) for kind, words in KEYWORDS.items()}
URGENT_PATTERN = _pattern(URGENT)
IMPORTANT_PATTERN = _pattern(IMPORTANT)
RECOMMENDATIONS = {
    "security": ["Review the change with someone responsible for security.", "Document the threat it addresses."],
    "ethical": ["Check the decision with the people it affects.", "Record how consent and privacy are handled."],
    "architecture": ["Write down the alternatives considered.", "Plan how the change is rolled out and back."],
    "technical": ["Add tests that cover the change.", "Note the versions and settings it depends on."],
    "process": ["Tell the team where the new process is written down.", "Review the process after a few runs."],
    "product": ["Define how success will be measured.", "Collect user feedback after release."],
    "strategy": ["Set a review date for the decision.", "Name the goals the decision serves."],
    "other": ["Add a type and priority when they are known.", "Link related decisions."],
}
STOPWORDS = frozenset(
    "the and for with that this from will have into when then than they them their there about after before "
    "should would could must every each only also more most such some what which while where your ours over "
    "under been being were does done make made use used using decision decided decide we our".split()
)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s.strip()]


def offline_analysis(text: str, reason: str) -> dict:
    """A keyword- and rule-based analysis with the same shape as the model's, recorded as model "offline"."""
    lowered = text.lower()
    scores = {kind: len(pattern.findall(lowered)) for kind, pattern in TYPE_PATTERNS.items()}
    best = max(scores.values())
    kind = next((k for k in TYPES if scores.get(k) == best), "other") if best else "other"
    if URGENT_PATTERN.search(lowered):
        priority = "P0"
    elif IMPORTANT_PATTERN.search(lowered):
        priority = "P1"
    else:
        priority = "P2"
    sentences = _sentences(text)
    summary = sentences[0] if sentences else text.strip()
    if len(summary) > 200:
        summary = summary[:197].rstrip() + "..."
    words = [w for w in re.findall(r"[a-zA-Z][a-zA-Z0-9-]{3,}", lowered) if w not in STOPWORDS]
    concepts = [w for w, _ in Counter(words).most_common(5)]
    impact = (
        f"Keyword estimate, not a model's judgement: classed as {kind}"
        + (f" touching {', '.join(concepts[:3])}" if concepts else "")
        + "; review it for an informed assessment."
    )
    return {
        "type": kind,
        "priority": priority,
        "summary": summary,
        "impact": impact,
        "recommendations": list(RECOMMENDATIONS[kind]),
        "key_concepts": concepts,
        "confidence": round(min(0.5, 0.15 + 0.05 * best), 2),
        "model": OFFLINE,
        "offline_reason": reason,
        "analyzed_at": utc_now(),
        "text_hash": text_hash(text),
    }


def analyse_text(settings, text: str, *, analyser: OnlineAnalyser | None = None) -> dict:
    """Analyse one text online when a key is configured, else (or on failure) offline, saying why."""
    if not settings.ai_enabled:
        return offline_analysis(text, "OPENAI_API_KEY is not set")
    analyser = analyser or OnlineAnalyser(settings)
    try:
        return analyser.analyse(text)
    except MalformedAnswerError as exc:
        return offline_analysis(text, f"model answer malformed twice: {exc}")
    except AIServiceError as exc:
        return offline_analysis(text, str(exc))


def needs_analysis(row: dict, ai_enabled: bool) -> str | None:
    """Why a decision needs (re)analysis: "new", "changed", "upgrade" (offline, key now set), or None."""
    if row.get("deleted_at"):
        return None
    if not row.get("ai_hash") or not row.get("ai_analysis"):
        return "new"
    if row["ai_hash"] != text_hash(row["decision"]):
        return "changed"
    if ai_enabled and (row.get("ai_analysis") or {}).get("model") == OFFLINE:
        return "upgrade"
    return None


def analysis_fields(row: dict, analysis: dict) -> dict:
    """The columns to write: the analysis, its hash, and type/priority unless a person set them."""
    fields = {"ai_analysis": analysis, "ai_hash": text_hash(row["decision"])}
    if row.get("type_source") != "person":
        fields["type"] = analysis["type"]
        fields["type_source"] = "ai"
    if row.get("priority_source") != "person":
        fields["priority"] = analysis["priority"]
        fields["priority_source"] = "ai"
    return fields


SCAN_STATE_KEY = "ai.scan"
# Rows edited this long before a run started are rescanned too, for clocks that disagree a little.
SCAN_OVERLAP = timedelta(minutes=5)


def _scan_from(storage, model: str) -> str | None:
    """Where the scan may start: after the last run that left nothing pending with the same analyser, else None."""
    raw = storage.get_state(SCAN_STATE_KEY)
    try:
        state = json.loads(raw) if raw else {}
    except ValueError:
        return None
    if state.get("model") != model or not state.get("settled_at"):
        return None
    return to_iso(parse_timestamp(state["settled_at"]) - SCAN_OVERLAP)


def _remember_scan(storage, model: str, settled_at: str | None) -> None:
    storage.set_state(SCAN_STATE_KEY, json.dumps({"model": model, "settled_at": settled_at}))


def enrich_decisions(storage, settings, *, dry_run: bool = False) -> dict:
    """Analyse decisions that are new, changed, or only offline-analysed; at most AI_MAX_PER_RUN with a key."""
    online = settings.ai_enabled
    budget = settings.ai_max_per_run if online else None
    counts = {
        "pending": 0,
        "analysed": 0,
        "online": 0,
        "offline": 0,
        "skipped_unchanged": 0,
        "deferred": 0,
        "tokens": 0,
        "requests": 0,
        "model": settings.openai_model if online else OFFLINE,
        "fallback_reason": None if online else "OPENAI_API_KEY is not set",
        "dry_run": dry_run,
    }
    state = {"analyser": None, "dead": None, "done": 0}
    run = Run(settings, "ai_enrichment", "analyse", storage=storage, record=not dry_run)
    suffix = " (dry run)" if dry_run else ""

    def analyse(row: dict) -> None:
        state["done"] += 1
        if dry_run:
            return
        counts["analysed"] += 1
        text = row["decision"]
        if not online:
            analysis = offline_analysis(text, "OPENAI_API_KEY is not set")
        elif state["dead"]:
            analysis = offline_analysis(text, state["dead"])
        else:
            if state["analyser"] is None:
                state["analyser"] = OnlineAnalyser(settings)
            try:
                analysis = state["analyser"].analyse(text)
            except MalformedAnswerError as exc:
                analysis = offline_analysis(text, f"model answer malformed twice: {exc}")
                counts["fallback_reason"] = analysis["offline_reason"]
                logger.warning("decision %s: %s; stored the offline analysis", row["id"], analysis["offline_reason"])
            except AIServiceError as exc:
                # The same failure would repeat for every decision: stop calling the service this run.
                state["dead"] = str(exc)
                counts["fallback_reason"] = str(exc)
                log = logger.error if exc.kind == "auth" else logger.warning
                log("AI service unusable for the rest of this run, using the offline analyser: %s", exc)
                analysis = offline_analysis(text, str(exc))
        counts["offline" if analysis["model"] == OFFLINE else "online"] += 1
        logger.debug("decision %s analysed by %s (%s tokens)", row["id"], analysis["model"], analysis.get("tokens"))
        storage.update_decision(row["id"], analysis_fields(row, analysis), source="ai")

    upgrades: list[str] = []
    scan_started = utc_now()
    since = _scan_from(storage, counts["model"])
    for row in storage.iter_decisions(since=since, batch=settings.batch_size):
        reason = needs_analysis(row, online)
        if reason is None:
            if not row.get("deleted_at"):
                counts["skipped_unchanged"] += 1
            continue
        counts["pending"] += 1
        if reason == "upgrade":
            # Offline analyses are upgraded only with what budget new and changed decisions leave.
            if budget is None or len(upgrades) < budget:
                upgrades.append(row["id"])
            else:
                counts["deferred"] += 1
            continue
        if budget is not None and state["done"] >= budget:
            counts["deferred"] += 1
            continue
        analyse(row)
    for decision_id in upgrades:
        # Once the service failed, another offline analysis would replace an offline one for nothing.
        if state["dead"] or (budget is not None and state["done"] >= budget):
            counts["deferred"] += 1
            continue
        row = storage.get_decision(decision_id)
        if row is not None and needs_analysis(row, online):
            analyse(row)

    counts["incremental"] = since is not None
    if not dry_run:
        settled = not counts["deferred"] and not (online and counts["offline"])
        _remember_scan(storage, counts["model"], scan_started if settled else None)
    if state["analyser"] is not None:
        counts["tokens"] = state["analyser"].tokens
        counts["requests"] = state["analyser"].requests
    counts["would_analyse"] = state["done"] if dry_run else 0
    counts["duration_s"] = run.duration_s
    logger.info(
        "AI enrichment%s: %s %d (%d online with %s, %d offline), %d unchanged, %d deferred by "
        "AI_MAX_PER_RUN=%s, %d requests, %d tokens%s",
        suffix,
        "would analyse" if dry_run else "analysed",
        state["done"],
        counts["online"],
        settings.openai_model if online else "no model",
        counts["offline"],
        counts["skipped_unchanged"],
        counts["deferred"],
        settings.ai_max_per_run if online else "unlimited offline",
        counts["requests"],
        counts["tokens"],
        f"; fallback: {counts['fallback_reason']}" if counts["fallback_reason"] else "",
    )
    if counts["pending"]:
        run.finish(
            "warning" if online and counts["offline"] else "completed",
            json.dumps(
                {
                    k: counts[k]
                    for k in ("analysed", "online", "offline", "deferred", "tokens", "model", "fallback_reason")
                }
            ),
        )
    return counts
