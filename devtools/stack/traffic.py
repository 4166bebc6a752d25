"""A record of the requests the app's Azure clients send, for tests and benchmarks that count them."""

from __future__ import annotations

from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest


class Traffic:
    """Every request the app's Azure clients send, seen as each attempt leaves the pipeline (a
    ``raw_request_hook``), so tests count what an operation costs on the transports the app uses."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.access_tokens: set[str] = set()  # to prove that none of them leaks

    def __call__(self, request: PipelineRequest) -> None:
        http_request = request.http_request
        url = urlsplit(http_request.url)
        self.sent.append((http_request.method, url.netloc, url.path))
        authorization = http_request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            self.access_tokens.add(authorization.removeprefix("Bearer "))

    def requests_to(self, base_url: str) -> list[tuple[str, str]]:
        netloc = urlsplit(base_url).netloc
        return [(method, path) for method, host, path in self.sent if host == netloc]
