# Test script for bench/sipp/e2e.sh (SIPHON_CONFIG=bench/sipp/siphon-e2e-hooks.yaml): the
# default policy (imported: its decorators register its handlers) plus reply and failure
# hooks, to prove the node hands every branch reply and the failure to Python and carries out
# what the handlers decide.
import proxy_default  # noqa: F401  (deploy/examples is on script.include_paths)
from siphon import log, proxy


@proxy.on_reply
def on_reply(request, reply):
    log.info(f"reply {reply.status_code} to {request.method}")
    reply.relay()


@proxy.on_failure
def on_failure(request, reply):
    reply.relay()
