"""Where the engine is and how to start it.

The wheel (``pip install siphon-sdk`` or ``pip install ./scripting/sdk``) installs the
``siphon-script-driver`` binary into the environment's scripts directory (a virtualenv's
``bin/``), built for this Python's minor version: nothing needs to be set. ``$SIPHON_DRIVER``
overrides it (``scripting/run-tests.sh`` points it at a cargo build of the repository).

The driver links ``libpython3.X.so``; it finds it through the rpath it was built with, and,
where that path does not exist (a wheel built on another machine, a pyenv elsewhere), through
the ``LD_LIBRARY_PATH`` that :func:`driver_env` adds: this Python's own ``LIBDIR``.
"""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import warnings

DRIVER_NAME = "siphon-script-driver"


class DriverNotFoundError(FileNotFoundError):
    """No ``siphon-script-driver`` was found (the SDK is not installed from its wheel and
    ``$SIPHON_DRIVER`` is not set)."""


class DegradedModeWarning(UserWarning):
    """The engine runs on Python < 3.12: every core shares ONE interpreter (and one GIL)
    instead of one own-GIL subinterpreter per core. Scripts behave the same; module globals are
    shared by the cores, and throughput does not scale with cores."""


def _candidates():
    scripts = sysconfig.get_path("scripts")
    if scripts:
        yield os.path.join(scripts, DRIVER_NAME)
    # `pip install --user`: the user scheme's scripts directory.
    try:
        user_scripts = sysconfig.get_path("scripts", f"{os.name}_user")
    except KeyError:
        user_scripts = os.path.join(site.getuserbase(), "bin")
    if user_scripts:
        yield os.path.join(user_scripts, DRIVER_NAME)
    # Next to the running interpreter (a virtualenv's bin/ even when sysconfig points elsewhere).
    yield os.path.join(os.path.dirname(os.path.abspath(sys.executable)), DRIVER_NAME)
    found = shutil.which(DRIVER_NAME)
    if found:
        yield found


def driver_path():
    """The driver to run: ``$SIPHON_DRIVER``, else the one the wheel installed."""
    env = os.environ.get("SIPHON_DRIVER")
    if env:
        return env
    for cand in _candidates():
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise DriverNotFoundError(
        f"{DRIVER_NAME} not found: install the SDK from its wheel into this environment "
        f"(`pip install ./scripting/sdk` in a siphon checkout) or set $SIPHON_DRIVER to a "
        f"driver built with `cargo build -p siphon-script --features smpp,http "
        f"--bin {DRIVER_NAME}`")


def driver_env():
    """The environment to start the driver in: ours, with this Python's ``LIBDIR`` (where
    ``libpython3.X.so`` lives) in front of ``LD_LIBRARY_PATH``."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlib = sysconfig.get_config_var("LDLIBRARY")
    if libdir and ldlib and os.path.exists(os.path.join(libdir, ldlib)):
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = libdir + (os.pathsep + old if old else "")
    return env


def announce_mode(mode, python, stacklevel=None):
    """Warn (:class:`DegradedModeWarning`) when the engine that just started runs the shared
    interpreter because its Python is older than 3.12."""
    try:
        major, minor = (int(x) for x in str(python).split(".")[:2])
    except ValueError:
        return
    if mode == "shared" and (major, minor) < (3, 12):
        if stacklevel is None:
            # Point at the first caller outside this package (the harness may start its
            # engine from its constructor or lazily from any method).
            pkg = os.path.dirname(os.path.abspath(__file__)) + os.sep
            f, stacklevel = sys._getframe(1), 2
            while f is not None and os.path.abspath(f.f_code.co_filename).startswith(pkg):
                f, stacklevel = f.f_back, stacklevel + 1
        warnings.warn(DegradedModeWarning(
            f"siphon engine in degraded mode on Python {python}: every core shares one "
            f"interpreter (own-GIL subinterpreters per core need Python 3.12+)"),
            stacklevel=stacklevel)


def version_line(driver=None):
    """The driver's ``--version`` line: the engine version, its Python, its interpreter mode."""
    driver = driver or driver_path()
    out = subprocess.run([driver, "--version"], env=driver_env(), capture_output=True,
                         text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{driver} --version failed ({out.returncode}): "
                           f"{(out.stderr or out.stdout).strip()}")
    return out.stdout.strip()
