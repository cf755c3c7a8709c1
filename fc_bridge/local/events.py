"""Events as FC 3.0 passes them to ``handler(event, context)``: JSON bytes, one builder per trigger.

Shapes follow FC's documentation of each trigger's event, and are checked against the sample
events Serverless Devs ships (``../shared/fc-samples/fc3-events/``). Hand the HTTP event to the
handler, the others to the handler too (it passes them to ``on_event``, as FC does).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from .emulator import Invocation, http_event

__all__ = ["http", "mns", "oss", "timer"]


def http(
    method: str = "GET",
    target: str = "/",
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    client_ip: str = "127.0.0.1",
    domain: str = "fc-bridge.cn-hangzhou.fcapp.run",
    request_id: str | None = None,
    account_id: str = "1234567890",
) -> bytes:
    """An HTTP trigger's event (FC 3.0, "HTTP trigger: request struct").

    ``{"version": "v1", "rawPath", "body", "isBase64Encoded", "headers", "queryParameters",
    "requestContext": {"accountId", "domainName", "domainPrefix", "http": {"method", "path",
    "protocol", "sourceIp", "userAgent"}, "requestId", "time", "timeEpoch"}}``: ``target`` is
    the percent-encoded path and query; repeated headers and parameters are comma-joined and
    header names canonicalised, binary bodies base64-encoded, as FC does.
    """
    invocation = Invocation(method.upper(), target, list(headers or []), body, client_ip)
    return http_event(invocation, domain=domain, request_id=request_id, account_id=account_id)


def timer(payload: str = "", *, trigger_name: str = "timer", when: float | None = None) -> bytes:
    """A timer trigger's event (FC, "Timer triggers: event format").

    ``{"triggerTime": "2023-12-26T07:49:00Z", "triggerName": "timer", "payload": "..."}``:
    ``payload`` is the text configured on the trigger.
    """
    moment = time.gmtime(time.time() if when is None else when)
    event = {
        "triggerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", moment),
        "triggerName": trigger_name,
        "payload": payload,
    }
    return json.dumps(event).encode()


def oss(
    bucket: str,
    key: str,
    *,
    event_name: str = "ObjectCreated:PutObject",
    size: int = 0,
    etag: str = "",
    region: str = "cn-hangzhou",
    account_id: str = "1234567890",
    source_ip: str = "127.0.0.1",
) -> bytes:
    """An OSS trigger's event (FC, "OSS triggers: event format"): one record in ``events``.

    ``{"events": [{"eventName", "eventSource": "acs:oss", "eventTime", "eventVersion": "1.0",
    "oss": {"bucket": {"arn", "name", "ownerIdentity", "virtualBucket"}, "object":
    {"deltaSize", "eTag", "key", "size"}, "ossSchemaVersion": "1.0", "ruleId"}, "region",
    "requestParameters": {"sourceIPAddress"}, "responseElements": {"requestId"},
    "userIdentity": {"principalId"}}]}``.
    """
    record: dict[str, Any] = {
        "eventName": event_name,
        "eventSource": "acs:oss",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "eventVersion": "1.0",
        "oss": {
            "bucket": {
                "arn": f"acs:oss:{region}:{account_id}:{bucket}",
                "name": bucket,
                "ownerIdentity": account_id,
                "virtualBucket": "",
            },
            "object": {"deltaSize": size, "eTag": etag, "key": key, "size": size},
            "ossSchemaVersion": "1.0",
            "ruleId": uuid.uuid4().hex,
        },
        "region": region,
        "requestParameters": {"sourceIPAddress": source_ip},
        "responseElements": {"requestId": uuid.uuid4().hex[:24].upper()},
        "userIdentity": {"principalId": account_id},
    }
    return json.dumps({"events": [record]}).encode()


def mns(
    message: str,
    *,
    topic: str = "test-topic",
    subscription: str = "test-fc-subscribe",
    account_id: str = "1234567890",
    attributes: dict[str, str] | None = None,
    stream: bool = False,
) -> bytes:
    """An MNS topic trigger's event (FC, "MNS topic triggers: event format").

    With ``stream=True`` (the trigger's STREAM format): ``{"body": message, "attrs":
    {"Extend": <attributes as JSON>}}``. Otherwise (JSON format): ``{"TopicOwner", "Message",
    "Subscriber", "PublishTime", "SubscriptionName", "MessageMD5", "TopicName", "MessageId"}``,
    with the message's attributes as keys of their own.
    """
    if stream:
        event: dict[str, Any] = {"body": message}
        if attributes:
            event["attrs"] = {"Extend": json.dumps(attributes, separators=(",", ":"))}
        return json.dumps(event).encode()
    event = {
        **(attributes or {}),
        "TopicOwner": account_id,
        "Message": message,
        "Subscriber": account_id,
        "PublishTime": int(time.time() * 1000),
        "SubscriptionName": subscription,
        "MessageMD5": hashlib.md5(message.encode(), usedforsecurity=False).hexdigest().upper(),
        "TopicName": topic,
        "MessageId": uuid.uuid4().hex.upper(),
    }
    return json.dumps(event).encode()
