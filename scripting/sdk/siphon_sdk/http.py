"""``siphon_sdk.http``: the names upstream's SDK exports from this module, for tests written
against it (``from siphon_sdk.http import MockResponse, HttpStatusError``).

Here they are the harness's own classes (``siphon_sdk.http_testing``): ``MockResponse`` answers
a script's ``http.Client`` call, ``HttpStatusError`` is what its ``raise_for_status()`` raises,
``MockHttp`` is the harness's ``h.http``. Scripts run in the real engine, so there is no
``MockRequest``/``MockClient``: a script's ``http.Request`` and ``http.Client`` are the
runtime's own.
"""

from .http_testing import HttpStatusError, MockHttp, MockResponse

__all__ = ["HttpStatusError", "MockHttp", "MockResponse"]
