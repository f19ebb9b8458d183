"""``videoworker submit``: publish one request as a producer would, and optionally follow it to its end."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from videoworker.cli.common import Ctx, fail
from videoworker.errors import WorkerError


@click.command()
@click.option("--model", help="Video model id, e.g. google/veo-3.1.")
@click.option("--prompt", help="What to generate.")
@click.option("--id", "request_id", help="Idempotency key; generated if absent.")
@click.option("--duration", type=int)
@click.option("--resolution")
@click.option("--aspect-ratio")
@click.option("--size")
@click.option("--metadata", help="JSON object echoed in every event.")
@click.option("--file", "file", type=click.File("r"), help="Read the request JSON from a file ('-' for stdin).")
@click.option("--wait", is_flag=True, help="Wait for the final event and show progress.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds to wait with --wait.")
@click.pass_obj
def submit(obj: Ctx, /, file: Any, wait: bool, timeout: float, metadata: str | None, **fields: Any) -> None:
    """Publish one request to the request queue (from flags or a JSON file)."""
    from videoworker.amqp.producer import submit as publish

    request: dict[str, Any] = json.load(file) if file else {}
    fields["id"] = fields.pop("request_id")
    request.update({k: v for k, v in fields.items() if v is not None})
    if metadata:
        request["metadata"] = json.loads(metadata)

    def progress(event: dict[str, Any]) -> None:
        click.echo(
            f"{event['id']}: {event['status']}" + (f" (job {event['job_id']})" if event.get("job_id") else ""), err=True
        )

    try:
        results = asyncio.run(publish(obj.settings(), [request], wait=timeout if wait else None, on_event=progress))
    except TimeoutError:
        fail(f"no final event within {timeout:g}s", code=1)
    except (WorkerError, OSError) as exc:
        fail(str(exc))
    click.echo(json.dumps(results[0], indent=2))
    if wait and results[0].get("status") != "completed":
        sys.exit(1)


COMMANDS = (submit,)
