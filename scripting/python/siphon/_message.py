"""``Request``, ``Reply``, ``SipUri`` and ``Contact`` (siphon-core-api.md sections 1.14-1.17).

Request/Reply are thin views holding a handle to the Rust-side message of the current event;
every field is pulled lazily through ``_siphon`` and every action is recorded in Rust, to be
carried out after the handlers return. A view must not be used after its event completed.
"""

import ipaddress

import _siphon

_REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
    408: "Request Timeout", 410: "Gone", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    420: "Bad Extension", 423: "Interval Too Brief", 429: "Too Many Requests",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

_hdr = _siphon.hdr
_hdr_tag = _siphon.hdr_tag
_reply = _siphon.reply
_local_domains = None


def _locals():
    global _local_domains
    if _local_domains is None:
        _local_domains = frozenset(d.lower() for d in _siphon.local_domains())
    return _local_domains


_local_addrs = None


def _names_us(uri):
    """Whether a Route URI names this node: one of our listen or advertised addresses (host
    and port; 5060, or 5061 for sips/TLS, when the URI has none), or a domain name listed in
    ``domain.local`` (any port). An address of ours on another port is somebody else.
    Remembered per URI text (the same few Record-Route values come back on every in-dialog
    request; bounded like the parse cache)."""
    r = _names_cache.get(uri)
    if r is None:
        r = _remember(_names_cache, uri, _names_us_uncached(uri))
    return r


def _names_us_uncached(uri):
    global _local_addrs
    if _local_addrs is None:
        _local_addrs = frozenset(a.lower() for a in _siphon.local_addrs())
    u = SipUri(uri)
    host = (u.host or "").lower()
    if not host:
        return False
    bare = host.strip("[]")
    is_ip = bare.replace(".", "").isdigit() or ":" in bare
    if not is_ip:
        return host in _locals()
    secure = u.scheme == "sips" or str(u.params.get("transport") or "").lower() == "tls"
    port = u.port or (5061 if secure else 5060)
    return f"{host}:{port}" in _local_addrs


# Per-interpreter caches keyed by header text: parsed URIs (``SipUri``) and their written
# form, route verdicts (``_names_us``, ``loose_route``), received flows (``Flow``). Each
# holds at most _CACHE_LIMIT entries of keys up to _CACHE_KEY_MAX characters (a longer text
# is parsed every time) and is emptied when full (peers choose these texts); ``cache_resets``
# counts the resets. Entries are immutable: every SipUri gets its own ``params`` dict, every
# Contact its own Flow.
_CACHE_LIMIT = 512
_CACHE_KEY_MAX = 256
_uri_cache = {}
_names_cache = {}
_flow_cache = {}
_text_cache = {}
_route_cache = {}
cache_resets = 0
_UNPARSED = object()


def _remember(cache, key, value):
    """Keep ``value`` under the text ``key`` (within the limits above); returns ``value``."""
    global cache_resets
    if len(key) <= _CACHE_KEY_MAX:
        if len(cache) >= _CACHE_LIMIT:
            cache_resets += 1
            cache.clear()
        cache[key] = value
    return value


def _addr_uri(v):
    if v is None:
        return None
    a, b = v.find("<"), v.find(">")
    if 0 <= a < b:
        return v[a + 1:b]
    return v.split(";", 1)[0].strip()


def _param(v, name):
    if v is None:
        return None
    b = v.rfind(">")
    tail = v[b + 1:] if b >= 0 else (v.split(";", 1)[1] if ";" in v else "")
    for p in tail.split(";"):
        k, _, val = p.partition("=")
        if k.strip().lower() == name:
            return val.strip()
    return None


def _parse_uri(uri):
    """URI text -> (scheme, user, host, port, params as (name, value) pairs, headers)."""
    uri = uri.strip()
    if uri.startswith("<") and uri.endswith(">"):
        uri = uri[1:-1]
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    rest, _, hdrs = rest.partition("?")
    user, at, hp = rest.rpartition("@")
    if not at:
        user, hp = None, rest
    parts = hp.split(";")
    hostport = parts[0]
    params = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        params[k] = v if eq else None
    params = tuple(params.items())
    if scheme == "tel":
        return scheme, hostport, None, None, params, hdrs
    if hostport.startswith("["):
        end = hostport.find("]")
        host, port = hostport[: end + 1], hostport[end + 2:]
    else:
        host, _, port = hostport.partition(":")
    return scheme, user, host, int(port) if port.isdigit() else None, params, hdrs


class SipUri:
    """A SIP/SIPS/TEL URI value. Setting ``user``/``host``/``port`` on ``request.ruri`` edits
    the request's Request-URI."""

    # ``_text``: the text this was parsed from while nothing changed (its written form is then
    # remembered per text); any setter, and handing out ``params`` (a dict the caller may
    # change in place), clears it.
    __slots__ = ("_scheme", "_user", "_host", "_port", "_params", "_headers", "_owner", "_text")

    def __init__(self, uri):
        uri = str(uri)
        p = _uri_cache.get(uri)
        if p is None:
            p = _remember(_uri_cache, uri, _parse_uri(uri))
        self._scheme, self._user, self._host, self._port, params, self._headers = p
        self._params = dict(params) if params else {}
        self._owner = None
        self._text = uri

    def _sync(self):
        self._text = None
        if self._owner is not None:
            _siphon.set_ruri(self._owner, str(self))

    @property
    def scheme(self):
        return self._scheme

    @scheme.setter
    def scheme(self, v):
        self._scheme = v
        self._text = None

    @property
    def params(self):
        self._text = None
        return self._params

    @params.setter
    def params(self, v):
        self._params = v
        self._text = None

    @property
    def headers(self):
        return self._headers

    @headers.setter
    def headers(self, v):
        self._headers = v
        self._text = None

    @property
    def user(self):
        return self._user

    @user.setter
    def user(self, v):
        self._user = v
        self._sync()

    @property
    def host(self):
        return self._host

    @host.setter
    def host(self, v):
        self._host = v
        self._sync()

    @property
    def port(self):
        return self._port

    @port.setter
    def port(self, v):
        self._port = None if v is None else int(v)
        self._sync()

    @property
    def is_tel(self):
        return self._scheme == "tel" or self._params.get("user") == "phone"

    @property
    def is_local(self):
        return self._host is not None and self._host.lower() in _locals()

    @property
    def user_params(self):
        if not self._user or ";" not in self._user:
            return {}
        return dict(p.partition("=")[::2] for p in self._user.split(";")[1:])

    def __str__(self):
        t = self._text
        if t is not None:
            return _canonical_uri(t)
        return self._write()

    def _write(self):
        if self._scheme == "tel":
            s = f"tel:{self._user}"
        else:
            s = f"{self._scheme}:"
            if self._user is not None:
                s += f"{self._user}@"
            s += self._host or ""
            if self._port is not None:
                s += f":{self._port}"
        for k, v in self._params.items():
            s += f";{k}" if v is None else f";{k}={v}"
        if self._headers:
            s += f"?{self._headers}"
        return s

    def __repr__(self):
        return f"<SipUri {self}>"

    def __eq__(self, other):
        return str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


def _canonical_uri(text):
    """``str(SipUri(text))``, remembered per text (bounded like the parse cache)."""
    s = _text_cache.get(text)
    if s is None:
        s = _remember(_text_cache, text, SipUri(text)._write())
    return s


class Flow:
    """The inbound flow a binding's REGISTER came over (``Contact.flow``): pass it to
    ``request.relay(flow=...)``; ``request.fork(contacts)`` uses it per branch. Treat as opaque.
    The node sends over the same connection while it is open, else it routes by URI."""

    __slots__ = ("transport", "remote_addr", "local_addr")

    def __init__(self, transport, remote_addr, local_addr=None):
        self.transport = transport
        self.remote_addr = remote_addr
        self.local_addr = local_addr

    @property
    def is_alive(self):
        # The reactor checks the connection when it sends; a dead stream falls back to the URI.
        return True

    @classmethod
    def _from_received(cls, received):
        """``sip:IP:PORT;transport=x`` (``Contact.received``) -> Flow."""
        if not received:
            return None
        f = _flow_cache.get(received)
        if f is None:
            if not received.startswith("sip:"):
                return None
            hostport, _, params = received[4:].partition(";")
            transport = "udp"
            for p in params.split(";"):
                k, _, v = p.partition("=")
                if k.strip().lower() == "transport" and v:
                    transport = v.strip().lower()
            f = _remember(_flow_cache, received, (transport, hostport))
        return cls(f[0], f[1])

    def __repr__(self):
        return f"Flow(transport={self.transport}, remote={self.remote_addr})"


class Contact:
    """A registered binding (``registrar.lookup``). ``received`` is the REGISTER's source as a
    SIP URI, ``sip:IP:PORT;transport=x`` (route to it instead of ``uri`` for a UA behind NAT),
    ``path`` its Path values and ``flow`` the flow it came over."""

    __slots__ = ("_uri", "_uri_text", "q", "expires", "age_secs", "received", "path", "instance_id",
                 "instance_epoch", "flow_token", "flow", "kind", "params")

    def __init__(self, uri, q=1.0, expires=0, age_secs=0, received=None, path=(), instance_id=None):
        # The URI is parsed when first read: a fork to the binding only needs its text.
        self._uri = _UNPARSED
        self._uri_text = str(uri)
        self.q = q
        self.expires = expires
        self.age_secs = age_secs
        self.received = received
        self.path = list(path)
        self.instance_id = instance_id
        self.instance_epoch = None
        self.flow_token = None
        f = _flow_cache.get(received) if received else None
        self.flow = Flow(f[0], f[1]) if f is not None else Flow._from_received(received)
        self.kind = "ue"
        self.params = []

    @property
    def uri(self):
        u = self._uri
        if u is _UNPARSED:
            u = self._uri = SipUri(self._uri_text)
        return u

    @uri.setter
    def uri(self, value):
        self._uri = value

    @property
    def is_local(self):
        return self.uri.is_local

    @property
    def sip_instance(self):
        return self.instance_id

    def __str__(self):
        u = self._uri
        if u is _UNPARSED:
            s = _text_cache.get(self._uri_text)
            return s if s is not None else _canonical_uri(self._uri_text)
        return str(u)

    def __repr__(self):
        return f"<Contact {self.uri} expires={self.expires}>"


class _Headers:
    """Header access shared by Request (w=0) and Reply (w=1)."""

    __slots__ = ()
    _w = 0

    def get_header(self, name):
        return _hdr(self._h, self._w, name)

    header = get_header

    def get_headers(self, name):
        return _siphon.hdrs(self._h, self._w, name)

    def has_header(self, name):
        return _hdr(self._h, self._w, name) is not None

    def set_header(self, name, value):
        _siphon.set_hdr(self._h, self._w, name, str(value))

    def remove_header(self, name):
        return _siphon.rm_hdr(self._h, self._w, name)

    def remove_headers_matching(self, prefix):
        return _siphon.rm_hdrs_prefix(self._h, self._w, prefix)

    @property
    def from_uri(self):
        v = _addr_uri(_hdr(self._h, self._w, "From"))
        return SipUri(v) if v else None

    @property
    def to_uri(self):
        v = _addr_uri(_hdr(self._h, self._w, "To"))
        return SipUri(v) if v else None

    @property
    def from_tag(self):
        return _hdr_tag(self._h, self._w, "From")

    @property
    def to_tag(self):
        return _hdr_tag(self._h, self._w, "To")

    @property
    def call_id(self):
        return _hdr(self._h, self._w, "Call-ID")

    @property
    def body(self):
        return _siphon.body(self._h, self._w)

    @property
    def content_type(self):
        return _hdr(self._h, self._w, "Content-Type")

    def has_body(self, content_type=None):
        if _siphon.body(self._h, self._w) is None:
            return False
        if content_type is None:
            return True
        ct = _hdr(self._h, self._w, "Content-Type") or ""
        return ct.split(";", 1)[0].strip().lower() == content_type.lower()

    @property
    def source_ip(self):
        return _siphon.meta(self._h)[1]

    @property
    def source_port(self):
        return _siphon.meta(self._h)[2]

    def from_gateway(self, group):
        return False


class Request(_Headers):
    """The request of the current event (``@proxy.on_request`` and friends)."""

    __slots__ = ("_h", "method", "_stopped", "_ruri")
    _w = 0

    def __init__(self, h, method):
        self._h = h
        self.method = method
        self._stopped = False
        self._ruri = None

    def __repr__(self):
        return f"<Request {self.method} {_siphon.start(self._h, 0)[1]}>"

    # -- getters --
    @property
    def ruri(self):
        if self._ruri is None:
            u = SipUri(_siphon.start(self._h, 0)[1])
            u._owner = self._h  # the handle, not the Request: no reference cycle per request
            self._ruri = u
        return self._ruri

    @ruri.setter
    def ruri(self, value):
        self._ruri = None
        _siphon.set_ruri(self._h, str(value))

    def set_ruri(self, value):
        self.ruri = value

    @property
    def cseq(self):
        v = _hdr(self._h, 0, "CSeq") or ""
        n, _, m = v.strip().partition(" ")
        return (int(n) if n.isdigit() else 0, m.strip())

    @property
    def in_dialog(self):
        return _hdr_tag(self._h, 0, "To") is not None

    @property
    def max_forwards(self):
        v = _hdr(self._h, 0, "Max-Forwards")
        return int(v) if v and v.strip().isdigit() else None

    @property
    def transport(self):
        return _siphon.meta(self._h)[0]

    @property
    def user_agent(self):
        return _hdr(self._h, 0, "User-Agent")

    @property
    def auth_user(self):
        return _siphon.auth_user(self._h)

    @auth_user.setter
    def auth_user(self, v):
        _siphon.set_auth_user(self._h, v)

    @property
    def contact_expires(self):
        e = _param(_hdr(self._h, 0, "Contact"), "expires")
        if e is None:
            e = _hdr(self._h, 0, "Expires")
        return int(e) if e is not None and e.strip().isdigit() else None

    @property
    def event(self):
        return _hdr(self._h, 0, "Event")

    @property
    def client_transport(self):
        return _siphon.meta(self._h)[0]

    @property
    def client_is_secure(self):
        return _siphon.meta(self._h)[0] in ("tls", "wss")

    is_ipsec_protected = False
    matched_sa = None
    flow = None
    route_user = None
    consumed_route_user = None
    consumed_routes = ()
    consumed_route = None

    @property
    def propagation_stopped(self):
        return self._stopped

    def stop_propagation(self):
        self._stopped = True

    # -- actions (deferred: carried out after the handlers return) --
    def reply(self, code, reason=None, reliable=False):
        _reply(self._h, code, reason if reason is not None else _REASONS.get(code, ""), reliable)

    def relay(self, next_hop=None, on_reply=None, on_failure=None, flow=None, send_socket=None):
        if next_hop is None and on_reply is None and on_failure is None and flow is None:
            _siphon.relay(self._h)  # the usual relay along the route set: no optional part
            return
        if on_reply is not None or on_failure is not None:
            from . import _engine
            _engine.remember_relay(_siphon.ev_id(self._h), on_reply, on_failure)
        _siphon.relay(self._h, None if next_hop is None else str(next_hop), on_reply is not None, on_failure is not None,
                      None if flow is None else flow.transport, None if flow is None else flow.remote_addr)

    def fork(self, targets, strategy="parallel", send_socket=None):
        """Fork to URIs and/or registered ``Contact``s; a Contact's branch goes through its
        Path (RFC 3327) and over the flow its REGISTER came from."""
        if isinstance(targets, (str, SipUri, Contact)):
            targets = [targets]
        # One native call: a Contact with a Path or a flow goes as (uri, path, transport, remote).
        args = []
        for t in targets:
            if isinstance(t, Contact) and (t.path or t.flow is not None):
                f = t.flow
                args.append((str(t), [str(p) for p in t.path],
                             None if f is None else f.transport, None if f is None else f.remote_addr))
            else:
                args.append(str(t))
        _siphon.fork(self._h, args, strategy)

    def record_route(self):
        _siphon.record_route(self._h)

    def loose_route(self):
        """RFC 3261 §16.4: if the top Route names this node (one of our addresses, host and
        port, or a ``domain.local`` name), consume it (and a second one after a double
        Record-Route) and return True: the request follows its route set (the remaining
        Routes, else the Request-URI). False when there is no Route or the top one names
        somebody else: relaying such a request would make the node an open relay."""
        hs = _siphon.hdrs(self._h, 0, "Route")
        if not hs:
            return False
        # The verdict is a function of the Route values alone: remembered for a single Route
        # line (an in-dialog request carries the route set its dialog's requests all carry).
        key = hs[0] if len(hs) == 1 else None
        rest = _route_cache.get(key)
        if rest is None:
            routes = [v.strip() for h in hs for v in h.split(",") if v.strip()]
            n = 0
            while n < len(routes) and _names_us(_addr_uri(routes[n])):
                n += 1
            rest = tuple(routes[n:]) if n else False
            if key is not None:
                _remember(_route_cache, key, rest)
        if rest is False:
            return False
        _siphon.rm_hdr(self._h, 0, "Route")
        for r in rest:
            _siphon.add_hdr(self._h, 0, "Route", r)
        return True

    # -- header edits --
    def ensure_header(self, name, value):
        if _hdr(self._h, 0, name) is None:
            _siphon.set_hdr(self._h, 0, name, str(value))

    def remove_from_header_list(self, name, value):
        out = []
        for v in _siphon.hdrs(self._h, 0, name):
            items = [i.strip() for i in v.split(",") if i.strip() and i.strip() != value]
            out.extend(items)
        _siphon.rm_hdr(self._h, 0, name)
        if out:
            _siphon.set_hdr(self._h, 0, name, ", ".join(out))

    def prepend_route(self, uri):
        _siphon.prepend_hdr(self._h, 0, "Route", f"<{uri}>")

    def add_path(self, uri):
        _siphon.prepend_hdr(self._h, 0, "Path", f"<{uri}>")

    # -- reply shaping --
    def set_reply_header(self, name, value):
        _siphon.reply_hdr(self._h, name, str(value), False)

    def add_reply_header(self, name, value):
        _siphon.reply_hdr(self._h, name, str(value), True)

    def set_reply_to_tag(self, tag):
        """The To tag of the response ``reply()`` sends (ignored when the request has one)."""
        _siphon.reply_to_tag(self._h, str(tag))

    def set_reply_body(self, body, content_type):
        _siphon.reply_body(self._h, body, content_type)

    # -- body --
    def set_body(self, body, content_type=None):
        _siphon.set_body(self._h, 0, body, content_type)

    # -- R-URI / identity --
    def set_ruri_user(self, user):
        u = SipUri(_siphon.start(self._h, 0)[1])
        u._user, u._text = user, None
        self.ruri = u

    def set_ruri_host(self, host):
        u = SipUri(_siphon.start(self._h, 0)[1])
        u._host, u._text = host, None
        self.ruri = u

    def set_from_uri(self, uri):
        self._set_addr("From", uri)

    def set_to_uri(self, uri):
        self._set_addr("To", uri)

    def _set_addr(self, name, uri):
        v = _hdr(self._h, 0, name) or ""
        a, b = v.find("<"), v.find(">")
        if 0 <= a < b:
            nv = v[: a + 1] + str(uri) + v[b:]
        else:
            tag = _param(v, "tag")
            nv = f"<{uri}>" + (f";tag={tag}" if tag else "")
        _siphon.set_hdr(self._h, 0, name, nv)

    def set_from_display(self, name):
        self._set_display("From", name)

    def set_to_display(self, name):
        self._set_display("To", name)

    def _set_display(self, hname, name):
        v = _hdr(self._h, 0, hname) or ""
        a = v.find("<")
        rest = v[a:] if a >= 0 else f"<{_addr_uri(v)}>" + (f";tag={_param(v, 'tag')}" if _param(v, "tag") else "")
        _siphon.set_hdr(self._h, 0, hname, (f'"{name}" ' if name else "") + rest)

    def set_contact_uri(self, uri):
        v = _hdr(self._h, 0, "Contact")
        if v is None:
            _siphon.set_hdr(self._h, 0, "Contact", f"<{uri}>")
            return
        a, b = v.find("<"), v.find(">")
        nv = v[: a + 1] + str(uri) + v[b:] if 0 <= a < b else f"<{uri}>"
        _siphon.set_hdr(self._h, 0, "Contact", nv)

    def set_contact_user(self, user):
        c = _addr_uri(_hdr(self._h, 0, "Contact"))
        if c:
            u = SipUri(c)
            u._user, u._text = user, None
            self.set_contact_uri(u)

    def fix_nated_contact(self):
        """Rewrite the Contact host:port to the packet's source address (NAT traversal)."""
        c = _addr_uri(_hdr(self._h, 0, "Contact"))
        if c and c != "*":
            u = SipUri(c)
            u._host, u._port, u._text = self.source_ip, self.source_port, None
            self.set_contact_uri(u)

    def fix_nated_register(self):
        """Mark the REGISTER's Contact with the source address (``;received=``)."""
        c = _hdr(self._h, 0, "Contact")
        if c and c.strip() != "*" and _param(c, "received") is None:
            _siphon.set_hdr(self._h, 0, "Contact", f'{c};received="sip:{self.source_ip}:{self.source_port}"')

    def source_ip_in(self, cidrs):
        ip = ipaddress.ip_address(self.source_ip)
        if isinstance(cidrs, str):
            cidrs = [cidrs]
        return any(ip in ipaddress.ip_network(c, strict=False) for c in cidrs)


class Reply(_Headers):
    """The response of a reply/failure event (``on_reply``, ``on_failure``, ``on_register_reply``)."""

    __slots__ = ("_h",)
    _w = 1

    def __init__(self, h):
        self._h = h

    def __repr__(self):
        return f"<Reply {self.status_code} {self.reason}>"

    @property
    def status_code(self):
        return _siphon.start(self._h, 1)[0]

    @property
    def reason(self):
        return _siphon.start(self._h, 1)[1]

    def relay(self, body=True):
        _siphon.fwd_reply(self._h)

    forward = relay

    def reject(self, code, reason=None):
        return _siphon.reject_reply(self._h, code, reason if reason is not None else _REASONS.get(code, ""))

    def withhold(self):
        pass


class DetachedReply:
    """A response delivered outside an event (``await proxy.send_request(...)``): a snapshot."""

    __slots__ = ("status_code", "reason", "_headers", "body")

    def __init__(self, status_code, reason, headers, body):
        self.status_code = status_code
        self.reason = reason
        self._headers = headers
        self.body = body

    def get_header(self, name):
        n = name.lower()
        for k, v in self._headers:
            if k.lower() == n:
                return v
        return None

    header = get_header

    def get_headers(self, name):
        n = name.lower()
        return [v for k, v in self._headers if k.lower() == n]

    def has_header(self, name):
        return self.get_header(name) is not None

    @property
    def content_type(self):
        return self.get_header("Content-Type")

    @property
    def call_id(self):
        return self.get_header("Call-ID")

    def __repr__(self):
        return f"<Reply {self.status_code} {self.reason}>"
