"""The pages' static files (``static/``): stylesheet, scripts and the vendored chart library.

Each file is served at ``/static/<name>``. Pages link it as ``/static/<name>?v=<digest>``
(``url()``): the digest changes with the content, so such a URL may be cached for a year
(``immutable``) and a new pgperf version is fetched at once. A request without the current
digest gets ``no-cache`` and an ETag, so it is revalidated. Nothing is fetched from the
internet: the chart library is in the package (``VENDORED.json`` says which version, from
where, and its checksum).

The files are read from the package on first use and kept: about 260 kB in all.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from dataclasses import dataclass
from importlib import resources

from werkzeug.wrappers import Request, Response

from .errors import NotFound

__all__ = ["STATIC", "StaticFile", "StaticFiles"]

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".json": "application/json", ".md": "text/markdown; charset=utf-8"}
#: A year, the longest lifetime caches honour.
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class StaticFile:
    name: str
    body: bytes
    digest: str  # the first 16 hex digits of its SHA-256
    content_type: str


class StaticFiles:
    """The files of one package directory, by name (no subdirectories)."""

    def __init__(self, package: str, directory: str) -> None:
        self._root = resources.files(package).joinpath(directory)
        self._files: dict[str, StaticFile] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> StaticFile | None:
        """The file *name*, or None when the directory has no such file."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            return None
        with self._lock:
            found = self._files.get(name)
            if found is None:
                entry = self._root.joinpath(name)
                if not entry.is_file():
                    return None
                body = entry.read_bytes()
                suffix = name[name.rfind("."):]
                kind = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
                found = StaticFile(name, body, hashlib.sha256(body).hexdigest()[:16], kind)
                self._files[name] = found
        return found

    def read_text(self, name: str) -> str:
        """The file *name* as text (a report written to a file inlines its scripts)."""
        found = self.get(name)
        if found is None:
            raise LookupError(f"no static file {name!r}")
        return found.body.decode("utf-8")

    def url(self, name: str) -> str:
        """``/static/<name>?v=<digest>``: a URL that may be cached for good."""
        found = self.get(name)
        if found is None:
            raise LookupError(f"no static file {name!r}")
        return f"/static/{name}?v={found.digest}"

    def serve(self, request: Request, name: str) -> Response:
        """The file *name*: cached for a year under its current digest, else revalidated."""
        found = self.get(name)
        if found is None:
            raise NotFound(f"no static file {name!r}")
        response = Response(found.body, content_type=found.content_type)
        response.set_etag(found.digest)
        if request.args.get("v") == found.digest:
            response.headers["Cache-Control"] = IMMUTABLE
        else:
            response.headers["Cache-Control"] = "no-cache"
        return response.make_conditional(request)


#: pgperf's own static files (``pgperf/http/static``).
STATIC = StaticFiles("pgperf.http", "static")
