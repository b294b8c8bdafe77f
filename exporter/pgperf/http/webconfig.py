"""``--web.config.file``: TLS and basic authentication in the Prometheus exporter-toolkit
format, so one file works for pgperf and the other exporters of a fleet::

    tls_server_config:
      cert_file: /etc/pgperf/tls.crt
      key_file: /etc/pgperf/tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional mutual TLS
      client_ca_file: /etc/pgperf/ca.crt
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...                          # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':')
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000

Basic authentication, when configured, protects every path (checked by ``http.auth.BasicAuth``).
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["WebConfig", "WebConfigError", "load_web_config"]

_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_OPTIONAL,
                "RequireAnyClientCert": ssl.CERT_OPTIONAL, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_KNOWN = {"tls_server_config", "basic_auth_users", "http_server_config"}
_TLS_KNOWN = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
              "cipher_suites", "prefer_server_cipher_suites", "curve_preferences", "client_allowed_sans"}
#: A whole bcrypt hash: variant, two-digit cost, then 22 characters of salt and 31 of hash.
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


class WebConfigError(Exception):
    """The web configuration file is invalid; ``problems`` lists every problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = [f"{path}: {p}" for p in problems]
        super().__init__("invalid web configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass
class WebConfig:
    """The file's settings: TLS, basic authentication users, response headers."""

    path: str
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None
    users: dict[str, bytes] = field(default_factory=dict, repr=False)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = self.min_version
        if self.max_version is not None:
            context.maximum_version = self.max_version
        assert self.cert_file and self.key_file
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            context.load_verify_locations(self.client_ca_file)
        context.verify_mode = self.client_auth
        return context


def load_web_config(path: str) -> WebConfig:
    """Read and check the file; raise WebConfigError listing every problem."""
    problems: list[str] = []
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise WebConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise WebConfigError(path, [f"not valid YAML: {exc}"]) from None
    data = data or {}
    if not isinstance(data, dict):
        raise WebConfigError(path, ["the top level must be a mapping"])
    for key in sorted(set(data) - _KNOWN):
        problems.append(f"{key}: unknown key (expected {', '.join(sorted(_KNOWN))})")
    config = WebConfig(path=path)
    base = Path(path).parent

    def resolve(value: Any, where: str) -> str | None:
        if not isinstance(value, str) or not value:
            problems.append(f"{where}: expected a file path")
            return None
        full = value if os.path.isabs(value) else str(base / value)
        if not os.path.isfile(full):
            problems.append(f"{where}: file {full} does not exist")
        return full

    tls = data.get("tls_server_config")
    if tls is not None:
        if not isinstance(tls, dict):
            problems.append("tls_server_config: expected a mapping")
        else:
            for key in sorted(set(tls) - _TLS_KNOWN):
                problems.append(f"tls_server_config.{key}: unknown key")
            if "cert_file" not in tls or "key_file" not in tls:
                problems.append("tls_server_config: cert_file and key_file are both required")
            else:
                config.cert_file = resolve(tls["cert_file"], "tls_server_config.cert_file")
                config.key_file = resolve(tls["key_file"], "tls_server_config.key_file")
            auth = tls.get("client_auth_type", "NoClientCert")
            if auth not in _CLIENT_AUTH:
                problems.append(f"tls_server_config.client_auth_type: unknown value {auth!r}; "
                                f"choose from {', '.join(_CLIENT_AUTH)}")
            else:
                config.client_auth = _CLIENT_AUTH[auth]
            if "client_ca_file" in tls:
                config.client_ca_file = resolve(tls["client_ca_file"], "tls_server_config.client_ca_file")
            elif config.client_auth is ssl.CERT_REQUIRED:
                problems.append("tls_server_config.client_ca_file: required with RequireAndVerifyClientCert")
            for key, attr in (("min_version", "min_version"), ("max_version", "max_version")):
                if key in tls:
                    if tls[key] not in _TLS_VERSIONS:
                        problems.append(f"tls_server_config.{key}: expected one of {', '.join(_TLS_VERSIONS)}")
                    else:
                        setattr(config, attr, _TLS_VERSIONS[tls[key]])
    users = data.get("basic_auth_users")
    if users is not None:
        if not isinstance(users, dict):
            problems.append("basic_auth_users: expected a mapping of user name to bcrypt hash")
        else:
            for user, hashed in users.items():
                if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                    problems.append(f"basic_auth_users.{user}: expected a bcrypt hash ($2y$...), never a plain password")
                    continue
                if not _BCRYPT.fullmatch(hashed) or not 4 <= int(hashed[4:6]) <= 31:
                    # A placeholder ($2y$10$...) or a truncated hash: no password would ever match.
                    problems.append(f"basic_auth_users.{user}: not a complete bcrypt hash (expected $2a$, $2b$ or $2y$, "
                                    "a cost from 04 to 31, $ and 53 characters of ./A-Za-z0-9, 60 in all; "
                                    "make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')")
                    continue
                config.users[str(user)] = hashed.encode()
    http = data.get("http_server_config")
    if http is not None:
        headers = http.get("headers") if isinstance(http, dict) else None
        if not isinstance(http, dict) or (headers is not None and not isinstance(headers, dict)):
            problems.append("http_server_config.headers: expected a mapping of header to value")
        elif headers:
            config.headers = {str(k): str(v) for k, v in headers.items()}
    if problems:
        raise WebConfigError(path, problems)
    if config.tls:
        try:
            config.ssl_context()
        except (ssl.SSLError, OSError) as exc:
            raise WebConfigError(path, [f"tls_server_config: cannot load the certificate or key: {exc}"]) from None
    return config
