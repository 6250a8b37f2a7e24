"""mypy with the ``siphon`` stubs the wheel installs: an annotated routing script
(typed/typed_proxy.py, ``request: Request``) is clean under ``--strict``, a copy that misspells
``request.ruri`` is an error, and the example scripts type-check. The same script also runs
in the engine, so the stubs describe a script that works.

mypy finds PEP 561 stub packages only in the environment it runs in: these tests run where
the wheel is installed (scripts/test.sh sets SIPHON_SDK_INSTALLED=1 there, with mypy).
"""

import glob
import os
import subprocess
import sys

import pytest

INSTALLED = bool(os.environ.get("SIPHON_SDK_INSTALLED"))
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
TYPED = os.path.join(HERE, "typed", "typed_proxy.py")

needs_wheel = pytest.mark.skipif(
    not INSTALLED, reason="mypy needs the installed siphon-stubs (SIPHON_SDK_INSTALLED)")


def mypy(*args, cwd=None):
    pytest.importorskip("mypy", reason="mypy is installed with the wheel by scripts/test.sh")
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                           "--python-executable", sys.executable, *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


@needs_wheel
def test_annotated_script_is_clean():
    r = mypy("--strict", TYPED)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout


@needs_wheel
def test_misspelled_ruri_is_an_error(tmp_path):
    with open(TYPED) as f:
        src = f.read()
    assert "request.ruri.user" in src
    bad = tmp_path / "misspelled.py"
    bad.write_text(src.replace("request.ruri.user", "request.rui.user"))
    r = mypy("--strict", str(bad))
    assert r.returncode == 1, r.stdout + r.stderr
    assert '"Request" has no attribute "rui"' in r.stdout


@needs_wheel
def test_example_scripts_type_check():
    # The routing scripts, not their pytest files (conftest.py, test_*.py use the SDK, which
    # ships no stubs of its own).
    scripts = sorted(p for p in glob.glob(os.path.join(ROOT, "scripting", "examples", "*.py"))
                     + glob.glob(os.path.join(ROOT, "deploy", "examples", "*.py"))
                     if not os.path.basename(p).startswith(("test_", "conftest")))
    assert scripts
    # One run per script: deploy/examples and scripting/examples share file names.
    for script in scripts:
        r = mypy("--check-untyped-defs", script)
        assert r.returncode == 0, f"{script}:\n{r.stdout}{r.stderr}"


def test_annotated_script_runs_in_the_engine(harness):
    with open(TYPED) as f:
        h = harness(f.read(), script_config={"blocked_prefix": "900"})
    assert h.send_request("INVITE", "sip:9001@example.com").status_code == 403
    r = h.send_request("INVITE", "sip:bob@example.com")
    assert r.status_code == 404
    assert r.header("X-Reason") == "not registered"
