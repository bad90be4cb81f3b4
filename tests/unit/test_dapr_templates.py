"""Dapr's kubernetes ``template`` (Go template) converted to tether's name template."""

from __future__ import annotations

import pytest

from proxy.discovery.dapr_templates import HostTemplate, convert_go_template
from proxy.discovery.dns_names import InvalidTemplate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{.ID}}-dapr.{{.Namespace}}.svc.example:{{.Port}}",
         HostTemplate("{appid}-dapr.{namespace}.svc.example", None)),
        ("{{ .ID }}.internal", HostTemplate("{appid}.internal", None)),
        ("{{.ID}}.internal:50010", HostTemplate("{appid}.internal", 50010)),
    ],
)  # fmt: skip
def test_supported_templates(text: str, expected: HostTemplate) -> None:
    assert convert_go_template(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{.ID}}-{{.Data.region}}.internal", r"\{\{.Data.region\}\} is not supported"),
        ("{{.ID | lower}}.x", "is not supported by tether"),
        ("orders.internal", r"must contain \{\{.ID\}\}"),
        ("{{.Port}}.{{.ID}}.x", "may only be the port"),
        ("{{.ID}}..x", "does not form a DNS name"),
        ("{{.ID}}.x:70000", "outside 1-65535"),
        ("", "empty"),
        ("{{.ID}}.{x}", "unknown placeholder"),
    ],
)
def test_refused_templates(text: str, message: str) -> None:
    with pytest.raises(InvalidTemplate, match=message):
        convert_go_template(text)
