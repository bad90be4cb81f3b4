"""A stand-in for daprd's mDNS registration, with the packets grandcat/zeroconf v1 sends
(written out byte by byte here, so neither python-zeroconf nor dnspython shapes them):

- announcement at start (twice, 1 s apart): SRV, TXT (cache-flush), PTR, the DNS-SD
  PTR and the A record (cache-flush) in the answer section;
- answer to a question naming ``<app>.local.`` (any type): the PTR in the answer
  section, SRV, TXT and A (no cache-flush) as additionals; TTL 3200, the A record 120;
  multicast, or unicast to the asker for a QU question; queries that carry an
  authority section (probes) are ignored, as grandcat does;
- on SIGTERM the announcement again with TTL 0 (goodbye), then exit.

    python mdns_fake_daprd.py APP_ID ADDRESS PORT HOSTNAME [quiet]

``quiet`` skips the announcements, so others learn of it only by asking. Prints
``{"ready": true, "instance": ...}`` once joined (and announced), and
``{"closed": true, "answered": N}`` at exit.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import time

GROUP = "224.0.0.251"
PORT = 5353
IN = 1
FLUSH = 0x8000
PTR, TXT, A, SRV = 12, 16, 1, 33
TTL = 3200  # grandcat's Server.ttl
ADDRESS_TTL = 120  # RFC 6762 section 10, as grandcat's appendAddrs


def name(text: str) -> bytes:
    out = b""
    for label in text.rstrip(".").split("."):
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def record(owner: str, rtype: int, rclass: int, ttl: int, rdata: bytes) -> bytes:
    return name(owner) + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def message(flags: int, answers: list[bytes], additionals: list[bytes]) -> bytes:
    header = struct.pack("!HHHHHH", 0, flags, 0, len(answers), 0, len(additionals))
    return header + b"".join(answers) + b"".join(additionals)


class Registration:
    def __init__(self, app_id: str, address: str, port: int, hostname: str) -> None:
        self.service = f"{app_id}.local."
        self.instance = f"{hostname}:{os.getpid()}.{self.service}"
        self.host = f"{hostname}.local."
        self.app_id = app_id
        self.address = socket.inet_aton(address)
        self.port = port

    def ptr(self, ttl: int) -> bytes:
        return record(self.service, PTR, IN, ttl, name(self.instance))

    def srv(self, ttl: int, rclass: int) -> bytes:
        rdata = struct.pack("!HHH", 0, 0, self.port) + name(self.host)
        return record(self.instance, SRV, rclass, ttl, rdata)

    def txt(self, ttl: int, rclass: int) -> bytes:
        raw = self.app_id.encode()
        return record(self.instance, TXT, rclass, ttl, bytes([len(raw)]) + raw)

    def a(self, ttl: int, rclass: int) -> bytes:
        return record(self.host, A, rclass, ttl, self.address)

    def browsing_answer(self) -> bytes:
        extra = [self.srv(TTL, IN), self.txt(TTL, IN), self.a(ADDRESS_TTL, IN)]
        return message(0x8400, [self.ptr(TTL)], extra)

    def announcement(self, goodbye: bool = False) -> bytes:
        ttl = 0 if goodbye else TTL
        dnssd = record("_services._dns-sd._udp.local.", PTR, IN, ttl, name(self.service))
        answers = [
            self.srv(ttl, IN | FLUSH),
            self.txt(ttl, IN | FLUSH),
            self.ptr(ttl),
            dnssd,
            self.a(0 if goodbye else ADDRESS_TTL, IN | FLUSH),
        ]
        return message(0x8000, answers, [])


def question_names(packet: bytes) -> list[tuple[str, bool]]:
    """(name, QU bit) of each question, or [] for responses and probes (authority)."""
    if len(packet) < 12:
        return []
    _, flags, questions, _, authorities, _ = struct.unpack("!HHHHHH", packet[:12])
    if flags & 0x8000 or authorities:
        return []
    found = []
    at = 12
    for _ in range(questions):
        labels = []
        while at < len(packet) and packet[at] != 0:
            if packet[at] & 0xC0:  # compression in questions: not worth following here
                return found
            length = packet[at]
            labels.append(packet[at + 1 : at + 1 + length].decode(errors="replace"))
            at += 1 + length
        at += 1
        if at + 4 > len(packet):
            return found
        _, qclass = struct.unpack("!HH", packet[at : at + 4])
        at += 4
        found.append((".".join(labels) + ".", bool(qclass & FLUSH)))
    return found


def main() -> None:
    registration = Registration(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", PORT))
    membership = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(sys.argv[2]))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[2]))
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    quiet = sys.argv[5:] == ["quiet"]
    announce_again: float | None = None
    if not quiet:
        sock.sendto(registration.announcement(), (GROUP, PORT))
        announce_again = time.monotonic() + 1.0
    answered = 0
    print(json.dumps({"ready": True, "instance": registration.instance}), flush=True)
    while not stop:
        if announce_again is not None and time.monotonic() >= announce_again:
            sock.sendto(registration.announcement(), (GROUP, PORT))
            announce_again = None
        try:
            readable, _, _ = select.select([sock], [], [], 0.2)
        except InterruptedError:
            continue
        if not readable:
            continue
        packet, source = sock.recvfrom(65535)
        for question, unicast in question_names(packet):
            if question != registration.service:  # grandcat compares names exactly
                continue
            target = source if unicast else (GROUP, PORT)
            sock.sendto(registration.browsing_answer(), target)
            answered += 1
    sock.sendto(registration.announcement(goodbye=True), (GROUP, PORT))
    print(json.dumps({"closed": True, "answered": answered}), flush=True)


if __name__ == "__main__":
    main()
