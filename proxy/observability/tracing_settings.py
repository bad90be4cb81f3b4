"""Tracing settings: Dapr's ``spec.tracing`` and the ``OTEL_EXPORTER_OTLP_*`` environment,
read into frozen values.

Pure parsing on purpose: the CLI and the Configuration loader read these settings, and
neither should pay for importing the OpenTelemetry SDK (``tether certs init`` and
``tether resiliency check`` never trace). Nothing here imports OpenTelemetry.

Precedence follows the project rule (environment over YAML), applied to the OTLP
exporter as a unit: when the environment names an endpoint, the protocol, security,
headers and timeout come from the environment too, so credentials meant for one
collector never travel to another. (Dapr does the reverse and lets an
``otel.endpointAddress`` in the file win.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from yamlcheck import Problems, type_name

# Dapr's rate when ``samplingRate`` is empty or not a number.
DEFAULT_SAMPLING_RATE = 0.0001
# The OTLP exporters' default export timeout, as in the OpenTelemetry spec.
DEFAULT_OTLP_TIMEOUT_SECONDS = 10.0
# The OTLP/HTTP path for traces, appended to a base URL.
OTLP_HTTP_TRACES_PATH = "/v1/traces"

Protocol = Literal["grpc", "http"]


@dataclass(frozen=True)
class OtlpSettings:
    """Where and how to export spans over OTLP."""

    # grpc: "host:port"; http: the full URL of the traces endpoint.
    endpoint: str
    protocol: Protocol = "grpc"
    is_secure: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_OTLP_TIMEOUT_SECONDS  # seconds, per export including retries


@dataclass(frozen=True)
class TracingSettings:
    """Validated tracing configuration; the default is Dapr's (rate 0.0001, no exporter)."""

    sampling_rate: float = DEFAULT_SAMPLING_RATE
    stdout: bool = False
    otlp: OtlpSettings | None = None
    zipkin_endpoint: str | None = None  # Zipkin v2 JSON spans URL

    @property
    def enabled(self) -> bool:
        """Spans are worth making: some are sampled and something exports them."""
        exporting = self.stdout or self.otlp is not None or self.zipkin_endpoint is not None
        return self.sampling_rate > 0 and exporting


_TRACING_KEYS = ("samplingRate", "stdout", "zipkin", "otel")
_ZIPKIN_KEYS = ("endpointAddress",)
_OTEL_KEYS = ("endpointAddress", "protocol", "isSecure", "headers", "timeout")
_ENV_PREFIX = "OTEL_EXPORTER_OTLP_"


def sampling_rate(text: str) -> float:
    """Dapr's reading of ``samplingRate``: a float in [0, 1]; empty or not a number → 0.0001."""
    try:
        rate = float(text)
    except ValueError:
        return DEFAULT_SAMPLING_RATE
    if math.isnan(rate):
        return DEFAULT_SAMPLING_RATE
    # Dapr's ratio sampler treats >= 1 as always and <= 0 as never.
    return min(max(rate, 0.0), 1.0)


def _env(env: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """The traces-specific variable if set, else the generic one: (name, value)."""
    for name in (f"{_ENV_PREFIX}TRACES_{suffix}", f"{_ENV_PREFIX}{suffix}"):
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _header_text(text: str, report: Callable[[str], None]) -> list[tuple[str, str]]:
    """Headers from "k=v,k2=v2" (the OTEL_EXPORTER_OTLP_HEADERS format; values percent-decoded)."""
    headers: list[tuple[str, str]] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            report(f'{json.dumps(entry)} is not "key=value"')
            continue
        headers.append((unquote(key.strip()).lower(), unquote(value.strip())))
    return headers


def _yaml_headers(problems: Problems, field: str, value: object) -> list[tuple[str, str]]:
    """``otel.headers``: a mapping, Dapr's list of {name, value}, or "k=v,k=v" text."""
    if value is None:
        return []
    if isinstance(value, str):
        return _header_text(value, lambda what: problems.add(field, what))
    if isinstance(value, dict):
        headers: list[tuple[str, str]] = []
        for key, item in value.items():
            text = problems.string(f"{field}.{key}", item)
            if text is not None:
                headers.append((str(key).lower(), text))
        return headers
    if isinstance(value, list):
        headers = []
        for index, entry in enumerate(value):
            sub = f"{field}[{index}]"
            pair = problems.mapping(sub, entry)
            if pair is None:
                continue
            for key in pair:
                if key not in ("name", "value"):
                    problems.unknown(sub, key, ("name", "value"))
            name = problems.string(f"{sub}.name", pair.get("name"))
            text = problems.string(f"{sub}.value", pair.get("value"))
            if name is not None and not name.strip():
                problems.add(f"{sub}.name", "must not be empty")
            elif name is not None and text is not None:
                headers.append((name.strip().lower(), text))
        return headers
    problems.add(
        field,
        f'expected a mapping, a list of name/value pairs or "key=value,..." text, '
        f"got {type_name(value)}",
    )
    return []


def _grpc_target(endpoint: str) -> tuple[str, bool | None]:
    """("host:port", security implied by a scheme or None) for a gRPC endpoint."""
    if "://" not in endpoint:
        return endpoint.rstrip("/"), None
    parts = urlsplit(endpoint)
    implied = {"http": False, "https": True}.get(parts.scheme.lower())
    return parts.netloc, implied


def _http_url(endpoint: str, is_secure: bool, *, append_path: bool) -> str:
    """The full OTLP/HTTP traces URL; a scheme-less "host:port" (Dapr's form) gets one."""
    url = endpoint if "://" in endpoint else f"{'https' if is_secure else 'http'}://{endpoint}"
    path = urlsplit(url).path
    if append_path or path in ("", "/"):
        url = url.rstrip("/") + OTLP_HTTP_TRACES_PATH
    return url


@dataclass
class _OtlpDraft:
    endpoint: str = ""
    protocol: Protocol = "grpc"
    is_secure: bool | None = None  # None: not said, so scheme or default decides
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_OTLP_TIMEOUT_SECONDS
    base_url: bool = False  # an OTEL_EXPORTER_OTLP_ENDPOINT base URL: append /v1/traces

    def finish(self) -> OtlpSettings:
        if self.protocol == "grpc":
            target, implied = _grpc_target(self.endpoint)
            secure = self.is_secure if self.is_secure is not None else implied
            return OtlpSettings(
                target, "grpc", True if secure is None else secure, self.headers, self.timeout
            )
        secure = True if self.is_secure is None else self.is_secure
        url = _http_url(self.endpoint, secure, append_path=self.base_url)
        secure = urlsplit(url).scheme.lower() == "https"
        return OtlpSettings(url, "http", secure, self.headers, self.timeout)


def _yaml_otel(problems: Problems, value: object) -> _OtlpDraft | None:
    field = "spec.tracing.otel"
    if value is None:
        return None
    section = problems.mapping(field, value)
    if section is None:
        return None
    draft = _OtlpDraft()
    for key, item in section.items():
        sub = f"{field}.{key}"
        if key == "endpointAddress":
            draft.endpoint = (problems.string(sub, item) or "").strip()
        elif key == "protocol":
            text = problems.string(sub, item)
            if text is None or not text.strip():
                continue
            protocol = text.strip().lower()
            if protocol == "grpc":
                draft.protocol = "grpc"
            elif protocol == "http":
                draft.protocol = "http"
            else:
                problems.add(sub, f"{json.dumps(text)} is not supported (supported: grpc, http)")
        elif key == "isSecure":
            draft.is_secure = problems.boolean(sub, item)
        elif key == "headers":
            draft.headers = tuple(_yaml_headers(problems, sub, item))
        elif key == "timeout":
            seconds = problems.duration(sub, item)
            if seconds == 0:
                problems.add(sub, "must be more than 0")
            elif seconds is not None:
                draft.timeout = seconds
        else:
            problems.unknown(field, key, _OTEL_KEYS)
    return draft


def _env_otel(problems: Problems, env: Mapping[str, str]) -> _OtlpDraft | None:
    found = _env(env, "ENDPOINT")
    if found is None:
        return None
    name, endpoint = found
    draft = _OtlpDraft(endpoint=endpoint, base_url=name == f"{_ENV_PREFIX}ENDPOINT")
    protocol = _env(env, "PROTOCOL")
    if protocol is not None and protocol[1].lower().startswith("http"):
        draft.protocol = "http"
    insecure = _env(env, "INSECURE")
    if insecure is not None:
        var, text = insecure
        if text.lower() in ("true", "false"):
            draft.is_secure = text.lower() == "false"
        else:
            problems.env(var, f"{json.dumps(text)} is not true or false")
    headers = _env(env, "HEADERS")
    if headers is not None:
        var, text = headers
        draft.headers = tuple(_header_text(text, lambda what: problems.env(var, what)))
    timeout = _env(env, "TIMEOUT")
    if timeout is not None:
        var, text = timeout
        # The OpenTelemetry spec (and Dapr) read this as milliseconds.
        if text.isdigit() and int(text) > 0:
            draft.timeout = int(text) / 1000.0
        else:
            problems.env(var, f"{json.dumps(text)} is not a positive number of milliseconds")
    return draft


def parse_tracing(
    mapping: object, env: Mapping[str, str], source: str
) -> tuple[TracingSettings, list[str]]:
    """Read ``spec.tracing`` (None when absent) and the OTLP environment variables.

    Returns the settings and every problem found, each as
    ``<source>: spec.tracing.<field>: <what is wrong>`` (or ``environment: <VAR>: ...``).
    The settings are meaningful only when there are no problems.
    """
    problems = Problems(source)
    section: dict[str, object] = {}
    if mapping is not None:
        section = problems.mapping("spec.tracing", mapping) or {}

    rate_text = ""
    stdout = False
    zipkin: str | None = None
    yaml_otel: _OtlpDraft | None = None
    for key, item in section.items():
        field = f"spec.tracing.{key}"
        if key == "samplingRate":
            if isinstance(item, int | float) and not isinstance(item, bool):
                rate_text = str(item)  # YAML read an unquoted number; Dapr wants a string
            elif item is not None:
                rate_text = problems.string(field, item) or ""
        elif key == "stdout":
            stdout = bool(problems.boolean(field, item)) if item is not None else False
        elif key == "zipkin":
            zipkin = _zipkin(problems, item)
        elif key == "otel":
            yaml_otel = _yaml_otel(problems, item)
        else:
            problems.unknown("spec.tracing", key, _TRACING_KEYS)

    env_otel = _env_otel(problems, env)
    if env_otel is not None and not rate_text.strip():
        rate_text = "1"  # as Dapr: an OTLP endpoint in the environment means "trace everything"
    draft = env_otel or yaml_otel
    otlp = draft.finish() if draft is not None and draft.endpoint else None
    otel_keys = section.get("otel")
    if (
        yaml_otel is not None
        and not yaml_otel.endpoint
        and env_otel is None
        and isinstance(otel_keys, dict)
        and set(otel_keys) & set(_OTEL_KEYS) - {"endpointAddress"}
    ):
        # Options without an address export nothing; an explicitly empty address alone is "off".
        problems.add("spec.tracing.otel.endpointAddress", "missing (nothing would be exported)")
    rate = sampling_rate(rate_text.strip()) if rate_text.strip() else DEFAULT_SAMPLING_RATE
    return TracingSettings(rate, stdout, otlp, zipkin), problems.items


def _zipkin(problems: Problems, value: object) -> str | None:
    """The Zipkin collector URL (``http://host:9411/api/v2/spans``), if one is set."""
    field = "spec.tracing.zipkin"
    if value is None:
        return None
    section = problems.mapping(field, value)
    if section is None:
        return None
    for key in section:
        if key not in _ZIPKIN_KEYS:
            problems.unknown(field, key, _ZIPKIN_KEYS)
    address = section.get("endpointAddress")
    if address is None:
        return None
    text = problems.string(f"{field}.endpointAddress", address)
    if text is None or not text.strip():
        return None
    text = text.strip()
    if not text.startswith(("http://", "https://")):
        problems.add(f"{field}.endpointAddress", f"{text!r} must be an http(s):// URL")
        return None
    return text
