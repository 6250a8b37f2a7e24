"""The engine process behind the extension harnesses: ``siphon-script-driver`` run as a child
with the script and a JSON config, spoken to in JSON lines on stdin/stdout. Shared by
:class:`~siphon_sdk.smpp_testing.SmppTestHarness` and
:class:`~siphon_sdk.http_testing.HttpTestHarness`; each adds its config and its reader."""

import itertools
import json
import os
import queue
import subprocess
import tempfile
import threading

from . import _engine


class HarnessError(RuntimeError):
    pass


class DriverProcess:
    """Start, talk to and stop one driver process. A subclass sets the fields with
    :meth:`_init_driver`, builds its config in ``_start`` and calls :meth:`_spawn`, and reads
    the driver's lines in ``_read(proc)``, putting control messages on ``self._control``."""

    def _init_driver(self, prefix, cores, driver):
        self._driver = driver or _engine.driver_path()
        self._cores = cores
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self._script = os.path.join(self._tmp.name, "__siphon_script__.py")
        self._source = ""
        self._ids = itertools.count(1)
        self._proc = None
        self._reader = None
        self._wlock = threading.Lock()
        self._cond = threading.Condition()
        self._answers = {}
        self._control = queue.Queue()
        self.mode = None

    def _spawn(self, cfg):
        """Write the script and ``cfg``, start the driver, wait for its ready line."""
        with open(self._script, "w") as f:
            f.write(self._source)
        cfg_path = os.path.join(self._tmp.name, "cfg.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        argv = [self._driver, "--script", self._script, "--cores", str(self._cores),
                "--config", cfg_path, "--reload", "sighup"]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, bufsize=1, env=_engine.driver_env())
        self._control = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self._proc,), daemon=True)
        self._reader.start()
        first = self._control.get(timeout=120)
        if first.get("type") != "ready":
            self._stop()
            raise HarnessError(first.get("message", str(first)))
        self.mode = first["mode"]
        # user -> load_source/load_script -> _start -> _spawn -> announce_mode
        _engine.announce_mode(self.mode, first.get("python"))

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

    def _read(self, proc):
        raise NotImplementedError
