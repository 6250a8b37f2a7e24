"""Value types of the SDK's harness API, with upstream ``siphon_sdk.types``' names.

:class:`SipUri` and :class:`Contact` are what a test builds (``registrar.add_contact``) and
reads back (``harness.registrar.lookup``); :class:`Action` is one thing a handler did, as
:attr:`RequestResult.actions <siphon_sdk.testing.RequestResult.actions>` lists them. The
script itself runs in the real engine and sees the engine's own ``siphon`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union


@dataclass
class SipUri:
    """A parsed ``sip:``/``sips:``/``tel:`` URI: ``SipUri(user="alice", host="example.com")``."""

    scheme: str = "sip"
    user: Optional[str] = None
    host: str = "localhost"
    port: Optional[int] = None
    params: dict = field(default_factory=dict)
    _is_local: bool = False

    @property
    def is_local(self) -> bool:
        """True when the host is one of the harness's ``local_domains``."""
        return self._is_local

    @property
    def is_tel(self) -> bool:
        return self.scheme == "tel"

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user or ''}"
        text = f"{self.scheme}:"
        if self.user is not None:
            text += f"{self.user}@"
        text += self.host
        if self.port is not None:
            text += f":{self.port}"
        for name, value in self.params.items():
            text += f";{name}" if value is None else f";{name}={value}"
        return text

    def __repr__(self) -> str:
        return f"SipUri({self})"

    @classmethod
    def parse(cls, value: Union[str, "SipUri", None]) -> Optional["SipUri"]:
        """``"<sip:bob@host:5070;transport=tcp>"`` -> SipUri; a SipUri is returned as is."""
        if value is None:
            return None
        if isinstance(value, SipUri):
            return value
        text = str(value).strip()
        if text.startswith("<"):
            text = text[1:].split(">", 1)[0]
        scheme, sep, rest = text.partition(":")
        if not sep:
            scheme, rest = "sip", text
        scheme = scheme.lower()
        if scheme == "tel":
            return cls(scheme="tel", user=rest.split(";", 1)[0], host="")
        rest = rest.split("?", 1)[0]
        hostport, *raw_params = rest.split(";")
        params = {}
        for p in raw_params:
            name, eq, val = p.partition("=")
            if name:
                params[name] = val if eq else None
        user = None
        if "@" in hostport:
            user, hostport = hostport.rsplit("@", 1)
        port = None
        if hostport.startswith("["):
            host, _, tail = hostport.partition("]")
            host += "]"
            if tail.startswith(":") and tail[1:].isdigit():
                port = int(tail[1:])
        else:
            host, colon, port_text = hostport.rpartition(":")
            if colon and port_text.isdigit():
                port = int(port_text)
            else:
                host = hostport
        return cls(scheme=scheme, user=user, host=host, port=port, params=params)


@dataclass
class Flow:
    """The transport and peer a binding's REGISTER came over."""

    transport: str = "udp"
    remote_addr: str = "0.0.0.0:0"
    local_addr: str = "0.0.0.0:0"

    @property
    def is_alive(self) -> bool:
        return True


@dataclass
class Contact:
    """A registered binding: what ``registrar.add_contact`` seeds and ``lookup`` returns.

    ``uri`` is the Contact URI string; ``q`` its preference (1.0 when absent); ``expires``
    the seconds left; ``path`` the Path route set (RFC 3327); ``received`` where the
    REGISTER came from as ``sip:IP:PORT;transport=x`` (``None`` for a seeded binding).
    """

    uri: str
    q: float = 1.0
    expires: int = 3600
    path: list = field(default_factory=list)
    instance_id: Optional[str] = None
    instance_epoch: Optional[str] = None
    is_local: bool = False
    flow_token: Optional[str] = None
    flow: Optional[Flow] = None
    params: list = field(default_factory=list)
    kind: str = "ue"
    received: Optional[str] = None
    age_secs: int = 0


@dataclass
class Action:
    """One thing a handler did: ``kind`` is ``"reply"``, ``"relay"``, ``"fork"``,
    ``"reject"`` or ``"record_route"``; the other fields belong to that kind."""

    kind: str
    status_code: Optional[int] = None
    reason: Optional[str] = None
    next_hop: Optional[str] = None
    targets: Optional[list] = None
    strategy: Optional[str] = None
    timeout: Optional[int] = None
    headers_set: dict = field(default_factory=dict)
    headers_removed: list = field(default_factory=list)
    extras: Optional[dict] = None
    reliable: bool = False
