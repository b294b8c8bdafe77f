"""A small poker room — the application of the original requirement — as a demo workload.

Tables ``players``, ``poker_tables``, ``game_hands`` and ``player_statistics``; a few client
threads that deal hands, update statistics and read leaderboards, and a back office that
keeps asking for the hands of the last minutes. That query is deliberately left without an
index — hands of a time range, ``game_hands.created_at`` — so that sequential scans, slow
queries, recommendations and alerts have something to say.

The room holds a million hands, filled in a few seconds. A real room of tens of millions
would make the range query slow by its volume alone; this one makes it slow by its shape:
the window starts at a minute of the room's clock (``room_minute()``, a PL/pgSQL function in
the room's time zone), which a sequential scan evaluates for every row it reads and an index
scan once. Without an index the query takes about a second, well over the development
profile's 500 ms slow-query threshold; ``CREATE INDEX ON game_hands (created_at)`` makes it
take a millisecond.

    python -m tools.workload postgresql://postgres@127.0.0.1:5432/postgres --seconds 60
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS players (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    chips bigint NOT NULL DEFAULT 10000,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS poker_tables (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    small_blind int NOT NULL
);
-- No index on created_at: "hands between two times" scans the whole table. The foreign
-- keys are added once the table is filled (SEED): checked row by row, they would make the
-- filling five times slower.
CREATE TABLE IF NOT EXISTS game_hands (
    id bigserial PRIMARY KEY,
    table_id bigint NOT NULL,
    winner_id bigint NOT NULL,
    pot bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS player_statistics (
    player_id bigint PRIMARY KEY REFERENCES players (id),
    hands_played bigint NOT NULL DEFAULT 0,
    hands_won bigint NOT NULL DEFAULT 0,
    total_winnings bigint NOT NULL DEFAULT 0
);
-- The start of the minute of `t` on the room's clock (the room is licensed in Malta).
-- PL/pgSQL, so never inlined: a sequential scan calls it for every row (see the module
-- docstring), an index scan once.
CREATE OR REPLACE FUNCTION room_minute(t timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN date_trunc('minute', t AT TIME ZONE 'Europe/Malta') AT TIME ZONE 'Europe/Malta';
END
$$;
"""

SEED = (
    "INSERT INTO players (name) SELECT 'player-' || g FROM generate_series(1, %(players)s) g",
    "INSERT INTO poker_tables (name, small_blind) SELECT 'table-' || g, 5 * (1 + g %% 10) FROM generate_series(1, 50) g",
    "INSERT INTO player_statistics (player_id) SELECT id FROM players",
    # One hand a second, going back from now: the last hour holds 3,600 of them.
    "INSERT INTO game_hands (table_id, winner_id, pot, created_at)"
    " SELECT 1 + (g %% 50), 1 + (g %% %(players)s), (random() * 5000)::bigint, now() - (g || ' seconds')::interval"
    " FROM generate_series(1, %(hands)s) g",
    "ALTER TABLE game_hands ADD FOREIGN KEY (table_id) REFERENCES poker_tables (id),"
    " ADD FOREIGN KEY (winner_id) REFERENCES players (id)",
)

Params = Callable[[random.Random], tuple[Any, ...]]
QUERIES: dict[str, tuple[str, Params]] = {
    "deal": ("INSERT INTO game_hands (table_id, winner_id, pot) VALUES (%s, %s, %s)",
             lambda r: (r.randint(1, 50), r.randint(1, PLAYERS), r.randint(10, 5000))),
    "win": ("UPDATE player_statistics SET hands_played = hands_played + 1, hands_won = hands_won + 1,"
            " total_winnings = total_winnings + %s WHERE player_id = %s",
            lambda r: (r.randint(10, 5000), r.randint(1, PLAYERS))),
    "player": ("SELECT p.name, s.hands_played, s.hands_won FROM players p JOIN player_statistics s"
               " ON s.player_id = p.id WHERE p.id = %s", lambda r: (r.randint(1, PLAYERS),)),
    "leaderboard": ("SELECT player_id, total_winnings FROM player_statistics ORDER BY total_winnings DESC LIMIT 10",
                    lambda r: ()),
    # The unindexed one (see the module docstring): the hands of the last complete minutes.
    "hands_between": ("SELECT count(*), sum(pot) FROM game_hands"
                      " WHERE created_at >= room_minute(now() - %s::interval) AND created_at < room_minute(now())",
                      lambda r: (f"{r.randint(1, 60)} minutes",)),
}
# How often each query of the players' clients runs, relative to the others.
MIX = ["deal"] * 4 + ["win"] * 4 + ["player"] * 6 + ["leaderboard"] * 2
# The back office's one query, started every BACK_OFFICE_PERIOD seconds (back to back
# while a run takes longer, on a busy machine): a run ends within every sampling interval of
# 5 s or more, so that each sees the slow statement and the alert stays firing.
BACK_OFFICE = "hands_between"
BACK_OFFICE_PERIOD = 3.0
PLAYERS = 2000
HANDS = 1_000_000


def setup(dsn: str, hands: int = HANDS) -> None:
    """Create and fill the tables (once: an existing room is kept)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        exists = conn.execute("SELECT count(*) FROM players").fetchone()
        if exists and exists[0]:
            return
        with conn.transaction():
            for statement in SEED:
                conn.execute(statement, {"players": PLAYERS, "hands": hands})
    # ANALYZE once the load is in the statistics: a backend reports the rows it wrote after
    # its transaction commits (up to PostgreSQL 14 through the statistics collector, from 15
    # when it flushes), and rows reported after an ANALYZE count as written since it — the
    # index advice would weigh a bulk load's rate, not the room's.
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'game_hands'::regclass"
                               ).fetchone()
            if row and row[0] >= hands:
                break
            time.sleep(0.1)
        conn.execute("ANALYZE")


def _session(dsn: str, stop: threading.Event, name: str, step: Callable[[psycopg.Connection[Any]], None]) -> None:
    """Run *step* on one connection until *stop* is set, reconnecting after a failure."""
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True, application_name=name) as conn:
                while not stop.is_set():
                    step(conn)
        except psycopg.Error:
            stop.wait(1.0)  # the database restarts in some demos: reconnect


def run(dsn: str, stop: threading.Event, clients: int = 3, pause: float = 0.01,
        back_office_period: float = BACK_OFFICE_PERIOD) -> list[threading.Thread]:
    """Start *clients* players' threads and the back office, playing until *stop* is set."""

    def client(seed: int) -> None:
        rng = random.Random(seed)

        def play(conn: psycopg.Connection[Any]) -> None:
            sql, params = QUERIES[rng.choice(MIX)]
            conn.execute(sql, params(rng))
            stop.wait(pause)

        _session(dsn, stop, "poker-room", play)

    def back_office() -> None:
        rng = random.Random(-1)
        sql, params = QUERIES[BACK_OFFICE]

        def report(conn: psycopg.Connection[Any]) -> None:
            began = time.monotonic()
            conn.execute(sql, params(rng))
            stop.wait(max(0.0, back_office_period - (time.monotonic() - began)))

        _session(dsn, stop, "poker-back-office", report)

    threads = [threading.Thread(target=client, args=(i,), name=f"poker-{i}", daemon=True) for i in range(clients)]
    threads.append(threading.Thread(target=back_office, name="poker-back-office", daemon=True))
    for thread in threads:
        thread.start()
    return threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dsn")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args(argv)
    setup(args.dsn)
    stop = threading.Event()
    threads = run(args.dsn, stop, args.clients)
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
