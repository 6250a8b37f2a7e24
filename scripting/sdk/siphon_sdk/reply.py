"""``Reply``: a SIP response as the harness API passes it around, with upstream
``siphon_sdk.reply.Reply``'s constructor and read accessors. :attr:`ReplyResult.reply
<siphon_sdk.testing.ReplyResult.reply>` is the response as the script left it (headers it set),
parsed from what the real engine produced."""

from __future__ import annotations

from typing import Optional, Union

from .request import Request, _Message, _parse_wire
from .types import SipUri


class Reply(_Message):
    """A SIP response: ``Reply(180, "Ringing", headers={"X-A": "1"})``. From, To and Call-ID
    default to those of the request it answers (see :meth:`SipTestHarness.send_reply`)."""

    def __init__(self, status_code: int = 200, reason: str = "OK",
                 from_uri: Union[str, SipUri, None] = None, to_uri: Union[str, SipUri, None] = None,
                 call_id: Optional[str] = None, body: Union[bytes, str, None] = None,
                 content_type: Optional[str] = None, headers=None,
                 source_ip: Optional[str] = None, source_port: Optional[int] = None) -> None:
        self._status_code = int(status_code)
        self._reason = reason
        self._source_ip = source_ip
        self._source_port = source_port
        self._actions = []
        self._body = body.encode() if isinstance(body, str) else body
        self._set_headers(headers)
        self._overrides = {"From": from_uri, "To": to_uri, "Call-ID": call_id}
        if self._body and content_type:
            self._headers.append(("Content-Type", content_type))

    @classmethod
    def _from_wire(cls, text: str, *, source_ip=None, source_port=None, actions=None) -> "Reply":
        self = cls.__new__(cls)
        start, self._headers, self._body = _parse_wire(text)
        parts = start.split(" ", 2)
        self._status_code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self._reason = parts[2] if len(parts) > 2 else ""
        self._source_ip = source_ip
        self._source_port = source_port
        self._actions = list(actions or [])
        self._overrides = {}
        return self

    def _to_sip(self, request: Request) -> str:
        """This response to ``request``: its Via, From, To, Call-ID and CSeq, then ours."""
        keep = []
        for name, value in request.headers:
            low = name.lower()
            if low in ("via", "from", "to", "call-id", "cseq"):
                over = self._overrides.get({"from": "From", "to": "To", "call-id": "Call-ID"}.get(low, ""))
                if over is not None and low in ("from", "to"):
                    tag = value.split(">", 1)[1] if ">" in value else ""
                    value = f"<{SipUri.parse(over)}>{tag}"
                elif over is not None:
                    value = str(over)
                keep.append((name, value))
        body = self._body or b""
        lines = [f"SIP/2.0 {self._status_code} {self._reason}"]
        lines += [f"{n}: {v}" for n, v in keep + self._headers if n.lower() != "content-length"]
        lines.append(f"Content-Length: {len(body)}")
        return "\r\n".join(lines) + "\r\n\r\n" + body.decode("utf-8", "replace")

    @property
    def status_code(self) -> int:
        return self._status_code

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def source_ip(self) -> Optional[str]:
        return self._source_ip

    @property
    def source_port(self) -> Optional[int]:
        return self._source_port

    def __repr__(self) -> str:
        return f"<Reply {self._status_code} {self._reason}>"
