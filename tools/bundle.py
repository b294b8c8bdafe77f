"""The Prometheus and Alertmanager configurations of the bundle, for other layouts.

``prometheus/prometheus.yml`` and ``alertmanager/alertmanager.yml`` are written for
docker-compose (the exporter at ``pgperf:9187``, Alertmanager at ``alertmanager:9093``,
secrets under ``/etc/alertmanager/secrets/``). This module renders variants of them from a
checkout, for ``make demo`` and the tests: loopback addresses, absolute paths to the rules
and templates, secret files in another directory, shorter intervals. The rules, routes,
receivers and templates stay those of the committed files.

    python -m tools.bundle prometheus --exporter 127.0.0.1:9187 --alertmanager 127.0.0.1:9093
    python -m tools.bundle alertmanager --pgperf-url http://127.0.0.1:9187 --secrets-dir DIR
    python -m tools.bundle alertmanager --pgperf-url http://pgperf:9187 --profile analytics
    python -m tools.bundle alertmanager --pgperf-url http://127.0.0.1:9187 \
        --sink-url http://127.0.0.1:8025 --smtp-sink 127.0.0.1:2525

``--profile`` keeps only the notification channels the profile turns on (``notifications.*``);
the committed ``alertmanager.yml`` routes to every channel, as the production profile does.
``--sink-url`` and ``--smtp-sink`` send every notification other than pgperf's to a local
stand-in (``make demo``): Slack, PagerDuty and the generic webhook post to the URL (paths
``/slack``, ``/pagerduty``, ``/webhook``), e-mail goes to the SMTP address.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "prometheus"
ALERTMANAGER_DIR = ROOT / "alertmanager"
SECRETS_DIR = "/etc/alertmanager/secrets"
WEBHOOK_PATH = "/api/v1/alerts/webhook"
# Notification timings of the "fast" variant: alerts reach receivers within seconds.
FAST_TIMINGS = {"group_wait": "1s", "group_interval": "2s", "repeat_interval": "1m"}
# Receivers of alertmanager.yml that are the profiles' notification channels.
CHANNELS = frozenset({"email", "slack", "pagerduty", "webhook"})


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def prometheus_config(
    exporter: Sequence[str],
    alertmanager: str | None = None,
    *,
    prometheus: str | None = None,
    grafana_url: str | None = None,
    interval: str | None = None,
) -> dict[str, Any]:
    """``prometheus.yml`` scraping *exporter* (host:port, one or more) and sending alerts to
    *alertmanager*; the ``prometheus`` and ``alertmanager`` jobs scrape *prometheus* and
    *alertmanager*, and are left out without them. *interval* sets both the scrape and the
    evaluation interval."""
    config = _load(PROMETHEUS_DIR / "prometheus.yml")
    targets: dict[str, list[str | None]] = {
        "pgperf": list(exporter), "prometheus": [prometheus], "alertmanager": [alertmanager],
    }
    config["scrape_configs"] = [
        {**job, "static_configs": [{"targets": targets[job["job_name"]]}]}
        for job in config["scrape_configs"]
        if None not in targets.get(job["job_name"], [None])
    ]
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    config["rule_files"] = [str(PROMETHEUS_DIR / rule) for rule in config["rule_files"]]
    if grafana_url is not None:
        config["global"].setdefault("external_labels", {})["grafana_url"] = grafana_url
    if interval is not None:
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = interval
    return config


def _secret_files(node: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """(mapping, key) of every ``*_file`` setting of an Alertmanager configuration."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_file") and isinstance(value, str):
                yield node, key
            else:
                yield from _secret_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _secret_files(item)


def secret_files(config: Mapping[str, Any] | None = None) -> list[str]:
    """The secret file paths *config* (default: the committed one) reads."""
    config = _load(ALERTMANAGER_DIR / "alertmanager.yml") if config is None else config
    return sorted({node[key] for node, key in _secret_files(config)})


def with_channels(config: dict[str, Any], notifications: Mapping[str, bool]) -> dict[str, Any]:
    """*config* routing only to the channels a profile's ``notifications`` turn on.

    The receivers ``email``, ``slack``, ``pagerduty`` and ``webhook`` are the profile's
    channels of the same names; a channel turned off loses its routes and its receiver, so
    a severity whose channels are all off reaches only ``pgperf`` (the lifecycle webhook,
    always kept). The committed ``alertmanager.yml`` is the production profile, every
    channel on."""
    off = {name for name, on in notifications.items() if not on}
    unknown = off - CHANNELS
    if unknown:
        raise ValueError(f"unknown notification channels {sorted(unknown)}; known: {sorted(CHANNELS)}")
    route = config["route"]
    route["routes"] = [r for r in route.get("routes", []) if r.get("receiver") not in off]
    if route.get("receiver") in off:
        route["receiver"] = "pgperf"  # never used: the pgperf route matches every alert first
    config["receivers"] = [r for r in config["receivers"] if r["name"] not in off]
    return config


@dataclass(frozen=True)
class Sink:
    """A local stand-in for every notification channel: *url*, an HTTP server taking the
    posts of Slack (``/slack``), PagerDuty (``/pagerduty``) and the generic webhook
    (``/webhook``); *smtp*, ``host:port`` of an SMTP server taking the e-mail (plain SMTP,
    no authentication)."""

    url: str
    smtp: str


def to_sink(config: dict[str, Any], sink: Sink) -> dict[str, Any]:
    """*config* with every receiver other than ``pgperf`` notifying *sink* instead of the
    outside world: no e-mail relay, Slack or PagerDuty is ever reached. A receiver of a kind
    the sink does not stand in for is refused, so that none can slip past it."""
    base = sink.url.rstrip("/")
    config["global"] = {key: value for key, value in config.get("global", {}).items()
                        if not key.startswith("smtp_auth_")}
    config["global"].update(smtp_smarthost=sink.smtp, smtp_require_tls=False)
    for receiver in config["receivers"]:
        if receiver["name"] == "pgperf":
            continue
        for kind, items in receiver.items():
            if kind == "name":
                continue
            for item in items:
                if kind == "slack_configs":
                    item.pop("api_url_file", None)
                    item["api_url"] = f"{base}/slack"
                elif kind == "pagerduty_configs":
                    item["url"] = f"{base}/pagerduty"
                elif kind == "webhook_configs":
                    item["url"] = f"{base}/webhook"
                elif kind == "email_configs":
                    for key in ("auth_username", "auth_password", "auth_password_file", "auth_identity"):
                        item.pop(key, None)
                    item.update(smarthost=sink.smtp, require_tls=False)
                else:
                    raise ValueError(f"receiver {receiver['name']}: no local stand-in for {kind}")
    return config


def alertmanager_config(
    pgperf_url: str,
    *,
    secrets_dir: str | Path = SECRETS_DIR,
    webhook_url: str | None = None,
    fast: bool = False,
    profile: str | None = None,
    sink: Sink | None = None,
) -> dict[str, Any]:
    """``alertmanager.yml`` whose pgperf receiver posts to *pgperf_url* (the exporter's base
    URL), reading its secret files from *secrets_dir*. *webhook_url* replaces the generic
    webhook's URL; *fast* shortens every group_wait, group_interval and repeat_interval;
    *profile* keeps only the channels its ``notifications`` turn on; *sink* sends every
    other receiver's notifications to a local stand-in (``to_sink``)."""
    config = _load(ALERTMANAGER_DIR / "alertmanager.yml")
    if profile is not None:
        from pgperf.config import load_profile

        with_channels(config, load_profile(profile).get("notifications", {}))
    for node, key in _secret_files(config):
        node[key] = str(Path(secrets_dir) / Path(node[key]).name)
    config["templates"] = [str(ALERTMANAGER_DIR / t) for t in config.get("templates", [])]
    for receiver in config["receivers"]:
        if receiver["name"] == "pgperf":
            receiver["webhook_configs"][0]["url"] = pgperf_url.rstrip("/") + WEBHOOK_PATH
        elif receiver["name"] == "webhook" and webhook_url is not None:
            receiver["webhook_configs"][0]["url"] = webhook_url
    if fast:
        for route in [config["route"], *config["route"].get("routes", [])]:
            route.update(FAST_TIMINGS)
    if sink is not None:
        to_sink(config, sink)
    return config


def write_secrets(directory: Path, values: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Create the secret files the Alertmanager configuration reads in *directory*, each
    holding ``values[name]`` or a placeholder; return them by file name."""
    values = values or {}
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for path in secret_files():
        name = Path(path).name
        target = directory / name
        target.write_text(values.get(name, f"placeholder-{name}") + "\n")
        target.chmod(0o600)
        written[name] = target
    return written


def dump(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False, width=1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output", "-o", help="write here instead of standard output")
    sub = parser.add_subparsers(dest="which", required=True)
    prom = sub.add_parser("prometheus", parents=[common], help="render prometheus.yml")
    prom.add_argument("--exporter", action="append", required=True, help="host:port of pgperf (repeatable)")
    prom.add_argument("--alertmanager", help="host:port of Alertmanager")
    prom.add_argument("--prometheus", help="host:port of this Prometheus, to scrape itself")
    prom.add_argument("--grafana-url", help="base URL of Grafana for the dashboard links")
    prom.add_argument("--interval", help="scrape and evaluation interval, e.g. 5s")
    am = sub.add_parser("alertmanager", parents=[common], help="render alertmanager.yml")
    am.add_argument("--pgperf-url", required=True, help="base URL of pgperf, e.g. http://127.0.0.1:9187")
    am.add_argument("--secrets-dir", default=SECRETS_DIR, help=f"directory of the secret files (default {SECRETS_DIR})")
    am.add_argument("--webhook-url", help="URL of the generic webhook receiver")
    am.add_argument("--fast", action="store_true", help="notify within seconds (demo, tests)")
    am.add_argument("--profile", choices=("development", "production", "analytics"),
                    help="route only to the channels the profile's notifications turn on")
    am.add_argument("--sink-url", help="send Slack, PagerDuty and webhook notifications to this local URL")
    am.add_argument("--smtp-sink", metavar="HOST:PORT", help="send e-mail to this local SMTP server (with --sink-url)")
    args = parser.parse_args(argv)
    if args.which == "prometheus":
        config = prometheus_config(args.exporter, args.alertmanager, prometheus=args.prometheus,
                                   grafana_url=args.grafana_url, interval=args.interval)
    else:
        if (args.sink_url is None) != (args.smtp_sink is None):
            parser.error("--sink-url and --smtp-sink go together: every channel goes to the sink, or none")
        sink = Sink(args.sink_url, args.smtp_sink) if args.sink_url else None
        config = alertmanager_config(args.pgperf_url, secrets_dir=args.secrets_dir, webhook_url=args.webhook_url,
                                     fast=args.fast, profile=args.profile, sink=sink)
    text = dump(config)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
