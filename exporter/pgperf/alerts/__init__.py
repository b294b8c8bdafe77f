"""Alerts: the lifecycle kept in ``performance_alerts`` (fired, acknowledged, resolved)."""

from __future__ import annotations

from .store import AlertNotFound, AlertStore, InvalidTransition

__all__ = ["AlertNotFound", "AlertStore", "InvalidTransition"]
