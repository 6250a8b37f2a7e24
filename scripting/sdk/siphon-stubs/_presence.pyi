"""The ``presence`` namespace: SIPhon's signatures over the node's presence store (PUBLISH
compositor, RFC 3903; SUBSCRIBE/NOTIFY notifier, RFC 6665/3856), shared by every core."""

from typing import Any

class _Presence:
    def publish(self, entity: str, pidf_xml: str | bytes, expires: int = 3600) -> str:
        """Publish ``pidf_xml`` for ``entity``; returns the SIP-ETag ("" when the PUBLISH
        being handled was refused)."""
    def lookup(self, entity: str) -> str | None:
        """The composed PIDF of ``entity``, or None."""
    def subscribe(self, subscriber: str, resource: str, event: str = "presence",
                  expires: int = 3600) -> str:
        """Record a watcher without a dialog (state ``init``); returns its id."""
    def subscribe_dialog(self, subscriber: str, resource: str, event: str, expires: int,
                         call_id: str, from_tag: str, to_tag: str,
                         route_set: list[str] | None = None, local_uri: str | None = None,
                         remote_uri: str | None = None) -> str:
        """Record a subscription with its dialog so ``notify()`` can send in-dialog NOTIFYs;
        returns its id."""
    def unsubscribe(self, subscription_id: str) -> bool: ...
    def refresh(self, subscription_id: str, expires: int) -> bool: ...
    def find_by_dialog(self, call_id: str, from_tag: str) -> str | None: ...
    def subscribers(self, resource: str) -> list[dict[str, Any]]:
        """Live watchers: dicts with ``id``, ``subscriber``, ``event``, ``state``,
        ``remaining``."""
    def subscription_count(self) -> int: ...
    def document_count(self) -> int: ...
    def expire_stale(self) -> None: ...
    def notify(self, subscription_id: str, body: str | bytes | None = None,
               content_type: str | None = None, subscription_state: str = "active") -> None:
        """Send an in-dialog NOTIFY; ValueError for an unknown id or one without dialog."""
    def terminate(self, subscription_id: str, reason: str | None = None,
                  body: str | bytes | None = None, content_type: str | None = None) -> bool:
        """Final NOTIFY (``terminated;reason=...``) and removal; False if the id is unknown."""
    def parse_reginfo(self, xml: str | bytes) -> dict[str, Any]:
        """Parse an RFC 3680 ``application/reginfo+xml`` body; ValueError when malformed."""

presence: _Presence
