"""The one door to OpenAI (or a compatible server at OPENAI_BASE_URL): requests, answers, errors, probes.

It uses the Chat Completions API rather than the Responses API because every OpenAI-compatible server
implements /v1/chat/completions, while /v1/responses is OpenAI's own. Retries on 429 (honouring
Retry-After), 5xx and timeouts are left to the openai client (one retry layer, configured here); the only
retry of our own is one more request when the model's answer does not match the schema.
"""

from __future__ import annotations

import json
import logging
import re
import time

from angles.engines.decision_model import PRIORITIES, TYPES, text_hash, unstorable, utc_now
from angles.errors import ExternalServiceError

logger = logging.getLogger(__name__)

# The model name recorded on an analysis no model made (the offline analyser's).
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
    for key in ("summary", "impact", "recommendations", "key_concepts"):
        problem = unstorable(out[key])
        if problem:
            raise MalformedAnswerError(f"{key} {problem}")
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
