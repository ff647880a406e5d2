"""What each vendor documents: paths, credential, body shape, limits, answers.

One function per vendor builds its endpoints for a given credential. The numbers
are the documented ones (the README's "CRM recipes" table names the page each
came from); where a page did not say which status a vendor answers, the comment
says so and the stand-in uses the nearest documented one. Every accepted event is
recorded under the key the vendor itself deduplicates on, or, where it has none,
under the fields that make one Pushwoosh event unique.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from .standin import Accepted, Endpoint, Incoming, Limits, Rejected, Window

UNLIMITED = sys.maxsize


def basic(user: str, password: str = "") -> str:
    """The ``Authorization`` value for HTTP Basic, as the recipes expect it pre-encoded."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _header_is(value: str) -> Callable[[Incoming], bool]:
    return lambda incoming: incoming.headers.get("authorization") == value


# -- body checks shared by the parsers: each failure is the vendor's 400 --------------------


def _list(doc: Any, key: str | None) -> list[Any]:
    items = doc if key is None else doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise Rejected(400, f"expected a list at {key or 'the top'}")
    return items


def _str(obj: Any, key: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value:
        raise Rejected(400, f"{key}: expected a non-empty string")
    return value


def _int(obj: Any, key: str) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise Rejected(400, f"{key}: expected an integer")
    return value


def _iso(obj: Any, key: str) -> str:
    value = _str(obj, key)
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(400, f"{key}: not an ISO 8601 time: {value!r}") from None
    return value


def _object(obj: Any, key: str, *, strings: bool = False) -> dict[str, Any]:
    value = obj.get(key, {}) if isinstance(obj, dict) else None
    if not isinstance(value, dict):
        raise Rejected(400, f"{key}: expected an object")
    if strings and not all(isinstance(v, str) for v in value.values()):
        raise Rejected(400, f"{key}: every value must be a string")
    return value


def _event_bytes(items: list[Any], limit: int, status: int) -> None:
    for i, item in enumerate(items):
        if len(json.dumps(item, separators=(",", ":")).encode()) > limit:
            raise Rejected(status, f"event {i} is over {limit} bytes")


# -- HubSpot ---------------------------------------------------------------------------------

# 100 requests per 10 s per private app on Free/Starter (190 on Professional/Enterprise),
# shared by every endpoint: developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines
HUBSPOT_RATE = Window(100, 10.0)
# CRM batch endpoints take at most 100 records; the custom-event batch endpoint's own
# maximum was not on the pages reached, so the same 100 is assumed for it.
HUBSPOT_BATCH = Limits(max_events=100, requests=HUBSPOT_RATE)


def _hubspot_events(incoming: Incoming) -> Accepted:
    items = []
    for occurrence in _list(incoming.doc, "inputs"):
        name = _str(occurrence, "eventName")
        email = _str(occurrence, "email")
        at = _iso(occurrence, "occurredAt")
        properties = _object(occurrence, "properties", strings=True)
        items.append((f"{email}|{name}|{at}|{properties.get('message_code')}", properties))
    return Accepted(items, 204, None)  # the batch endpoint answers 204 with no body


def _hubspot_contacts(incoming: Incoming) -> Accepted:
    items, seen = [], set()
    for record in _list(incoming.doc, "inputs"):
        if record.get("idProperty") != "email":
            raise Rejected(400, "idProperty: expected 'email'")
        email = _str(record, "id").lower()  # HubSpot matches email addresses case-insensitively
        if email in seen:
            raise Rejected(400, "Duplicate IDs found in batch input")
        seen.add(email)
        items.append((email, _object(record, "properties", strings=True)))
    return Accepted(items, 200, {"status": "COMPLETE", "results": []})


def hubspot(token: str) -> dict[str, Endpoint]:
    def count(doc: Any) -> int:
        return (
            len(doc["inputs"])
            if isinstance(doc, dict) and isinstance(doc.get("inputs"), list)
            else 0
        )

    auth = _header_is(f"Bearer {token}")
    return {
        "/events/v3/send/batch": Endpoint(HUBSPOT_BATCH, auth, _hubspot_events, count),
        "/crm/v3/objects/contacts/batch/upsert": Endpoint(
            HUBSPOT_BATCH, auth, _hubspot_contacts, count
        ),
    }


# -- Braze -----------------------------------------------------------------------------------

# /users/track: 3,000 requests per 3 s; 75 events, purchases and attributes together per
# request: braze.com/docs/api/api_limits/ (the status of an over-full request is not on that
# page; Braze answers request errors with 400: braze.com/docs/api/errors/)
BRAZE_LIMITS = Limits(max_events=75, requests=Window(3000, 3.0))
_BRAZE_IDS = ("external_id", "user_alias", "braze_id", "email", "phone")


def _braze_count(doc: Any) -> int:
    if not isinstance(doc, dict):
        return 0
    return sum(
        len(doc[k]) for k in ("attributes", "events", "purchases") if isinstance(doc.get(k), list)
    )


def _braze_track(incoming: Incoming) -> Accepted:
    items = []
    for event in _list(incoming.doc, "events"):
        if not any(isinstance(event.get(k), str | dict) and event.get(k) for k in _BRAZE_IDS):
            raise Rejected(400, "event without a user identifier")
        name = _str(event, "name")
        at = _iso(event, "time")
        properties = _object(event, "properties")
        items.append(
            (f"{event.get('email')}|{name}|{at}|{properties.get('message_code')}", properties)
        )
    return Accepted(items, 201, {"message": "success", "events_processed": len(items)})


def braze(api_key: str) -> dict[str, Endpoint]:
    return {
        "/users/track": Endpoint(
            BRAZE_LIMITS, _header_is(f"Bearer {api_key}"), _braze_track, _braze_count
        )
    }


# -- Segment and RudderStack (the same tracking API shape) ------------------------------------

# 500 KB per batch and 32 KB per event, else 400; more than 2,500 events is answered 200 and
# dropped (twilio.com/docs/segment/connections/sources/catalog/libraries/server/http-api);
# 1,000 events per second per workspace (twilio.com/docs/segment/connections/rate-limits).
SEGMENT_LIMITS = Limits(
    max_events=2500,
    max_bytes=500_000,
    max_event_bytes=32_000,
    overcount_status=200,
    events=Window(1000, 1.0),
)
# 4 MB per batch and 32 KB per event; 1,000 events per minute on the Free plan, else 429
# (rudderstack.com/docs/api/http-api/, rudderstack.com/docs/get-started/introduction/faq/).
# The status of an over-sized batch was not on the pages reached: 413 is assumed.
RUDDERSTACK_LIMITS = Limits(
    max_events=UNLIMITED,
    max_bytes=4_000_000,
    max_event_bytes=32_000,
    oversize_status=413,
    events=Window(1000, 60.0),
)


def _tracking_batch(limits: Limits) -> Callable[[Incoming], Accepted]:
    def accept(incoming: Incoming) -> Accepted:
        calls = _list(incoming.doc, "batch")
        assert limits.max_event_bytes is not None
        _event_bytes(calls, limits.max_event_bytes, limits.oversize_status)
        items = []
        for call in calls:
            if call.get("type") != "track":
                raise Rejected(400, "type: expected 'track'")
            if not (call.get("userId") or call.get("anonymousId")):
                raise Rejected(400, "no_user_anon_id")
            _str(call, "event")
            _iso(call, "timestamp")
            items.append((_str(call, "messageId"), _object(call, "properties")))
        return Accepted(items, 200, {"success": True})

    return accept


def _batch_count(doc: Any) -> int:
    return len(doc["batch"]) if isinstance(doc, dict) and isinstance(doc.get("batch"), list) else 0


def segment(write_key: str) -> dict[str, Endpoint]:
    auth = _header_is(basic(write_key))
    return {
        "/v1/batch": Endpoint(SEGMENT_LIMITS, auth, _tracking_batch(SEGMENT_LIMITS), _batch_count)
    }


def rudderstack(write_key: str) -> dict[str, Endpoint]:
    auth = _header_is(basic(write_key))
    accept = _tracking_batch(RUDDERSTACK_LIMITS)
    return {"/v1/batch": Endpoint(RUDDERSTACK_LIMITS, auth, accept, _batch_count)}


# -- Mixpanel --------------------------------------------------------------------------------

# 2,000 events per /import request; the body limit is given as 10 MB on the current page and
# 2 MB (2,097,152 bytes, answered 413) on the older one and in the sample error: the stricter
# is enforced. ~30k events/s (2 GB per minute) per project, else 429.
# docs.mixpanel.com/reference/import-events, .../troubleshooting/errors/413-payload-too-large,
# .../troubleshooting/errors/429-rate-limit-exceeded. An over-count answer is not documented:
# 400, the status of a batch that fails validation, is assumed.
MIXPANEL_LIMITS = Limits(
    max_events=2000, max_bytes=2_097_152, oversize_status=413, events=Window(1_800_000, 60.0)
)
_INSERT_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")


def _mixpanel_import(incoming: Incoming) -> Accepted:
    items, failed = [], []
    for index, event in enumerate(_list(incoming.doc, None)):
        try:
            name = _str(event, "event")
            properties = _object(event, "properties")
            at = _int(properties, "time")
            distinct_id = properties.get("distinct_id")
            if not isinstance(distinct_id, str):
                raise Rejected(400, "properties.distinct_id: expected a string")
            insert_id = _str(properties, "$insert_id")
            if not _INSERT_ID.match(insert_id):
                raise Rejected(400, "$insert_id: at most 36 letters, digits or '-'")
        except Rejected as exc:
            failed.append({"index": index, "message": exc.message})
            continue
        # Mixpanel deduplicates on (event, time, distinct_id, $insert_id).
        items.append((f"{name}|{at}|{distinct_id}|{insert_id}", properties))
    if failed:  # strict mode: a 400 that still imports the valid events
        return Accepted(
            items, 400, {"code": 400, "num_records_imported": len(items), "failed_records": failed}
        )
    return Accepted(items, 200, {"code": 200, "num_records_imported": len(items), "status": "OK"})


def mixpanel(user: str, secret: str, project_id: str) -> dict[str, Endpoint]:
    def authorized(incoming: Incoming) -> bool:
        return incoming.headers.get("authorization") == basic(user, secret) and incoming.query.get(
            "project_id"
        ) == [project_id]

    def count(doc: Any) -> int:
        return len(doc) if isinstance(doc, list) else 0

    return {"/import": Endpoint(MIXPANEL_LIMITS, authorized, _mixpanel_import, count)}


# -- Amplitude -------------------------------------------------------------------------------

# HTTP V2: under 1 MB and 2,000 events per request (413 above), Starter plan 100 batches and
# 1,000 events per second (429 above): amplitude.com/docs/apis/analytics/http-v2 and
# .../http-api-batching-retries. User and device ids have at least 5 characters unless
# options.min_id_length says otherwise.
AMPLITUDE_LIMITS = Limits(
    max_events=2000,
    max_bytes=1_000_000,
    oversize_status=413,
    overcount_status=413,
    requests=Window(100, 1.0),
    events=Window(1000, 1.0),
)


def _amplitude_events(incoming: Incoming) -> Accepted:
    options = _object(incoming.doc, "options")
    min_id = options.get("min_id_length", 5)
    items = []
    for event in _list(incoming.doc, "events"):
        _str(event, "event_type")
        ids = [event.get(k) for k in ("user_id", "device_id") if isinstance(event.get(k), str)]
        if not any(len(i) >= min_id for i in ids):
            raise Rejected(400, "an event needs a user_id or device_id of min_id_length")
        _int(event, "time")
        items.append((_str(event, "insert_id"), _object(event, "event_properties")))
    return Accepted(items, 200, {"code": 200, "events_ingested": len(items)})


def amplitude(api_key: str) -> dict[str, Endpoint]:
    def authorized(incoming: Incoming) -> bool:
        # The key travels in the body; a body that is not JSON gets the 400 below instead.
        doc = incoming.doc
        return not isinstance(doc, dict) or doc.get("api_key") == api_key

    def count(doc: Any) -> int:
        return (
            len(doc["events"])
            if isinstance(doc, dict) and isinstance(doc.get("events"), list)
            else 0
        )

    return {"/2/httpapi": Endpoint(AMPLITUDE_LIMITS, authorized, _amplitude_events, count)}


# -- Customer.io -----------------------------------------------------------------------------

# Track API v2 /api/v2/batch: a request must be smaller than 500 KB; 100 requests per second
# (fair use) for v1 and v2: docs.customer.io/api/track/. The status of an over-sized batch was
# not on the pages reached: 413 is assumed.
CUSTOMERIO_LIMITS = Limits(
    max_events=UNLIMITED, max_bytes=500_000, oversize_status=413, requests=Window(100, 1.0)
)


def _customerio_batch(incoming: Incoming) -> Accepted:
    items = []
    for entity in _list(incoming.doc, "batch"):
        if entity.get("type") != "person" or entity.get("action") != "event":
            raise Rejected(400, "expected a person event")
        identifiers = _object(entity, "identifiers")
        if not any(isinstance(identifiers.get(k), str) for k in ("id", "email", "cio_id")):
            raise Rejected(400, "identifiers: expected id, email or cio_id")
        name = _str(entity, "name")
        at = _int(entity, "timestamp")
        attributes = _object(entity, "attributes")
        key = f"{identifiers.get('email')}|{name}|{at}|{attributes.get('message_code')}"
        items.append((key, attributes))
    return Accepted(items, 200, {})


def customerio(site_id: str, api_key: str) -> dict[str, Endpoint]:
    auth = _header_is(basic(site_id, api_key))
    return {"/api/v2/batch": Endpoint(CUSTOMERIO_LIMITS, auth, _customerio_batch, _batch_count)}
