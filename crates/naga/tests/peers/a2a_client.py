"""An A2A client nobody here wrote: the official Python SDK (`a2a-sdk` on
PyPI, installed by .ci/run into target/test-peers/venv), over the JSON-RPC
binding the agent card names. Run by tests/a2a.rs:

    python a2a_client.py <agent-url> card
    python a2a_client.py <agent-url> send <context-id> <message-id> <text> <delay-ms> [<push-url> <push-token> [<push-bearer-credentials>]]
    python a2a_client.py <agent-url> stream <context-id> <message-id> <text> <delay-ms>
    python a2a_client.py <agent-url> wait <task-id>        (polls until it ended)
    python a2a_client.py <agent-url> list <context-id>
    python a2a_client.py <agent-url> cancel <task-id>
    python a2a_client.py <agent-url> push-create <task-id> <config-id> <url> <token>
    python a2a_client.py <agent-url> push-get <task-id> <config-id>
    python a2a_client.py <agent-url> push-list <task-id>
    python a2a_client.py <agent-url> push-delete <task-id> <config-id>

With NAGA_TOKEN set, every request carries it as a bearer token; with
A2A_BINDING=HTTP+JSON the client takes that interface of the card instead
of JSON-RPC. Prints
one JSON line (the protocol's JSON of the answer)."""

import asyncio
import json
import os
import sys

import httpx
from a2a.client import ClientConfig, create_client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    AuthenticationInfo,
    TaskPushNotificationConfig,
    TaskState,
)
from google.protobuf import json_format, struct_pb2

TERMINAL = {TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED}


def out(message) -> None:
    print(json.dumps(json_format.MessageToDict(message), ensure_ascii=False))


async def main(base: str, command: str, *args: str) -> None:
    token = os.environ.get("NAGA_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        streaming = command == "stream"
        config = ClientConfig(
            streaming=streaming,
            polling=not streaming,
            httpx_client=http,
            supported_protocol_bindings=[os.environ.get("A2A_BINDING", "JSONRPC")],
        )
        client = await create_client(base, client_config=config)
        if command == "card":
            card = await httpx.AsyncClient().get(f"{base}/.well-known/agent-card.json")
            print(json.dumps(card.json()))
        elif command in ("send", "stream"):
            context_id, message_id, text, delay_ms, *push = args
            data = struct_pb2.Value()
            json_format.ParseDict({"delay_ms": int(delay_ms)}, data)
            message = Message(
                message_id=message_id,
                context_id=context_id,
                role=Role.ROLE_USER,
                parts=[Part(text=text), Part(data=data)],
            )
            message.metadata.update({"skill": "echo"})
            request = SendMessageRequest(message=message)
            if push:
                push_config = TaskPushNotificationConfig(url=push[0], token=push[1])
                if len(push) > 2:
                    push_config.authentication.CopyFrom(
                        AuthenticationInfo(scheme="Bearer", credentials=push[2]))
                request.configuration.CopyFrom(SendMessageConfiguration(
                    task_push_notification_config=push_config))
            events = [
                json_format.MessageToDict(event)
                async for event in client.send_message(request)
            ]
            if streaming:
                print(json.dumps({"events": events}, ensure_ascii=False))
            else:
                print(json.dumps(events[0]["task"], ensure_ascii=False))
        elif command == "wait":
            for _ in range(300):
                task = await client.get_task(GetTaskRequest(id=args[0]))
                if task.status.state in TERMINAL:
                    out(task)
                    return
                await asyncio.sleep(0.1)
            raise SystemExit(f"task {args[0]} did not end within 30 s")
        elif command == "list":
            out(await client.list_tasks(ListTasksRequest(context_id=args[0])))
        elif command == "cancel":
            out(await client.cancel_task(CancelTaskRequest(id=args[0])))
        elif command == "push-create":
            task_id, config_id, url, token = args
            config = TaskPushNotificationConfig(task_id=task_id, id=config_id, url=url, token=token)
            out(await client.create_task_push_notification_config(config))
        elif command == "push-get":
            request = GetTaskPushNotificationConfigRequest(task_id=args[0], id=args[1])
            out(await client.get_task_push_notification_config(request))
        elif command == "push-list":
            request = ListTaskPushNotificationConfigsRequest(task_id=args[0])
            out(await client.list_task_push_notification_configs(request))
        elif command == "push-delete":
            request = DeleteTaskPushNotificationConfigRequest(task_id=args[0], id=args[1])
            await client.delete_task_push_notification_config(request)
            print("{}")
        else:
            raise SystemExit(f"unknown command {command}")


asyncio.run(main(*sys.argv[1:]))
