"""Default Slack messages: readable, escaped, inside Slack's limits, valid Block Kit."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from relay import slack_format
from relay.slack_format import default_message, digest_message, fit_payload, truncate

blocks_models = pytest.importorskip("slack_sdk.models.blocks")

UINT64_MAX = 18446744073709551615

# The sample events of the shared contract (Email Sent / Bounced, Push Sent).
SENT: dict[str, Any] = {
    "event_name": "Email Sent",
    "message_id": 2000013258,
    "message_code": "B780-5A7D243C-9E1F0375",
    "campaign_id": 961234,
    "platform": "Email",
    "payload": "Don't miss our summer sale!",
    "application_code": "3A1B2-C3D41",
    "hwid": "example@gmail.com",
    "user_id": "1538",
    "timestamp": 1723798222,
    "journey_title": "Summer sale",
    "journey_point_title": "5_summer sale_promoemail",
}
BOUNCED = {
    **SENT,
    "event_name": "Email Bounced",
    "hwid": "no-such-user@example.org",
    "user_id": "2291",
    "timestamp": 1723798230,
}
PUSH = {
    **SENT,
    "event_name": "Push Sent",
    "message_id": UINT64_MAX,
    "platform": "iOS",
    "payload": "Summer sale starts now",
    "hwid": "8F3C2B1A-6D4E-4F7A-9B2C-1E5D7A9C3F10",
}
MINIMAL = {
    k: SENT[k]
    for k in (
        "event_name",
        "message_code",
        "platform",
        "application_code",
        "hwid",
        "user_id",
        "timestamp",
    )
}

NAMES_AND_EMOJI = [
    ("Email Sent", ":outbox_tray:"),
    ("Email Delivered", ":white_check_mark:"),
    ("Email Bounced", ":warning:"),
    ("Email Opened", ":eyes:"),
    ("Email Link Clicked", ":link:"),
    ("Push Sent", ":outbox_tray:"),
    ("Something Else Entirely", ":bell:"),
]
NAMES = [name for name, _ in NAMES_AND_EMOJI]

HOSTILE_TEXT = "<!channel> <http://evil|click> & @here <@U123> <!subteam^S1> &amp; &lt;"


def hostile_events(name: str) -> list[dict[str, Any]]:
    """Events whose every text field tries to break out of Slack's formatting or limits."""
    every_field = {k: HOSTILE_TEXT for k, v in SENT.items() if isinstance(v, str)}
    return [
        {**SENT, "event_name": name, "payload": HOSTILE_TEXT},
        {**SENT, **every_field, "event_name": f"{name} {HOSTILE_TEXT}"},
        {**SENT, "event_name": name, "payload": "<&>" * 35_000},  # over 100 KB
        {**SENT, "event_name": name, "hwid": "&<" * 2500, "journey_title": "x" * 5000},
        {
            **SENT,
            "event_name": name + " 🚀" * 100,
            "payload": "Привет 👋🏽 café ✉️ " * 500,
            "hwid": "用户@例子.广告",
            "journey_point_title": "🎉" * 3000,
        },
        {**SENT, "event_name": name, "timestamp": 2**63 - 1, "campaign_id": UINT64_MAX},
        {**MINIMAL, "event_name": name, "payload": None, "campaign_id": None},
    ]


# -- checks every message must pass --------------------------------------------------------

OUR_DATE_TOKEN = re.compile(
    r"<!date\^-?\d+\^\{date_short_pretty\} \{time_secs\}\|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ>"
)
BAD_ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def check_safe(payload: dict[str, Any]) -> None:
    """No `<`/`>` except our own date tokens, every `&` starts a whole entity, no live @here."""
    for text in strings(payload):
        bare = OUR_DATE_TOKEN.sub("", text)
        assert "<" not in bare and ">" not in bare, text[:200]
        assert not BAD_ENTITY.search(text), text[:200]
        assert not re.search(r"(?<![\w.])@(here|channel|everyone)\b", text), text[:200]
    dumped = json.dumps(payload, ensure_ascii=False)
    assert "<!channel>" not in dumped
    assert "<http://evil" not in dumped
    assert "<@U123>" not in dumped


def text_len(obj: dict[str, Any]) -> int:
    return len(obj["text"])


def check_limits(payload: dict[str, Any], *, text_max: int = 3000) -> None:
    """Slack's documented limits, including those slack_sdk does not check itself."""
    assert set(payload) <= {"text", "blocks"}
    assert 0 < len(payload["text"]) <= text_max
    blocks = payload.get("blocks", [])
    assert len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < text_len(block["text"]) <= 150
        elif kind == "section":
            if "text" in block:
                assert 0 < text_len(block["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10
            for field in block.get("fields", []):
                assert 0 < text_len(field) <= 2000
        elif kind == "context":
            assert 0 < len(block["elements"]) <= 10
            for element in block["elements"]:
                assert 0 < text_len(element) <= 3000
        else:
            pytest.fail(f"unexpected block type {kind}")


def check_block_kit(payload: dict[str, Any]) -> None:
    for block in payload["blocks"]:
        parsed = blocks_models.Block.parse(block)
        assert parsed is not None
        parsed.validate_json()
        assert parsed.to_dict() == block


def check_message(payload: dict[str, Any]) -> None:
    check_safe(payload)
    check_limits(payload)
    check_block_kit(payload)
    json.dumps(payload)  # plain JSON data


def header_text(payload: dict[str, Any]) -> str:
    return str(payload["blocks"][0]["text"]["text"])


def all_text(payload: dict[str, Any]) -> str:
    return "\n".join(strings(payload))


# -- default_message -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "emoji"), NAMES_AND_EMOJI)
def test_default_message_for_each_event_name(name: str, emoji: str) -> None:
    message = default_message({**SENT, "event_name": name})
    check_message(message)
    assert header_text(message) == f"{emoji} {name}"
    assert message["text"].startswith(f"{emoji} {name} for example@gmail.com")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("index", range(7))
def test_default_message_for_hostile_events(name: str, index: int) -> None:
    check_message(default_message(hostile_events(name)[index]))


def test_default_message_fields() -> None:
    message = default_message(BOUNCED)
    fields = {
        f["text"].split("\n", 1)[0]: f["text"].split("\n", 1)[1]
        for f in message["blocks"][1]["fields"]
    }
    assert fields["*Recipient*"] == "no-such-user@example.org"
    assert fields["*Subject*"] == "Don't miss our summer sale!"
    assert fields["*Campaign*"] == "961234"
    assert fields["*Journey*"] == "Summer sale \u203a 5_summer sale_promoemail"
    assert fields["*Platform*"] == "Email"
    assert fields["*Time*"] == (
        "<!date^1723798230^{date_short_pretty} {time_secs}|2024-08-16T08:50:30Z>\n"
        "2024-08-16T08:50:30Z"
    )
    context = [e["text"] for e in message["blocks"][2]["elements"]]
    assert context == [
        "App: 3A1B2-C3D41",
        "User: 2291",
        "Message code: B780-5A7D243C-9E1F0375",
        "Message id: 2000013258",
    ]
    assert message["text"] == (
        ":warning: Email Bounced for no-such-user@example.org: Don't miss our summer sale!"
    )


def test_push_message_labels_payload_as_message_and_keeps_uint64() -> None:
    message = default_message(PUSH)
    check_message(message)
    text = all_text(message)
    assert "*Message*\nSummer sale starts now" in text
    assert "*Subject*" not in text
    assert f"Message id: {UINT64_MAX}" in text


def test_missing_optional_fields_are_omitted() -> None:
    for event in (MINIMAL, {**MINIMAL, "payload": None, "campaign_id": None, "journey_title": ""}):
        message = default_message(event)
        check_message(message)
        text = all_text(message)
        for label in ("*Subject*", "*Campaign*", "*Journey*", "Message id"):
            assert label not in text
        assert "None" not in text
        assert "*Recipient*" in text and "*Time*" in text


def test_journey_point_alone() -> None:
    message = default_message({**MINIMAL, "journey_point_title": "step 2"})
    assert "*Journey*\nstep 2" in all_text(message)


def test_unusable_timestamp_is_shown_as_text() -> None:
    for stamp in (2**63 - 1, -(2**63)):
        message = default_message({**SENT, "timestamp": stamp})
        check_message(message)
        assert f"*Time*\n{stamp}" in all_text(message)


def test_hostile_text_is_escaped_not_dropped() -> None:
    message = default_message({**SENT, "payload": "<!channel> <http://evil|click> & @here"})
    check_message(message)
    assert "&lt;!channel&gt; &lt;http://evil|click&gt; &amp; @\u2060here" in all_text(message)


def test_huge_fields_are_cut_with_an_ellipsis() -> None:
    message = default_message({**SENT, "payload": "&" * 100_000, "hwid": "h" * 5000})
    check_message(message)
    text = all_text(message)
    assert "&amp;" * 100 in text
    assert "h" * 5001 not in text
    assert "\u2026" in text


def test_escaped_event_name_in_header() -> None:
    message = default_message({**SENT, "event_name": "<!here> & Co"})
    check_message(message)
    assert header_text(message) == ":bell: &lt;!here&gt; &amp; Co"


# -- digest_message ------------------------------------------------------------------------


def bounce(i: int) -> dict[str, Any]:
    return {**BOUNCED, "hwid": f"user{i}@example.org", "timestamp": BOUNCED["timestamp"] + i}


def test_digest_of_three() -> None:
    events = [bounce(i) for i in range(3)]
    message = digest_message(events, {"campaign_id": 961234})
    check_message(message)
    assert header_text(message) == ":warning: 3 \u00d7 Email Bounced"
    text = all_text(message)
    assert "campaign_id:* 961234" in text
    assert "*Journey:* Summer sale" in text
    for i in range(3):
        assert f"\u2022 user{i}@example.org" in text
    assert "more" not in text
    assert message["text"] == ":warning: 3 \u00d7 Email Bounced (campaign_id: 961234)"
    assert "<!date^1723798230^" in text and "<!date^1723798232^" in text


def test_digest_of_500_lists_ten_and_says_how_many_more() -> None:
    events = [bounce(i) for i in range(500)]
    message = digest_message(events, {"campaign_id": 961234})
    check_message(message)
    text = all_text(message)
    assert header_text(message) == ":warning: 500 \u00d7 Email Bounced"
    assert text.count("\u2022 ") == 10
    assert "user9@example.org" in text and "user10@example.org" not in text
    assert "_and 490 more_" in text


def test_digest_total_counts_events_not_passed() -> None:
    message = digest_message([bounce(i) for i in range(500)], {}, total=1200)
    check_message(message)
    assert header_text(message) == ":warning: 1200 \u00d7 Email Bounced"
    assert "_and 1190 more_" in all_text(message)
    assert message["text"] == ":warning: 1200 \u00d7 Email Bounced"


def test_digest_of_mixed_names_and_no_journey() -> None:
    events = [
        {**MINIMAL, "event_name": "Email Opened"},
        {**MINIMAL, "event_name": "Email Link Clicked"},
    ]
    message = digest_message(events, {"platform": "Email", "campaign_id": None})
    check_message(message)
    assert header_text(message) == ":bell: 2 \u00d7 Email Opened, Email Link Clicked"
    text = all_text(message)
    assert "*platform:* Email" in text and "*campaign_id:* (none)" in text
    assert "Journey" not in text


@pytest.mark.parametrize("name", NAMES)
def test_digest_of_hostile_events(name: str) -> None:
    events = hostile_events(name) * 80
    key = {"campaign_id": HOSTILE_TEXT, HOSTILE_TEXT: "x" * 5000}
    check_message(digest_message(events, key))
    check_message(digest_message(events[:3], key, total=3))


def test_empty_digest_is_still_a_valid_message() -> None:
    check_message(digest_message([], {}, total=0))


# -- fit_payload and truncate --------------------------------------------------------------


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def test_fit_payload_applies_every_limit() -> None:
    payload = {
        "text": "t" * 50_000,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "h" * 500}},
            section("s" * 5000),
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": "f" * 3000} for _ in range(12)],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "c" * 4000} for _ in range(12)],
            },
            *[section(f"block {i}") for i in range(60)],
        ],
    }
    original = copy.deepcopy(payload)
    fitted = fit_payload(payload)
    assert payload == original  # the input is left as it was
    check_limits(fitted)
    check_block_kit(fitted)
    assert len(fitted["blocks"]) == 50
    assert fitted["blocks"][-1]["type"] == "context"
    assert "15 more blocks left out" in fitted["blocks"][-1]["elements"][0]["text"]
    assert fitted["blocks"][0]["text"]["text"] == "h" * 149 + "\u2026"


def test_fit_payload_text_only_may_be_long() -> None:
    assert len(fit_payload({"text": "t" * 50_000})["text"]) == 40_000
    assert fit_payload({"text": "short"}) == {"text": "short"}


def test_fit_payload_leaves_unknown_shapes_alone() -> None:
    payload = {
        "blocks": [
            {"type": "divider"},
            "odd",
            {"type": "image", "image_url": "u", "alt_text": "a"},
        ],
        "username": "relay",
    }
    assert fit_payload(payload) == payload


def test_default_messages_are_fitted() -> None:
    message = default_message(SENT)
    assert fit_payload(message) == message


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("abcdefghij", 10, "abcdefghij"),
        ("abcdefghijk", 10, "abcdefghi\u2026"),
        ("abcd &amp; efgh", 9, "abcd\u2026"),
        ("abcdef&amp;xyz", 10, "abcdef\u2026"),
        ("abcdef&lt;xyz", 9, "abcdef\u2026"),
        ("ab&amp;&amp;&amp;", 9, "ab&amp;\u2026"),
        ("see <http://x.org/long|label> now", 20, "see\u2026"),
        ("🚀" * 20, 5, "🚀🚀🚀🚀\u2026"),
    ],
)
def test_truncate(text: str, limit: int, expected: str) -> None:
    cut = truncate(text, limit)
    assert cut == expected
    assert len(cut) <= limit


@pytest.mark.parametrize("limit", range(1, 40))
def test_truncate_never_splits_an_entity(limit: int) -> None:
    cut = truncate("a&amp;b&lt;c&gt;" * 5, limit)
    assert len(cut) <= limit
    assert not BAD_ENTITY.search(cut)


def test_limits_are_slacks() -> None:
    assert slack_format.HEADER_TEXT_MAX == 150
    assert slack_format.SECTION_TEXT_MAX == 3000
    assert slack_format.SECTION_FIELD_MAX == 2000
    assert slack_format.SECTION_FIELDS_MAX == 10
    assert slack_format.CONTEXT_ELEMENTS_MAX == 10
    assert slack_format.BLOCKS_MAX == 50
    assert slack_format.MESSAGE_TEXT_MAX == 40000
