"""The provider chain described by settings (``DOCENT_CHAIN``, ``DOCENT_SMALL_MODELS``)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from app.embeddings import Embedder
from app.errors import InvalidRequest
from app.providers import Provider
from app.providers.offline import OfflineProvider
from app.settings import Settings

KINDS = ("anthropic", "openai", "offline")


def parse_chain(spec: str) -> list[tuple[str, str]]:
    """'anthropic:claude-sonnet-4-5 -> openai:gpt-4o -> offline' as (kind, model) pairs."""
    entries = [e.strip() for e in re.split(r"->|,|\s+", spec) if e.strip()]
    chain: list[tuple[str, str]] = []
    for entry in entries:
        kind, _, model = entry.partition(":")
        kind = kind.strip().lower()
        if kind not in KINDS or (kind != "offline" and not model.strip()):
            raise InvalidRequest(
                f"DOCENT_CHAIN has an entry Docent does not understand: {entry!r}. Use "
                "'anthropic:MODEL', 'openai:MODEL' or 'offline', separated by '->'."
            )
        chain.append((kind, model.strip() or "extractive"))
    if not chain:
        raise InvalidRequest("DOCENT_CHAIN is empty; set it to at least 'offline'.")
    return chain


def parse_small_models(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if entry:
            kind, _, model = entry.partition(":")
            if kind.strip() in KINDS and model.strip():
                out[kind.strip()] = model.strip()
    return out


_PROXY_VARS = ("https_proxy", "http_proxy", "all_proxy")


def use_aiohttp(choice: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the SDKs read over aiohttp. 'auto' keeps httpx when a proxy is set in the
    environment: httpx honours those variables and the SDKs' aiohttp client does not."""
    if choice != "auto":
        return choice == "aiohttp"
    env = os.environ if environ is None else environ
    return not any(env.get(v) or env.get(v.upper()) for v in _PROXY_VARS)


def build_provider(kind: str, model: str, settings: Settings, embedder: Embedder) -> Provider:
    read_timeout = max(settings.first_token_high_s, settings.stall_s) + 5
    aiohttp = use_aiohttp(settings.provider_http)
    if kind == "anthropic":
        from app.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            model,
            settings.anthropic_api_key,
            settings.anthropic_base_url,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=read_timeout,
            aiohttp=aiohttp,
            interval_ms=settings.relay_interval_ms,
        )
    if kind == "openai":
        from app.providers.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider(
            model,
            settings.openai_api_key,
            settings.chat_openai_base_url or settings.openai_base_url,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=read_timeout,
            aiohttp=aiohttp,
            interval_ms=settings.relay_interval_ms,
        )
    return OfflineProvider(
        embedder,
        settings.answer_min_similarity,
        settings.answer_max_sentences,
        pace_ms=settings.offline_pace_ms,
    )


def build_tiers(settings: Settings, embedder: Embedder) -> dict[str, list[Provider]]:
    """Providers in chain order for the 'large' and 'small' model tiers; one instance per
    distinct kind:model, so both tiers share clients and circuit breakers."""
    chain = parse_chain(settings.chain)
    small = parse_small_models(settings.small_models)
    made: dict[tuple[str, str], Provider] = {}

    def get(kind: str, model: str) -> Provider:
        if (kind, model) not in made:
            made[(kind, model)] = build_provider(kind, model, settings, embedder)
        return made[(kind, model)]

    large = [get(kind, model) for kind, model in chain]
    smaller = [get(kind, small.get(kind, model)) for kind, model in chain]
    return {"large": large, "small": smaller}


def build_judge(settings: Settings, embedder: Embedder) -> list[Provider] | None:
    if not settings.grounding_judge.strip():
        return None
    chain = [(k, m) for k, m in parse_chain(settings.grounding_judge) if k != "offline"]
    if not chain:
        raise InvalidRequest("DOCENT_GROUNDING_JUDGE must name a language model, not 'offline'.")
    return [build_provider(kind, model, settings, embedder) for kind, model in chain]
