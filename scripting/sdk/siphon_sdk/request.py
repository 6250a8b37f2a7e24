"""``Request``: a SIP request as the harness API passes it around, with upstream
``siphon_sdk.request.Request``'s constructor and read accessors.

A test builds one to hand to :meth:`SipTestHarness.send_reply` or
:meth:`~SipTestHarness.send_cancel` (``Request(method="REGISTER")``), and reads one back as
:attr:`RequestResult.request`: the request as the script left it (headers it set, the R-URI it
rewrote), parsed from what the real engine produced. Handlers never see this class: in the
engine they get the engine's own ``siphon.Request``.
"""

from __future__ import annotations

import itertools
from typing import Optional, Union

from .types import Action, SipUri

_seq = itertools.count(1)

# RFC 3261 §7.3.3 compact forms, so that parsed messages answer to the long names.
_COMPACT = {"i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
            "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
            "v": "Via", "o": "Event"}


def _name_addr(value: Optional[str]):
    """``"Bob" <sip:bob@h>;tag=x`` -> (SipUri, tag)."""
    if not value:
        return None, None
    if "<" in value:
        uri_text, _, params = value.partition("<")[2].partition(">")
    else:
        uri_text, _, params = value.partition(";")
        params = ";" + params
    tag = None
    for p in params.split(";"):
        name, _, val = p.strip().partition("=")
        if name.lower() == "tag":
            tag = val
    return SipUri.parse(uri_text), tag


class _Message:
    """Header list and body shared by :class:`Request` and :class:`~siphon_sdk.reply.Reply`."""

    _headers: list
    _body: Optional[bytes]
    _actions: list

    def _set_headers(self, headers):
        self._headers = []
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for name, value in items:
            if isinstance(value, (list, tuple)):
                self._headers.extend((name, str(v)) for v in value)
            else:
                self._headers.append((name, str(value)))

    def get_header(self, name: str) -> Optional[str]:
        """First value of a header (case-insensitive), or ``None``."""
        values = self.get_headers(name)
        return values[0] if values else None

    def header(self, name: str) -> Optional[str]:
        """Alias of :meth:`get_header`."""
        return self.get_header(name)

    def get_headers(self, name: str) -> list:
        """Every value of a header, one per header line, in order."""
        low = name.lower()
        return [v for n, v in self._headers if n.lower() == low]

    def has_header(self, name: str) -> bool:
        return bool(self.get_headers(name))

    def has_body(self, content_type: str) -> bool:
        """True when there is a body of this Content-Type."""
        ct = (self.content_type or "").split(";", 1)[0].strip().lower()
        return bool(self._body) and ct == content_type.lower()

    @property
    def headers(self) -> list:
        """Every header line as ``(name, value)``, in order."""
        return list(self._headers)

    @property
    def body(self) -> Optional[bytes]:
        return self._body

    @property
    def content_type(self) -> Optional[str]:
        return self.get_header("Content-Type")

    @property
    def call_id(self) -> Optional[str]:
        return self.get_header("Call-ID")

    @property
    def from_uri(self) -> Optional[SipUri]:
        return _name_addr(self.get_header("From"))[0]

    @property
    def to_uri(self) -> Optional[SipUri]:
        return _name_addr(self.get_header("To"))[0]

    @property
    def from_tag(self) -> Optional[str]:
        return _name_addr(self.get_header("From"))[1]

    @property
    def to_tag(self) -> Optional[str]:
        return _name_addr(self.get_header("To"))[1]

    @property
    def cseq(self) -> Optional[tuple]:
        """CSeq as ``(number, method)``."""
        raw = self.get_header("CSeq")
        if not raw:
            return None
        num, _, method = raw.strip().partition(" ")
        try:
            return int(num), method.strip()
        except ValueError:
            return None

    @property
    def actions(self) -> list:
        """What the handlers did with this message (see :class:`~siphon_sdk.types.Action`)."""
        return self._actions

    @property
    def last_action(self) -> Optional[Action]:
        return self._actions[-1] if self._actions else None


def _parse_wire(text: str):
    """Raw SIP -> (start line, [(name, value)], body bytes)."""
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            n, v = headers[-1]
            headers[-1] = (n, v + " " + line.strip())
            continue
        name, _, value = line.partition(":")
        name = name.strip()
        headers.append((_COMPACT.get(name.lower(), name) if len(name) == 1 else name, value.strip()))
    return lines[0], headers, body.encode() if body else None


class Request(_Message):
    """A SIP request. Every argument is optional::

        Request(method="REGISTER", ruri="sip:example.com", from_uri="sip:alice@example.com",
                headers={"Contact": "<sip:alice@192.0.2.10:5060>"})

    ``to_uri`` defaults to ``ruri``; tags, Call-ID and CSeq are generated when omitted;
    ``auth_user`` is an identity established before the script runs (the request reaches the
    handlers with ``request.auth_user`` already set); ``contact_expires`` becomes an Expires
    header; a list value in ``headers`` becomes one header line per item.
    """

    def __init__(self, method: str = "INVITE", ruri: Union[str, SipUri] = "sip:bob@example.com",
                 from_uri: Union[str, SipUri, None] = "sip:alice@example.com",
                 to_uri: Union[str, SipUri, None] = None, from_tag: Optional[str] = None,
                 to_tag: Optional[str] = None, call_id: Optional[str] = None,
                 cseq: Optional[tuple] = None, max_forwards: int = 70,
                 body: Union[bytes, str, None] = None, content_type: Optional[str] = None,
                 transport: str = "udp", client_transport: Optional[str] = None,
                 source_ip: str = "127.0.0.1", source_port: int = 5060,
                 user_agent: Optional[str] = None, auth_user: Optional[str] = None,
                 contact_expires: Optional[int] = None, event: Optional[str] = None,
                 headers=None) -> None:
        n = next(_seq)
        self._method = method
        self._ruri = SipUri.parse(ruri) or SipUri()
        self._transport = transport
        self._client_transport = client_transport
        self._source_ip = source_ip
        self._source_port = source_port
        self._auth_user = auth_user
        self._actions = []
        self._body = body.encode() if isinstance(body, str) else body
        seq, cseq_method = cseq if cseq else (1, method)
        to = f"<{SipUri.parse(to_uri) or self._ruri}>" + (f";tag={to_tag}" if to_tag else "")
        call_id = call_id or f"sdk{n}-{id(self):x}@{source_ip}"
        branch = "z9hG4bKsdk" + "".join(c for c in f"{call_id}{seq}{n}" if c.isalnum())[:24]
        fixed = [
            ("Via", f"SIP/2.0/{transport.upper()} {source_ip}:{source_port};branch={branch}"),
            ("Max-Forwards", str(max_forwards)),
        ]
        if from_uri is not None:
            fixed.append(("From", f"<{SipUri.parse(from_uri)}>;tag={from_tag or f'sdk{n}'}"))
        fixed += [("To", to), ("Call-ID", call_id), ("CSeq", f"{seq} {cseq_method}")]
        if user_agent:
            fixed.append(("User-Agent", user_agent))
        if event:
            fixed.append(("Event", event))
        if contact_expires is not None:
            fixed.append(("Expires", str(contact_expires)))
        self._set_headers(headers)
        given = {n.lower() for n, _ in self._headers}
        self._headers = [h for h in fixed if h[0].lower() not in given] + self._headers
        if self._body and content_type and "content-type" not in given:
            self._headers.append(("Content-Type", content_type))

    @classmethod
    def _from_wire(cls, text: str, *, transport="udp", source_ip="127.0.0.1", source_port=5060,
                   auth_user=None, actions=None) -> "Request":
        self = cls.__new__(cls)
        start, self._headers, self._body = _parse_wire(text)
        parts = start.split(" ")
        self._method = parts[0]
        self._ruri = SipUri.parse(parts[1] if len(parts) > 1 else "") or SipUri()
        self._transport = transport
        self._client_transport = None
        self._source_ip = source_ip
        self._source_port = source_port
        self._auth_user = auth_user
        self._actions = list(actions or [])
        return self

    def to_sip(self) -> str:
        """The request as it goes on the wire (Content-Length computed)."""
        body = self._body or b""
        lines = [f"{self._method} {self._ruri} SIP/2.0"]
        lines += [f"{n}: {v}" for n, v in self._headers if n.lower() != "content-length"]
        lines.append(f"Content-Length: {len(body)}")
        return "\r\n".join(lines) + "\r\n\r\n" + body.decode("utf-8", "replace")

    @property
    def method(self) -> str:
        return self._method

    @property
    def ruri(self) -> SipUri:
        return self._ruri

    @property
    def in_dialog(self) -> bool:
        return self.from_tag is not None and self.to_tag is not None

    @property
    def max_forwards(self) -> Optional[int]:
        raw = self.get_header("Max-Forwards")
        return int(raw) if raw and raw.strip().isdigit() else None

    @property
    def transport(self) -> str:
        return self._transport

    @property
    def client_transport(self) -> Optional[str]:
        return self._client_transport

    @property
    def source_ip(self) -> str:
        return self._source_ip

    @property
    def source_port(self) -> int:
        return self._source_port

    @property
    def user_agent(self) -> Optional[str]:
        return self.get_header("User-Agent")

    @property
    def auth_user(self) -> Optional[str]:
        return self._auth_user

    @property
    def contact_expires(self) -> Optional[int]:
        for value in self.get_headers("Contact"):
            for p in value.split(">")[-1].split(";"):
                name, _, val = p.strip().partition("=")
                if name.lower() == "expires" and val.isdigit():
                    return int(val)
        raw = self.get_header("Expires")
        return int(raw) if raw and raw.strip().isdigit() else None

    @property
    def event(self) -> Optional[str]:
        return self.get_header("Event")

    def __repr__(self) -> str:
        return f"<Request {self._method} {self._ruri}>"
