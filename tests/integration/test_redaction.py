"""Redaction, end to end: no secret reaches ``videoworker config``, the logs, the errors or the events.

Every secret gets a unique, greppable value: the OpenRouter API key, the AMQP password
(of a RabbitMQ user made for this test, when the broker lets us make one) and a secret
in the AMQP URL's query, the PostgreSQL ledger's password and ``sslpassword``, a token in
``openrouter_base_url``'s query, a webhook endpoint's signing secret and a token in its
URL's query, the Slack webhook URL's token, the S3 secret access key and session token
(from the AWS environment: the S3 plugin takes no credential in its settings) and a
token in the S3 endpoint's query. Then a full run of the real ``videoworker run``: a
video stored in S3 (moto) and announced through a signed webhook and Slack, a provider
failure, a bad request; a second run whose S3 endpoint, webhook receiver and Slack all
fail; daemons whose broker refuses the connection, refuses the password, and whose
ledger host refuses; ``config``, ``config --reference``, ``plugins``, ``models``,
``--help``; wrong settings next to secrets. Everything they print, every event, reply,
dead letter, request a receiver got and every ledger row is grepped for every secret.

Each path is also proved to have run (the object is in S3, the webhook verifies with the
secret, the failures logged their errors…), so a silent no-op cannot pass.

Limitation: when RabbitMQ's management API and ``rabbitmqctl`` are both unavailable, no
user with a unique password can be made; the full run then uses the test broker's
account, and the AMQP password is covered by the refused-password and refused-connection
daemons only (the test says so in its output).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import boto3  # type: ignore[import-untyped, unused-ignore]
import httpx
import pytest
from moto.server import ThreadedMotoServer
from standardwebhooks import Webhook

from tests.conftest import PG_URL, ROOT, DaemonProcess, Observer
from videoworker.testing.recorder import until
from videoworker_devtools.ports import free_port
from videoworker_devtools.receivers import HttpReceiver
from videoworker_devtools.simulator import SimulatorThread

MODEL = "google/veo-3.1"


def _unique(label: str) -> str:
    """A value no program would print by chance: a label and 16 random hex digits, letters and digits only."""
    return f"rdx{label}{uuid.uuid4().hex[:16]}"


#: Every secret of the run, by name: letters and digits after their fixed prefixes (the webhook secret is base64 of
#: such a value), so URL-encoding cannot disguise them.
SECRETS: dict[str, str] = {
    "api_key": "sk-or-v1-" + _unique("key"),
    "amqp_password": _unique("amqppw"),
    "amqp_query": _unique("amqpq"),
    "ledger_password": _unique("pgpw"),
    "ledger_query": _unique("pgq"),
    "base_url_query": _unique("baseq"),
    "webhook_secret": "whsec_" + base64.b64encode(_unique("whsec").encode()).decode(),
    "webhook_url_query": _unique("hookq"),
    "slack_token": _unique("slack"),
    "aws_secret_access_key": _unique("awssecret"),
    "aws_session_token": _unique("awstoken"),
    "s3_endpoint_query": _unique("s3q"),
    # wrong values next to secrets, and secrets of daemons that cannot connect
    "bad_amqp_url": _unique("badamqp"),
    "bad_base_url": _unique("badbase"),
    "bad_ledger_url": _unique("badledger"),
    "bad_webhook_secret": _unique("badwhsec"),
    "bad_webhook_query": _unique("badhookq"),
    "bad_slack_token": _unique("badslack"),
    "bad_s3_secret": _unique("bads3"),
    "bad_env_json": _unique("badjson"),
    "wrong_amqp_password": _unique("wrongamqp"),
    "refused_amqp_password": _unique("refusedamqp"),
    "refused_amqp_query": _unique("refusedamqpq"),
    "refused_ledger_password": _unique("refusedpg"),
    "refused_ledger_query": _unique("refusedpgq"),
}
_HEX = re.compile(r"[0-9a-f]{16}")


def _needles() -> list[tuple[str, str]]:
    """What must never appear: each secret, its random core, and a webhook secret's base64 body and key."""
    found = []
    for name, value in SECRETS.items():
        found.append((name, value))
        if value.startswith("whsec_"):
            body = value.removeprefix("whsec_")
            found += [(name, body), (name, base64.b64decode(body).decode())]
            value = base64.b64decode(body).decode()
        core = _HEX.search(value)
        assert core is not None
        found.append((name, core.group()))
    return found


NEEDLES = _needles()
#: Never printed either: the header that carries the key, and S3's signature header.
FORBIDDEN = ("Authorization", "Bearer ", "AWS4-HMAC-SHA256 Credential")


#: A presigned S3 URL made with temporary credentials must carry the session token (SigV4 requires it), so the
#: ``url`` of a stored output holds it by design: that one parameter is allowed in what is published, nowhere else.
_PRESIGNED_TOKEN = re.compile(r"(X-Amz-Security-Token=)" + re.escape(SECRETS["aws_session_token"]))


def published(text: str) -> str:
    """``text`` (an event, a notification, a ledger row) with the session token of presigned URLs taken out."""
    return _PRESIGNED_TOKEN.sub(r"\1<the session token>", text)


def assert_clean(text: str, where: str) -> None:
    """Fail naming every secret found in ``text``, with the line it is on."""
    leaks = []
    for name, needle in NEEDLES:
        at = text.find(needle)
        if at >= 0:
            start, end = text.rfind("\n", 0, at) + 1, text.find("\n", at)
            leaks.append(f"{name}: {text[start : end if end >= 0 else None][:400]}")
    for word in FORBIDDEN:
        if word in text:
            leaks.append(f"{word!r}")
    assert not leaks, f"secrets leaked into {where}:\n  " + "\n  ".join(dict.fromkeys(leaks))


def test_the_grep_finds_every_secret() -> None:
    """The check itself can fail: each secret is caught inside other text, inside a URL, or cut across two lines."""
    for name, value in SECRETS.items():
        for text in (f"x {value} y", f'{{"a": "https://h/?t={value}"}}', f"{value[:-1]}\n{value[1:]}"):
            with pytest.raises(AssertionError, match=name):
                assert_clean(text, "a self-test")
    assert_clean("nothing secret here: amqp://vw:***@127.0.0.1/?password=***", "a self-test")


# --- the surroundings: a RabbitMQ user, S3, PostgreSQL, free ports ------------------------------------------------


@dataclass
class Capture:
    """Everything the run printed or sent, by where it came from, and what proves each path ran."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str) -> str:
        self.texts.append((where, text))
        return text


def _with_credentials(url: str, user: str, password: str, query: str = "") -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=30, check=True)


@pytest.fixture
def amqp_user(rabbit: str) -> Iterator[str | None]:
    """A RabbitMQ user with the unique AMQP password, made through the management API or rabbitmqctl; None if neither.

    Yields its name; the user is deleted afterwards.
    """
    name = f"vw-redact-{uuid.uuid4().hex[:8]}"
    password = SECRETS["amqp_password"]
    parts = urlsplit(rabbit)
    api = f"http://{parts.hostname}:15672/api"
    auth = (parts.username or "guest", parts.password or "guest")
    made = None
    try:
        answer = httpx.put(f"{api}/users/{name}", json={"password": password, "tags": ""}, auth=auth, timeout=3)
        if answer.status_code in (201, 204):
            httpx.put(
                f"{api}/permissions/%2F/{name}", json={"configure": ".*", "write": ".*", "read": ".*"}, auth=auth
            ).raise_for_status()
            made = "api"
    except httpx.HTTPError:
        pass
    if made is None and shutil.which("rabbitmqctl"):
        try:
            _rabbitmqctl("add_user", name, password)
            made = "rabbitmqctl"
            _rabbitmqctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
        except (subprocess.SubprocessError, OSError):
            if made:
                _rabbitmqctl("delete_user", name)
            made = None
    if made is None:
        print("no RabbitMQ user could be made: the full run uses the test account (see the module docstring)")
    yield name if made else None
    if made == "api":
        httpx.delete(f"{api}/users/{name}", auth=auth, timeout=5)
    elif made == "rabbitmqctl":
        _rabbitmqctl("delete_user", name)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """moto's S3 over HTTP with a bucket ``videos``; the unique AWS credentials only in the environment.

    Yields the endpoint and a boto3 client to look behind the plugin's back.
    """
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIDREDACTIONTEST",
        "AWS_SECRET_ACCESS_KEY": SECRETS["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": SECRETS["aws_session_token"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="videos")
    yield endpoint, client
    server.stop()


@dataclass
class Ledger:
    """The run's ledger: PostgreSQL with the unique password when it is there, else SQLite (the password untested)."""

    url: str
    pool: asyncpg.Pool | None = None
    schema: str = ""

    async def tables(self) -> dict[str, list[str]]:
        """Every row of every table, as text."""
        if self.pool is not None:
            query = "SELECT table_name FROM information_schema.tables WHERE table_schema = $1"
            names = [r["table_name"] for r in await self.pool.fetch(query, self.schema)]
            return {
                n: [r["row"] for r in await self.pool.fetch(f'SELECT t::text AS row FROM "{self.schema}"."{n}" t')]
                for n in names
            }
        with sqlite3.connect(self.url.removeprefix("sqlite:///")) as db:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {n: [str(row) for row in db.execute(f'SELECT * FROM "{n}"')] for n in names}

    async def request_ids(self) -> set[str]:
        if self.pool is not None:
            return {r["request_id"] for r in await self.pool.fetch(f'SELECT request_id FROM "{self.schema}".jobs')}
        with sqlite3.connect(self.url.removeprefix("sqlite:///")) as db:
            return {r[0] for r in db.execute("SELECT request_id FROM jobs")}


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    """The PostgreSQL ledger URL with the unique password (trust auth ignores it) and ``sslpassword``, in a schema
    of its own; SQLite when PostgreSQL is not there or wants a real password."""
    user = urlsplit(PG_URL).username or "postgres"
    schema = f"t_{uuid.uuid4().hex}"
    url = _with_credentials(PG_URL, user, SECRETS["ledger_password"], f"schema={schema}")
    try:
        conn = await asyncio.wait_for(asyncpg.connect(url.split("?")[0]), 5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL unusable with any password ({type(exc).__name__}): the ledger password is not tested")
        yield Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
        return
    await conn.close()
    pool = await asyncpg.create_pool(PG_URL, min_size=1, max_size=2)
    try:
        yield Ledger(f"{url}&sslpassword={SECRETS['ledger_query']}", pool, schema)
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    """A TOML document of plugin sections (JSON's strings, numbers and arrays are TOML's too)."""
    lines = []
    for name, section in sections.items():
        lines.append(f"[plugins.{name}]")
        for key, value in section.items():
            if isinstance(value, list):  # of tables: inline tables
                items = ", ".join(
                    "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in item.items()) + "}" for item in value
                )
                lines.append(f"{key} = [{items}]")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


# --- the commands ---------------------------------------------------------------------------------------------------


def _commands(full: dict[str, str], base: dict[str, str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """What is run with every secret set (``full``), and with wrong values next to secrets (from ``base``)."""
    wrong_core = {
        **full,
        "VIDEOWORKER_POLL_INTERVAL": "-1",
        "VIDEOWORKER_AMQP_URL": f"http://u:{SECRETS['bad_amqp_url']}@h/?password={SECRETS['bad_amqp_url']}",
        "VIDEOWORKER_LEDGER_URL": f"mysql://u:{SECRETS['bad_ledger_url']}@h/db?password={SECRETS['bad_ledger_url']}",
    }
    # the model-wide rule (plain http off loopback) runs once the fields are valid: a case of its own
    insecure_base = {
        **full,
        "VIDEOWORKER_OPENROUTER_BASE_URL": f"http://u:{SECRETS['bad_base_url']}@openrouter.example/api",
    }
    # a query in the base URL would swallow every API path: refused, without echoing it
    base_with_token = {
        **full,
        "VIDEOWORKER_OPENROUTER_BASE_URL": full["VIDEOWORKER_OPENROUTER_BASE_URL"]
        + "?token="
        + SECRETS["base_url_query"],
    }
    endpoints = [
        {
            "name": "ops",
            "url": f"https://hooks.example/x?sig={SECRETS['bad_webhook_query']}",
            "secret": f"whsec_!{SECRETS['bad_webhook_secret']}",
        }
    ]
    wrong_plugins = {
        **base,
        "VIDEOWORKER_PLUGINS__WEBHOOKS__ENDPOINTS": json.dumps(endpoints),
        "VIDEOWORKER_PLUGINS__SLACK__WEBHOOK_URL": f"http://slack.example/services/T/B/{SECRETS['bad_slack_token']}",
        "VIDEOWORKER_PLUGINS__S3__BUCKET": "videos",
        "VIDEOWORKER_PLUGINS__S3__SECRET_ACCESS_KEY": SECRETS["bad_s3_secret"],
    }
    return {
        "config": (["config"], full),
        "config --reference": (["config", "--reference"], full),
        "plugins": (["plugins"], full),
        "--help": (["--help"], full),
        "run --help": (["run", "--help"], full),
        "models": (["models"], full),
        "config, wrong settings": (["config"], wrong_core),
        "run, insecure openrouter_base_url": (["run"], insecure_base),
        "config, base URL with a query": (["config"], base_with_token),
        "config, unreadable JSON": (
            ["config"],
            {**full, "VIDEOWORKER_DISABLED_PLUGINS": f'["{SECRETS["bad_env_json"]}"'},
        ),
        "config, wrong plugin settings": (["config"], wrong_plugins),
        "plugins, wrong plugin settings": (["plugins"], wrong_plugins),
        "run, wrong plugin settings": (["run"], wrong_plugins),
    }


def _start_all(commands: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, subprocess.Popen[str]]:
    """Start every command at once (they run while the daemons below do)."""
    return {
        name: subprocess.Popen(
            [sys.executable, "-m", "videoworker", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, (args, env) in commands.items()
    }


def _check_commands(started: dict[str, subprocess.Popen[str]], got: Capture) -> None:
    """Collect each command's output, and check it did what it was run for (so its output is worth grepping)."""
    results = {}
    for name, proc in started.items():
        out, _ = proc.communicate(timeout=60)
        results[name] = (proc.returncode, got.add(f"`videoworker {name}`", out))

    def answer(name: str, code: int, *expected: str) -> str:
        rc, out = results[name]
        assert rc == code, f"`videoworker {name}` exited {rc}, not {code}:\n{out}"
        for text in expected:
            assert text in out, f"`videoworker {name}` does not say {text!r}:\n{out}"
        return out

    shown = json.loads(answer("config", 0))
    assert shown["openrouter_api_key"] == "***"
    assert shown["amqp_url"].endswith("/?heartbeat=***&password=***") and ":***@" in shown["amqp_url"]
    if "postgresql" in shown["ledger_url"]:
        assert ":***@" in shown["ledger_url"] and "sslpassword=***" in shown["ledger_url"]
    assert shown["openrouter_base_url"].endswith("/api/v1")
    assert shown["plugins"]["webhooks"]["endpoints"][0]["secret"] == "***"
    assert shown["plugins"]["webhooks"]["endpoints"][0]["url"].endswith("/hook?sig=***")
    assert shown["plugins"]["slack"]["webhook_url"] == "***"
    answer("config --reference", 0, "| `amqp_url` |", "`amqp://guest:***@localhost:5672/`")
    plugins = answer("plugins", 0, "s3", "webhooks", "slack")
    assert "invalid" not in plugins
    for name in ("--help", "run --help"):
        answer(name, 0, "Usage:")
    answer("models", 0, MODEL)
    answer("config, wrong settings", 2, "poll_interval", "amqp_url", "ledger_url")
    answer("run, insecure openrouter_base_url", 2, "openrouter_base_url")
    answer("config, base URL with a query", 2, "openrouter_base_url", "no ?query")
    answer("config, unreadable JSON", 2, "disabled_plugins")
    wrong = json.loads(answer("config, wrong plugin settings", 0))
    assert wrong["plugins"]["webhooks"]["endpoints"][0]["secret"] == "***"
    assert wrong["plugins"]["webhooks"]["endpoints"][0]["url"] == "https://hooks.example/x?sig=***"
    invalid = answer(
        "plugins, wrong plugin settings", 0, "[plugins.s3] secret_access_key", "[plugins.slack] webhook_url"
    )
    assert re.search(r"webhooks .* invalid: \[plugins\.webhooks\] endpoints", invalid), invalid
    answer("run, wrong plugin settings", 2, "[plugins.")


def _log_of(daemon: DaemonProcess) -> str:
    return daemon.log.read_text(errors="replace") if daemon.log.exists() else ""


def _wait_for_log(daemon: DaemonProcess, pattern: str, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, _log_of(daemon)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the log:\n{_log_of(daemon)[-3000:]}")
        time.sleep(0.05)
    return _log_of(daemon)


async def _final(observer: Observer, request_id: str, timeout: float = 30) -> dict[str, Any]:
    """The request's final event, from the events exchange (replies depend on reply_to_pattern; events do not)."""
    await until(lambda: observer.finals(request_id), timeout, f"the final event of {request_id}")
    return observer.finals(request_id)[0]


def _slack_id(body: bytes) -> str | None:
    found = re.search(r"rdx-[a-z]+", body.decode(errors="replace"))
    return found.group() if found else None


def _add_received(got: Capture, *receivers: HttpReceiver) -> None:
    """What the receivers got, but the URL they were called on (which is theirs to know)."""
    for receiver in receivers:
        for r in receiver.ok():
            where = f"a request to a receiver ({r.json().get('id', 'slack')})"
            got.add(where, published(r.body.decode()) + str(r.headers))


# --- the run --------------------------------------------------------------------------------------------------------


async def test_a_full_run_never_shows_a_secret(
    process: Callable[..., DaemonProcess],
    observer: Observer,
    sim: SimulatorThread,
    amqp_user: str | None,
    s3: tuple[str, Any],
    ledger: Ledger,
    rabbit: str,
    tmp_path: Path,
) -> None:
    """Secrets everywhere, every path exercised; then grep all of it."""
    endpoint, raw_s3 = s3
    ledger_url = ledger.url
    got = Capture()
    sim.configure(api_key=SECRETS["api_key"])
    amqp_query = f"heartbeat=30&password={SECRETS['amqp_query']}"
    if amqp_user is not None:
        amqp_url = _with_credentials(rabbit, amqp_user, SECRETS["amqp_password"], amqp_query)
    else:
        amqp_url = urlunsplit(urlsplit(rabbit)._replace(query=amqp_query))
    quick = {"VIDEOWORKER_LOG_LEVEL": "debug", "VIDEOWORKER_RETRY_BACKOFF_BASE": "0.1"}

    with HttpReceiver() as hooks_rx, HttpReceiver() as slack_rx:
        hook_url = f"{hooks_rx.url}/hook?sig={SECRETS['webhook_url_query']}"
        slack_url = f"{slack_rx.url}/services/T0/B0/{SECRETS['slack_token']}"
        good = tmp_path / "good.toml"
        good.write_text(
            _toml(
                {
                    "s3": {"bucket": "videos", "endpoint_url": endpoint, "prefix": "rdx/", "presign_seconds": 60},
                    "webhooks": {"endpoints": [{"name": "ops", "url": hook_url, "secret": SECRETS["webhook_secret"]}]},
                    "slack": {"webhook_url": slack_url},
                }
            )
        )
        base = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOWORKER_", "OPENROUTER_"))}
        base |= {"OPENROUTER_API_KEY": SECRETS["api_key"], "VIDEOWORKER_DATA_DIR": str(tmp_path / "cli")}
        full = base | {
            "VIDEOWORKER_CONFIG": str(good),
            "VIDEOWORKER_AMQP_URL": amqp_url,
            "VIDEOWORKER_LEDGER_URL": ledger_url,
            "VIDEOWORKER_OPENROUTER_BASE_URL": sim.base_url,
        }
        commands = _start_all(_commands(full, base))

        # 1. the full run: a completed video (S3, a signed webhook, Slack), a provider failure, a bad request
        daemon = process(
            env={"VIDEOWORKER_CONFIG": str(good)},
            amqp_url=amqp_url,
            ledger_url=ledger_url,
            openrouter_api_key=SECRETS["api_key"],
        )
        daemon.start(**quick)
        await observer.publish({"id": "rdx-ok", "model": MODEL, "prompt": "a paper boat", "duration": 4})
        done = await _final(observer, "rdx-ok", timeout=30)
        assert done["status"] == "completed", done
        sim.configure(failure_rate=1.0)
        await observer.publish({"id": "rdx-fail", "model": MODEL, "prompt": "a paper boat that sinks"})
        await observer.publish({"id": "rdx-bad", "model": MODEL, "prompt": "x", "nope": 1})
        failed = await _final(observer, "rdx-fail", timeout=30)
        await until(
            lambda: (
                {"rdx-ok", "rdx-fail"} <= {r.json()["id"] for r in hooks_rx.ok()}
                and {"rdx-ok", "rdx-fail"} <= {_slack_id(r.body) for r in slack_rx.ok()}
            ),
            30,
            "webhooks and Slack posts for both jobs",
        )
        await until(lambda: observer.dead, 10, "the bad request's dead letter")
        (bad,) = observer.dead
        daemon.stop()
        sim.configure(failure_rate=0.0)

        # proof that each path ran, with the secrets in use
        assert failed["status"] == "failed" and failed["error"]["code"] == "provider_failed", failed
        assert (bad.headers or {}).get("x-videoworker-error-code") == "invalid_request", bad.headers
        (output,) = done["outputs"]
        assert output["location"] == "s3://videos/rdx/rdx-ok/0.mp4", output
        assert raw_s3.head_object(Bucket="videos", Key="rdx/rdx-ok/0.mp4")["ContentLength"] > 0
        hooks = {r.json()["id"]: r for r in hooks_rx.ok()}
        assert Webhook(SECRETS["webhook_secret"]).verify(hooks["rdx-ok"].body, hooks["rdx-ok"].headers) == done
        assert Webhook(SECRETS["webhook_secret"]).verify(hooks["rdx-fail"].body, hooks["rdx-fail"].headers) == failed
        assert all(r.path == f"/hook?sig={SECRETS['webhook_url_query']}" for r in hooks_rx.ok())
        assert all(r.path.endswith(SECRETS["slack_token"]) for r in slack_rx.ok())
        assert {"rdx-ok", "rdx-fail"} <= await ledger.request_ids()  # the ledger is the one configured
        log = got.add("the full run's log", _log_of(daemon))
        for line in ('"starting"', '"ready"', "job finished", "job failed", "notification delivered", '"stopped"'):
            assert line in log, f"{line} not in the full run's log"
        _add_received(got, hooks_rx, slack_rx)

        # 2. the failing run: the S3 endpoint is wrong (and carries a token), the webhook and Slack answer 500
        hooks_rx.status = slack_rx.status = 500
        hooks_rx.received.clear()
        slack_rx.received.clear()
        wrong_s3 = f"http://127.0.0.1:{free_port()}/?token={SECRETS['s3_endpoint_query']}"
        failing = tmp_path / "failing.toml"
        failing.write_text(good.read_text().replace(json.dumps(endpoint), json.dumps(wrong_s3)))
        daemon = process(
            env={"VIDEOWORKER_CONFIG": str(failing)},
            amqp_url=amqp_url,
            ledger_url=ledger_url,
            openrouter_api_key=SECRETS["api_key"],
        )
        daemon.start(**quick, VIDEOWORKER_STORAGE_RETRY_SECONDS="1")
        await observer.publish({"id": "rdx-store", "model": MODEL, "prompt": "a boat nobody can keep"})
        stored = await _final(observer, "rdx-store", timeout=30)
        await until(lambda: hooks_rx.received and slack_rx.received, 30, "the failing receivers to be called")
        _wait_for_log(daemon, "notification failed", 15, "the failed notifications to be logged")
        daemon.stop()
        _add_received(got, hooks_rx, slack_rx)
        assert stored["status"] == "failed" and stored["error"]["code"] == "storage_failed", stored
        assert "EndpointResolutionError" in stored["error"]["message"], stored  # botocore named the endpoint
        log = got.add("the failing run's log", _log_of(daemon))
        for line in ("storage failed; retrying", "answered 500"):
            assert line in log, f"{line} not in the failing run's log"

    # 3. daemons that cannot start: the broker refuses the connection, the broker refuses the password, the ledger's
    #    host refuses; the first also has a token in openrouter_base_url's query
    refused_amqp = process(
        amqp_url=f"amqp://vw:{SECRETS['refused_amqp_password']}@127.0.0.1:{free_port()}/"
        f"?password={SECRETS['refused_amqp_query']}",
        openrouter_api_key=SECRETS["api_key"],
        openrouter_base_url=sim.base_url,
        data_dir=tmp_path / "refused-amqp",
    )
    wrong_password = process(
        amqp_url=_with_credentials(rabbit, amqp_user or "guest", SECRETS["wrong_amqp_password"]),
        openrouter_api_key=SECRETS["api_key"],
        data_dir=tmp_path / "wrong-password",
    )
    refused_ledger = process(
        ledger_url=f"postgresql://postgres:{SECRETS['refused_ledger_password']}@127.0.0.1:{free_port()}/test"
        f"?sslpassword={SECRETS['refused_ledger_query']}",
        openrouter_api_key=SECRETS["api_key"],
        data_dir=tmp_path / "refused-ledger",
    )
    for each in (refused_amqp, wrong_password, refused_ledger):
        each.start(**quick)
    log = _wait_for_log(refused_amqp, "broker unreachable; retrying", 20, "the refused connection to be logged")
    assert '"starting"' in log
    log = _wait_for_log(wrong_password, "broker unreachable; retrying", 20, "the refused password to be logged")
    assert "ProbableAuthenticationError" in log or "ACCESS_REFUSED" in log, log
    refused_ledger.wait(20)  # it gives up on its own
    assert refused_ledger.proc is not None and refused_ledger.proc.returncode != 0
    assert "ConnectionRefusedError" in _log_of(refused_ledger) or "refused" in _log_of(refused_ledger)
    for name, each in (("refused AMQP", refused_amqp), ("wrong password", wrong_password), ("ledger", refused_ledger)):
        each.stop()
        got.add(f"the {name} daemon's output", _log_of(each))

    # 4. the commands, started before the run
    _check_commands(commands, got)

    # 5. what left the process: events, replies, dead letters, the ledger's rows (the receivers' requests are in)
    for key, _body, msg in observer.events:
        got.add(f"event {key}", published(msg.body.decode()) + str(msg.headers))
    for _, msg in observer.replies:
        got.add("a reply", published(msg.body.decode()) + str(msg.headers))
    for msg in observer.dead:
        got.add("a dead letter", msg.body.decode(errors="replace") + str(msg.headers))
    assert {"rdx-ok", "rdx-fail", "rdx-store"} <= {body["id"] for _, body, _ in observer.events}
    for table, rows in (await ledger.tables()).items():
        got.add(f"the ledger table {table}", published("\n".join(rows)))

    for where, text in got.texts:
        assert_clean(text, where)
    assert len(got.texts) >= 25
