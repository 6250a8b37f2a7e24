"""The engine process behind every harness: ``siphon-script-driver`` run as a child with the
script and a JSON config, spoken to in JSON lines on stdin/stdout. Shared by
:class:`~siphon_sdk.testing.SipTestHarness`, :class:`~siphon_sdk.smpp_testing.SmppTestHarness`
and :class:`~siphon_sdk.http_testing.HttpTestHarness`; each adds its config and what it does
with the driver's messages."""

import itertools
import json
import os
import queue
import subprocess
import tempfile
import threading
import time

from . import _engine

_TIMEOUT = 30.0


class HarnessError(RuntimeError):
    pass


class DriverProcess:
    """Start, talk to and stop one driver process. A subclass sets the fields with
    :meth:`_init_driver`, builds its config in ``_start`` and calls :meth:`_spawn`. The reader
    keeps the driver's ``_ANSWER`` messages in ``self._answers`` by id, hands its ``_CALL``
    messages (requests the test answers) to ``_on_call(proc, msg)`` and its log lines to
    ``_on_log(msg)``, and puts everything else on ``self._control``."""

    _ANSWER = ""
    _CALL = ""
    # What a failed wait raises.
    _error = HarnessError

    def _init_driver(self, prefix, cores, driver, script_name="__siphon_script__.py"):
        # Find the engine first: a missing driver raises before anything needs cleaning up.
        self._driver = driver or _engine.driver_path()
        self._cores = cores
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self._script = os.path.join(self._tmp.name, script_name)
        self._source = ""
        self._ids = itertools.count(1)
        self._proc = None
        self._reader = None
        self._wlock = threading.Lock()
        self._cond = threading.Condition()
        self._answers = {}
        self._control = queue.Queue()
        self.mode = None
        self.python = None

    def _spawn(self, cfg, script=None, reload="sighup", extra=()):
        """Start the driver on ``script`` (default: ``self._source`` written to the harness's
        script file) with ``cfg`` and wait for its ready line; a driver that does not start
        raises :meth:`_start_error`."""
        if script is None:
            script = self._script
            with open(script, "w") as f:
                f.write(self._source)
        cfg_path = os.path.join(self._tmp.name, "cfg.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        argv = [self._driver, "--script", script, "--cores", str(self._cores),
                "--config", cfg_path, "--reload", reload, *extra]
        self._control = queue.Queue()
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, bufsize=1, env=_engine.driver_env())
        self._reader = threading.Thread(target=self._read, args=(self._proc,), daemon=True)
        self._reader.start()
        first = self._control.get(timeout=120)
        if first.get("type") != "ready":
            self._stop()
            raise self._start_error(first)
        self.mode = first["mode"]
        self.python = first.get("python")
        # user -> load_source/load_script -> _start -> _spawn -> announce_mode
        _engine.announce_mode(self.mode, self.python)

    def _start_error(self, first):
        """The exception for a driver whose first line is not ``ready``."""
        return HarnessError(first.get("message", str(first)))

    def _stop(self):
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._write(proc, {"op": "quit"})
                proc.stdin.close()
                proc.wait(timeout=30)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass

    def _write(self, proc, obj):
        with self._wlock:
            proc.stdin.write(json.dumps(obj) + "\n")
            proc.stdin.flush()

    def _send(self, obj):
        """Write ``obj`` to the driver, starting it first when it is not running."""
        if self._proc is None:
            self._start()
        self._write(self._proc, obj)

    def _wait(self, pred, timeout=_TIMEOUT):
        """Wait until ``pred()`` (checked under ``self._cond``) holds; raises ``_error`` when
        ``timeout`` passes or the driver is gone first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                proc = self._proc
                if left <= 0 or proc is None or proc.poll() is not None:
                    raise self._error("timed out waiting for the engine")
                self._cond.wait(min(left, 0.5))

    def _ask(self, obj, want):
        """Send ``obj``; the driver's control answer of type ``want`` (an ``error`` answer
        raises)."""
        self._send(obj)
        deadline = time.monotonic() + _TIMEOUT
        while True:
            r = self._control.get(timeout=max(0.1, deadline - time.monotonic()))
            if r.get("type") == want:
                return r
            if r.get("type") == "error":
                raise HarnessError(r.get("message", str(r)))

    def load_source(self, source, name="<test>"):
        """Run ``source`` as the script (a reload swaps the handlers when the engine is up)."""
        self._source = source
        if self._proc is None:
            self._start()
            return None
        with open(self._script, "w") as f:
            f.write(source)
        r = self._ask({"op": "reload"}, "reloaded")
        if r.get("failed"):
            raise HarnessError(f"{name}: the script did not load (see h.log.messages)")
        return None

    def load_script(self, path):
        with open(path) as f:
            return self.load_source(f.read(), name=path)

    def _read(self, proc):
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            t = msg.get("type")
            if t == self._CALL:
                self._on_call(proc, msg)
                continue
            with self._cond:
                if t == self._ANSWER:
                    self._answers[msg["id"]] = msg
                elif t == "log":
                    self._on_log(msg)
                else:
                    self._control.put(msg)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _on_call(self, proc, msg):
        raise NotImplementedError

    def _on_log(self, msg):
        raise NotImplementedError

    def close(self):
        """Stop the engine and remove the harness's files."""
        self._stop()
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
