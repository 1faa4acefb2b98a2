"""A local OpenAI-compatible HTTP server for tests, written from the public API reference.

Routes: GET /v1/models, GET /v1/models/{model}, POST /v1/chat/completions. It checks the bearer key
(401 invalid_api_key), knows its models (404 model_not_found), rejects what the real API rejects for
reasoning models (max_tokens: unsupported_parameter; temperature other than 1: unsupported_value),
checks strict json_schema response formats, answers with JSON that follows the schema it was sent,
reports usage, and truncates at max_completion_tokens with finish_reason "length". Scripted
behaviours (429 with Retry-After, 500, malformed answers) are queued with `then(...)`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REASONING = re.compile(r"^(o\d|gpt-5)")


def error_body(message: str, type_: str = "invalid_request_error", param=None, code=None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class FakeOpenAI:
    """Start with `with FakeOpenAI(key=...) as api:`; point OPENAI_BASE_URL at `api.base_url`."""

    def __init__(self, key: str = "sk-" + "test-fake-key-0123456789abcdef", models=("gpt-5", "gpt-5-mini", "gpt-4o")):
        self.key = key
        self.models = set(models)
        self.requests: list[dict] = []
        self.script: list[dict] = []
        self.answer_overrides: dict = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def then(self, behaviour: str, times: int = 1, **options) -> FakeOpenAI:
        """Queue how the next chat completion requests behave: rate_limit, server_error, malformed,
        off_schema, refusal."""
        with self._lock:
            self.script.extend({"behaviour": behaviour, **options} for _ in range(times))
        return self

    def count(self, path_prefix: str = "/v1/chat/completions") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r["path"].startswith(path_prefix))

    def chat_bodies(self) -> list[dict]:
        with self._lock:
            return [r["body"] for r in self.requests if r["path"] == "/v1/chat/completions"]

    def _next_behaviour(self) -> dict | None:
        with self._lock:
            return self.script.pop(0) if self.script else None

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body):
                with api._lock:
                    api.requests.append(
                        {"method": self.command, "path": self.path, "body": body, "at": time.monotonic()}
                    )

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Bearer "):
                    self._send(
                        401,
                        error_body(
                            "You didn't provide an API key. You need to provide your API key in an Authorization "
                            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                        ),
                    )
                    return False
                given = header[len("Bearer ") :]
                if given != api.key:
                    masked = f"{given[:3]}{'*' * max(len(given) - 7, 0)}{given[-4:]}"
                    self._send(
                        401,
                        error_body(
                            f"Incorrect API key provided: {masked}. You can find your API key at "
                            "https://platform.openai.com/account/api-keys.",
                            code="invalid_api_key",
                        ),
                    )
                    return False
                return True

            def do_GET(self):  # noqa: N802 - http.server's API
                self._record(None)
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    data = [_model(m) for m in sorted(api.models)]
                    return self._send(200, {"object": "list", "data": data})
                match = re.fullmatch(r"/v1/models/([^/?]+)", self.path)
                if match:
                    name = match.group(1)
                    if name not in api.models:
                        return self._send(404, error_body(f"The model '{name}' does not exist", code="model_not_found"))
                    return self._send(200, _model(name))
                self._send(404, error_body(f"Invalid URL (GET {self.path})"))

            def do_POST(self):  # noqa: N802 - http.server's API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._record(None)
                    return self._send(400, error_body("We could not parse the JSON body of your request."))
                self._record(body)
                if self.path != "/v1/chat/completions":
                    return self._send(404, error_body(f"Invalid URL (POST {self.path})"))
                if not self._authorised():
                    return
                status, payload, headers = api._chat(body)
                self._send(status, payload, headers)

        return Handler

    def _chat(self, body: dict):
        model = body.get("model")
        if not model:
            return 400, error_body("you must provide a model parameter", param="model"), None
        if model not in self.models:
            return (
                404,
                error_body(
                    f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
                ),
                None,
            )
        problem = _rejected_parameter(model, body)
        if problem:
            return 400, problem, None
        behaviour = self._next_behaviour()
        kind = behaviour["behaviour"] if behaviour else "ok"
        if kind == "rate_limit":
            wait = behaviour.get("retry_after", 1)
            message = (
                f"Rate limit reached for {model} in organization org-fake on tokens per min (TPM): Limit 30000, "
                f"Used 30000, Requested 500. Please try again in {wait}s."
            )
            return 429, error_body(message, type_="tokens", code="rate_limit_exceeded"), {"Retry-After": str(wait)}
        if kind == "server_error":
            return 500, error_body("The server had an error while processing your request.", type_="server_error"), None
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        user_text = " ".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user")
        refusal = None
        if kind == "malformed":
            content = "Sure! Here is the analysis: {type: strategy, priority: P1"
        elif kind == "refusal":
            content, refusal = None, "I'm sorry, I can't help with that."
        else:
            answer = _instance(schema, user_text, self.answer_overrides) if schema else {"text": "OK"}
            if kind == "off_schema" and isinstance(answer, dict):
                answer["confidence"] = 7
                answer.pop("impact", None)
            content = json.dumps(answer)
        completion_tokens = len(content or refusal or "") // 4 + 1
        reasoning_tokens = 64 if REASONING.match(model) else 0
        finish = "stop"
        limit = body.get("max_completion_tokens")
        if limit is not None and completion_tokens + reasoning_tokens > limit:
            allowed = max(limit - reasoning_tokens, 0)
            content = (content or "")[: allowed * 4]
            completion_tokens = allowed
            finish = "length"
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4 + 8
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{model}-2025-08-07",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens + reasoning_tokens,
                "total_tokens": prompt_tokens + completion_tokens + reasoning_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": reasoning_tokens,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": None,
        }
        return 200, payload, None


def _model(name: str) -> dict:
    return {"id": name, "object": "model", "created": 1754425777, "owned_by": "system"}


def _rejected_parameter(model: str, body: dict) -> dict | None:
    """The 400 error the real API gives for a parameter this model does not take, or None."""
    reasoning = bool(REASONING.match(model))
    if reasoning and "max_tokens" in body:
        return error_body(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    if reasoning and "temperature" in body and body["temperature"] != 1:
        return error_body(
            f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
            "Only the default (1) value is supported.",
            param="temperature",
            code="unsupported_value",
        )
    if not reasoning and "reasoning_effort" in body:
        return error_body(
            "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
            param="reasoning_effort",
            code="unsupported_parameter",
        )
    if reasoning and body.get("reasoning_effort") not in (None, "minimal", "low", "medium", "high"):
        return error_body(
            f"Invalid value: '{body['reasoning_effort']}'. Supported values are: 'minimal', 'low', 'medium', "
            "and 'high'.",
            param="reasoning_effort",
            code="invalid_value",
        )
    fmt = body.get("response_format")
    if fmt and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        if not spec.get("name") or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", spec["name"]):
            return error_body(
                "Invalid 'response_format.json_schema.name': string does not match pattern.",
                param="response_format.json_schema.name",
                code="invalid_value",
            )
        if spec.get("strict"):
            problem = _strict_schema_problem(spec.get("schema") or {}, ())
            if problem:
                return error_body(
                    f"Invalid schema for response_format '{spec['name']}': {problem}", param="response_format"
                )
    return None


def _strict_schema_problem(schema: dict, context: tuple) -> str | None:
    """Strict structured outputs: every object closes additionalProperties and requires all its keys."""
    if schema.get("type") == "object":
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return f"In context={context}, 'additionalProperties' is required to be supplied and to be false."
        missing = [k for k in props if k not in (schema.get("required") or [])]
        if missing:
            return (
                f"In context={context}, 'required' is required to be supplied and to be an array including every "
                f"key in properties. Missing '{missing[0]}'."
            )
        for key, sub in props.items():
            problem = _strict_schema_problem(sub, (*context, "properties", key))
            if problem:
                return problem
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return _strict_schema_problem(schema["items"], (*context, "items"))
    return None


def _instance(schema: dict, text: str, overrides: dict, key: str = ""):
    """A value following the schema; enums pick the first value the user's text names."""
    if key in overrides:
        return overrides[key]
    if "enum" in schema:
        words = set(re.findall(r"[A-Za-z0-9]+", text.lower()))
        return next((v for v in schema["enum"] if str(v).lower() in words), schema["enum"][0])
    kind = schema.get("type")
    if kind == "object":
        return {k: _instance(sub, text, overrides, k) for k, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [f"{key} from the fake model {i}" for i in (1, 2)]
    if kind in ("number", "integer"):
        return 0.87 if kind == "number" else 1
    if kind == "boolean":
        return True
    words = text.split()
    return f"Fake model {key}: {' '.join(words[:12]).rstrip('.')}."
