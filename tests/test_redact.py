"""DSN redaction: every form libpq accepts, inside free text and log records."""

from __future__ import annotations

import logging

import pytest

from pgperf.redact import MASK, RedactingFilter, redact

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://monitor:{SECRET}@db.example.com:5432/app",
        f"postgres://monitor:{SECRET}@db/app?sslmode=require",
        f"postgresql://monitor:{SECRET}@host1:5432,host2:5433/app",
        f"postgresql://monitor@db/app?sslmode=require&password={SECRET}&connect_timeout=3",
        f"postgresql://monitor@db/app?password={SECRET}",
        f"host=db user=monitor password={SECRET} dbname=app",
        f"host=db user=monitor password = '{SECRET} with spaces' dbname=app",
        f"host=db password='it\\'s {SECRET}'",
        f"PASSWORD={SECRET}",
        f"PGPASSWORD={SECRET} pgperf serve",
        f"connecting to postgresql://u:{SECRET}@h/db failed: refused; retrying host=h password={SECRET}",
        f"postgresql://monitor:p@ss{SECRET}@db/app",
        f"host=db user=monitor sslpassword={SECRET} sslkey=/k.pem",
        f"host=db sslpassword = '{SECRET} with spaces' dbname=app",
        f"postgresql://monitor@db/app?sslkey=/k.pem&sslpassword={SECRET}",
        f"SMTP_AUTH_PASSWORD={SECRET}",
        f"Alertmanager at http://admin:{SECRET}@alertmanager:9093 unreachable: ConnectionError",
        f"https://admin:{SECRET}@am.example.com/",
        f"webhook https://u:{SECRET}@hooks.example.com/x?y=1 answered 500",
        f"amqp+ssl://guest:{SECRET}@rabbit:5671/vhost",
    ],
)
def test_password_removed(text: str) -> None:
    cleaned = redact(text)
    assert SECRET not in cleaned
    assert MASK in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://monitor@db:5432/app?sslmode=require",
        "host=db user=monitor dbname=app",
        "postgresql://db:5432/app",
        "http://alertmanager:9093/api/v2/alerts",
        "Alertmanager at https://am.example.com:9093 answered 500 to GET /alerts",
        "contact admin@example.com or see http://docs.example.com/x",
        "nothing to see here",
        "",
    ],
)
def test_text_without_password_unchanged(text: str) -> None:
    assert redact(text) == text


def test_rest_of_dsn_kept() -> None:
    assert redact(f"postgresql://u:{SECRET}@h:5/db?sslmode=require") == "postgresql://u:***@h:5/db?sslmode=require"
    assert redact(f"host=h password={SECRET} user=u") == "host=h password=*** user=u"
    assert redact(f"postgresql://u@h/db?password={SECRET}&x=1") == "postgresql://u@h/db?password=***&x=1"
    assert redact(f"host=h sslpassword={SECRET} user=u") == "host=h sslpassword=*** user=u"
    assert redact(f"at http://admin:{SECRET}@am:9093/x: down") == "at http://admin:***@am:9093/x: down"


def test_logging_filter_cleans_message_args_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("pgperf.test.redact")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="pgperf.test.redact"):
            logger.info("connecting with %s", f"postgresql://u:{SECRET}@h/db")
            try:
                raise RuntimeError(f"bad dsn host=h password={SECRET}")
            except RuntimeError:
                logger.exception("failed")
        text = caplog.text
        assert SECRET not in text
        assert "postgresql://u:***@h/db" in text
        assert "RuntimeError" in text
    finally:
        logger.filters.clear()


def test_session_settings_pin_the_search_path_and_keep_the_dsn_keepalives() -> None:
    from pgperf.db import SessionSettings

    ours = SessionSettings(statement_timeout=5, connect_timeout=5).connect_kwargs("host=db options='-c work_mem=8MB'")
    assert ours["options"].startswith("-c work_mem=8MB ") and ours["options"].endswith("-c search_path=pg_catalog,pg_temp")
    assert (ours["keepalives_idle"], ours["keepalives_count"], ours["tcp_user_timeout"]) == (10, 3, 25_000)
    theirs = SessionSettings().connect_kwargs("postgresql://db/x?keepalives_idle=60&tcp_user_timeout=0")
    assert "keepalives_idle" not in theirs and "tcp_user_timeout" not in theirs and theirs["keepalives_count"] == 3
