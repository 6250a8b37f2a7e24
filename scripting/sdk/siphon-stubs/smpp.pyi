"""siphon.smpp: the SMPP 3.4 extension's script namespace (the node built with ``smpp``).

ESMEs bind to siphon's SMPP listener; ``@smpp.on_bind`` decides each bind,
``@smpp.on_pdu(command)`` answers each PDU, ``@smpp.on_session(event)`` sees sessions come
and go, and ``deliver_to``/``data_to``/``alert_to`` push PDUs to a bound ESME. Outbound binds
carry ``submit_via``/``submit_multi_via``/``data_via``/``cancel_via``/``query_via``/
``replace_via`` to upstream SMSCs. Handlers may be plain or ``async def``.
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

__all__ = [
    "on_bind", "on_pdu", "on_session",
    "deliver_to", "data_to", "alert_to",
    "submit_via", "submit_multi_via", "data_via", "cancel_via", "query_via", "replace_via",
    "Bind", "BindResult", "Session", "Pdu", "PduReply", "AlertNotification", "SmppResp",
    "QueryResp", "STATUSES", "COMMANDS",
    "bind_address", "config", "binds", "routing_rules",
]

STATUSES: dict[str, int]
"""The ``command_status`` names a script may use (``"ESME_ROK"``, ``"ESME_RTHROTTLED"``, ...)."""
COMMANDS: tuple[str, ...]
"""The commands ``on_pdu`` accepts."""
TLVS: dict[str, tuple[int, int]]
"""Standard TLV names -> (tag, integer width or 0 for octets)."""

_Tlvs = Mapping[str | int, int | str | bytes]
_BindHook = TypeVar("_BindHook", bound=Callable[[Bind], Any])
_PduHook = TypeVar("_PduHook", bound=Callable[[Pdu, Session], Any])
_SessionHook = TypeVar("_SessionHook", bound=Callable[[Session], Any])

class Session:
    """A bound SMPP session."""

    kind: str
    """``"esme"`` (an ESME bound to us) or ``"bind"`` (one of our outbound binds)."""
    session_id: str
    system_id: str
    client_addr: str
    def __init__(self, kind: str, session_id: str, system_id: str, client_addr: str) -> None: ...

class BindResult:
    """What ``Bind.accept()``/``reject()`` return; truthy when it accepts."""

    accept: bool
    status: str
    reason: str
    def __init__(self, accept: bool, status: str = "ESME_ROK", reason: str = "") -> None: ...
    def __bool__(self) -> bool: ...

class Bind:
    """A bind request."""

    system_id: str
    password: str
    system_type: str
    bind_type: str
    """``"transceiver"``, ``"transmitter"`` or ``"receiver"``."""
    interface_version: int
    client_addr: str
    def __init__(self, system_id: str, password: str, client_addr: str, system_type: str = "",
                 bind_type: str = "transceiver", interface_version: int = 0x34) -> None: ...
    def accept(self) -> BindResult: ...
    def reject(self, status: str = "ESME_RBINDFAIL", reason: str = "") -> BindResult: ...

class PduReply:
    """A handler's answer (``pdu.reply(...)`` / ``pdu.reply_query(...)``)."""

    command_status: str
    message_id: str | None
    tlvs: _Tlvs | None
    message_state: int | None
    final_date: str
    error_code: int
    def __init__(self, *, command_status: str = "ESME_ROK", message_id: str | None = None,
                 tlvs: _Tlvs | None = None, message_state: int | None = None,
                 final_date: str = "", error_code: int = 0, _query: bool = False) -> None: ...
    @property
    def ok(self) -> bool: ...

class SmppResp:
    """The result of a send helper."""

    command_status: str
    message_id: str
    def __init__(self, command_status: str, message_id: str = "") -> None: ...
    @property
    def ok(self) -> bool:
        """``command_status == "ESME_ROK"``."""

class QueryResp(SmppResp):
    """The result of ``query_via``."""

    message_state: int
    final_date: str
    error_code: int
    def __init__(self, command_status: str, message_id: str = "", message_state: int = 0,
                 final_date: str = "", error_code: int = 0) -> None: ...

class Pdu:
    """An inbound PDU. ``body`` is the text (message_payload if present, else short_message);
    ``tlvs`` maps tag -> value octets; ``tlv(name|tag)`` reads one."""

    command: str
    message_id: str
    service_type: str
    source_addr: str
    destination_addr: str
    source_addr_ton: int
    source_addr_npi: int
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    protocol_id: int
    priority_flag: int
    registered_delivery: int
    data_coding: int
    short_message: bytes
    sm_length: int
    destinations: list[str]
    def __init__(self, core: int, ev_id: int, command: str, fields: dict[str, Any],
                 session: Session) -> None: ...
    @property
    def tlvs(self) -> dict[int, bytes]: ...
    def tlv(self, key: str | int) -> bytes | None: ...
    @property
    def message_payload(self) -> bytes | None: ...
    @property
    def body(self) -> bytes: ...
    @property
    def receipted_message_id(self) -> str | None: ...
    @property
    def message_state(self) -> int | None: ...
    @property
    def user_message_reference(self) -> int | None: ...
    @property
    def sar_msg_ref_num(self) -> int | None: ...
    @property
    def sar_total_segments(self) -> int | None: ...
    @property
    def sar_segment_seqnum(self) -> int | None: ...
    @property
    def more_messages_to_send(self) -> int | None: ...
    @property
    def network_error_code(self) -> tuple[int, int] | None:
        """``(network_type, error_code)``."""
    @property
    def is_tpdu(self) -> bool: ...
    @property
    def is_dlr(self) -> bool:
        """A delivery receipt (esm_class bit 2)."""
    @property
    def receipt(self) -> dict[str, Any] | None:
        """A DLR's fields (``id``, ``stat``, ``err``, ``text``, ..., ``raw``), else None."""
    def reply(self, *, command_status: str = "ESME_ROK", message_id: str | None = None,
              tlvs: _Tlvs | None = None) -> PduReply:
        """The answer to return (``tlvs`` only on data_sm)."""
    def reply_query(self, *, message_state: int, message_id: str | None = None,
                    final_date: str = "", error_code: int = 0) -> PduReply:
        """The answer to a query_sm."""

class AlertNotification:
    command: str
    source_addr: str
    esme_addr: str
    ms_availability_status: int | None
    def __init__(self, fields: dict[str, Any]) -> None: ...

def bind_address() -> str:
    """The inbound listener's ``"host:port"``."""
def config() -> dict[str, Any]:
    """The loaded smpp config (``{server, binds, routing}``)."""
def binds() -> list[dict[str, Any]]:
    """The outbound binds (no password, timers or tls)."""
def routing_rules() -> tuple[list[Any], list[Any]]:
    """``(default_chain, rules)``."""
def on_bind(fn: _BindHook) -> _BindHook:
    """``@smpp.on_bind``: ``(bind) -> bind.accept() | bind.reject(status) | bool``."""
def on_pdu(command: str) -> Callable[[_PduHook], _PduHook]:
    """``@smpp.on_pdu("submit_sm")``: ``(pdu, session) -> pdu.reply(...) | None``."""
def on_session(event: str) -> Callable[[_SessionHook], _SessionHook]:
    """``@smpp.on_session("bound"|"unbound")``: ``(session)``."""
def deliver_to(*, session_id: str, source_addr: str, destination_addr: str,
               short_message: str | bytes, source_addr_ton: int = 1, source_addr_npi: int = 1,
               dest_addr_ton: int = 1, dest_addr_npi: int = 1, service_type: str = "",
               esm_class: int = 0, protocol_id: int = 0, priority_flag: int = 0,
               schedule_delivery_time: str = "", validity_period: str = "",
               registered_delivery: int = 0, replace_if_present_flag: int = 0,
               data_coding: int = 0, sm_default_msg_id: int = 0,
               tlvs: _Tlvs | None = None) -> Awaitable[SmppResp]:
    """deliver_sm to a bound receiver/transceiver ESME."""
def data_to(*, session_id: str, source_addr: str, destination_addr: str,
            short_message: str | bytes = b"", source_addr_ton: int = 1, source_addr_npi: int = 1,
            dest_addr_ton: int = 1, dest_addr_npi: int = 1, service_type: str = "",
            esm_class: int = 0, registered_delivery: int = 0, data_coding: int = 0,
            tlvs: _Tlvs | None = None) -> Awaitable[SmppResp]:
    """data_sm to a bound ESME (``short_message`` goes in MESSAGE_PAYLOAD)."""
def alert_to(*, session_id: str, source_addr: str, esme_addr: str, source_addr_ton: int = 1,
             source_addr_npi: int = 1, esme_addr_ton: int = 1, esme_addr_npi: int = 1,
             ms_availability_status: int | None = None) -> Awaitable[SmppResp]:
    """alert_notification (no response PDU)."""
def submit_via(*, bind: str, source_addr: str, destination_addr: str,
               short_message: str | bytes, source_addr_ton: int = 1, source_addr_npi: int = 1,
               dest_addr_ton: int = 1, dest_addr_npi: int = 1, service_type: str = "",
               esm_class: int = 0, protocol_id: int = 0, priority_flag: int = 0,
               schedule_delivery_time: str = "", validity_period: str = "",
               registered_delivery: int = 0, replace_if_present_flag: int = 0,
               data_coding: int = 0, sm_default_msg_id: int = 0,
               tlvs: _Tlvs | None = None, store: bool = False,
               esme: Session | str | None = None) -> Awaitable[SmppResp]:
    """submit_sm through the outbound bind ``bind``; KeyError at the await when it is not
    bound, RuntimeError for a receiver bind, a generic_nack, a timeout or a lost link.
    ``store=True`` (ours; smpp.yaml ``store_and_forward``): returns our id once the message
    is durably queued; ``esme`` is whom the SMSC's receipt goes back to."""
def submit_multi_via(*, bind: str, source_addr: str, destinations: Iterable[str],
                     short_message: str | bytes, source_addr_ton: int = 1,
                     source_addr_npi: int = 1, dest_addr_ton: int = 1, dest_addr_npi: int = 1,
                     service_type: str = "", esm_class: int = 0, protocol_id: int = 0,
                     priority_flag: int = 0, schedule_delivery_time: str = "",
                     validity_period: str = "", registered_delivery: int = 0,
                     replace_if_present_flag: int = 0, data_coding: int = 0,
                     sm_default_msg_id: int = 0,
                     tlvs: _Tlvs | None = None, store: bool = False,
                     esme: Session | str | None = None) -> Awaitable[SmppResp]:
    """submit_multi to up to 254 addresses; ``store``/``esme`` as for ``submit_via`` (one id,
    one receipt per destination)."""
def data_via(*, bind: str, source_addr: str, destination_addr: str,
             short_message: str | bytes = b"", source_addr_ton: int = 1,
             source_addr_npi: int = 1, dest_addr_ton: int = 1, dest_addr_npi: int = 1,
             service_type: str = "", esm_class: int = 0, registered_delivery: int = 0,
             data_coding: int = 0, tlvs: _Tlvs | None = None, store: bool = False,
             esme: Session | str | None = None) -> Awaitable[SmppResp]:
    """data_sm through ``bind`` (``short_message`` in MESSAGE_PAYLOAD, up to 64 KiB);
    ``store``/``esme`` as for ``submit_via``."""
def cancel_via(*, bind: str, message_id: str, source_addr: str = "",
               destination_addr: str = "", service_type: str = "", source_addr_ton: int = 1,
               source_addr_npi: int = 1, dest_addr_ton: int = 1,
               dest_addr_npi: int = 1) -> Awaitable[SmppResp]: ...
def query_via(*, bind: str, message_id: str, source_addr: str = "", source_addr_ton: int = 1,
              source_addr_npi: int = 1) -> Awaitable[QueryResp]: ...
def replace_via(*, bind: str, message_id: str, source_addr: str = "", source_addr_ton: int = 1,
                source_addr_npi: int = 1, schedule_delivery_time: str = "",
                validity_period: str = "", registered_delivery: int = 0,
                sm_default_msg_id: int = 0,
                short_message: str | bytes = b"") -> Awaitable[SmppResp]: ...
