"""HTTP screening service: ``GET /screen/{number}`` says whether a call from ``number`` may
go through. Premium-rate prefixes are blocked outright; anything else is asked to the
reputation API (``http.yaml`` client ``reputation``) and blocked at a score of 80 or more.
A reputation API that fails means "allow" (fail open), logged as a warning.

Answers ``200 {"verdict":"allow"}`` or ``403 {"verdict":"block","reason":...}``.
Tested by test_http_screening.py (HttpTestHarness) and, through the release binary with curl,
by edge/node/tests/sdk_examples.rs.
"""

import json

from siphon import http, log

BLOCKED_PREFIXES = ("1900", "+1900")
THRESHOLD = 80


def verdict(status: int, **fields) -> http.Response:
    body = json.dumps(fields, separators=(",", ":")).encode()
    return http.Response(status=status, headers={"Content-Type": "application/json"}, body=body)


@http.route("/screen/{number}", methods=["GET"])
async def screen(req: http.Request) -> http.Response:
    number = req.path_params["number"]
    if number.startswith(BLOCKED_PREFIXES):
        return verdict(403, verdict="block", reason="premium")
    try:
        async with http.Client("reputation") as client:
            r = await client.get(f"/v1/score/{number}")
        score = int(json.loads(r.body or b"{}").get("score", 0)) if r.status == 200 else 0
    except Exception as e:  # the reputation API is down: fail open
        log.warn(f"reputation lookup for {number} failed: {e}")
        score = 0
    if score >= THRESHOLD:
        return verdict(403, verdict="block", reason="reputation")
    return verdict(200, verdict="allow")
