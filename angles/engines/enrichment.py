"""Decision analysis by an OpenAI-compatible model, with an offline analyser and a per-run cost guard.

The one module that talks to OpenAI. It uses the Chat Completions API rather than the Responses API
because every OpenAI-compatible server reachable through OPENAI_BASE_URL implements
/v1/chat/completions, while /v1/responses is OpenAI's own. Retries on 429 (honouring Retry-After),
5xx and timeouts are left to the openai client (one retry layer, configured here); the only retry of
our own is one more request when the model's answer does not match the schema.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from datetime import timedelta

from angles.engines.decision_model import PRIORITIES, TYPES, parse_timestamp, text_hash, to_iso, utc_now
from angles.errors import ExternalServiceError

logger = logging.getLogger(__name__)

OFFLINE = "offline"
# Reasoning tokens count against max_completion_tokens; this leaves room for them and a short answer.
MAX_COMPLETION_TOKENS = 4000
# Long decisions are cut before sending so one decision cannot cost more than a bounded prompt.
MAX_INPUT_CHARS = 8000
REQUEST_TIMEOUT_S = 90.0
CONNECT_TIMEOUT_S = 10.0
# The openai client retries 408/409/429/5xx and timeouts with backoff and honours Retry-After.
MAX_RETRIES = 3
CHECK_MAX_RETRIES = 1

ANALYSIS_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": list(TYPES), "description": "The kind of decision."},
        "priority": {
            "type": "string",
            "enum": list(PRIORITIES),
            "description": "P0 critical or urgent, P1 important, P2 normal.",
        },
        "summary": {"type": "string", "description": "One sentence."},
        "impact": {"type": "string", "description": "The potential impact, one or two sentences."},
        "recommendations": {"type": "array", "items": {"type": "string"}, "description": "Two to five next steps."},
        "key_concepts": {"type": "array", "items": {"type": "string"}, "description": "Up to six short concepts."},
        "confidence": {"type": "number", "description": "How sure the analysis is, from 0 to 1."},
    },
    "required": ["type", "priority", "summary", "impact", "recommendations", "key_concepts", "confidence"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "decision_analysis", "strict": True, "schema": ANALYSIS_SCHEMA},
}
SYSTEM_PROMPT = (
    "You analyse decisions recorded in a team's decision log. For the decision the user sends, return: "
    f"its type (one of {', '.join(TYPES)}); its priority (P0 critical or urgent, P1 important, P2 normal); "
    "a one-sentence summary; its potential impact; two to five concrete recommendations; up to six key "
    "concepts; and your confidence from 0 to 1. Answer in the language of the decision."
)


class AIServiceError(ExternalServiceError):
    """OpenAI (or the configured compatible server) failed or refused a request."""

    def __init__(self, message: str, *, kind: str, status: int | None = None):
        super().__init__(message)
        self.kind = kind  # auth, not_found, bad_request, rate_limited, server, unreachable
        self.status = status


class MalformedAnswerError(Exception):
    """The model answered, but not with an analysis matching the schema."""


def is_reasoning_model(model: str) -> bool:
    """Whether a model belongs to the reasoning families that reject temperature and max_tokens."""
    name = model.lower().rsplit("/", 1)[-1]
    return bool(re.match(r"(o\d|gpt-5)", name)) and "chat" not in name


def request_params(model: str, text: str) -> dict:
    """The Chat Completions parameters for one analysis: only those the model accepts."""
    params = {
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": text[:MAX_INPUT_CHARS]},
        ],
        "response_format": RESPONSE_FORMAT,
        "max_completion_tokens": MAX_COMPLETION_TOKENS,
    }
    if is_reasoning_model(model):
        # "low" is accepted by every reasoning family (gpt-5 "minimal" is not accepted by later ones).
        params["reasoning_effort"] = "low"
    return params


def validate_analysis(data) -> dict:
    """Return the analysis fields of a model answer, or raise MalformedAnswerError saying what is wrong."""
    if not isinstance(data, dict):
        raise MalformedAnswerError("answer is not a JSON object")
    missing = [k for k in ANALYSIS_SCHEMA["required"] if k not in data]
    if missing:
        raise MalformedAnswerError(f"answer lacks {', '.join(missing)}")
    out = {}
    kind = data["type"]
    if not isinstance(kind, str) or kind.strip().lower() not in TYPES:
        raise MalformedAnswerError(f"type {kind!r} is not one of {', '.join(TYPES)}")
    out["type"] = kind.strip().lower()
    priority = data["priority"]
    if not isinstance(priority, str) or priority.strip().upper() not in PRIORITIES:
        raise MalformedAnswerError(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
    out["priority"] = priority.strip().upper()
    for key in ("summary", "impact"):
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise MalformedAnswerError(f"{key} is not a non-empty text")
        out[key] = " ".join(value.split())[:1000]
    for key in ("recommendations", "key_concepts"):
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MalformedAnswerError(f"{key} is not a list of texts")
        out[key] = [" ".join(v.split()) for v in value if v.strip()][:10]
    confidence = data["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise MalformedAnswerError(f"confidence {confidence!r} is not a number from 0 to 1")
    out["confidence"] = float(confidence)
    return out


def parse_answer(completion) -> dict:
    """The validated analysis in a chat completion, or MalformedAnswerError."""
    if not completion.choices:
        raise MalformedAnswerError("answer has no choices")
    choice = completion.choices[0]
    message = choice.message
    if getattr(message, "refusal", None):
        raise MalformedAnswerError(f"model refused: {message.refusal[:200]}")
    if choice.finish_reason == "length":
        raise MalformedAnswerError("answer was cut off at max_completion_tokens")
    try:
        data = json.loads(message.content or "")
    except json.JSONDecodeError as exc:
        raise MalformedAnswerError(f"answer is not JSON ({exc.msg})") from None
    return validate_analysis(data)


def _service_error(exc: Exception, settings) -> AIServiceError:
    """Map an openai exception to one clear domain error."""
    import openai

    model = settings.openai_model
    where = settings.openai_base_url or "api.openai.com"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        code = getattr(exc, "code", None) or ""
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = _short(body.get("message") or exc.message)
        label = f"{status} {code}".strip()
        if status in (401, 403):
            return AIServiceError(
                f"OpenAI refused the API key ({label}): check OPENAI_API_KEY; {detail}", kind="auth", status=status
            )
        if status == 404:
            return AIServiceError(
                f"model {model!r} is not available at {where} ({label}): check OPENAI_MODEL; {detail}",
                kind="not_found",
                status=status,
            )
        if status == 429:
            return AIServiceError(
                f"OpenAI rate limit or quota ({label}) persisted after retries: {detail}",
                kind="rate_limited",
                status=status,
            )
        if status >= 500:
            return AIServiceError(
                f"OpenAI server error ({label}) after retries: {detail}", kind="server", status=status
            )
        return AIServiceError(f"OpenAI rejected the request ({label}): {detail}", kind="bad_request", status=status)
    if isinstance(exc, openai.APITimeoutError):
        return AIServiceError(f"OpenAI at {where} timed out after retries", kind="unreachable")
    if isinstance(exc, openai.APIConnectionError):
        return AIServiceError(
            f"cannot reach OpenAI at {where}: {_short(str(exc.__cause__ or exc))}", kind="unreachable"
        )
    return AIServiceError(f"OpenAI call failed: {_short(str(exc))}", kind="server")


def _short(text: str) -> str:
    from angles.logs import redactor

    return redactor()(" ".join(str(text).split()))[:300]


class OnlineAnalyser:
    """Analyses decisions with the configured model; counts requests and tokens."""

    def __init__(self, settings, *, max_retries: int = MAX_RETRIES, timeout: float = REQUEST_TIMEOUT_S):
        import openai  # heavy; only loaded when a key is configured

        self.settings = settings
        self.model = settings.openai_model
        self.client = openai.OpenAI(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            max_retries=max_retries,
            timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)),
        )
        self.requests = 0
        self.tokens = 0

    def complete(self, text: str):
        """One Chat Completions request; openai errors become AIServiceError."""
        import openai

        self.requests += 1
        try:
            completion = self.client.chat.completions.create(**request_params(self.model, text))
        except openai.OpenAIError as exc:
            raise _service_error(exc, self.settings) from None
        usage = getattr(completion, "usage", None)
        if usage is not None and usage.total_tokens:
            self.tokens += usage.total_tokens
        return completion

    def analyse(self, text: str) -> dict:
        """Analyse one text; a malformed answer is asked for once more, then MalformedAnswerError is raised."""
        completion = self.complete(text)
        try:
            fields = parse_answer(completion)
        except MalformedAnswerError as exc:
            logger.warning("AI answer was malformed, asking once more: %s", exc)
            completion = self.complete(text)
            fields = parse_answer(completion)
        usage = getattr(completion, "usage", None)
        return {
            **fields,
            "model": self.model,
            "response_model": getattr(completion, "model", None),
            "tokens": usage.total_tokens if usage is not None else None,
            "analyzed_at": utc_now(),
            "text_hash": text_hash(text),
        }

    def retrieve_model(self) -> dict:
        """GET /v1/models/{model}: proves the key works and the model is available, at no token cost."""
        import openai

        self.requests += 1
        try:
            model = self.client.models.retrieve(self.model)
        except openai.OpenAIError as exc:
            raise _service_error(exc, self.settings) from None
        return {"id": model.id, "owned_by": getattr(model, "owned_by", None)}


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


def probe_model(settings, timeout: float) -> dict:
    """One model lookup within `timeout` seconds and no retry (for monitors): no token spent; raises AIServiceError."""
    analyser = OnlineAnalyser(settings, max_retries=0, timeout=timeout)
    try:
        return analyser.retrieve_model()
    finally:
        analyser.client.close()


def check_ai(settings) -> dict:
    """One tiny analysis request proving the key, the model and structured output; raises AIServiceError."""
    if not settings.ai_enabled:
        return {"configured": False, "model": OFFLINE, "detail": "OPENAI_API_KEY is not set: offline analyser in use"}
    analyser = OnlineAnalyser(settings, max_retries=CHECK_MAX_RETRIES, timeout=60.0)
    started = time.monotonic()
    try:
        analysis = analyser.analyse("Decision: keep a daily backup of the decision database.")
    except MalformedAnswerError as exc:
        raise AIServiceError(
            f"model {settings.openai_model!r} answered but not with the requested JSON schema: {exc}",
            kind="bad_request",
        ) from None
    return {
        "configured": True,
        "model": settings.openai_model,
        "response_model": analysis.get("response_model"),
        "base_url": settings.openai_base_url or "https://api.openai.com/v1",
        "requests": analyser.requests,
        "tokens": analyser.tokens,
        "latency_s": round(time.monotonic() - started, 3),
    }


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
    started = time.monotonic()
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
    counts["duration_s"] = round(time.monotonic() - started, 3)
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
    if not dry_run and counts["pending"]:
        storage.record_activity(
            "ai_enrichment",
            "analyse",
            "warning" if online and counts["offline"] else "completed",
            json.dumps(
                {
                    k: counts[k]
                    for k in ("analysed", "online", "offline", "deferred", "tokens", "model", "fallback_reason")
                }
            ),
            duration_s=counts["duration_s"],
        )
    return counts
