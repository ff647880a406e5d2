"""Default Slack Block Kit messages for events and digests, kept inside Slack's limits.

A Slack destination with no ``text``/``blocks`` in the config still has to post
something an operator can read at a glance, so this module turns an event (or a
group of them, CONTRACT section 9) into an incoming-webhook payload. Every piece
of text taken from an event is escaped for Slack (``&``, ``<``, ``>``), so an
event can never ping ``<!channel>`` or inject a link; and every text is cut to
Slack's documented limits so a 100 KB payload field cannot make Slack refuse the
message (which would turn one odd event into a dead delivery).

Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from relay.templates import slack_escape

__all__ = ["default_message", "digest_message", "fit_payload"]

# Slack's limits. Blocks: https://api.slack.com/reference/block-kit/blocks
#   header text: https://api.slack.com/reference/block-kit/blocks#header
#   section text and fields: https://api.slack.com/reference/block-kit/blocks#section
#   context elements: https://api.slack.com/reference/block-kit/blocks#context
#   markdown block: https://api.slack.com/reference/block-kit/blocks#markdown
#   text objects: https://api.slack.com/reference/block-kit/composition-objects#text
# Message text and the 50-block cap: https://api.slack.com/methods/chat.postMessage
#   (#truncating: "truncate messages containing more than 40,000 characters"; "blocks":
#   "up to 50 blocks" per message).
HEADER_TEXT_MAX = 150
SECTION_TEXT_MAX = 3000
SECTION_FIELD_MAX = 2000
SECTION_FIELDS_MAX = 10
CONTEXT_ELEMENTS_MAX = 10
TEXT_OBJECT_MAX = 3000
MARKDOWN_BLOCK_MAX = 12000
BLOCKS_MAX = 50
MESSAGE_TEXT_MAX = 40000
#: The top-level ``text`` beside ``blocks`` is only the notification fallback: keep it short.
FALLBACK_TEXT_MAX = 3000

#: Recipients a digest lists by name (CONTRACT section 9), and how much of each it shows.
DIGEST_RECIPIENTS = 10
_RECIPIENT_MAX = 200
_FIELD_VALUE_MAX = 500

ELLIPSIS = "\u2026"
_TIMES = "\u00d7"  # multiplication sign: "312 times Email Bounced"
_ARROW = "\u203a"  # single right angle quote: journey, then journey point
_DASH = "\u2013"  # en dash: a time range

#: (words in the lowercased event name, emoji); first match wins, so specific words go first.
_EMOJI_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("bounce",), ":warning:"),
    (("complain", "spam"), ":rotating_light:"),
    (("unsubscrib",), ":no_bell:"),
    (("fail", "reject", "drop", "error"), ":x:"),
    (("click",), ":link:"),
    (("open",), ":eyes:"),
    (("deliver",), ":white_check_mark:"),
    (("sent", "send"), ":outbox_tray:"),
)
_DEFAULT_EMOJI = ":bell:"

# Slack links bare @here/@channel/@everyone only when a payload asks for it (link_names),
# but a word joiner after the "@" keeps them inert even then, at no visible cost.
_BARE_MENTION = re.compile(r"(?<![\w.])@(here|channel|everyone)\b", re.IGNORECASE)
_ENTITY_TAIL = re.compile(r"&[a-z]{0,3}$")


def emoji_for(event_name: str) -> str:
    """An emoji that tells the kind of event at a glance; a neutral bell for unknown names."""
    name = event_name.lower()
    for words, emoji in _EMOJI_RULES:
        if any(word in name for word in words):
            return emoji
    return _DEFAULT_EMOJI


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters ending in "…", never inside ``&amp;`` or ``<…>``."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - len(ELLIPSIS), 0)]
    cut = _ENTITY_TAIL.sub("", cut)  # a partial &amp; / &lt; / &gt; would show as junk
    opened = cut.rfind("<")
    if opened > cut.rfind(">"):  # half a <!date…> or <url|label> breaks the whole text
        cut = cut[:opened]
    return cut.rstrip() + ELLIPSIS


def _esc(value: object, limit: int | None = None) -> str:
    """Event data as Slack text: cut first (so no entity is split), then escaped."""
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - len(ELLIPSIS)] + ELLIPSIS
    return _BARE_MENTION.sub("@\u2060\\1", slack_escape(text))


def _present(event: Mapping[str, Any], name: str) -> bool:
    value = event.get(name)
    return value is not None and value != ""


def _timestamp(value: object) -> tuple[str, str] | None:
    """(Slack date token, ISO-8601 UTC text) for a UNIX time, or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        iso = dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return None
    return f"<!date^{value}^{{date_short_pretty}} {{time_secs}}|{iso}>", iso


def _mrkdwn(text: str, limit: int = TEXT_OBJECT_MAX) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": truncate(text, limit)}


def _header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(text, HEADER_TEXT_MAX), "emoji": True},
    }


def _field(label: str, value: str) -> dict[str, Any]:
    return _mrkdwn(f"*{label}*\n{value}", SECTION_FIELD_MAX)


def _journey(event: Mapping[str, Any]) -> str | None:
    parts = [
        _esc(event[name], _FIELD_VALUE_MAX)
        for name in ("journey_title", "journey_point_title")
        if _present(event, name)
    ]
    return f" {_ARROW} ".join(parts) if parts else None


def _time_text(value: object) -> str | None:
    stamp = _timestamp(value)
    if stamp is not None:
        token, iso = stamp
        return f"{token}\n{iso}"
    return _esc(value, _FIELD_VALUE_MAX) if value is not None else None


def default_message(event: Mapping[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook JSON payload: {"text": fallback, "blocks": [...]} for one event."""
    name = str(event.get("event_name") or "Event")
    emoji = emoji_for(name)
    fields: list[dict[str, Any]] = []
    if _present(event, "hwid"):
        fields.append(_field("Recipient", _esc(event["hwid"], _FIELD_VALUE_MAX)))
    if _present(event, "payload"):
        label = "Subject" if str(event.get("platform", "")).lower() == "email" else "Message"
        fields.append(_field(label, _esc(event["payload"], _FIELD_VALUE_MAX)))
    if _present(event, "campaign_id"):
        fields.append(_field("Campaign", _esc(event["campaign_id"], _FIELD_VALUE_MAX)))
    journey = _journey(event)
    if journey:
        fields.append(_field("Journey", journey))
    if _present(event, "platform"):
        fields.append(_field("Platform", _esc(event["platform"], _FIELD_VALUE_MAX)))
    time_text = _time_text(event.get("timestamp"))
    if time_text:
        fields.append(_field("Time", time_text))

    blocks: list[dict[str, Any]] = [_header(f"{emoji} {_esc(name, HEADER_TEXT_MAX)}")]
    if fields:
        blocks.append({"type": "section", "fields": fields[:SECTION_FIELDS_MAX]})
    context = [
        _mrkdwn(f"{label}: {_esc(event[key], _FIELD_VALUE_MAX)}")
        for key, label in (
            ("application_code", "App"),
            ("user_id", "User"),
            ("message_code", "Message code"),
            ("message_id", "Message id"),
        )
        if _present(event, key)
    ]
    if context:
        blocks.append({"type": "context", "elements": context[:CONTEXT_ELEMENTS_MAX]})

    summary = f"{emoji} {_esc(name, 200)}"
    if _present(event, "hwid"):
        summary += f" for {_esc(event['hwid'], 500)}"
    if _present(event, "payload"):
        summary += f": {_esc(event['payload'], 1000)}"
    return fit_payload({"text": summary, "blocks": blocks})


def _event_names(events: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for event in events:
        name = str(event.get("event_name") or "Event")
        if name not in names:
            names.append(name)
    return names


def digest_message(
    events: Sequence[Mapping[str, Any]],
    group_key: Mapping[str, Any],
    *,
    total: int | None = None,
) -> dict[str, Any]:
    """One digest for a group of events (see CONTRACT section 9)."""
    count = total if total is not None else len(events)
    names = _event_names(events) or ["events"]
    emoji = emoji_for(names[0]) if len(names) == 1 else _DEFAULT_EMOJI
    title = ", ".join(_esc(n, 100) for n in names[:5]) + (", …" if len(names) > 5 else "")
    first = events[0] if events else {}

    lines = [f"*{count}* {_TIMES} *{title}*"]
    lines += [
        f"*{_esc(key, 100)}:* {_esc('(none)' if value is None else value, _FIELD_VALUE_MAX)}"
        for key, value in group_key.items()
    ]
    if _present(first, "journey_title"):
        lines.append(f"*Journey:* {_esc(first['journey_title'], _FIELD_VALUE_MAX)}")
    blocks: list[dict[str, Any]] = [
        _header(f"{emoji} {count} {_TIMES} {title}"),
        {"type": "section", "text": _mrkdwn("\n".join(lines), SECTION_TEXT_MAX)},
    ]

    shown = list(events[:DIGEST_RECIPIENTS])
    if shown:
        recipients = [
            f"• {_esc(e['hwid'], _RECIPIENT_MAX) if _present(e, 'hwid') else '(no hwid)'}"
            for e in shown
        ]
        more = count - len(shown)
        if more > 0:
            recipients.append(f"_and {more} more_")
        text = "*Recipients*\n" + "\n".join(recipients)
        blocks.append({"type": "section", "text": _mrkdwn(text, SECTION_TEXT_MAX)})

    stamps = sorted(
        (e["timestamp"], stamp[0])
        for e in events
        if (stamp := _timestamp(e.get("timestamp"))) is not None
    )
    if stamps:
        earliest, latest = stamps[0][1], stamps[-1][1]
        when = earliest if earliest == latest else f"{earliest} {_DASH} {latest}"
        blocks.append({"type": "context", "elements": [_mrkdwn(when)]})

    keys = ", ".join(
        f"{_esc(k, 100)}: {_esc('(none)' if v is None else v, 200)}" for k, v in group_key.items()
    )
    summary = f"{emoji} {count} {_TIMES} {title}" + (f" ({keys})" if keys else "")
    return fit_payload({"text": summary, "blocks": blocks})


# -- limits for any payload (configured or default) ----------------------------------------


def _fit_text_object(obj: Any, limit: int) -> Any:
    if isinstance(obj, Mapping) and isinstance(obj.get("text"), str):
        return {**obj, "text": truncate(obj["text"], limit)}
    return obj


def _fit_block(block: Any) -> Any:
    if not isinstance(block, Mapping):
        return block
    kind = block.get("type")
    fitted = dict(block)
    if kind == "header":
        fitted["text"] = _fit_text_object(block.get("text"), HEADER_TEXT_MAX)
    elif kind == "section":
        if "text" in block:
            fitted["text"] = _fit_text_object(block["text"], SECTION_TEXT_MAX)
        if isinstance(block.get("fields"), list):
            fitted["fields"] = [
                _fit_text_object(f, SECTION_FIELD_MAX) for f in block["fields"][:SECTION_FIELDS_MAX]
            ]
    elif kind == "context" and isinstance(block.get("elements"), list):
        fitted["elements"] = [
            _fit_text_object(e, TEXT_OBJECT_MAX) if _is_text_object(e) else e
            for e in block["elements"][:CONTEXT_ELEMENTS_MAX]
        ]
    elif kind == "markdown" and isinstance(block.get("text"), str):
        fitted["text"] = truncate(block["text"], MARKDOWN_BLOCK_MAX)
    return fitted


def _is_text_object(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("type") in {"plain_text", "mrkdwn"}


def fit_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Truncate a configured or default payload's texts to Slack's limits.

    Returns a new dict; the input is left as it was. Blocks beyond Slack's 50 are
    replaced by a context line saying how many were left out.
    """
    fitted = dict(payload)
    blocks = payload.get("blocks")
    if isinstance(blocks, list):
        if len(blocks) > BLOCKS_MAX:
            omitted = len(blocks) - (BLOCKS_MAX - 1)
            note = {"type": "context", "elements": [_mrkdwn(f"_{omitted} more blocks left out_")]}
            blocks = [*blocks[: BLOCKS_MAX - 1], note]
        fitted["blocks"] = [_fit_block(b) for b in blocks]
    if isinstance(payload.get("text"), str):
        limit = FALLBACK_TEXT_MAX if fitted.get("blocks") else MESSAGE_TEXT_MAX
        fitted["text"] = truncate(payload["text"], limit)
    return fitted


_NOTICE_ICONS = {
    "relay.circuit_opened": ":rotating_light:",
    "relay.circuit_closed": ":white_check_mark:",
    "relay.paused": ":double_vertical_bar:",
    "relay.resumed": ":arrow_forward:",
    "relay.dead_letters": ":skull:",
}


def notice_message(document: Mapping[str, Any]) -> dict[str, Any]:
    """The Slack message of one of the relay's notices (relay.notices), texts escaped."""
    kind = str(document.get("type", ""))
    what = kind.removeprefix("relay.").replace("_", " ")
    reason = document.get("reason")
    text = (
        f"{_NOTICE_ICONS.get(kind, ':bell:')} pushwoosh-relay: "
        f"{slack_escape(str(document.get('destination', '')))} {slack_escape(what)} "
        f"({slack_escape(str(document.get('state', '')))})"
        + (f" - {slack_escape(str(reason))}" if reason else "")
        + f". Pending {document.get('pending', 0)}, dead {document.get('dead', 0)}."
    )
    return fit_payload({"text": text})
