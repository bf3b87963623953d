"""How the harness talks to a node: httpx, bounded, recorded, with tokens on demand.

    NodeClient.request(...)  -> httpx.Response      (recorded as evidence, never retried)
        raises NodeUnreachable (an httpx.TransportError) when the node does not answer:
        a timeout, a refused or reset connection, a broken response. The plugin turns it into
        the verdict `error`, never `fail`: the harness could not observe the node.

Every request has a timeout (from the budget). After `BREAKER_LIMIT` consecutive requests
without an answer, the node is taken to be down and further requests fail at once, so a hung
node costs seconds, not the run's whole budget. `transport` is the seam tests use to put a
planted-bug server behind the client without sockets.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from conformance.evidence import Recorder
from conformance.ics import ClientCredentials

__all__ = ["BREAKER_LIMIT", "NodeClient", "NodeUnreachable", "TokenRefused", "basic_authorization"]

BREAKER_LIMIT = 3


class NodeUnreachable(httpx.TransportError):
    """The node gave no HTTP answer; verdicts that depend on it are `error`."""


class TokenRefused(AssertionError):
    """The token endpoint refused the harness's own, declared-valid client: a node failure."""


class NodeClient:
    def __init__(
        self,
        base_url: str,
        credentials: ClientCredentials | None,
        recorder: Recorder,
        *,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.recorder = recorder
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self._tokens: dict[frozenset[str] | None, str] = {}
        self._failures_in_a_row = 0

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: Iterable[str] | None = None,
        token: str | None = None,
        authenticated: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One call. By default it carries a token of the main client (all its scopes);
        `scopes` asks for a narrower token, `token` sends the given one, and
        `authenticated=False` sends none."""
        sent = dict(headers or {})
        if authenticated and "authorization" not in {k.lower() for k in sent}:
            bearer = token if token is not None else self.token(scopes)
            sent["Authorization"] = f"Bearer {bearer}"
        return self.send(self._http.build_request(method, self.url(path), headers=sent, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def send(self, request: httpx.Request) -> httpx.Response:
        if self._failures_in_a_row >= BREAKER_LIMIT:
            message = f"not sent: the node gave no answer to {BREAKER_LIMIT} requests in a row"
            self.recorder.record(request, None, 0.0, message)
            raise NodeUnreachable(message)
        started = time.perf_counter()
        try:
            response = self._http.send(request)
            response.read()
        except httpx.HTTPError as exc:
            self._failures_in_a_row += 1
            elapsed = (time.perf_counter() - started) * 1000
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.recorder.record(request, None, elapsed, reason)
            raise NodeUnreachable(reason) from None
        self._failures_in_a_row = 0
        self.recorder.record(request, response, (time.perf_counter() - started) * 1000)
        return response

    def token_response(
        self,
        *,
        scopes: Iterable[str] | None = None,
        credentials: ClientCredentials | None = None,
        form: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The raw answer of the token endpoint (client credentials, HTTP Basic)."""
        client = credentials or self.credentials
        if client is None:
            raise RuntimeError("no client credentials were configured for this node")
        data = dict(form) if form is not None else {"grant_type": "client_credentials"}
        if scopes is not None and form is None:
            data["scope"] = " ".join(sorted(scopes))
        url = client.token_url or self.url("/v1/oauth/token")
        basic = basic_authorization(client.client_id, client.client_secret)
        request = self._http.build_request("POST", url, data=data, headers={"Authorization": basic})
        return self.send(request)

    def token(self, scopes: Iterable[str] | None = None) -> str:
        """An access token of the main client, cached per scope set for the run."""
        key = frozenset(scopes) if scopes is not None else None
        if key not in self._tokens:
            response = self.token_response(scopes=key)
            if response.status_code != 200:
                raise TokenRefused(
                    f"the token endpoint refused the declared client: {response.status_code}"
                    f" {response.text[:200]}"
                )
            self._tokens[key] = str(response.json()["access_token"])
        return self._tokens[key]

    def forget_tokens(self) -> None:
        self._tokens.clear()


def basic_authorization(client_id: str, secret: str) -> str:
    """HTTP Basic as RFC 6749 section 2.3.1 wants it: each part form-encoded first."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(pair).decode()
