"""Sampling: the collectors of each target run on a fixed interval into immutable snapshots.

* ``runner``: runs one collector once and classifies its failure (shared with
  ``pgperf check``);
* ``visit``: lists the selected databases and runs the database-scoped collectors in
  each, under the process-wide connection budget;
* ``tracker``: what a target's sampler remembers about its collectors between samples
  (disabled, failing, last run of those with an interval);
* ``snapshot``: the snapshot of one sample and the builder accumulating it;
* ``target``: the sampler of one target and its loop;
* ``health``: a target's counters and the log of its database going down and up;
* ``fleet``: all targets of a process, each in its thread, spread over the interval;
* ``between``: what a target's loop runs between samples on its connection.
"""

from __future__ import annotations

from .between import BetweenSamples
from .fleet import Sampler
from .snapshot import CollectorStatus, Counters, Snapshot
from .target import Listener, TargetSampler
from .visit import ConnectionBudget

__all__ = ["BetweenSamples", "CollectorStatus", "ConnectionBudget", "Counters", "Listener", "Sampler", "Snapshot", "TargetSampler"]
