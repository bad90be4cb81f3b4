"""Listen to mDNS on a plain UDP socket, as daprd's grandcat/zeroconf client does, and
print every packet as one JSON line (parsed by python-zeroconf's DNSIncoming: dnspython
refuses the compressed next-name in the NSEC records python-zeroconf adds, which Go's
miekg/dns accepts); optionally send daprd's
browse query first (a PTR question for ``<app>.local.``, class IN, no known answers,
from port 5353). Prints ``{"listening": true}`` once the socket is joined.

    python mdns_capture.py SECONDS [APP_ID_TO_QUERY [QUERY_EVERY_SECONDS]]

Each line: {"response": bool, "questions": [[name, type]], "sections": [answers,
authorities, additionals], "records": [[name, type, ttl, cache_flush, rdata...]]} with
the records of all sections in wire order (grandcat reads them all alike).
"""

from __future__ import annotations

import ipaddress
import json
import select
import socket
import struct
import sys
import time

import dns.message
import dns.rdatatype
from zeroconf._dns import DNSAddress, DNSPointer, DNSRecord, DNSService, DNSText
from zeroconf._protocol.incoming import DNSIncoming

from proxy.discovery.mdns_records import txt_strings

GROUP = "224.0.0.251"
PORT = 5353
_TYPES = {1: "A", 12: "PTR", 16: "TXT", 28: "AAAA", 33: "SRV", 47: "NSEC", 255: "ANY"}


def row(record: DNSRecord) -> list[object]:
    fields: list[object] = [record.name, _TYPES.get(record.type, record.type), record.ttl]
    fields.append(record.unique)  # the cache-flush bit
    if isinstance(record, DNSPointer):
        fields.append(record.alias)
    elif isinstance(record, DNSService):
        fields += [record.priority, record.weight, record.port, record.server]
    elif isinstance(record, DNSText):
        fields.append(txt_strings(record.text))
    elif isinstance(record, DNSAddress):
        fields.append(str(ipaddress.ip_address(record.address)))
    return fields


def describe(message: DNSIncoming) -> dict[str, object]:
    return {
        "response": message.is_response(),
        "questions": [[q.name, _TYPES.get(q.type, q.type)] for q in message.questions],
        "sections": [message.num_answers, message.num_authorities, message.num_additionals],
        "records": [row(record) for record in message.answers()],
    }


def browse_query(app_id: str) -> bytes:
    query = dns.message.make_query(f"{app_id}.local.", dns.rdatatype.PTR, use_edns=False)
    query.id = 0
    query.flags = 0  # no RD: grandcat clears RecursionDesired
    return query.to_wire()


def main() -> None:
    seconds = float(sys.argv[1])
    app_id = sys.argv[2] if len(sys.argv) > 2 else None
    every = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", PORT))
    membership = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton("0.0.0.0"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    print(json.dumps({"listening": True}), flush=True)
    end = time.monotonic() + seconds
    next_query = time.monotonic() if app_id else None
    while (now := time.monotonic()) < end:
        if next_query is not None and now >= next_query:
            assert app_id is not None
            sock.sendto(browse_query(app_id), (GROUP, PORT))
            next_query = now + every if every > 0 else None
        wake = min(end, next_query) if next_query is not None else end
        readable, _, _ = select.select([sock], [], [], max(wake - now, 0.0))
        if not readable:
            continue
        packet, _ = sock.recvfrom(65535)
        message = DNSIncoming(packet)
        if not message.valid:
            print(json.dumps({"unparsable": packet.hex()}), flush=True)
            continue
        print(json.dumps(describe(message)), flush=True)


if __name__ == "__main__":
    main()
