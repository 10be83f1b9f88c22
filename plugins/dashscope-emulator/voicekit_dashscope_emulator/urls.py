"""Which file URLs the emulator fetches (it must not fetch whatever a caller names)."""

from __future__ import annotations

import httpx


class UrlPolicy:
    """Which ``http(s)`` file URLs the emulator fetches: loopback ones (``localhost``, 127.0.0.0/8,
    ``[::1]``) and those under one of ``prefixes`` (same scheme, host and port, and a path that
    starts with the prefix's path). ``oss://`` keys of its own upload store are always allowed.
    Anything else is refused without a request: an emulator reachable from the network must not
    fetch whatever a caller names (a server-side request forger). Redirects are never followed."""

    def __init__(self, prefixes: tuple[str, ...] = ()) -> None:
        self.prefixes: tuple[httpx.URL, ...] = tuple(self._prefix(p) for p in prefixes)

    def __repr__(self) -> str:
        return f"UrlPolicy({tuple(str(p) for p in self.prefixes)!r})"

    @staticmethod
    def _prefix(text: str) -> httpx.URL:
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, TypeError, ValueError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            from voicekit.errors import ConfigError

            raise ConfigError(f"URL prefix {text!r} is not an http(s) URL prefix; give one such as "
                              "https://files.example.com/audio/")
        return url

    def allows(self, url: str) -> bool:
        from voicekit.serve import is_loopback

        try:
            u = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            return False
        if u.scheme not in ("http", "https") or not u.host or {".", ".."} & set(u.path.split("/")):
            return False
        if is_loopback(u.host):
            return True
        return any((p.scheme, p.host, p.port) == (u.scheme, u.host, u.port) and u.path.startswith(p.path or "/")
                   for p in self.prefixes)

    def refusal(self, url: str) -> str:
        """Why ``url`` is not fetched, and what to do about it."""
        return (f"The audio file cannot be downloaded: this emulator fetches only loopback URLs and its own "
                f"uploads (oss://), not {url[:200]!r}; start it with --allow-url-prefix PREFIX to allow more.")
