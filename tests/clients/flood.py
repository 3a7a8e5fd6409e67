#!/usr/bin/env python3
"""A bounded flood of malformed Ethernet/IPv4/TCP frames at one guest, for the image's
robustness test (tests/image.rs). Run it inside the test's namespace; it writes frames with a raw
AF_PACKET socket on the guest's TAP (the kernel side of a TAP delivers them straight to QEMU,
so only the guest sees them).

Frames go to the guest's MAC (a few to broadcast), with IPv4 sources from 198.18.0.0/15 that no
test host uses (198.18.0.100-250 and 198.19.x.x), never 198.18.0.1 or 198.18.0.3, so the guest's
neighbour entry for the real peer stays intact. Kinds: random bytes, truncated headers, bad
IPv4 version/IHL/lengths/checksums, garbage options, fragments, TCP with bad offsets, bad
checksums, bogus option lengths, and well-formed-checksum TCP segments with random flags
except a bare SYN (a listener that takes a spoofed SYN waits for a handshake that never
completes: that is a SYN flood, a different test), plus broken ARP, ICMP, UDP, VLAN and IPv6.

Bounded: at most --count frames and --seconds seconds, whichever comes first. Prints one JSON
line with what was sent. Refuses a destination address outside 198.18.0.0/15.

usage: flood.py --iface tap0 --dst-mac 52:54:00:18:00:02 [--dst-ip 198.18.0.2] [--port 5201]
                [--count 20000] [--seconds 5] [--seed 1]
"""

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import time

BENCHMARK_NET = ipaddress.ip_network("198.18.0.0/15")
ETH_MIN = 14
ETH_MAX = 1514  # MTU 1500 + Ethernet header: what the TAP accepts
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Forge:
    def __init__(self, rng, dst_mac, dst_ip, port):
        self.rng = rng
        self.dst_mac = dst_mac
        self.dst_ip = dst_ip
        self.port = port

    def rand(self, n):
        return self.rng.randbytes(n)

    def src_mac(self):
        # Locally administered unicast.
        return bytes([0x02 | (self.rng.randrange(256) & 0xFC)]) + self.rand(5)

    def src_ip(self):
        if self.rng.random() < 0.5:
            return bytes([198, 18, 0, self.rng.randrange(100, 251)])
        return bytes([198, 19, self.rng.randrange(256), self.rng.randrange(1, 255)])

    def eth(self, ethertype, payload, dst=None):
        dst = dst or (b"\xff" * 6 if self.rng.random() < 0.02 else self.dst_mac)
        return dst + self.src_mac() + struct.pack("!H", ethertype) + payload

    def ipv4(self, payload, proto=6, src=None, ihl=5, options=b"", total=None, flags_frag=0x4000,
             ident=None, version=4, ttl=64, good_csum=True):
        total = 4 * ihl + len(payload) if total is None else total
        ident = self.rng.randrange(65536) if ident is None else ident
        hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | (ihl & 15), 0, total & 0xFFFF, ident,
                          flags_frag, ttl, proto, 0, src or self.src_ip(), self.dst_ip) + options
        c = csum(hdr[: 4 * ihl] if 4 * ihl <= len(hdr) else hdr)
        if not good_csum:
            c ^= 1 + self.rng.randrange(0xFFFF)
        hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
        return hdr + payload

    def tcp(self, src_ip, flags, payload=b"", options=b"", doff=None, sport=None, dport=None,
            good_csum=True):
        doff = 5 + (len(options) + 3) // 4 if doff is None else doff
        options = options + b"\0" * ((-len(options)) % 4)
        sport = self.rng.randrange(1024, 65536) if sport is None else sport
        dport = (self.port if self.rng.random() < 0.7 else self.rng.randrange(65536)) if dport is None else dport
        hdr = struct.pack("!HHIIBBHHH", sport, dport, self.rng.getrandbits(32), self.rng.getrandbits(32),
                          (doff & 15) << 4, flags, self.rng.randrange(65536), 0,
                          self.rng.randrange(65536)) + options
        seg = hdr + payload
        pseudo = src_ip + self.dst_ip + struct.pack("!BBH", 0, 6, len(seg))
        c = csum(pseudo + seg)
        if not good_csum:
            c ^= 1 + self.rng.randrange(0xFFFF)
        return seg[:16] + struct.pack("!H", c) + seg[18:]

    def tcp_flags(self):
        # Anything but a bare SYN (see the module doc).
        while True:
            f = self.rng.randrange(64)
            if f & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN:
                return f

    def bogus_tcp_options(self):
        r = self.rng.random()
        if r < 0.2:
            return bytes([2, 0])  # MSS with length 0
        if r < 0.4:
            return bytes([3, 1])  # window scale with length 1
        if r < 0.6:
            return bytes([5, 40]) + self.rand(6)  # SACK longer than the header
        if r < 0.8:
            return bytes([8, 10]) + self.rand(2)  # truncated timestamps
        return self.rand(self.rng.randrange(1, 40))

    # Each kind returns one frame.
    def k_random(self):
        return self.dst_mac + self.rand(self.rng.randrange(ETH_MIN - 6, ETH_MAX - 6 + 1))

    def k_truncated_ip(self):
        return self.eth(ETH_P_IP, self.rand(self.rng.randrange(0, 20)))

    def k_bad_ip_header(self):
        src = self.src_ip()
        seg = self.tcp(src, self.tcp_flags(), self.rand(self.rng.randrange(64)))
        variant = self.rng.randrange(6)
        if variant == 0:
            return self.eth(ETH_P_IP, self.ipv4(seg, src=src, version=self.rng.choice([0, 5, 6, 15])))
        if variant == 1:
            return self.eth(ETH_P_IP, self.ipv4(seg, src=src, ihl=self.rng.randrange(0, 5)))
        if variant == 2:
            return self.eth(ETH_P_IP, self.ipv4(seg, src=src, total=self.rng.randrange(20 + len(seg) + 1, 65536)))
        if variant == 3:
            return self.eth(ETH_P_IP, self.ipv4(seg, src=src, total=self.rng.randrange(0, 20)))
        if variant == 4:
            return self.eth(ETH_P_IP, self.ipv4(seg, src=src, good_csum=False))
        ihl = self.rng.randrange(6, 16)
        return self.eth(ETH_P_IP, self.ipv4(seg, src=src, ihl=ihl, options=self.rand(4 * (ihl - 5))))

    def k_fragment(self):
        src = self.src_ip()
        ident = self.rng.randrange(65536)
        payload = self.rand(self.rng.choice([1, 7, 8, 64, 512, 1400]))
        offset = self.rng.choice([0, 1, 8, 185, 8191])
        more = 0x2000 if self.rng.random() < 0.7 else 0
        proto = self.rng.choice([6, 17, 1, 253])
        return self.eth(ETH_P_IP, self.ipv4(payload, proto=proto, src=src, ident=ident, flags_frag=more | offset))

    def k_bad_tcp(self):
        src = self.src_ip()
        variant = self.rng.randrange(4)
        payload = self.rand(self.rng.randrange(0, 200))
        if variant == 0:
            seg = self.tcp(src, self.tcp_flags(), payload, doff=self.rng.choice([0, 1, 4, 15]))
        elif variant == 1:
            seg = self.tcp(src, self.rng.randrange(256), payload, good_csum=False)
        elif variant == 2:
            seg = self.tcp(src, self.tcp_flags(), payload, options=self.bogus_tcp_options())
        else:
            seg = self.tcp(src, self.tcp_flags(), payload)[: self.rng.randrange(0, 20)]
        return self.eth(ETH_P_IP, self.ipv4(seg, src=src))

    def k_valid_tcp(self):
        src = self.src_ip()
        seg = self.tcp(src, self.tcp_flags(), self.rand(self.rng.randrange(0, 1400)))
        return self.eth(ETH_P_IP, self.ipv4(seg, src=src))

    def k_other(self):
        variant = self.rng.randrange(6)
        if variant == 0:  # ARP with bogus sizes or truncated
            arp = struct.pack("!HHBBH", 1, ETH_P_IP, self.rng.randrange(256), self.rng.randrange(256), 1)
            return self.eth(ETH_P_ARP, arp + self.rand(self.rng.randrange(0, 40)))
        if variant == 1:  # ARP request for the guest from an unused address (it may answer)
            arp = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, self.src_mac(), self.src_ip(),
                              b"\0" * 6, self.dst_ip)
            return self.eth(ETH_P_ARP, arp, dst=b"\xff" * 6)
        if variant == 2:  # ICMP, sometimes truncated or with a bad checksum
            body = struct.pack("!BBHHH", self.rng.choice([0, 3, 5, 8, 11, 255]), 0, 0, 1, 1) + self.rand(32)
            body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
            if self.rng.random() < 0.5:
                body = body[: self.rng.randrange(0, 8)]
            return self.eth(ETH_P_IP, self.ipv4(body, proto=1))
        if variant == 3:  # UDP with lying length
            body = struct.pack("!HHHH", self.rng.randrange(65536), self.rng.randrange(65536),
                               self.rng.randrange(65536), 0) + self.rand(self.rng.randrange(0, 100))
            return self.eth(ETH_P_IP, self.ipv4(body, proto=17))
        if variant == 4:  # VLAN-tagged IPv4
            inner = self.ipv4(self.rand(40), proto=6)
            return self.eth(ETH_P_8021Q, struct.pack("!HH", self.rng.randrange(4096), ETH_P_IP) + inner)
        return self.eth(ETH_P_IPV6, self.rand(self.rng.randrange(0, 100)))


KINDS = ["random", "truncated_ip", "bad_ip_header", "fragment", "bad_tcp", "valid_tcp", "other"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iface", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--dst-ip", default="198.18.0.2")
    ap.add_argument("--port", type=int, default=5201)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    dst_ip = ipaddress.ip_address(a.dst_ip)
    if dst_ip not in BENCHMARK_NET:
        sys.exit(f"flood.py: refusing {dst_ip}: only 198.18.0.0/15 may be targeted")
    if not (0 < a.count <= 100000 and 0 < a.seconds <= 30):
        sys.exit("flood.py: --count must be 1..100000 and --seconds 0..30")
    dst_mac = bytes.fromhex(a.dst_mac.replace(":", "").replace("-", ""))
    if len(dst_mac) != 6:
        sys.exit(f"flood.py: bad MAC {a.dst_mac}")

    rng = random.Random(a.seed)
    forge = Forge(rng, dst_mac, dst_ip.packed, a.port)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))

    sent = {k: 0 for k in KINDS}
    refused = 0  # the TAP's queue was full (the guest is not reading fast enough)
    rejected = 0  # the kernel refused the frame itself
    start = time.monotonic()
    deadline = start + a.seconds
    # Spread the frames over 80 % of the time, so the guest sees a flood rather than one burst.
    interval = 0.8 * a.seconds / a.count
    for i in range(a.count):
        now = time.monotonic()
        if now >= deadline:
            break
        due = start + i * interval
        if due > now:
            time.sleep(due - now)
        kind = rng.choice(KINDS)
        frame = getattr(forge, "k_" + kind)()
        frame = frame[:ETH_MAX]
        if len(frame) < ETH_MIN:
            frame += b"\0" * (ETH_MIN - len(frame))
        try:
            s.send(frame)
            sent[kind] += 1
        except BlockingIOError:
            refused += 1
        except OSError as e:
            if e.errno in (105, 11):  # ENOBUFS, EAGAIN
                refused += 1
            else:
                rejected += 1
    elapsed = time.monotonic() - start
    print(json.dumps({"sent": sum(sent.values()), "by_kind": sent, "queue_full": refused,
                      "rejected": rejected, "seconds": round(elapsed, 3)}))


if __name__ == "__main__":
    main()
