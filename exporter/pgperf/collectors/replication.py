"""Replication: this server's role and replay lag, its standbys, its replication slots.

``pg_replication_is_replica`` and ``pg_replication_lag_seconds`` keep postgres_exporter's
names, with a lag that is right where its definition (``now() -
pg_last_xact_replay_timestamp()``) is not:

* on a primary, and on a node promoted from a standby, the lag is 0;
* on a standby that has replayed everything it received, the lag is 0 however long ago
  the last transaction was: an idle primary sends no transactions, so the age of the
  last replayed one measures the primary's idleness, not the standby's delay;
* otherwise it is the age of the last replayed transaction (how far replay is behind).

Per standby (``pg_stat_replication``, on the primary or a cascading standby): write,
flush and replay lag in seconds and replay lag in bytes. The lag times are NULL once a
standby has caught up and WAL activity has stopped ("the most recently measured lag times
will continue to be displayed for a short time and then show NULL", PostgreSQL
documentation, pg_stat_replication); pgperf serves 0 then when the standby has replayed
everything sent, and no sample when it cannot tell.

Slots (``pg_replication_slots``): active flag and the WAL each slot keeps from removal
(current position minus ``restart_lsn``; the replay position on a standby).

postgres_exporter 0.20's families are served under its names and labels:
``pg_replication_last_replay_seconds`` (0 on a primary, where no transaction was ever
replayed, as it serves it), ``pg_stat_replication_pg_current_wal_lsn_bytes`` and
``pg_stat_replication_pg_wal_lsn_diff`` per WAL sender (with the slot it streams from), and
its ``pg_replication_slots_*`` families (``database`` is empty for a physical slot). The
names of older releases and example query files are aliases (``MetricDef.alias_of``,
switched off with ``compat.legacy_aliases``): ``pg_replication_slot_slot_*`` and
``pg_replication_slot_wal_status`` (releases up to 0.19), ``pg_replication_lag`` (the
example query file's ``pg_replication`` query), ``pg_stat_replication_pg_xlog_location_diff``
(the name before PostgreSQL 10) and ``pg_replication_slots_xmin_age``, the age of the
oldest transaction a slot holds back (no sample while it holds none back).
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

STATUS_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 AS unreplayed_bytes,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS last_replay_age
"""
_CURRENT = "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END"
# The position standbys and slots are measured against: what this server has written, or
# on a cascading standby what it has received (or replayed, for slots it keeps WAL for).
STANDBYS_SQL = f"""
SELECT application_name, COALESCE(host(client_addr), '') AS client_addr, state,
       COALESCE(s.slot_name::text, '') AS slot_name,
       pg_wal_lsn_diff({_CURRENT}, '0/0')::float8 AS current_wal_lsn,
       extract(epoch FROM write_lag)::float8 AS write_lag,
       extract(epoch FROM flush_lag)::float8 AS flush_lag,
       extract(epoch FROM replay_lag)::float8 AS replay_lag,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END, replay_lsn)::float8 AS replay_lag_bytes,
       pg_wal_lsn_diff(sent_lsn, replay_lsn)::float8 AS unreplayed_sent_bytes
FROM pg_stat_replication r
LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
"""
SLOTS_SQL = f"""
SELECT slot_name, slot_type, COALESCE(database, '') AS database, active, wal_status,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                            ELSE pg_current_wal_lsn() END, restart_lsn)::float8 AS retained_bytes,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END, '0/0')::float8 AS current_wal_lsn,
       pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::float8 AS confirmed_flush_lsn,
       pg_wal_lsn_diff({_CURRENT}, restart_lsn)::float8 AS lsn_diff,
       age(xmin)::float8 AS xmin_age,
       safe_wal_size::float8 AS safe_wal_size
FROM pg_replication_slots
"""

_STANDBY = ("application_name", "client_addr", "state")
_SENDER = ("application_name", "client_addr", "state", "slot_name")
_SLOT = ("slot_name", "slot_type", "database")
_SLOT_COMPAT = ("slot_name", "slot_type")

IS_REPLICA = MetricDef("pg_replication_is_replica", "gauge", "1 when this server is a standby (in recovery), else 0.",
                       source="pg_is_in_recovery()", compat=True)
LAG = MetricDef(
    "pg_replication_lag_seconds", "gauge",
    "How far replay on this standby is behind, in seconds: 0 when it has replayed all WAL received "
    "(and on a primary), else the age of the last replayed transaction.",
    source="pg_last_xact_replay_timestamp(), pg_last_wal_receive_lsn()", compat=True,
)
LAG_BYTES = MetricDef(
    "pg_replication_lag_bytes", "gauge",
    "WAL received by this standby but not replayed yet, in bytes (0 on a primary).",
    source="pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()",
)
_R = "pg_stat_replication"
WRITE_LAG = MetricDef(f"{_R}_write_lag_seconds", "gauge",
                      "Time for recent WAL to be written on this standby, in seconds (0 once caught up and idle).",
                      _STANDBY, source=_R)
FLUSH_LAG = MetricDef(f"{_R}_flush_lag_seconds", "gauge",
                      "Time for recent WAL to be flushed on this standby, in seconds (0 once caught up and idle).",
                      _STANDBY, source=_R)
REPLAY_LAG = MetricDef(f"{_R}_replay_lag_seconds", "gauge",
                       "Time for recent WAL to be replayed on this standby, in seconds (0 once caught up and idle).",
                       _STANDBY, source=_R)
REPLAY_LAG_BYTES = MetricDef(f"{_R}_replay_lag_bytes", "gauge",
                             "WAL written by this server and not yet replayed by this standby, in bytes.",
                             _STANDBY, source=_R)
STANDBYS = MetricDef(f"{_R}_standbys", "gauge", "Number of WAL sender processes (standbys and base backups) by state.",
                     ("state",), source=_R)
_P = "pg_replication_slot"
SLOT_ACTIVE = MetricDef(f"{_P}_active", "gauge", "1 when a process is streaming from this slot, else 0.",
                        _SLOT, source="pg_replication_slots")
SLOT_RETAINED = MetricDef(
    f"{_P}_retained_bytes", "gauge",
    "WAL this slot keeps from removal (current WAL position, replay position on a standby, minus restart_lsn), in bytes.",
    _SLOT, source="pg_replication_slots",
)
SLOT_SAFE = MetricDef(
    f"{_P}_safe_wal_size_bytes", "gauge",
    "WAL that can still be written before this slot risks losing WAL it needs (max_slot_wal_keep_size), in bytes; "
    "no sample when unlimited.", _SLOT, source="pg_replication_slots",
)
LAST_REPLAY = MetricDef(
    "pg_replication_last_replay_seconds", "gauge",
    "Age of the last transaction replayed on this standby, in seconds; 0 on a primary and until a first replay.",
    source="pg_last_xact_replay_timestamp()", compat=True,
)
SENDER_LSN = MetricDef(f"{_R}_pg_current_wal_lsn_bytes", "gauge",
                       "WAL position of this server (received position on a cascading standby), in bytes since 0/0, "
                       "per WAL sender.", _SENDER, source=_R, compat=True)
SENDER_DIFF = MetricDef(f"{_R}_pg_wal_lsn_diff", "gauge",
                        "WAL written by this server (received, on a cascading standby) and not yet replayed by this "
                        "standby, in bytes.", _SENDER, source=_R, compat=True)
_PS = "pg_replication_slots"
SLOTS_ACTIVE = MetricDef(f"{_PS}_active", "gauge", "Whether the replication slot is active (1) or not (0).",
                         ("slot_name", "database"), source=_PS, compat=True)
SLOTS_DIFF = MetricDef(f"{_PS}_pg_wal_lsn_diff", "gauge",
                       "Current WAL position (received position on a standby) minus this slot's restart_lsn, in bytes.",
                       ("slot_name", "database"), source=_PS, compat=True)
SLOTS_CURRENT = MetricDef(f"{_PS}_slot_current_wal_lsn", "gauge",
                          "Current WAL position (received position on a standby), in bytes since 0/0.",
                          _SLOT_COMPAT, source=_PS, compat=True)
SLOTS_CONFIRMED = MetricDef(f"{_PS}_slot_confirmed_flush_lsn", "gauge",
                            "Last position confirmed flushed by the consumer of this active slot, in bytes since 0/0 "
                            "(0 for a physical slot).", _SLOT_COMPAT, source=_PS, compat=True)
SLOTS_IS_ACTIVE = MetricDef(f"{_PS}_slot_is_active", "gauge", "Whether the replication slot is active (1) or not (0).",
                            _SLOT_COMPAT, source=_PS, compat=True)
SLOTS_SAFE = MetricDef(f"{_PS}_safe_wal_size_bytes", "gauge",
                       "WAL that can still be written before this slot risks losing WAL it needs, in bytes; no sample "
                       "when max_slot_wal_keep_size is unlimited.", _SLOT_COMPAT, source=_PS, compat=True)
SLOTS_WAL_STATUS = MetricDef(f"{_PS}_wal_status", "gauge",
                             "Availability of the WAL this slot claims (label wal_status: reserved, extended, "
                             "unreserved, lost).", (*_SLOT_COMPAT, "wal_status"), source=_PS, compat=True)
# Legacy aliases (see the module docstring).
SLOT_IS_ACTIVE = MetricDef(f"{_P}_slot_is_active", "gauge", "Whether the replication slot is active (1) or not (0).",
                           _SLOT_COMPAT, source=_PS, alias_of=SLOTS_IS_ACTIVE.name)
SLOT_CURRENT = MetricDef(f"{_P}_slot_current_wal_lsn", "gauge",
                         "Current WAL position (received position on a standby), in bytes since 0/0.",
                         _SLOT_COMPAT, source=_PS, alias_of=SLOTS_CURRENT.name)
SLOT_CONFIRMED = MetricDef(f"{_P}_slot_confirmed_flush_lsn", "gauge",
                           "Last position confirmed flushed by the consumer of this active slot, in bytes since 0/0.",
                           _SLOT_COMPAT, source=_PS, alias_of=SLOTS_CONFIRMED.name)
SLOT_WAL_STATUS = MetricDef(f"{_P}_wal_status", "gauge",
                            "Availability of the WAL this slot claims (label wal_status: reserved, extended, unreserved, lost).",
                            (*_SLOT_COMPAT, "wal_status"), source=_PS, alias_of=SLOTS_WAL_STATUS.name)
LEGACY_LAG = MetricDef("pg_replication_lag", "gauge", "How far replay on this standby is behind, in seconds "
                       "(pg_replication_lag_seconds under the example query file's name).",
                       source="pg_last_xact_replay_timestamp(), pg_last_wal_receive_lsn()", alias_of=LAG.name)
LEGACY_XLOG_DIFF = MetricDef(f"{_R}_pg_xlog_location_diff", "gauge",
                             "WAL not yet replayed by this standby, in bytes (the name before PostgreSQL 10).",
                             _SENDER, source=_R, alias_of=SENDER_DIFF.name)
LEGACY_XMIN_AGE = MetricDef(f"{_PS}_xmin_age", "gauge",
                            "Age of the oldest transaction this slot keeps VACUUM from cleaning up (age(xmin)), in "
                            "transactions; no sample while it keeps none.", _SLOT, source=_PS,
                            alias_of="age(pg_replication_slots.xmin)")


def replica_lag(in_recovery: bool, unreplayed_bytes: float | None, last_replay_age: float | None) -> float | None:
    """The lag served as ``pg_replication_lag_seconds`` (see the module docstring)."""
    if not in_recovery:
        return 0.0
    if unreplayed_bytes is not None and unreplayed_bytes <= 0:
        return 0.0  # everything received has been replayed
    if last_replay_age is None:
        return None  # nothing replayed yet, or no WAL receiver: unknown
    return max(0.0, last_replay_age)


def _standby_lag(value: float | None, unreplayed_sent: float | None) -> float | None:
    if value is not None:
        return value
    return 0.0 if unreplayed_sent is not None and unreplayed_sent <= 0 else None


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        status: Any = cur.execute(STATUS_SQL).fetchone()
        standbys = cur.execute(STANDBYS_SQL).fetchall()
        slots = cur.execute(SLOTS_SQL).fetchall()
    in_recovery = bool(status["in_recovery"])

    # Two walsenders can share application name, address and state (two base backups, or
    # standbys behind one NAT address): keep the worst of each label set, as duplicate
    # series would make the whole exposition invalid.
    worst: dict[tuple[str, str, str], dict[str, float | None]] = {}
    senders: dict[tuple[str, str, str, str], tuple[float | None, float | None]] = {}
    states: dict[str, int] = {}
    for r in standbys:
        sender = (r["application_name"] or "", r["client_addr"] or "", r["state"] or "", r["slot_name"])
        lsn, diff = senders.get(sender, (None, None))
        senders[sender] = (r["current_wal_lsn"] if lsn is None else lsn,
                           max((v for v in (diff, r["replay_lag_bytes"]) if v is not None), default=None))
        key = (r["application_name"] or "", r["client_addr"] or "", r["state"] or "")
        states[key[2]] = states.get(key[2], 0) + 1
        values = {
            "write": _standby_lag(r["write_lag"], r["unreplayed_sent_bytes"]),
            "flush": _standby_lag(r["flush_lag"], r["unreplayed_sent_bytes"]),
            "replay": _standby_lag(r["replay_lag"], r["unreplayed_sent_bytes"]),
            "bytes": None if r["replay_lag_bytes"] is None else max(0.0, r["replay_lag_bytes"]),
        }
        seen = worst.get(key)
        if seen is None:
            worst[key] = values
        else:
            worst[key] = {k: max((v for v in (seen[k], values[k]) if v is not None), default=None) for k in values}

    def per_standby(field: str) -> list[tuple[tuple[str, str, str], float | None]]:
        return [(k, v[field]) for k, v in sorted(worst.items())]

    slot_key = [((r["slot_name"], r["slot_type"], r["database"]), r) for r in slots]
    lag = replica_lag(in_recovery, status["unreplayed_bytes"], status["last_replay_age"])
    sender_diffs = [(k, d) for k, (_, d) in sorted(senders.items())]
    families = (
        IS_REPLICA.single(1 if in_recovery else 0),
        LAG.single(lag),
        LAST_REPLAY.single(max(0.0, status["last_replay_age"] or 0.0)),
        LAG_BYTES.single(max(0.0, status["unreplayed_bytes"] or 0.0) if in_recovery else 0.0),
        WRITE_LAG.family(per_standby("write")),
        FLUSH_LAG.family(per_standby("flush")),
        REPLAY_LAG.family(per_standby("replay")),
        REPLAY_LAG_BYTES.family(per_standby("bytes")),
        STANDBYS.family(((state,), n) for state, n in sorted(states.items())),
        SLOT_ACTIVE.family((k, 1 if r["active"] else 0) for k, r in slot_key),
        SLOT_RETAINED.family(
            (k, None if r["retained_bytes"] is None else max(0.0, r["retained_bytes"])) for k, r in slot_key
        ),
        SLOT_SAFE.family((k, r["safe_wal_size"]) for k, r in slot_key),
        SENDER_LSN.family((k, v) for k, (v, _) in sorted(senders.items())),
        SENDER_DIFF.family(sender_diffs),
        SLOTS_ACTIVE.family(((k[0], k[2]), 1 if r["active"] else 0) for k, r in slot_key),
        SLOTS_DIFF.family(((k[0], k[2]), r["lsn_diff"]) for k, r in slot_key),
        SLOTS_CURRENT.family((k[:2], r["current_wal_lsn"]) for k, r in slot_key),
        # postgres_exporter reads a physical slot's NULL confirmed_flush_lsn as 0/0.
        SLOTS_CONFIRMED.family((k[:2], r["confirmed_flush_lsn"] or 0.0) for k, r in slot_key if r["active"]),
        SLOTS_IS_ACTIVE.family((k[:2], 1 if r["active"] else 0) for k, r in slot_key),
        SLOTS_SAFE.family((k[:2], r["safe_wal_size"]) for k, r in slot_key),
        SLOTS_WAL_STATUS.family(((*k[:2], r["wal_status"]), 1) for k, r in slot_key if r["wal_status"]),
        SLOT_IS_ACTIVE.family((k[:2], 1 if r["active"] else 0) for k, r in slot_key),
        SLOT_CURRENT.family((k[:2], r["current_wal_lsn"]) for k, r in slot_key),
        SLOT_CONFIRMED.family((k[:2], r["confirmed_flush_lsn"]) for k, r in slot_key if r["active"]),
        SLOT_WAL_STATUS.family(((*k[:2], r["wal_status"]), 1) for k, r in slot_key if r["wal_status"]),
        LEGACY_LAG.single(lag),
        LEGACY_XLOG_DIFF.family(sender_diffs),
        LEGACY_XMIN_AGE.family((k, r["xmin_age"]) for k, r in slot_key),
    )
    return CollectorResult(families)


SPEC = CollectorSpec(
    name="replication",
    description="Replication: whether this server is a standby and how far its replay is behind; per "
    "standby write, flush and replay lag (pg_stat_replication); replication slots, active or not, and "
    "the WAL they retain (pg_replication_slots).",
    collect=collect,
    metrics=(IS_REPLICA, LAG, LAST_REPLAY, LAG_BYTES, WRITE_LAG, FLUSH_LAG, REPLAY_LAG, REPLAY_LAG_BYTES, STANDBYS,
             SENDER_LSN, SENDER_DIFF, SLOT_ACTIVE, SLOT_RETAINED, SLOT_SAFE,
             SLOTS_ACTIVE, SLOTS_DIFF, SLOTS_CURRENT, SLOTS_CONFIRMED, SLOTS_IS_ACTIVE, SLOTS_SAFE, SLOTS_WAL_STATUS,
             SLOT_IS_ACTIVE, SLOT_CURRENT, SLOT_CONFIRMED, SLOT_WAL_STATUS, LEGACY_LAG, LEGACY_XLOG_DIFF,
             LEGACY_XMIN_AGE),
)
