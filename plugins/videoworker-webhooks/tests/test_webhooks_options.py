"""``delivery.webhooks`` at intake, and the targets each event is owed to."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import videoworker_webhooks as webhooks
from webhooks_support import REQUEST_URL_SECRET, SECRET, event, settings_with

from videoworker import InvalidRequest, Settings, VideoRequest, delivery_options

OPEN = {"allow_request_urls": True, "request_url_secret": REQUEST_URL_SECRET, "request_url_hosts": ["127.0.0.1:8080"]}


def request(options: dict[str, Any] | None) -> VideoRequest:
    return VideoRequest(
        id="r-1", model="acme/video-1", prompt="a wombat", delivery=None if options is None else {"webhooks": options}
    )


def refusal(settings: Settings, options: dict[str, Any]) -> InvalidRequest:
    """What the host would answer: the delivery model first, then the plugin's validator."""
    with pytest.raises(InvalidRequest) as info:
        delivery_options({"webhooks": options}, "webhooks", webhooks.videoworker_delivery_model())
        webhooks.videoworker_validate_request(request(options), settings)
    return info.value


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"url": "https://user:pw@hooks.example.com/"}, "delivery.webhooks.url", "user name or password"),
        ({"url": "https://token@hooks.example.com/"}, "delivery.webhooks.url", "user name or password"),
        ({"url": "ftp://hooks.example.com/"}, "delivery.webhooks.url", "must be an https URL"),
        ({"url": "not a url"}, "delivery.webhooks.url", ""),
        ({"url": "https://hooks.example.com/", "colour": "red"}, "delivery.webhooks.colour", ""),
        ({"url": "https://hooks.example.com/", "statuses": ["done"]}, "delivery.webhooks.statuses.0", ""),
        ({"statuses": ["failed"]}, "delivery.webhooks.url", "required"),
    ],
)
def test_the_delivery_model_refuses_malformed_options(
    tmp_path: Path, options: dict[str, Any], field: str, words: str
) -> None:
    """Shape errors are refused by the declared model, naming the field, whatever the operator allows."""
    error = refusal(settings_with(tmp_path, **OPEN), options)
    assert error.code == "invalid_request" and error.field == field and words in error.message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://hooks.example.com/", "must be https"),
        ("http://127.0.0.1:9999/", "127.0.0.1:9999 is not"),
        ("https://localhost/", "must not point at localhost"),
        ("https://LOCALHOST./x", "must not point at localhost"),
        ("https://app.localhost/", "must not point at app.localhost"),
        ("https://127.0.0.1/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://10.1.2.3/", "private"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("https://[::ffff:169.254.169.254]/", "metadata"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://100.64.0.1/", "CGNAT"),
        ("https://2130706433/", "127.0.0.1, a loopback"),
        ("https://0x7f.1/", "127.0.0.1, a loopback"),
        ("https://0.0.0.0/", "unspecified"),
    ],
)
def test_the_operators_policy_refuses_request_urls_at_intake(tmp_path: Path, url: str, words: str) -> None:
    """Plain http (unless allowlisted) and obviously internal literal hosts are refused before anything is paid for."""
    error = refusal(settings_with(tmp_path, **OPEN), {"url": url})
    assert error.field == "delivery.webhooks.url" and words in error.message, error.message


@pytest.mark.parametrize("section", [{}, {"endpoints": [{"name": "ops", "url": "https://a/", "secret": SECRET}]}])
def test_request_urls_are_refused_unless_the_operator_allows_them(tmp_path: Path, section: dict[str, Any]) -> None:
    """Without allow_request_urls (also with no section at all) a request URL refuses the request."""
    error = refusal(settings_with(tmp_path, **section), {"url": "https://hooks.example.com/"})
    assert error.field == "delivery.webhooks.url" and "does not deliver to request-supplied" in error.message


def test_statuses_beyond_the_operators_are_refused(tmp_path: Path) -> None:
    """A request may narrow the statuses sent to its URL, not widen them past request_url_statuses."""
    error = refusal(settings_with(tmp_path, **OPEN), {"url": "https://hooks.example.com/", "statuses": ["submitted"]})
    assert error.field == "delivery.webhooks.statuses" and "submitted" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/v1/videos?token=abc",
        "https://hooks.example.com:8443/",
        "https://93.184.216.34/",
        "http://127.0.0.1:8080/hook",  # allowlisted: plain http and a loopback address are fine for it
    ],
)
def test_allowed_request_urls_pass(tmp_path: Path, url: str) -> None:
    """Public https URLs and allowlisted hosts are accepted."""
    webhooks.videoworker_validate_request(request({"url": url}), settings_with(tmp_path, **OPEN))


def test_requests_without_webhook_options_always_pass(tmp_path: Path) -> None:
    """A request that asks nothing of this plugin is none of its business, configured or not."""
    for section in ({}, OPEN):
        webhooks.videoworker_validate_request(request(None), settings_with(tmp_path, **section))


def test_targets_follow_each_endpoints_statuses(tmp_path: Path) -> None:
    """Endpoints get the final statuses by default, and exactly the statuses they list otherwise."""
    settings = settings_with(
        tmp_path,
        endpoints=[
            {"name": "ops", "url": "https://a/", "secret": SECRET},
            {"name": "all", "url": "https://b/", "secret": SECRET, "statuses": ["submitted", "in_progress", "failed"]},
        ],
    )
    keys = {
        status: [t.key for t in webhooks.videoworker_notification_targets(event(status), settings)]
        for status in ("submitted", "in_progress", "completed", "failed")
    }
    assert keys == {
        "submitted": ["endpoint:all"],
        "in_progress": ["endpoint:all"],
        "completed": ["endpoint:ops"],
        "failed": ["endpoint:ops", "endpoint:all"],
    }
    assert webhooks.videoworker_notification_targets(event("failed"), settings)[0].data == {"endpoint": "ops"}


def test_a_request_url_target_is_keyed_by_its_hash_and_holds_no_secret(tmp_path: Path) -> None:
    """The request URL becomes ``url:<sha256[:16]>`` with the URL as its only data: nothing secret is stored."""
    url = "https://hooks.example.com/v1/videos?token=abc"
    settings = settings_with(tmp_path, endpoints=[{"name": "ops", "url": "https://a/", "secret": SECRET}], **OPEN)
    targets = webhooks.videoworker_notification_targets(event("completed", {"webhooks": {"url": url}}), settings)
    assert [t.key for t in targets] == ["endpoint:ops", "url:" + hashlib.sha256(url.encode()).hexdigest()[:16]]
    assert targets[1].data == {"url": url}
    stored = json.dumps([t.data for t in targets])
    assert "whsec_" not in stored and SECRET not in stored and REQUEST_URL_SECRET not in stored


@pytest.mark.parametrize(
    ("options", "wanted"),
    [
        ({"url": "https://h.example/"}, {"completed", "failed"}),
        ({"url": "https://h.example/", "statuses": ["failed"]}, {"failed"}),
        ({"url": "http://h.example/"}, set()),  # refused at intake: its failed event is owed nothing
        ({"url": "https://h.example/", "bogus": 1}, set()),
    ],
)
def test_a_request_url_gets_the_statuses_it_asked_for(
    tmp_path: Path, options: dict[str, Any], wanted: set[str]
) -> None:
    """The request's statuses narrow the operator's; options refused at intake never become targets."""
    settings = settings_with(tmp_path, **OPEN)
    got = {
        status
        for status in ("submitted", "in_progress", "completed", "failed")
        if webhooks.videoworker_notification_targets(event(status, {"webhooks": options}), settings)
    }
    assert got == wanted


def test_without_allow_request_urls_no_request_url_target_is_named(tmp_path: Path) -> None:
    """An operator who turned request URLs off owes them nothing, even for requests accepted earlier."""
    settings = settings_with(tmp_path)
    targets = webhooks.videoworker_notification_targets(event("failed", {"webhooks": {"url": "https://h/"}}), settings)
    assert targets == []
