"""Verifies an A2A push notification naga delivered, with libraries nobody
here wrote: the Standard Webhooks signature with `standardwebhooks`, the
body read strictly as A2A's `StreamResponse` (protobuf's JSON parser, which
refuses unknown fields, as the Go and Java SDKs do) with `a2a-sdk`'s types.
Run by tests/a2a.rs:

    python verify_push.py <secret> <headers-json> <raw-body>

Prints one JSON line; exits non-zero when the signature does not verify."""

import json
import sys

from a2a.types.a2a_pb2 import StreamResponse, TaskState
from google.protobuf import json_format
from standardwebhooks.webhooks import Webhook

secret, headers, body = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
Webhook(secret).verify(body, headers)
event = json_format.Parse(body, StreamResponse())
print(json.dumps({
    "verified": True,
    "task_id": event.task.id,
    "context_id": event.task.context_id,
    "state": TaskState.Name(event.task.status.state),
    "artifact": event.task.artifacts[0].parts[0].text if event.task.artifacts else None,
}, ensure_ascii=False))
