#!/usr/bin/env python3
"""Misbehaving iperf3 clients for uniperf's server-robustness tests (tests/tap_misbehave.rs).

Each scenario speaks just enough of the iperf3 control protocol to misbehave at one point, then
prints one JSON line on stdout: what the server sent on the control connection (hex), how the
connection ended ("eof", "reset" or "open" when we gave up waiting) and when, in seconds after
the misbehaviour. Progress goes to stderr ("phase: …"). Every wait is bounded; the script refuses
any server address outside 198.18.0.0/15.

usage: misbehave.py SCENARIO [--host 198.18.0.2] [--port 5201] [--wait S] [--hold S] [--count N]
scenarios: stall, stall-after-cookie, garbage-cookie, oversized-length, malformed-json, bad-state,
           vanish-reset, vanish-stall, busy-probe
"""

import argparse
import ipaddress
import json
import os
import selectors
import socket
import struct
import sys
import time

PARAM_EXCHANGE = 9
CREATE_STREAMS = 10
TEST_START = 1
TEST_RUNNING = 2
ALPHABET = b"abcdefghijklmnopqrstuvwxyz234567"
BENCHMARK_NET = ipaddress.ip_network("198.18.0.0/15")


def phase(name):
    print(f"phase: {name}", file=sys.stderr, flush=True)


def make_cookie():
    return bytes(ALPHABET[b % 32] for b in os.urandom(36)) + b"\0"


def params(time_s, reverse=False):
    p = {
        "tcp": True,
        "omit": 0,
        "time": time_s,
        "num": 0,
        "blockcount": 0,
        "parallel": 1,
        "len": 131072,
        "pacing_timer": 1000,
        "client_version": "3.12",
    }
    if reverse:
        p["reverse"] = True
    body = json.dumps(p, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


class Control:
    """The control connection; remembers every byte the server sent on it."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.received = b""

    def send(self, data):
        self.sock.sendall(data)

    def expect_state(self, state, timeout):
        """Reads one state byte; fails (exit 2) unless it is `state`."""
        self.sock.settimeout(timeout)
        try:
            b = self.sock.recv(1)
        except OSError as e:
            fail(f"waiting for state {state}: {e}", self)
        self.received += b
        if b != bytes([state]):
            fail(f"expected state {state}, got {b.hex() or 'EOF'}", self)

    def drain_until_closed(self, wait):
        """Reads until EOF/RST or `wait` seconds; returns (how, seconds)."""
        return drain(self.sock, wait, self)


def drain(sock, wait, ctl=None):
    start = time.monotonic()
    deadline = start + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "open", time.monotonic() - start
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except socket.timeout:
            return "open", time.monotonic() - start
        except ConnectionResetError:
            return "reset", time.monotonic() - start
        except OSError as e:
            return f"error:{e.errno}", time.monotonic() - start
        if not b:
            return "eof", time.monotonic() - start
        if ctl is not None:
            ctl.received += b


def stall_report(scenario, conns, hold):
    """Watches all `conns` for up to `hold` seconds; reports how and when each was closed."""
    start = time.monotonic()
    state = {c.sock: ["open", None] for c in conns}
    by_sock = {c.sock: c for c in conns}
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ)
    while state and any(v[1] is None for v in state.values()):
        left = start + hold - time.monotonic()
        if left <= 0:
            break
        for key, _ in sel.select(left):
            sock = key.fileobj
            try:
                b = sock.recv(65536)
            except ConnectionResetError:
                b, how = None, "reset"
            except OSError as e:
                b, how = None, f"error:{e.errno}"
            else:
                how = "eof"
            if b:
                by_sock[sock].received += b
                continue
            state[sock] = [how, round(time.monotonic() - start, 3)]
            sel.unregister(sock)
    each = [
        {"received": c.received.hex(), "closed": state[c.sock][0], "closed_after": state[c.sock][1]}
        for c in conns
    ]
    still_open = [e for e in each if e["closed"] == "open"]
    worst = max((e["closed_after"] or hold) for e in each)
    out = {
        "scenario": scenario,
        "received": conns[0].received.hex(),
        "closed": "open" if still_open else each[0]["closed"],
        "closed_after": round(worst if not still_open else hold, 3),
        "open_count": len(still_open),
        "connections": each,
    }
    print(json.dumps(out), flush=True)


def report(scenario, ctl, how, after, **extra):
    out = {"scenario": scenario, "received": ctl.received.hex(), "closed": how, "closed_after": round(after, 3)}
    out.update(extra)
    print(json.dumps(out), flush=True)


def fail(why, ctl=None):
    print(json.dumps({"failed": why, "received": ctl.received.hex() if ctl else ""}), flush=True)
    sys.exit(2)


def send_quietly(sock, data):
    """Sends what the server will take; it may already have closed on us."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def reset(sock):
    """Closes with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def open_test(a, reverse, time_s):
    """Control connection through CREATE_STREAMS, then one data stream through TEST_RUNNING."""
    cookie = make_cookie()
    ctl = Control(a.host, a.port)
    ctl.send(cookie)
    ctl.expect_state(PARAM_EXCHANGE, a.wait)
    ctl.send(params(time_s, reverse))
    ctl.expect_state(CREATE_STREAMS, a.wait)
    data = socket.create_connection((a.host, a.port), timeout=10)
    data.sendall(cookie)
    ctl.expect_state(TEST_START, a.wait)
    ctl.expect_state(TEST_RUNNING, a.wait)
    return ctl, data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--host", default="198.18.0.2")
    ap.add_argument("--port", type=int, default=5201)
    ap.add_argument("--wait", type=float, default=10.0, help="how long to wait for the server")
    ap.add_argument("--hold", type=float, default=3.0, help="how long to hold a stalled connection")
    ap.add_argument("--count", type=int, default=1, help="stall: how many connections")
    a = ap.parse_args()
    if ipaddress.ip_address(a.host) not in BENCHMARK_NET:
        sys.exit(f"refusing {a.host}: only 198.18.0.0/15 may be used")

    s = a.scenario
    if s in ("stall", "stall-after-cookie"):
        # `--count` control connections that send nothing (or only the cookie, then nothing
        # after PARAM_EXCHANGE): the server must drop each after its idle timeout.
        conns = []
        for _ in range(a.count):
            ctl = Control(a.host, a.port)
            if s == "stall-after-cookie":
                ctl.send(make_cookie())
                ctl.expect_state(PARAM_EXCHANGE, a.wait)
            conns.append(ctl)
        phase("stalling")
        stall_report(s, conns, a.hold)
    elif s == "garbage-cookie":
        # 37 bytes that are no cookie (binary, no NUL), then an HTTP request as "params".
        ctl = Control(a.host, a.port)
        send_quietly(ctl.sock, b"\xde\xad\xbe\xef" * 9 + b"\x01")
        send_quietly(ctl.sock, b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\n\r\n" + b"\xa5" * 200)
        how, after = ctl.drain_until_closed(a.wait)
        report(s, ctl, how, after)
    elif s == "oversized-length":
        # A params length of 1 MiB (iperf3 caps params at 8 KiB): expect SERVER_ERROR.
        ctl = Control(a.host, a.port)
        ctl.send(make_cookie())
        ctl.expect_state(PARAM_EXCHANGE, a.wait)
        ctl.send(struct.pack(">I", 0x00100000))
        how, after = ctl.drain_until_closed(a.wait)
        report(s, ctl, how, after)
    elif s == "malformed-json":
        # A correct length followed by bytes that are not JSON: expect SERVER_ERROR.
        ctl = Control(a.host, a.port)
        ctl.send(make_cookie())
        ctl.expect_state(PARAM_EXCHANGE, a.wait)
        body = b'{"tcp":true,"time":1,"parallel":}}garbage\x00\xff{'
        ctl.send(struct.pack(">I", len(body)) + body)
        how, after = ctl.drain_until_closed(a.wait)
        report(s, ctl, how, after)
    elif s == "bad-state":
        # Valid params, then state byte 0x63 instead of opening the data streams.
        ctl = Control(a.host, a.port)
        ctl.send(make_cookie())
        ctl.expect_state(PARAM_EXCHANGE, a.wait)
        ctl.send(params(1))
        ctl.expect_state(CREATE_STREAMS, a.wait)
        send_quietly(ctl.sock, b"\x63")
        how, after = ctl.drain_until_closed(a.wait)
        report(s, ctl, how, after)
    elif s == "vanish-reset":
        # A real test (client sends) that the client abandons after 0.5 s with RSTs.
        ctl, data = open_test(a, reverse=False, time_s=5)
        phase("running")
        block = os.urandom(131072)
        sent = 0
        data.settimeout(1.0)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            try:
                sent += data.send(block)
            except socket.timeout:
                pass
        reset(data)
        ctl.sock.settimeout(0.1)
        try:  # keep what the server said so far
            ctl.received += ctl.sock.recv(65536)
        except OSError:
            pass
        reset(ctl.sock)
        phase("reset")
        print(json.dumps({"scenario": s, "received": ctl.received.hex(), "sent": sent, "closed": "reset-by-us"}), flush=True)
    elif s == "vanish-stall":
        # A reverse test (server sends) whose client stops reading and sleeps with both sockets open.
        ctl, data = open_test(a, reverse=True, time_s=1)
        phase("stalling")
        time.sleep(a.hold)
        print(json.dumps({"scenario": s, "received": ctl.received.hex(), "closed": "held"}), flush=True)
    elif s == "busy-probe":
        # A second control connection during a running test: expect exactly ACCESS_DENIED (0xff).
        ctl = Control(a.host, a.port)
        send_quietly(ctl.sock, make_cookie())
        how, after = ctl.drain_until_closed(a.wait)
        report(s, ctl, how, after)
    else:
        sys.exit(f"unknown scenario {s!r}")


if __name__ == "__main__":
    main()
