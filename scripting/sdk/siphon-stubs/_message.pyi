"""``Request``, ``Reply``, ``SipUri``, ``Contact`` and ``Flow``.

Request and Reply are views of the message of the current event: fields are read lazily from
the engine and actions (``reply``, ``relay``, ``fork``) are recorded and carried out after the
handlers return. A view must not be kept past its event.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

class SipUri:
    """A SIP, SIPS or TEL URI value. Setting ``user``/``host``/``port`` on ``request.ruri``
    edits the request's Request-URI."""

    scheme: str
    """``"sip"``, ``"sips"`` or ``"tel"`` (lower case)."""
    params: dict[str, str | None]
    """URI parameters (``;transport=tcp`` -> ``{"transport": "tcp"}``; a flag maps to None)."""
    headers: str
    """The URI's ``?headers`` part, unparsed ("" when none)."""
    def __init__(self, uri: object) -> None:
        """Parse ``uri`` (its ``str()``; surrounding ``<>`` are dropped)."""
    @property
    def user(self) -> str | None:
        """The user part (the number of a TEL URI); None when absent."""
    @user.setter
    def user(self, v: str | None) -> None: ...
    @property
    def host(self) -> str | None:
        """The host (an IPv6 address keeps its brackets); None for a TEL URI."""
    @host.setter
    def host(self, v: str | None) -> None: ...
    @property
    def port(self) -> int | None:
        """The port, None when the URI has none."""
    @port.setter
    def port(self, v: int | str | None) -> None: ...
    @property
    def is_tel(self) -> bool:
        """A TEL URI, or a SIP URI with ``;user=phone``."""
    @property
    def is_local(self) -> bool:
        """The host is one of the node's ``domain.local`` names."""
    @property
    def user_params(self) -> dict[str, str]:
        """Parameters inside the user part (``sip:+1555;npdi@host``)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class Flow:
    """The inbound flow a binding's REGISTER came over (``Contact.flow``): pass it to
    ``request.relay(flow=...)``; ``request.fork(contacts)`` uses it per branch. Opaque."""

    transport: str
    """``"udp"``, ``"tcp"``, ``"tls"``, ``"ws"``, ``"wss"`` or ``"sctp"``."""
    remote_addr: str
    """The peer's ``ip:port``."""
    local_addr: str | None
    """The node's ``ip:port`` of the flow, when known."""
    def __init__(self, transport: str, remote_addr: str, local_addr: str | None = None) -> None: ...
    @property
    def is_alive(self) -> bool:
        """Always True here: the node checks the connection when it sends, and a dead stream
        falls back to the URI."""

class Contact:
    """A registered binding (``registrar.lookup``)."""

    uri: SipUri
    """The Contact URI."""
    q: float
    """The binding's q-value."""
    expires: int
    """Seconds until it expires."""
    age_secs: int
    """Seconds since it was last saved."""
    received: str | None
    """The REGISTER's source as ``sip:IP:PORT;transport=x`` (route to it for a UA behind NAT)."""
    path: list[str]
    """The REGISTER's Path values (RFC 3327)."""
    instance_id: str | None
    """``+sip.instance`` (RFC 5626), when given."""
    instance_epoch: int | None
    flow_token: str | None
    flow: Flow | None
    """The flow the REGISTER came over."""
    kind: str
    """``"ue"``."""
    params: list[Any]
    def __init__(self, uri: object, q: float = 1.0, expires: int = 0, age_secs: int = 0,
                 received: str | None = None, path: Iterable[str] = (),
                 instance_id: str | None = None) -> None: ...
    @property
    def is_local(self) -> bool:
        """The Contact URI's host is a ``domain.local`` name."""
    @property
    def sip_instance(self) -> str | None:
        """Same as ``instance_id``."""

class _Headers:
    """Header access shared by ``Request`` and ``Reply``."""

    def get_header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive, compact forms too), or None."""
    def header(self, name: str) -> str | None:
        """Same as ``get_header``."""
    def get_headers(self, name: str) -> list[str]:
        """Every value of header ``name``, in order."""
    def has_header(self, name: str) -> bool: ...
    def set_header(self, name: str, value: object) -> None:
        """Replace every ``name`` header with one of value ``str(value)``."""
    def remove_header(self, name: str) -> bool:
        """Remove every ``name`` header; True if there was one."""
    def remove_headers_matching(self, prefix: str) -> int:
        """Remove the headers whose name starts with ``prefix`` (case-insensitive); how many."""
    @property
    def from_uri(self) -> SipUri | None: ...
    @property
    def to_uri(self) -> SipUri | None: ...
    @property
    def from_tag(self) -> str | None: ...
    @property
    def to_tag(self) -> str | None: ...
    @property
    def call_id(self) -> str | None: ...
    @property
    def body(self) -> bytes | None:
        """The body, None when empty."""
    @property
    def content_type(self) -> str | None: ...
    def has_body(self, content_type: str | None = None) -> bool:
        """A non-empty body (of ``content_type``, parameters ignored, when given)."""
    @property
    def source_ip(self) -> str:
        """The address the message came from."""
    @property
    def source_port(self) -> int: ...
    def from_gateway(self, group: str) -> bool:
        """Whether the source is a gateway of ``group`` (no gateway groups here: False)."""

_ReplyCallback = Callable[[Request, Reply], Any]

class Request(_Headers):
    """The request of the current event (``@proxy.on_request`` and friends)."""

    method: str
    """``"INVITE"``, ``"REGISTER"``, ..."""
    is_ipsec_protected: bool
    matched_sa: Any
    flow: Flow | None
    route_user: str | None
    consumed_route_user: str | None
    consumed_routes: Sequence[str]
    consumed_route: str | None
    @property
    def ruri(self) -> SipUri:
        """The Request-URI; assign a ``SipUri`` or a string to replace it."""
    @ruri.setter
    def ruri(self, value: SipUri | str) -> None: ...
    def set_ruri(self, value: SipUri | str) -> None:
        """Replace the Request-URI."""
    @property
    def cseq(self) -> tuple[int, str]:
        """``(number, method)``."""
    @property
    def in_dialog(self) -> bool:
        """The request has a To tag."""
    @property
    def max_forwards(self) -> int | None: ...
    @property
    def transport(self) -> str:
        """The transport it came over (``"udp"``, ``"tcp"``, ``"tls"``, ...)."""
    @property
    def user_agent(self) -> str | None: ...
    @property
    def auth_user(self) -> str | None:
        """The user digest authentication established for this request."""
    @auth_user.setter
    def auth_user(self, v: str | None) -> None: ...
    @property
    def contact_expires(self) -> int | None:
        """The Contact's ``expires`` parameter, else the Expires header."""
    @property
    def event(self) -> str | None:
        """The Event header."""
    @property
    def client_transport(self) -> str: ...
    @property
    def client_is_secure(self) -> bool:
        """Came over TLS or WSS."""
    @property
    def propagation_stopped(self) -> bool: ...
    def stop_propagation(self) -> None:
        """Run no further handlers for this event."""
    def reply(self, code: int, reason: str | None = None, reliable: bool = False) -> None:
        """Answer the request (the standard reason phrase when ``reason`` is None)."""
    def relay(self, next_hop: SipUri | str | None = None, on_reply: _ReplyCallback | None = None,
              on_failure: _ReplyCallback | None = None, flow: Flow | None = None,
              send_socket: str | None = None) -> None:
        """Forward statefully (to ``next_hop``, or the Request-URI / route set), with optional
        per-transaction reply and failure callbacks ``(request, reply)``."""
    def fork(self, targets: SipUri | Contact | str | Iterable[SipUri | Contact | str],
             strategy: str = "parallel", send_socket: str | None = None) -> None:
        """Fork to URIs and/or registered ``Contact``s (``"parallel"`` or ``"sequential"``);
        a Contact's branch goes through its Path and over the flow its REGISTER came from."""
    def record_route(self) -> None:
        """Insert a Record-Route for the node."""
    def loose_route(self) -> bool:
        """RFC 3261 16.4: consume the top Route(s) naming this node; False when there is no
        Route or the top one names somebody else."""
    def ensure_header(self, name: str, value: object) -> None:
        """Add ``name`` unless the request has it."""
    def remove_from_header_list(self, name: str, value: str) -> None:
        """Remove one item from a comma-separated header (e.g. ``Supported``)."""
    def prepend_route(self, uri: SipUri | str) -> None: ...
    def add_path(self, uri: SipUri | str) -> None: ...
    def set_reply_header(self, name: str, value: object) -> None:
        """Set a header on the response ``reply()`` sends."""
    def add_reply_header(self, name: str, value: object) -> None:
        """Add a header to the response ``reply()`` sends."""
    def set_reply_to_tag(self, tag: object) -> None:
        """The To tag of the response ``reply()`` sends (ignored when the request has one)."""
    def set_reply_body(self, body: str | bytes, content_type: str) -> None: ...
    def set_body(self, body: str | bytes, content_type: str | None = None) -> None: ...
    def set_ruri_user(self, user: str | None) -> None: ...
    def set_ruri_host(self, host: str) -> None: ...
    def set_from_uri(self, uri: SipUri | str) -> None: ...
    def set_to_uri(self, uri: SipUri | str) -> None: ...
    def set_from_display(self, name: str | None) -> None: ...
    def set_to_display(self, name: str | None) -> None: ...
    def set_contact_uri(self, uri: SipUri | str) -> None: ...
    def set_contact_user(self, user: str | None) -> None: ...
    def fix_nated_contact(self) -> None:
        """Rewrite the Contact host:port to the packet's source address (NAT traversal)."""
    def fix_nated_register(self) -> None:
        """Mark the REGISTER's Contact with the source address (``;received=``)."""
    def source_ip_in(self, cidrs: str | Iterable[str]) -> bool:
        """The source address is in one of the networks ``cidrs``."""

class Reply(_Headers):
    """The response of a reply or failure event (``on_reply``, ``on_failure``,
    ``on_register_reply``)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason(self) -> str: ...
    def relay(self, body: bool = True) -> None:
        """Forward the response upstream."""
    def forward(self, body: bool = True) -> None:
        """Same as ``relay``."""
    def reject(self, code: int, reason: str | None = None) -> bool:
        """Replace a provisional response by a final ``code`` (3xx-6xx); False when the
        response is not provisional."""
    def withhold(self) -> None:
        """Do not forward this response."""

class DetachedReply:
    """A response delivered outside an event (``await proxy.send_request(...)``): a snapshot."""

    status_code: int
    reason: str
    body: bytes | None
    def get_header(self, name: str) -> str | None: ...
    def header(self, name: str) -> str | None: ...
    def get_headers(self, name: str) -> list[str]: ...
    def has_header(self, name: str) -> bool: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def call_id(self) -> str | None: ...
