"""Schemathesis hooks for `make fuzz-api` (scripts/fuzz-api.sh).

Two things the spec cannot say on its own:
- Sync `POST /process` runs for `duration` seconds (up to 60, stretched up to twice under load), so fuzzed durations
  are bounded to 1 s and a missing one is set to 1 s (the answers are what is fuzzed, not the work's length: 2 s
  doubled the consumer's CPU in `make test`); every other parameter is fuzzed over what the spec allows.
- 503 with Retry-After is the documented answer to overload (a full backlog, retained memory leaving no room), not
  a server error; any other 5xx, or a 503 without Retry-After or its JSON error body, fails.
"""

import schemathesis

MAX_FUZZED_DURATION = 1


@schemathesis.hook
def before_call(context, case, kwargs):
    # Every phase (coverage included, where map_query hooks do not run) goes through here.
    if case.method.upper() != "POST" or case.path != "/process":
        return
    query = case.query if isinstance(case.query, dict) else {}
    value = query.get("duration")
    if value is None:
        query["duration"] = 1
    else:
        try:
            if int(value) > MAX_FUZZED_DURATION:
                query["duration"] = MAX_FUZZED_DURATION
        except (TypeError, ValueError):
            pass  # Malformed values stay: they must be refused with a 422 naming the field.
    case.query = query


@schemathesis.check
def server_errors_are_only_documented_overload(ctx, response, case):
    if response.status_code < 500:
        return None
    if response.status_code != 503:
        raise AssertionError(f"{response.status_code} from {case.method} {case.path}: {response.text[:200]}")
    retry_after = response.headers.get("retry-after") or response.headers.get("Retry-After")
    if not retry_after:
        raise AssertionError("503 without Retry-After")
    body = response.json()
    if not isinstance(body, dict) or "error" not in body:
        raise AssertionError(f"503 without the JSON error body: {response.text[:200]}")
    return None
