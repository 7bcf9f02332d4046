"""GET over HTTP(S) with the standard library: redirects followed (a token never follows
them), a timeout for connecting and one for each wait for data, errors that never name
the URL (FetchError).
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse

if __package__:  # imported as part of localcompute (the engine, the tests)
    from localcompute.helper.document import FetchError, Timeouts
else:  # run in the helper image, beside the other helper modules
    from document import FetchError, Timeouts  # type: ignore[import-not-found,no-redef]

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "localcompute-fetch/1"
# Characters left as they are when a request target is quoted: everything that is
# legal in a URL, so only spaces, controls and non-ASCII get percent-encoded.
URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def open_response(
    url: str, timeouts: Timeouts, headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET url, following up to MAX_REDIRECTS redirects; the caller closes the connection.
    `headers` (the server's token) go to the first host only, never where it redirects."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = parse_url(url)
        connection = connect(parts, timeouts)
        try:
            response = send_get(connection, parts, timeouts, headers)
            headers = None
            next_url = redirect_target(url, response)
        except BaseException:
            connection.close()
            raise
        if next_url is None:
            return connection, response
        connection.close()
        url = next_url
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def parse_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError("only http and https URLs are supported")
    if not parts.hostname:
        raise FetchError("URL has no host")
    try:
        _ = parts.port  # parsed lazily: raises ValueError, naming the URL, for a bad port
    except ValueError as exc:
        raise FetchError("URL has an invalid port") from exc
    return parts


def connect(parts: urllib.parse.SplitResult, timeouts: Timeouts) -> http.client.HTTPConnection:
    """Connect within the connect timeout, then switch the socket to the idle timeout.

    A socket timeout bounds each wait for data, not the whole transfer (unlike a single
    urllib timeout would in effect), so a slow download that keeps making progress
    never fails, while one that stalls for longer than idle does.
    """
    host = parts.hostname or ""
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeouts.connect, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeouts.connect)
    try:
        connection.connect()
        connection.sock.settimeout(timeouts.idle)
    except TimeoutError as exc:
        connection.close()
        raise FetchError(f"connect timed out after {timeouts.connect:g} s") from exc
    except BaseException:
        connection.close()
        raise
    return connection


def send_get(
    connection: http.client.HTTPConnection,
    parts: urllib.parse.SplitResult,
    timeouts: Timeouts,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        connection.request(
            "GET",
            urllib.parse.quote(target, safe=URL_SAFE),
            headers={"User-Agent": USER_AGENT, **(headers or {})},
        )
        return connection.getresponse()
    except TimeoutError as exc:
        raise FetchError(f"no response within {timeouts.idle:g} s") from exc


def redirect_target(url: str, response: http.client.HTTPResponse) -> str | None:
    """The URL a redirect points to, None for a success; raises for any other status."""
    if response.status in REDIRECT_STATUSES:
        location = response.getheader("Location")
        if not location:
            raise FetchError(f"HTTP {response.status} redirect without a Location")
        # urljoin resolves a relative Location against the URL that answered.
        return urllib.parse.urljoin(url, location)
    if 200 <= response.status < 300:
        return None
    raise FetchError(f"HTTP {response.status}")
