"""What a pruning round may remove, and what it did: the values :meth:`Ledger.prune` takes and returns.

The policy (how old is old enough) is the daemon's settings; the statements are in
:mod:`videoworker.ledger.operations_sql`; the loop that runs rounds is
:mod:`videoworker.core.retention`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Retention:
    """What one pruning round may remove (wall-clock cut-offs, seconds since the epoch).

    * outbox rows sent before ``sent_before``, and notifications delivered before it;
    * the request body and history of jobs finished before ``trim_before`` (a compact
      row stays: state, provider job id, outputs, cost, the final event);
    * jobs finished before ``forget_before``, with their reply targets and notifications:
      their ids may then be used again.
    """

    sent_before: float
    trim_before: float
    forget_before: float
    batch: int


@dataclass
class Pruned:
    """Rows one pruning batch removed or trimmed, by kind."""

    outbox: int = 0
    notifications: int = 0
    trimmed: int = 0
    forgotten: int = 0

    @property
    def total(self) -> int:
        return self.outbox + self.notifications + self.trimmed + self.forgotten
