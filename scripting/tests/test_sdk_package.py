"""The SDK as a package: where it finds its engine, how it starts it, what it announces.

scripts/test.sh runs this file twice per Python: from the checkout with ``$SIPHON_DRIVER``
(scripting/run-tests.sh), and in a fresh virtualenv with the wheel installed and nothing set
(``SIPHON_SDK_INSTALLED=1``), where the driver must come from the wheel.
"""

import os
import subprocess
import sys
import sysconfig
import warnings

import pytest

from siphon_sdk import DegradedModeWarning, SipTestHarness, _engine

INSTALLED = bool(os.environ.get("SIPHON_SDK_INSTALLED"))
SDK_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk")

ANSWER = """
from siphon import proxy

@proxy.on_request
def route(request):
    request.reply(486, "Busy Here")
"""


def test_harness_runs_the_engine_and_announces_degraded_mode_below_3_12():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = SipTestHarness(source=ANSWER, cores=1)
    try:
        assert h.send_request("INVITE").status_code == 486
        degraded = [w for w in caught if issubclass(w.category, DegradedModeWarning)]
        major, minor = (int(x) for x in h.python.split("."))
        if (major, minor) < (3, 12):
            assert h.mode == "shared"
            assert len(degraded) == 1
            assert f"Python {h.python}" in str(degraded[0].message)
            assert degraded[0].filename == __file__  # points at the caller, not the SDK
        else:
            assert h.mode == "per-core"
            assert degraded == []
    finally:
        h.close()


def test_version_names_the_engine_and_the_python_it_embeds():
    env = dict(os.environ)
    if not INSTALLED:
        env["PYTHONPATH"] = SDK_SRC + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-m", "siphon_sdk", "--version"], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "siphon engine " in out
    # One wheel per Python minor: the engine embeds the Python the SDK runs on.
    assert f"embedded Python {sys.version_info[0]}.{sys.version_info[1]}." in out
    mode = "per-core" if sys.version_info >= (3, 12) else "degraded mode"
    assert mode in out
    if INSTALLED:
        assert out.startswith("siphon-sdk ") and "source tree" not in out


@pytest.mark.skipif(not INSTALLED, reason="checks the wheel's driver (SIPHON_SDK_INSTALLED)")
def test_installed_driver_is_found_without_any_setting(monkeypatch):
    monkeypatch.delenv("SIPHON_DRIVER", raising=False)
    path = _engine.driver_path()
    assert os.path.dirname(path) == sysconfig.get_path("scripts")
    assert os.path.basename(path) == "siphon-script-driver"


def test_siphon_driver_overrides_the_installed_one(monkeypatch):
    monkeypatch.setenv("SIPHON_DRIVER", "/nonexistent/siphon-script-driver")
    assert _engine.driver_path() == "/nonexistent/siphon-script-driver"


def test_missing_driver_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SIPHON_DRIVER", raising=False)
    monkeypatch.setattr(_engine, "_candidates", lambda: iter(()))
    with pytest.raises(_engine.DriverNotFoundError, match="SIPHON_DRIVER"):
        SipTestHarness(source=ANSWER, cores=1)


def test_driver_env_puts_this_pythons_libdir_first(monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/elsewhere")
    libdir = sysconfig.get_config_var("LIBDIR")
    env = _engine.driver_env()
    if os.path.exists(os.path.join(libdir, sysconfig.get_config_var("LDLIBRARY"))):
        assert env["LD_LIBRARY_PATH"] == libdir + os.pathsep + "/elsewhere"
    else:  # a static build: nothing to find
        assert env["LD_LIBRARY_PATH"] == "/elsewhere"
