"""A faithful local simulator of OpenRouter's asynchronous video API, with fault injection.

Tests, the demo and benchmarks talk to it instead of openrouter.ai::

    from videoworker_devtools.simulator import SimConfig, SimulatorThread

    with SimulatorThread(SimConfig(job_seconds=(0.1, 0.2), error_rate=0.2, seed=1)) as sim:
        client = make_client(base_url=sim.base_url, api_key=sim.api_key)
        ...
        assert sim.stats()["submits"] == 1

Inside a running event loop use ``runner = await serve("127.0.0.1", 0, config)`` and
``bound_port(runner)``; from a shell, ``videoworker simulate --port 8090``.
Knobs change at run time through ``POST /_sim/config``; see :class:`SimConfig`.
"""

from __future__ import annotations

from videoworker_devtools.simulator.app import API_PREFIX, bound_port, create_app, serve
from videoworker_devtools.simulator.config import SimConfig
from videoworker_devtools.simulator.thread import SimulatorThread

__all__ = ["API_PREFIX", "SimConfig", "SimulatorThread", "bound_port", "create_app", "serve"]
