"""A console client over plain HTTP (requests): signs in through the form as a browser does
and posts forms with the page's CSRF token."""

from __future__ import annotations

import re
from typing import Any

import requests

__all__ = ["ConsoleClient", "csrf_of"]

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, f"no csrf_token field in the page:\n{html[:2000]}"
    return found.group(1)


class ConsoleClient:
    """One browser's cookies against the console at *base*."""

    def __init__(self, base: str, **kwargs: Any) -> None:
        self.base = base
        self.http = requests.Session()
        for key, value in kwargs.items():  # verify=..., auth=...
            setattr(self.http, key, value)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.http.get(self.base + path, timeout=20, **kwargs)

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.http.post(self.base + path, data=data or {}, timeout=60, **kwargs)

    def login(self, token: str, next_page: str = "/") -> requests.Response:
        form = self.get("/login")
        assert form.status_code == 200, form.text
        return self.post("/login", {"token": token, "csrf_token": csrf_of(form.text), "next": next_page})

    def csrf(self, path: str = "/targets") -> str:
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code)
        return csrf_of(page.text)

    def session_id(self) -> str | None:
        for cookie in self.http.cookies:
            if cookie.name.endswith("pgperf_session"):
                return cookie.value
        return None
