"""An OpenAI-compatible chat API over Docent's answer path, for tools that speak OpenAI.

    POST /v1/chat/completions   streaming (SSE chunks, then ``data: [DONE]``) or not
    GET  /v1/models             ``docent``, and ``docent/<collection>`` to search one collection

The last user message is the question; earlier user and assistant messages are the
conversation; system messages are ignored (Docent's own prompt decides how to answer).
Citations, sources, grounding, risk and cache status travel in the documented extension field
``docent`` of the completion (non-streaming) or of the final chunk (streaming). A ``reset``
(the provider failed mid-answer and a replacement follows) arrives as a chunk whose ``docent``
field is ``{"event": "reset"}``: clients that ignore it see both texts.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from typing import Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from pydantic import BaseModel, Field

from app.answer.answer import answer
from app.errors import DocentError, InvalidRequest
from app.models import AnswerEvent, ChatMessage, ChatRequest
from app.services import Services
from app.web.auth import owner_of
from app.web.sse import KeptAliveStream

MODEL = "docent"


class OpenAIContentPart(BaseModel):
    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[OpenAIContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class OpenAIChatRequest(BaseModel):
    model: str = MODEL
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=100)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


def to_chat_request(body: OpenAIChatRequest) -> ChatRequest:
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not turns[-1].text().strip():
        raise InvalidRequest("The last message must be a user message with the question.")
    collection = None
    if body.model != MODEL:
        prefix = MODEL + "/"
        if not body.model.startswith(prefix) or not body.model[len(prefix) :]:
            raise InvalidRequest(
                f"Unknown model {body.model!r}: use 'docent', or 'docent/<collection>' to "
                "answer from one collection (GET /v1/models lists them)."
            )
        collection = body.model[len(prefix) :]
    history = [
        ChatMessage(role="user" if m.role == "user" else "assistant", content=m.text()[:8000])
        for m in turns[:-1][-50:]
    ]
    return ChatRequest(question=turns[-1].text()[:4000], collection=collection, history=history)


def _extension(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "answer_id": state.get("answer_id"),
        "conversation_id": state.get("conversation_id"),
        "risk": state.get("risk"),
        "cache": state.get("cache"),
        "sources": state.get("sources", []),
        "citations": state.get("citations", []),
        "grounding": state.get("grounding", []),
        "provider": state.get("provider"),
        "outcome": state.get("outcome"),
    }


def _absorb(state: dict[str, Any], event: AnswerEvent) -> None:
    d = event.data
    if event.event == "meta":
        state.update(answer_id=d["answer_id"], conversation_id=d.get("conversation_id"))
        state.update(risk=d.get("risk"), cache={"status": d.get("cache")})
    elif event.event == "sources":
        state["sources"] = d["sources"]
    elif event.event == "citations":
        state["citations"] = d["citations"]
    elif event.event == "grounding":
        state["grounding"] = d["sentences"]
    elif event.event == "done":
        state.update(provider=d.get("provider"), outcome=d.get("outcome"), usage=d["usage"])
        state["cache"] = d.get("cache", state.get("cache"))
        state["finish_reason"] = "length" if d.get("truncated") else "stop"
        state["text"] = d["text"]


def _usage(state: dict[str, Any]) -> dict[str, int]:
    u = state.get("usage") or {}
    i, o = int(u.get("input_tokens", 0)), int(u.get("output_tokens", 0))
    return {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}


def _error_body(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "error": {
            "message": data.get("message", "The answer failed."),
            "type": "docent_error",
            "code": data.get("code"),
            "param": None,
            "retryable": data.get("retryable", False),
            "request_id": data.get("request_id"),
        }
    }


class OpenAICompatController(Controller):
    path = "/v1"
    tags = ["openai-compatible"]  # noqa: RUF012 (Litestar reads it per instance)

    @get("/models", summary="Models: 'docent' and 'docent/<collection>'", sync_to_thread=True)
    def models(self, state: State) -> dict[str, Any]:
        from ingest import catalog

        services: Services = state.services
        tenant = services.settings.default_tenant
        collections = sorted({d.collection for d in catalog.list_documents(services.db, tenant)})
        created = int(time.time())
        ids = [MODEL] + [f"{MODEL}/{c}" for c in collections]
        return {
            "object": "list",
            "data": [
                {"id": i, "object": "model", "created": created, "owned_by": "docent"} for i in ids
            ],
        }

    @post("/chat/completions", status_code=200, summary="OpenAI-compatible chat completions")
    async def completions(
        self, request: Request[Any, Any, Any], state: State, data: OpenAIChatRequest
    ) -> Response[Any]:
        services: Services = state.services
        tenant = services.settings.default_tenant
        chat = to_chat_request(data)
        created = int(time.time())
        events = answer(services.answers, tenant, chat, owner=owner_of(request))
        if data.stream:
            include_usage = bool(data.stream_options and data.stream_options.include_usage)
            body = _stream(events, created, data.model, include_usage)
            return KeptAliveStream(
                body,
                services.settings.sse_keepalive_s,
                comment=b": keepalive\n\n",
                headers={"Cache-Control": "no-cache"},
            )
        state_: dict[str, Any] = {}
        async for event in events:
            if event.event == "error":
                status = 503 if event.data.get("retryable") else 502
                return Response(_error_body(event.data), status_code=status)
            if event.event == "reset":
                state_["text"] = ""
            _absorb(state_, event)
        return Response(
            {
                "id": f"chatcmpl-{state_.get('answer_id')}",
                "object": "chat.completion",
                "created": created,
                "model": data.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": state_.get("text", "")},
                        "finish_reason": state_.get("finish_reason", "stop"),
                        "logprobs": None,
                    }
                ],
                "usage": _usage(state_),
                "docent": _extension(state_),
            }
        )


async def _stream(
    events: AsyncGenerator[AnswerEvent, None],
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncGenerator[bytes, None]:
    state: dict[str, Any] = {}
    completion_id = "chatcmpl-pending"

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n".encode()

    try:
        started = False
        async for event in events:
            _absorb(state, event)
            if event.event == "meta":
                completion_id = f"chatcmpl-{event.data['answer_id']}"
            elif event.event == "delta":
                delta = {"content": event.data["text"]}
                if not started:
                    delta["role"] = "assistant"
                    started = True
                yield chunk(delta)
            elif event.event == "reset":
                yield chunk({}, docent={"event": "reset", **event.data})
            elif event.event == "error":
                yield f"data: {json.dumps(_error_body(event.data))}\n\n".encode()
                return
            elif event.event == "done":
                yield chunk({}, state.get("finish_reason", "stop"), docent=_extension(state))
                if include_usage:
                    usage_chunk = {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": _usage(state),
                    }
                    yield f"data: {json.dumps(usage_chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    except DocentError as exc:  # answer() turns failures into events; this is a backstop
        body = _error_body({"message": exc.message, "code": exc.code})
        yield f"data: {json.dumps(body)}\n\n".encode()
    finally:
        await events.aclose()
