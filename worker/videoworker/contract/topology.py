"""The broker topology producers rely on: how the request queue is declared.

A producer (or an operator's definitions file) that declares the queue with other
arguments than the daemon's makes the daemon's declaration fail, so these arguments
are part of the contract: the broker declares them and the AsyncAPI document publishes
them, from this one place.
"""

from __future__ import annotations

from typing import Any


def request_queue_arguments(delivery_limit: int, dead_letter_queue: str) -> dict[str, Any]:
    """Arguments of the request queue: quorum, a delivery limit, at-least-once dead-lettering, no overflow drop."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
