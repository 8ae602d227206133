"""Hiding camera credentials wherever a source is printed: ``/healthz``, events, logs, error messages.

:func:`redact` takes a configured ``source`` (a URL, a GStreamer pipeline, a device, a path) and returns it
with

* the userinfo of every ``scheme://user:password@host`` replaced by ``user:***`` (``***`` alone when there
  is no ``:``, since a lone user part is often a token). The userinfo runs to the *last* ``@`` that is
  followed by a host, so passwords holding ``@ # / ?`` (``rtsp://admin:p@ss#w/rd?x@10.0.0.1/stream``) are
  hidden whole; when in doubt more is hidden, never less;
* the value of every credential-like query parameter (``user``, ``password``, ``pwd``, ``token``, ``key``,
  ``auth``, ``secret``, ``apikey``, ``access_token``, ``signature``, ``sig``... case-insensitive, and names
  ending in ``token``, ``secret``, ``password``, ``signature``...) replaced by ``***``;
* in a GStreamer pipeline, the same for element properties (``rtspsrc user-pw=... proxy-pw=...``).

Device numbers, device paths and ordinary file paths come back unchanged. :func:`redact_text` does the
same for free text (an error message that may quote a URL), given the raw source to scrub first.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["is_secret_name", "redact", "redact_text", "split_authority"]

MASK = "***"

_SECRET_NAMES = frozenset(
    {
        "user",
        "username",
        "userid",
        "login",
        "pass",
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "pw",
        "token",
        "key",
        "auth",
        "authorization",
        "secret",
        "apikey",
        "accesstoken",
        "signature",
        "sig",
        "credential",
        "credentials",
        "proxyid",
        "session",
        "sessionid",
    }
)
_SECRET_SUFFIXES = (
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "pw",
    "signature",
    "credential",
    "credentials",
    "key",
    "auth",
    "user",
    "username",
    "userid",
)

_SCHEME = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://")
# host (name, IPv4 or [IPv6]) with an optional port, then the end of the authority
_HOST = re.compile(r"(?:\[[0-9A-Za-z:.%]*\]|[0-9A-Za-z._~%-]*)(?::[^/?#@\s\"']*)?(?=[/?#;\s\"']|$)")
# name=value after ? & ; (URL query) or at a word start (a GStreamer property); quoted values whole
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&#;?]+)=(?P<value>[^&#;]*)")
_PARAM = re.compile(r"(?P<lead>^|[?&;\s])(?P<name>[A-Za-z0-9_.%-]+)=(?P<value>\"[^\"]*\"|'[^']*'|[^&#;\s\"']*)")


_URL_END = re.compile(r"[\s\"']")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or property called ``name`` carries a credential."""
    key = re.sub(r"[^a-z0-9]", "", unquote(name).lower())
    return key in _SECRET_NAMES or key.endswith(_SECRET_SUFFIXES)


def split_authority(rest: str) -> tuple[str | None, str, str]:
    """``(userinfo, host[:port], remainder)`` of a URL after ``scheme://``: the userinfo runs to the last
    ``@`` followed by a host (``None`` without one), so a password may hold ``@ # / ?``."""
    userinfo = None
    start = 0
    for at in reversed([i for i, ch in enumerate(rest) if ch == "@"]):
        if _HOST.match(rest, at + 1):
            userinfo, start = rest[:at], at + 1
            break
    else:
        if "@" in rest:  # no host after any '@': hide up to the last one rather than print a password
            at = rest.rindex("@")
            userinfo, start = rest[:at], at + 1
    host = _HOST.match(rest, start)
    end = host.end() if host else start
    return userinfo, rest[start:end], rest[end:]


def _mask_params(text: str, pattern: re.Pattern[str] = _PARAM) -> str:
    def sub(match: re.Match[str]) -> str:
        if not is_secret_name(match.group("name")):
            return match.group(0)
        value = match.group("value")
        quote = value[0] if value[:1] in ("'", '"') else ""
        return f"{match.group('lead')}{match.group('name')}={quote}{MASK}{quote}"

    return pattern.sub(sub, text)


def _redact_url(url: str) -> str:
    """One URL (``scheme://...``) with its userinfo and secret query values hidden."""
    scheme = _SCHEME.match(url)
    assert scheme is not None
    userinfo, host, remainder = split_authority(url[scheme.end() :])
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:{MASK}" if colon and not re.search(r"[/?#@\s]", user) else MASK
        host = f"{shown}@{host}"
    return url[: scheme.end()] + host + _mask_params(remainder, _QUERY_PARAM)


def redact(source: object) -> str:
    """``source`` as it may be shown (see the module docstring)."""
    text = str(source)
    if "://" not in text and "=" not in text:
        return text  # a device, a number, a plain path
    if _SCHEME.match(text.strip()) and "!" not in text:
        return _redact_url(text)  # a whole URL: spaces and quotes may be part of the password
    return redact_text(text)


def redact_text(text: str, source: object | None = None) -> str:
    """Free text (an error message, a pipeline) with every URL and credential property in it hidden;
    ``source``: the raw configured source, replaced by :func:`redact` of it first wherever it appears."""
    if source is not None:
        raw = str(source)
        if raw and raw in text:
            text = text.replace(raw, redact(raw))
    # each scheme:// up to whitespace or a quote is a URL; properties elsewhere (GStreamer) are masked too
    pieces: list[str] = []
    last = 0
    for match in _SCHEME.finditer(text):
        if match.start() < last:
            continue
        quote = text[match.start() - 1] if match.start() and text[match.start() - 1] in "\"'" else ""
        end = text.find(quote, match.end()) if quote else -1  # a quoted URL may hold spaces
        if end < 0:
            found = _URL_END.search(text, match.end())
            end = found.start() if found else len(text)
        stop = end
        pieces.append(_mask_params(text[last : match.start()]))
        pieces.append(_redact_url(text[match.start() : stop]))
        last = stop
    pieces.append(_mask_params(text[last:]))
    return "".join(pieces)
