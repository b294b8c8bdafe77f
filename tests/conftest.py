"""Test-suite configuration; fixtures live in plugins (fix_pg.py)."""
