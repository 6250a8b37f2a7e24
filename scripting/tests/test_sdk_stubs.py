"""The ``siphon`` type stubs (scripting/sdk/siphon-stubs, shipped in the SDK wheel) and the
runtime package the engine embeds (scripting/python/siphon) name the same things.

The runtime is importable only inside the engine, so a script run by the real driver lists
what it sees (``dir()`` of the public modules, of the classes and of the namespace objects)
and logs it as JSON; the stubs are read with ``ast`` the way a type checker reads them
(an import is a public name only when re-exported as ``import X as X``). Every public name in
one must be in the other, at module level and member by member.
"""

import ast
import json
import os
import subprocess
import sysconfig
import tempfile

import pytest

from siphon_sdk import _engine

HERE = os.path.dirname(os.path.abspath(__file__))

# Public modules: every public name is compared. Private modules: the classes they define
# (reachable through return types: DetachedReply, Counter, TimerHandle, ...).
PUBLIC = {"siphon": "__init__.pyi", "siphon.smpp": "smpp.pyi", "siphon.http": "http.pyi"}
PRIVATE = {"siphon._message": "_message.pyi", "siphon._namespaces": "_namespaces.pyi",
           "siphon._presence": "_presence.pyi"}

# Runs inside the engine. Classes without __slots__ keep their fields on the instance, so
# the script builds one of each (SAMPLES); a new slot-less class is reported, not skipped.
INTROSPECT = r'''
import json, types
import siphon, siphon.smpp, siphon.http, siphon._message, siphon._namespaces, siphon._presence
from siphon import log

SAMPLES = {"siphon.smpp.Pdu": lambda: siphon.smpp.Pdu(0, 0, "submit_sm", {}, None)}

def public(names):
    return sorted(n for n in names if not n.startswith("_"))

def slotted(cls):
    return all("__slots__" in vars(k) for k in cls.__mro__[:-1])

def cls_info(cls):
    names = set(dir(cls))
    key = f"{cls.__module__}.{cls.__qualname__}"
    if not slotted(cls):
        if key in SAMPLES:
            names |= set(dir(SAMPLES[key]()))
        else:
            names.add("!no __slots__ and no sample instance")
    return ["class", public(names)]

def describe(mod, defined_only):
    out = {}
    for name in public(dir(mod)):
        v = getattr(mod, name)
        if isinstance(v, types.ModuleType):
            continue
        if isinstance(v, type):
            if defined_only and v.__module__ != mod.__name__:
                continue
            out[name] = cls_info(v)
        elif defined_only:
            continue
        elif type(v).__module__.startswith("siphon"):
            out[name] = ["object", public(dir(v))]
        else:
            out[name] = ["value", None]
    return out

mods = {"siphon": False, "siphon.smpp": False, "siphon.http": False,
        "siphon._message": True, "siphon._namespaces": True, "siphon._presence": True}
import sys
log.info("STUBSYNC " + json.dumps({m: describe(sys.modules[m], d) for m, d in mods.items()}))
'''


def stubs_dir():
    """The stubs of the installed wheel when the suite tests it, else the checkout's."""
    if os.environ.get("SIPHON_SDK_INSTALLED"):
        for key in ("purelib", "platlib"):
            d = os.path.join(sysconfig.get_paths()[key], "siphon-stubs")
            if os.path.isdir(d):
                return d
        pytest.fail("SIPHON_SDK_INSTALLED is set but siphon-stubs is not installed")
    return os.path.join(HERE, "..", "sdk", "siphon-stubs")


def runtime_names():
    with tempfile.TemporaryDirectory(prefix="siphon-stubsync-") as tmp:
        script = os.path.join(tmp, "introspect.py")
        with open(script, "w") as f:
            f.write(INTROSPECT)
        proc = subprocess.Popen([_engine.driver_path(), "--script", script, "--cores", "1"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=_engine.driver_env())
        try:
            out, _ = proc.communicate('{"op":"quit"}\n', timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("type") == "log" and msg["msg"].startswith("STUBSYNC "):
            return json.loads(msg["msg"][len("STUBSYNC "):])
        if msg.get("type") == "error":
            pytest.fail(f"driver: {msg['message']}")
    pytest.fail(f"the introspection script logged nothing; driver said:\n{out}")


class StubModule:
    """One .pyi file: its public names (classes, functions, variables, re-exports)."""

    def __init__(self, stubs, filename):
        self.stubs = stubs
        with open(os.path.join(stubs.root, filename)) as f:
            self.tree = ast.parse(f.read(), filename)
        self.scope = {}  # name -> node (ClassDef, FunctionDef, AnnAssign...) or ("import", mod, name)
        self.exports = set()
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                self.scope[node.name] = node
                self.exports.add(node.name)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                self.scope[node.target.id] = node
                self.exports.add(node.target.id)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        self.scope[t.id] = node
                        self.exports.add(t.id)
            elif isinstance(node, ast.ImportFrom) and node.level == 1:
                for a in node.names:
                    local = a.asname or a.name
                    target = ("module", node.module or a.name) if node.module is None else \
                        ("import", node.module, a.name)
                    self.scope[local] = target
                    if a.asname == a.name:  # the stub convention for a re-export
                        self.exports.add(local)

    def resolve(self, name):
        v = self.scope.get(name)
        if isinstance(v, tuple) and v[0] == "import":
            return self.stubs.module(v[1]).resolve(v[2])
        return v, self

    def class_members(self, node):
        names = set()
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(item.name)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                names.add(item.target.id)
            elif isinstance(item, ast.Assign):
                names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        for base in node.bases:
            if isinstance(base, ast.Name):
                b, mod = self.resolve(base.id)
                if isinstance(b, ast.ClassDef):
                    names.update(mod.class_members(b))
        return sorted(n for n in names if not n.startswith("_"))

    def describe(self, defined_only):
        out = {}
        for name in sorted(self.exports):
            if name.startswith("_"):
                continue
            node, mod = self.resolve(name)
            if isinstance(node, tuple) and node[0] == "module":
                continue
            if isinstance(node, ast.ClassDef):
                out[name] = ["class", mod.class_members(node)]
            elif defined_only:
                continue
            elif isinstance(node, ast.AnnAssign) and isinstance(node.annotation, ast.Name):
                ann, amod = mod.resolve(node.annotation.id)
                if isinstance(ann, ast.ClassDef):
                    out[name] = ["object", amod.class_members(ann)]
                else:
                    out[name] = ["value", None]
            else:
                out[name] = ["value", None]
        return out


class Stubs:
    def __init__(self, root):
        self.root = root
        self._mods = {}

    def module(self, name):
        if name not in self._mods:
            self._mods[name] = StubModule(self, name + ".pyi")
        return self._mods[name]

    def describe(self, filename, defined_only):
        return self.module(filename[:-len(".pyi")]).describe(defined_only)


@pytest.fixture(scope="module")
def both():
    stubs = Stubs(stubs_dir())
    want = {m: stubs.describe(f, False) for m, f in PUBLIC.items()}
    want.update({m: stubs.describe(f, True) for m, f in PRIVATE.items()})
    return runtime_names(), want


@pytest.mark.parametrize("module", list(PUBLIC) + list(PRIVATE))
def test_stub_and_runtime_name_the_same_things(both, module):
    runtime, stubs = both
    rt, st = runtime[module], stubs[module]
    problems = []
    for name in sorted(set(rt) - set(st)):
        problems.append(f"{module}.{name}: in the runtime, not in the stubs")
    for name in sorted(set(st) - set(rt)):
        problems.append(f"{module}.{name}: in the stubs, not in the runtime")
    for name in sorted(set(rt) & set(st)):
        (rk, rm), (sk, sm) = rt[name], st[name]
        if (rk == "value") != (sk == "value"):
            problems.append(f"{module}.{name}: runtime {rk}, stubs {sk}")
            continue
        for m in sorted(set(rm or ()) - set(sm or ())):
            problems.append(f"{module}.{name}.{m}: in the runtime, not in the stubs")
        for m in sorted(set(sm or ()) - set(rm or ())):
            problems.append(f"{module}.{name}.{m}: in the stubs, not in the runtime")
    assert not problems, "\n".join(problems)


def test_stubs_cover_every_namespace_the_issue_names(both):
    _, stubs = both
    top = stubs["siphon"]
    for name in ("proxy", "Request", "Reply", "SipUri", "Contact", "registrar", "auth",
                 "cache", "log", "timer", "metrics", "config", "presence"):
        assert name in top, name
    assert "route" in stubs["siphon.http"] and "on_pdu" in stubs["siphon.smpp"]
    assert os.path.isfile(os.path.join(stubs_dir(), "py.typed"))
