"""Schemathesis hooks for herd's contract test (tests/contract.rs), loaded through
SCHEMATHESIS_HOOKS by tests/contract/schemathesis.sh.

- Every write gets a fresh Idempotency-Key: a key is one request's, and the generator would
  otherwise send one key with different bodies (which the server rightly refuses).
- A cluster PUT's body names the URL's tenant and cluster, so generated specs reach the
  server's validation instead of stopping at the 409 a mismatch answers.
- `valid_requests_are_accepted`: a request the schema calls valid (positive mode) is never
  refused for its shape. The server may still refuse it with 422 when the refusal is not about
  shape, and says so by the problem type (see the document's description):
  `urn:herd:problem:refused-by-state` (the current state, a quota, the orchestrator's limits
  and flags) and `urn:herd:problem:inconsistent` (rules between fields a schema cannot state).
  A stale If-Match (412), a missing resource (404), a conflict (409), the token's scope (403)
  and its rate (429) are answers about the state too.
"""

import re
import uuid

import schemathesis
from schemathesis.specs.openapi.checks import is_unexpected_http_status_case

KEY = re.compile(r"^[!-~]{1,255}$")
NOT_SHAPE = {"urn:herd:problem:refused-by-state", "urn:herd:problem:inconsistent"}
STATE_STATUSES = {401, 403, 404, 409, 412, 429}


def _header(headers, name):
    for k in list(headers or {}):
        if k.lower() == name.lower():
            return k
    return None


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers
    key = _header(headers, "Idempotency-Key")
    if key is not None and isinstance(headers[key], str) and KEY.match(headers[key]):
        headers[key] = str(uuid.uuid4())
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    params = case.path_parameters or {}
    if (
        positive
        and case.method.upper() == "PUT"
        and case.path == "/v1/tenants/{tenant}/clusters/{cluster}"
        and isinstance(case.body, dict)
        and isinstance(params.get("tenant"), str)
        and isinstance(params.get("cluster"), str)
    ):
        case.body["tenant"] = params["tenant"]
        case.body["name"] = params["cluster"]


@schemathesis.check
def valid_requests_are_accepted(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or is_unexpected_http_status_case(case):
        return None
    status = response.status_code
    if status < 300 or status in STATE_STATUSES or status >= 500:
        # 5xx: `not_a_server_error` judges those.
        return None
    try:
        problem = response.json()
    except Exception:
        problem = None
    if status == 422 and isinstance(problem, dict) and problem.get("type") in NOT_SHAPE:
        return None
    raise AssertionError(f"A request the schema calls valid was refused for its shape: {status} {problem!r}")
