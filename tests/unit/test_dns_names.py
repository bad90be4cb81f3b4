"""Pure DNS helpers: nameserver parsing, name templates, DNS name shapes."""

from __future__ import annotations

import pytest

from proxy.discovery.dns_names import (
    KUBERNETES_TEMPLATE,
    InvalidDnsName,
    InvalidNameserver,
    InvalidTemplate,
    Nameserver,
    app_name,
    kubernetes_name,
    parse_nameserver,
    parse_nameservers,
    render_template,
    srv_name,
    template_fields,
    validate_dns_name,
    validate_template,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.10", Nameserver("10.0.0.10", 53)),
        ("10.0.0.10:5353", Nameserver("10.0.0.10", 5353)),
        (" 198.18.0.1:53 ", Nameserver("198.18.0.1", 53)),
        ("::1", Nameserver("::1", 53)),
        ("fe80::1:53", Nameserver("fe80::1:53", 53)),  # bare IPv6: the colons are the address
        ("[::1]", Nameserver("::1", 53)),
        ("[2001:db8::1]:5353", Nameserver("2001:db8::1", 5353)),
        ("[2001:DB8:0::1]:53", Nameserver("2001:db8::1", 53)),  # normalised
    ],
)
def test_nameserver_forms(text: str, expected: Nameserver) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("dns.example", "not an IPv4 or IPv6 address"),
        ("dns.example:53", "not an IPv4 or IPv6 address"),
        ("10.0.0.1:", "is not a number"),
        ("10.0.0.1:dns", "is not a number"),
        ("10.0.0.1:0", "outside 1-65535"),
        ("10.0.0.1:65536", "outside 1-65535"),
        ("10.0.0.1:+53", "is not a number"),
        ("10.0.0.1:\uff15\uff13", "is not a number"),  # full-width digits pass str.isdigit
        ("[::1", "missing ']'"),
        ("[::1]53", "expected ':port'"),
        ("[10.0.0.1]:53", "only for IPv6"),
        ("256.0.0.1", "not an IPv4 or IPv6 address"),
    ],
)
def test_bad_nameservers_say_why(text: str, problem: str) -> None:
    with pytest.raises(InvalidNameserver, match=problem):
        parse_nameserver(text)


def test_nameserver_written_back_as_host_port() -> None:
    assert str(Nameserver("10.0.0.1", 53)) == "10.0.0.1:53"
    assert str(Nameserver("2001:db8::1", 5353)) == "[2001:db8::1]:5353"
    for text in ["10.0.0.1:53", "[2001:db8::1]:5353"]:
        assert str(parse_nameserver(text)) == text


def test_nameserver_list_reports_every_bad_entry_with_its_index() -> None:
    assert parse_nameservers(["10.0.0.1", "[::1]:5353"]) == (
        Nameserver("10.0.0.1"),
        Nameserver("::1", 5353),
    )
    with pytest.raises(InvalidNameserver) as caught:
        parse_nameservers(["x", "10.0.0.1", "10.0.0.1:0"])
    assert len(caught.value.problems) == 2
    assert caught.value.problems[0].startswith("[0] ")
    assert caught.value.problems[1].startswith("[2] ")
    with pytest.raises(InvalidNameserver, match="empty"):
        parse_nameservers([])


def test_template_fields_in_order_with_literal_braces() -> None:
    assert template_fields("{appid}-dapr.{namespace}.svc") == ("appid", "namespace")
    assert template_fields("{{x}}{appid}") == ("appid",)
    assert template_fields("plain.example") == ()


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{}.example", "not a placeholder name"),
        ("{0}.example", "not a placeholder name"),
        ("{appid.__class__}.example", "not a placeholder name"),
        ("{appid[0]}.example", "not a placeholder name"),
        ("{appid!r}.example", "may not carry"),
        ("{appid:>10}.example", "may not carry"),
        ("{appid.example", "expected '}'"),
        ("appid}.example", "Single '}'"),
    ],
)
def test_malformed_templates(template: str, problem: str) -> None:
    with pytest.raises(InvalidTemplate, match=problem):
        template_fields(template)


def test_template_validation() -> None:
    validate_template("{appid}.{namespace}.svc.example")
    validate_template("{appid}-dapr.internal.")  # absolute names are fine
    validate_template(
        KUBERNETES_TEMPLATE, fields={"appid", "namespace", "clusterDomain"}, required={"appid"}
    )
    with pytest.raises(InvalidTemplate, match=r"unknown placeholder \{region\}"):
        validate_template("{appid}.{region}.example")
    with pytest.raises(InvalidTemplate, match=r"must contain \{appid\}"):
        validate_template("{namespace}.example")
    with pytest.raises(InvalidTemplate, match="does not form a DNS name"):
        validate_template("{appid}..example")
    with pytest.raises(InvalidTemplate, match="does not form a DNS name"):
        validate_template("{appid} svc.example")


def test_render_needs_every_value() -> None:
    assert render_template("{a}.{b}", {"a": "x", "b": "y"}) == "x.y"
    with pytest.raises(InvalidTemplate, match="no value for b"):
        render_template("{a}.{b}", {"a": "x"})


def test_kubernetes_name_as_dapr_builds_it() -> None:
    assert kubernetes_name("orders", "prod") == "orders-dapr.prod.svc.cluster.local"
    assert kubernetes_name("orders", "default", "corp.internal") == (
        "orders-dapr.default.svc.corp.internal"
    )
    with pytest.raises(InvalidDnsName):
        kubernetes_name("orders", "prod", "bad..domain")


def test_app_name_fills_appid_and_namespace_as_single_labels() -> None:
    assert app_name("{appid}.{namespace}.mesh.test", "orders", "prod") == "orders.prod.mesh.test"
    assert app_name("{appid}.mesh.test", "orders", "prod") == "orders.mesh.test"
    with pytest.raises(InvalidDnsName, match="app ID"):
        app_name("{appid}.mesh.test", "orders.prod", "prod")  # would add a label
    with pytest.raises(InvalidDnsName, match="namespace"):
        app_name("{appid}.{namespace}.mesh.test", "orders", "")
    with pytest.raises(InvalidDnsName, match="longer than 63"):
        app_name("{appid}.mesh.test", "o" * 64, "prod")


def test_extra_values_cannot_replace_appid_or_namespace() -> None:
    name = app_name("{appid}.{namespace}.{zone}", "orders", "prod", {"appid": "x", "zone": "z"})
    assert name == "orders.prod.z"


def test_srv_name_for_the_internal_port() -> None:
    assert srv_name("orders-dapr.prod.svc.cluster.local") == (
        "_dapr-internal._tcp.orders-dapr.prod.svc.cluster.local"
    )


@pytest.mark.parametrize(
    "name", ["a", "orders.test", "orders.test.", "_srv._tcp.x", "a-b.c_d.E9", "a" * 63 + ".b"]
)
def test_valid_dns_names(name: str) -> None:
    assert validate_dns_name(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        (".", "empty"),
        ("a..b", "empty label"),
        (".a", "empty label"),
        ("a" * 64 + ".b", "longer than 63"),
        (".".join(["a" * 62] * 4) + ".abc", "longer than 253"),
        ("a b.test", "may hold only"),
        ("ä.test", "may hold only"),
        ("a/b.test", "may hold only"),
    ],
)
def test_invalid_dns_names(name: str, problem: str) -> None:
    with pytest.raises(InvalidDnsName, match=problem):
        validate_dns_name(name)


def test_errors_are_value_errors_for_config_loaders() -> None:
    for error in (InvalidNameserver("x"), InvalidTemplate("x"), InvalidDnsName("x")):
        assert isinstance(error, ValueError)
