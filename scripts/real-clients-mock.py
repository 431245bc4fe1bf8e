#!/usr/bin/env python3
"""A mock of the Anthropic, OpenAI (Responses) and Gemini APIs on 127.0.0.1, for
scripts/real-clients: each answer has the vendor's real status, headers and body shape.

The first path segment names the scenario and the second the run, so one mock serves
every run at once and counts each run's requests on its own:

    http://127.0.0.1:PORT/<scenario>/<run>/v1/messages                  Anthropic
    http://127.0.0.1:PORT/<scenario>/<run>/v1/responses                 OpenAI
    http://127.0.0.1:PORT/<scenario>/<run>/v1beta/models/M:streamGenerateContent  Gemini

A scenario `e2e-<name>` answers `<name>` to a request that carries the word RATE-LIMITED
(an item's payload reaches the request) and `success` to any other.

Usage: real-clients-mock.py PORT_FILE LOG_FILE  -- listens on a free port, writes it to
PORT_FILE, and appends one JSON line per request to LOG_FILE. Anything it does not
recognise is answered 404 and logged with "unexpected": true.

`plan(vendor, scenario, now)` is the answer a scenario gives, also used by the capture
driver (scripts/real-clients-capture.py) to know which reset the mock announced.
Python 3 standard library only.
"""

import datetime as dt
import http.server
import json
import os
import re
import sys
import threading
import time

UTC = dt.timezone.utc

ANSWER = "The item is summarised."
QUOTING = "The ticket reports: usage limit reached, resets 8pm"


def hour_after(now, hours):
    """The top of the hour `hours` after `now` (whole hours, as clients print them)."""
    base = now.replace(minute=0, second=0, microsecond=0)
    return base + dt.timedelta(hours=hours)


def first_of_next_month(now):
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return dt.datetime(year, month, 1, tzinfo=UTC)


def epoch(instant):
    return int(instant.timestamp())


def rfc3339(instant):
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- Anthropic


def anthropic_error(kind, message):
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"}


def anthropic_unified(status, claim, reset, utilization):
    """The subscription ("unified") rate-limit headers."""
    window = {"five_hour": "5h", "seven_day": "7d"}[claim]
    return {
        "anthropic-ratelimit-unified-status": status,
        "anthropic-ratelimit-unified-reset": str(epoch(reset)),
        "anthropic-ratelimit-unified-representative-claim": claim,
        f"anthropic-ratelimit-unified-{window}-status": status,
        f"anthropic-ratelimit-unified-{window}-reset": str(epoch(reset)),
        f"anthropic-ratelimit-unified-{window}-utilization": str(utilization),
        "anthropic-ratelimit-unified-fallback-percentage": "0.5",
        "anthropic-ratelimit-unified-overage-status": "rejected",
        "anthropic-ratelimit-unified-overage-disabled-reason": "org_level_disabled",
    }


def plan_anthropic(scenario, now):
    limit_message = (
        "This request would exceed the rate limit for your organization (org-mock) of 30,000 "
        "input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. "
        "You can see the response headers for current usage. Please reduce the prompt length or the "
        "maximum tokens requested, or try again later. You may also contact sales at "
        "https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase."
    )
    if scenario == "success":
        return {"status": 200, "text": ANSWER}
    if scenario == "success-quoting-a-limit":
        return {"status": 200, "text": QUOTING}
    if scenario == "allowed-warning":
        reset = hour_after(now, 2)
        return {"status": 200, "text": ANSWER, "reset": reset,
                "headers": anthropic_unified("allowed_warning", "five_hour", reset, 0.92)}
    if scenario in ("rate-limit-reset", "rate-limit-then-success"):
        # A per-minute limit: full again at the next minute; a retry may go sooner.
        reset = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        return {
            "status": 429,
            "reset": reset,
            "headers": {
                "retry-after": "2",
                "anthropic-ratelimit-input-tokens-limit": "30000",
                "anthropic-ratelimit-input-tokens-remaining": "0",
                "anthropic-ratelimit-input-tokens-reset": rfc3339(reset),
                "anthropic-ratelimit-tokens-reset": rfc3339(reset),
            },
            "body": anthropic_error("rate_limit_error", limit_message),
            "then": {"status": 200, "text": ANSWER} if scenario == "rate-limit-then-success" else None,
        }
    if scenario in ("rate-limit-no-reset", "server-limiting"):
        # Without the limit headers; a subscriber's client reads it as the server's own limiting.
        return {"status": 429, "body": anthropic_error("rate_limit_error", "Rate limited")}
    if scenario == "subscription-limit":
        reset = hour_after(now, 3)
        return {"status": 429, "reset": reset,
                "headers": anthropic_unified("rejected", "five_hour", reset, 1.0),
                "body": anthropic_error("rate_limit_error", "Rate limited")}
    if scenario == "weekly-limit":
        reset = hour_after(now, 24 * 3 + 5)
        return {"status": 429, "reset": reset,
                "headers": anthropic_unified("rejected", "seven_day", reset, 1.0),
                "body": anthropic_error("rate_limit_error", "Rate limited")}
    if scenario == "workspace-limit":
        reset = first_of_next_month(now)
        message = ("You have reached your specified workspace API usage limits. You will regain "
                   f"access on {reset:%Y-%m-%d} at 00:00 UTC.")
        return {"status": 400, "reset": reset, "body": anthropic_error("invalid_request_error", message)}
    if scenario == "credit":
        message = ("Your credit balance is too low to access the Anthropic API. Please go to "
                   "Plans & Billing to upgrade or purchase credits.")
        return {"status": 400, "body": anthropic_error("invalid_request_error", message)}
    if scenario == "auth-invalid":
        return {"status": 401, "body": anthropic_error("authentication_error", "invalid x-api-key")}
    if scenario == "permission-denied":
        return {"status": 403, "body": anthropic_error(
            "permission_error", "Your API key does not have permission to use the specified resource.")}
    if scenario == "model-not-found":
        return {"status": 404, "body": anthropic_error("not_found_error", "model: claude-mock-retired")}
    if scenario == "server-500":
        return {"status": 500, "body": anthropic_error("api_error", "Internal server error")}
    if scenario == "server-502":
        return {"status": 502, "html": True}
    if scenario == "server-503":
        return {"status": 503, "body": anthropic_error("api_error", "Service Unavailable")}
    if scenario == "server-529":
        return {"status": 529, "body": anthropic_error("overloaded_error", "Overloaded")}
    return None


# ---------------------------------------------------------------- OpenAI


def openai_error(message, kind, code, **extra):
    error = {"message": message, "type": kind, "param": None, "code": code}
    error.update(extra)
    return {"error": error}


def codex_windows(primary_used, secondary_used, primary_reset, secondary_reset, now):
    return {
        "x-codex-primary-used-percent": str(primary_used),
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-after-seconds": str(epoch(primary_reset) - epoch(now)),
        "x-codex-primary-reset-at": str(epoch(primary_reset)),
        "x-codex-secondary-used-percent": str(secondary_used),
        "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-after-seconds": str(epoch(secondary_reset) - epoch(now)),
        "x-codex-secondary-reset-at": str(epoch(secondary_reset)),
    }


def plan_openai(scenario, now):
    if scenario == "success":
        return {"status": 200, "text": ANSWER}
    if scenario == "success-quoting-a-limit":
        return {"status": 200, "text": QUOTING}
    if scenario in ("rate-limit-reset", "rate-limit-then-success"):
        message = ("Rate limit reached for gpt-5-codex in organization org-mock on tokens per min "
                   "(TPM): Limit 30000, Used 29410, Requested 1890. Please try again in 1.662s. "
                   "Visit https://platform.openai.com/account/rate-limits to learn more.")
        return {
            "status": 429,
            "reset": now + dt.timedelta(seconds=1.662),
            "headers": {
                "x-ratelimit-limit-tokens": "30000",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "1.662s",
                "x-ratelimit-limit-requests": "500",
                "x-ratelimit-remaining-requests": "499",
                "x-ratelimit-reset-requests": "120ms",
                "retry-after-ms": "1662",
            },
            "body": openai_error(message, "tokens", "rate_limit_exceeded"),
            "then": {"status": 200, "text": ANSWER} if scenario == "rate-limit-then-success" else None,
        }
    if scenario == "rate-limit-no-reset":
        return {"status": 429, "body": openai_error(
            "Rate limit reached for requests", "requests", "rate_limit_exceeded")}
    if scenario in ("subscription-limit", "weekly-limit"):
        primary = hour_after(now, 3) + dt.timedelta(minutes=44)
        secondary = hour_after(now, 24 * 3 + 5) + dt.timedelta(minutes=44)
        weekly = scenario == "weekly-limit"
        reset = secondary if weekly else primary
        body = {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                          "plan_type": "plus", "resets_at": epoch(reset),
                          "resets_in_seconds": epoch(reset) - epoch(now)}}
        headers = codex_windows(100 if not weekly else 40, 100 if weekly else 60, primary, secondary, now)
        return {"status": 429, "reset": reset, "headers": headers, "body": body}
    if scenario == "credit":
        message = ("You exceeded your current quota, please check your plan and billing details. For "
                   "more information on this error, read the docs: "
                   "https://platform.openai.com/docs/guides/error-codes/api-errors.")
        return {"status": 429, "body": openai_error(message, "insufficient_quota", "insufficient_quota")}
    if scenario == "auth-invalid":
        return {"status": 401, "body": openai_error(
            "Incorrect API key provided: sk-mock. You can find your API key at "
            "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")}
    if scenario == "permission-denied":
        return {"status": 403, "body": openai_error(
            "You have insufficient permissions for this operation. Missing scopes: api.responses.write. "
            "Check that you have the correct role in your organization (Reader, Writer, Owner) and project "
            "(Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
            "invalid_request_error", None)}
    if scenario == "model-not-found":
        return {"status": 404, "body": openai_error(
            "The model `gpt-mock-retired` does not exist or you do not have access to it.",
            "invalid_request_error", "model_not_found")}
    if scenario == "server-500":
        return {"status": 500, "body": openai_error(
            "The server had an error while processing your request. Sorry about that!", "server_error", None)}
    if scenario == "server-502":
        return {"status": 502, "html": True}
    if scenario == "server-503":
        return {"status": 503, "body": openai_error(
            "The server is overloaded. Please try again later.", "server_is_overloaded", "server_is_overloaded")}
    if scenario == "server-529":
        return {"status": 529, "body": openai_error("Overloaded", "server_error", None)}
    return None


# ---------------------------------------------------------------- Gemini


def gemini_error(code, status, message, details=()):
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


def quota_failure(quota_id, metric):
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
        {"quotaMetric": f"generativelanguage.googleapis.com/{metric}", "quotaId": quota_id,
         "quotaDimensions": {"location": "global", "model": "gemini-2.5-pro"}, "quotaValue": "250"}]}


def error_info(reason):
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"}}


def retry_info(delay):
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


GEMINI_HELP_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"


def gemini_quota_exceeded(now, per, limit, retry_seconds):
    """Gemini's 429 for an exhausted free-tier request quota per minute or per day."""
    message = ("You exceeded your current quota, please check your plan and billing details. For more "
               f"information on this error, head to: {GEMINI_HELP_URL}.\n* Quota exceeded for metric: "
               f"generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: {limit}, "
               f"model: gemini-2.5-pro\nPlease retry in {retry_seconds}s.")
    details = [quota_failure(f"GenerateRequestsPer{per}PerProjectPerModel-FreeTier",
                             "generate_content_free_tier_requests"), retry_info(f"{int(retry_seconds)}s")]
    return {"status": 429, "reset": now + dt.timedelta(seconds=retry_seconds),
            "body": gemini_error(429, "RESOURCE_EXHAUSTED", message, details)}


def plan_gemini(scenario, now):
    if scenario == "success":
        return {"status": 200, "text": ANSWER}
    if scenario == "success-quoting-a-limit":
        return {"status": 200, "text": QUOTING}
    if scenario in ("rate-limit-reset", "rate-limit-then-success"):
        return {**gemini_quota_exceeded(now, "Minute", 5, 2.5),
                "then": {"status": 200, "text": ANSWER} if scenario == "rate-limit-then-success" else None}
    if scenario == "rate-limit-no-reset":
        return {"status": 429, "body": gemini_error(
            429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")}
    if scenario == "subscription-limit":
        # The free tier's daily request quota.
        return gemini_quota_exceeded(now, "Day", 250, 33415.2)
    if scenario == "capacity-exhausted":
        message = ("You have exhausted your capacity on this model. Your quota will reset after 8h44m7s.")
        return {"status": 429, "reset": now + dt.timedelta(hours=8, minutes=44, seconds=7),
                "body": gemini_error(429, "RESOURCE_EXHAUSTED", message, [retry_info("31447s")])}
    if scenario == "long-retry":
        message = ("You exceeded your current quota, please check your plan and billing details. For more "
                   f"information on this error, head to: {GEMINI_HELP_URL}.\n* Quota exceeded for metric: "
                   "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count, "
                   "limit: 1000000, model: gemini-2.5-pro\nPlease retry in 240s.")
        return {"status": 429, "reset": now + dt.timedelta(seconds=240),
                "body": gemini_error(429, "RESOURCE_EXHAUSTED", message)}
    if scenario == "credit":
        message = ("You exceeded your current quota, please check your plan and billing details. For more "
                   f"information on this error, head to: {GEMINI_HELP_URL}.\n* Quota exceeded for metric: "
                   "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, "
                   "model: gemini-2.5-pro")
        return {"status": 429, "body": gemini_error(429, "RESOURCE_EXHAUSTED", message)}
    if scenario == "auth-invalid":
        return {"status": 400, "body": gemini_error(
            400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
            [error_info("API_KEY_INVALID")])}
    if scenario == "permission-denied":
        return {"status": 403, "body": gemini_error(
            403, "PERMISSION_DENIED", "Permission denied: Consumer 'api_key:mock' has been suspended.",
            [error_info("CONSUMER_SUSPENDED")])}
    if scenario == "model-not-found":
        return {"status": 404, "body": gemini_error(
            404, "NOT_FOUND", "models/gemini-mock-retired is not found for API version v1beta, or is not "
            "supported for generateContent. Call ListModels to see the list of available models and their "
            "supported methods.")}
    if scenario == "server-500":
        return {"status": 500, "body": gemini_error(500, "INTERNAL", "Internal error encountered.")}
    if scenario == "server-502":
        return {"status": 502, "html": True}
    if scenario == "server-503":
        return {"status": 503, "body": gemini_error(
            503, "UNAVAILABLE", "The model is overloaded. Please try again later.")}
    if scenario == "server-529":
        return {"status": 529, "body": gemini_error(529, "UNAVAILABLE", "Overloaded")}
    return None


PLANS = {"anthropic": plan_anthropic, "openai": plan_openai, "gemini": plan_gemini}


def plan(vendor, scenario, now):
    if scenario == "server-500-then-success":
        # A server error the client retries, then the answer.
        return dict(PLANS[vendor]("server-500", now), then={"status": 200, "text": ANSWER})
    return PLANS[vendor](scenario, now)


# ---------------------------------------------------------------- success bodies


def anthropic_sse(text, model):
    usage = {"input_tokens": 25, "output_tokens": 1, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}
    events = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": text}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 12}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def anthropic_message(text, model):
    return {"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 12}}


def openai_sse(text, model):
    message = {"id": "msg_mock", "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}
    created = {"id": "resp_mock", "object": "response", "created_at": int(time.time()),
               "status": "in_progress", "model": model, "output": []}
    done = dict(created, status="completed", output=[message], usage={
        "input_tokens": 1890, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1902})
    events = [
        ("response.created", {"type": "response.created", "sequence_number": 0, "response": created}),
        ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 1,
                                        "output_index": 0, "item": dict(message, status="in_progress", content=[])}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 2,
                                        "item_id": "msg_mock", "output_index": 0, "content_index": 0,
                                        "delta": text}),
        ("response.output_item.done", {"type": "response.output_item.done", "sequence_number": 3,
                                       "output_index": 0, "item": message}),
        ("response.completed", {"type": "response.completed", "sequence_number": 4, "response": done}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def gemini_response(text, model):
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 25, "candidatesTokenCount": 12, "totalTokenCount": 37},
            "modelVersion": model, "responseId": "mock"}


def json_for(schema):
    """A small value of the form a JSON schema asks for."""
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        return {name: json_for(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 10
    if kind == "boolean":
        return False
    return schema.get("enum", ["simple"])[0]


BAD_GATEWAY = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
               b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")


# ---------------------------------------------------------------- server

PATH = re.compile(r"^/(?P<scenario>[a-z0-9-]+)/(?P<run>[A-Za-z0-9_.-]+)(?P<rest>/[^?]*)(?:\?.*)?$")


class Mock(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counts = {}
    lock = threading.Lock()
    log_file = None

    def log_message(self, *args):
        pass

    def record(self, **fields):
        fields.update(method=self.command, path=self.path, at=time.time())
        with Mock.lock:
            Mock.log_file.write(json.dumps(fields) + "\n")
            Mock.log_file.flush()

    def reply(self, status, body, content_type="application/json", headers=None):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def unexpected(self, body=b""):
        self.record(unexpected=True, body=body[:2000].decode("utf-8", "replace"))
        self.reply(404, json.dumps({"error": {"message": f"mock: no route for {self.command} {self.path}"}}))

    def do_GET(self):
        match = PATH.match(self.path)
        if match and match["rest"].endswith("/models"):
            # A model list, as the OpenAI and Gemini APIs answer it.
            self.record(vendor="models")
            return self.reply(200, json.dumps({"object": "list", "data": [], "models": []}))
        self.unexpected()

    do_HEAD = do_PUT = do_DELETE = do_CONNECT = do_GET

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        match = PATH.match(self.path)
        if not match:
            return self.unexpected(raw)
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {}
        rest = match["rest"]
        if rest.endswith("/messages/count_tokens"):
            self.record(vendor="anthropic", counted=True)
            return self.reply(200, json.dumps({"input_tokens": 25}))
        if rest.endswith(":countTokens"):
            self.record(vendor="gemini", counted=True)
            return self.reply(200, json.dumps({"totalTokens": 25}))
        if rest.endswith("/messages"):
            vendor = "anthropic"
        elif rest.endswith("/responses"):
            vendor = "openai"
        elif ":generateContent" in rest or ":streamGenerateContent" in rest:
            vendor = "gemini"
        else:
            return self.unexpected(raw)
        key = (match["scenario"], match["run"])
        with Mock.lock:
            Mock.counts[key] = Mock.counts.get(key, 0) + 1
            nth = Mock.counts[key]
        now = dt.datetime.now(UTC)
        scenario = match["scenario"]
        if scenario.startswith("e2e-"):
            # One drain, two items: the item whose payload says so meets the named limit.
            scenario = scenario[4:] if b"RATE-LIMITED" in raw else "success"
        answer = plan(vendor, scenario, now)
        if answer is None:
            return self.unexpected(raw)
        if nth > 1 and answer.get("then"):
            answer = answer["then"]
        self.record(vendor=vendor, scenario=scenario, run=match["run"], nth=nth,
                    request=raw[:4000].decode("utf-8", "replace") if os.environ.get("MOCK_LOG_BODIES") else None,
                    status=answer["status"], reset=rfc3339(answer["reset"]) if answer.get("reset") else None)
        headers = {"request-id": "req_mock", "x-request-id": "req_mock"}
        headers.update(answer.get("headers") or {})
        if answer["status"] != 200:
            if answer.get("html"):
                return self.reply(answer["status"], BAD_GATEWAY, "text/html", headers)
            return self.reply(answer["status"], json.dumps(answer["body"]), headers=headers)
        model = request.get("model") or "mock-model"
        if vendor == "anthropic":
            if request.get("stream"):
                return self.reply(200, anthropic_sse(answer["text"], model), "text/event-stream", headers)
            return self.reply(200, json.dumps(anthropic_message(answer["text"], model)), headers=headers)
        if vendor == "openai":
            return self.reply(200, openai_sse(answer["text"], model), "text/event-stream", headers)
        model = re.search(r"models/([^:/]+):", rest)
        text = answer["text"]
        schema = (request.get("generationConfig") or {}).get("responseJsonSchema")
        if schema:
            # A side request the client makes for itself (its model router): an answer
            # in the JSON form it asks for.
            text = json.dumps(json_for(schema))
        body = gemini_response(text, model[1] if model else "gemini-2.5-pro")
        if ":streamGenerateContent" in rest:
            return self.reply(200, f"data: {json.dumps(body)}\r\n\r\n", "text/event-stream", headers)
        return self.reply(200, json.dumps(body), headers=headers)


def main():
    port_file, log_path = sys.argv[1], sys.argv[2]
    Mock.log_file = open(log_path, "a", encoding="utf-8")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mock)
    server.daemon_threads = True
    with open(port_file + ".tmp", "w", encoding="utf-8") as out:
        out.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
