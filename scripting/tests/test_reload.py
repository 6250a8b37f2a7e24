"""Hot reload: sighup-triggered and inotify (auto); failures keep the old handlers."""

import os
import time

V1 = 'from siphon import proxy\n@proxy.on_request\ndef h(request):\n    request.reply(200, "v1")\n'
V2 = 'from siphon import proxy\n@proxy.on_request\ndef h(request):\n    request.reply(200, "v2")\n'
BROKEN = 'from siphon import proxy\n@proxy.on_request\ndef h(request)\n    request.reply(200, "broken")\n'
RAISES = 'from siphon import proxy\nraise ImportError("no such helper")\n'


def _write(path, src):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(src)
    os.replace(tmp, path)


def _reasons(h):
    return [h.send_request("OPTIONS", core=c).reason for c in range(h.cores)]


def test_sighup_reload_success_and_failure(harness):
    h = harness(V1, cores=2)
    assert _reasons(h) == ["v1", "v1"]
    _write(h.script, V2)
    assert h.reload() == 0
    assert _reasons(h) == ["v2", "v2"]
    _write(h.script, BROKEN)
    assert h.reload() == len(_workers(h))
    assert _reasons(h) == ["v2", "v2"]
    assert h.logs_matching("failed to compile", level="error")
    _write(h.script, RAISES)
    assert h.reload() == len(_workers(h))
    assert _reasons(h) == ["v2", "v2"]
    assert h.logs_matching("no such helper")
    text = h.metrics()
    n = len(_workers(h))
    assert f'siphon_script_reloads_total{{result="ok"}} {n}' in text
    assert f'siphon_script_reloads_total{{result="failed"}} {2 * n}' in text


def _workers(h):
    return range(h.cores if h.mode == "per-core" else 1)


def test_auto_reload_via_inotify(harness):
    h = harness(V1, cores=2, reload="auto")
    assert _reasons(h) == ["v1", "v1"]
    _write(h.script, V2)
    deadline = time.monotonic() + 20
    while _reasons(h) != ["v2", "v2"]:
        assert time.monotonic() < deadline, "auto reload did not happen"
        time.sleep(0.05)


APP_WITH_HELPER = '''
from siphon import proxy
import routing_helper

@proxy.on_request
def h(request):
    request.reply(200, routing_helper.answer())
'''


def test_reload_picks_up_changed_helper_module(harness, tmp_path):
    inc = tmp_path / "lib"
    inc.mkdir()
    _write(str(inc / "routing_helper.py"), "def answer():\n    return 'helper v1'\n")
    h = harness(APP_WITH_HELPER, cores=2, include_paths=[str(inc)])
    assert _reasons(h) == ["helper v1", "helper v1"]
    _write(str(inc / "routing_helper.py"), "def answer():\n    return 'helper v2'\n")
    assert h.reload() == 0
    assert _reasons(h) == ["helper v2", "helper v2"]
