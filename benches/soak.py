#!/usr/bin/env python3
"""Soak a uniperf server with misbehaving iperf3 clients interleaved with good stock ones.

Runs BAD misbehaving clients (a few at a time, each kind in turn) and, spread among them, GOOD
stock `iperf3 -c HOST -t 1 -J` clients (a good client told the server is busy tries again, up
to 60 s). Then prints one JSON object: good clients served, refusals and how each misbehaving
client ended, by kind, and how long it all took. Memory is the caller's to read (it knows the
server's PID or console). Every wait is bounded; the script refuses any server address outside
198.18.0.0/15.

usage: soak.py --host 198.18.0.2 [--port 5201] [--bad 1000] [--good 50] [--parallel 4]
               [--iperf3 iperf3] [--stall 0.5]
kinds: connect-close, garbage-cookie, short-cookie, huge-length, malformed-json, oversized-json,
       ill-typed-json, bad-state, stall-params, stall-create, reset-mid-test, stall-mid-test
"""

import argparse
import concurrent.futures
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import time

BENCHMARK_NET = ipaddress.ip_network("198.18.0.0/15")
ALPHABET = b"abcdefghijklmnopqrstuvwxyz234567"
PARAM_EXCHANGE, CREATE_STREAMS, TEST_START, TEST_RUNNING = 9, 10, 1, 2
SERVER_ERROR, ACCESS_DENIED = 0xFE, 0xFF

KINDS = [
    "connect-close", "garbage-cookie", "short-cookie", "huge-length", "malformed-json", "oversized-json",
    "ill-typed-json", "bad-state", "stall-params", "stall-create", "reset-mid-test", "stall-mid-test",
]


def cookie():
    return bytes(ALPHABET[b % 32] for b in os.urandom(36)) + b"\0"


def frame(obj_bytes):
    return struct.pack(">I", len(obj_bytes)) + obj_bytes


def good_params(time_s=3):
    p = {"tcp": True, "omit": 0, "time": time_s, "num": 0, "blockcount": 0, "parallel": 1,
         "len": 131072, "pacing_timer": 1000, "client_version": "3.12"}
    return frame(json.dumps(p, separators=(",", ":")).encode())


def connect(a):
    s = socket.create_connection((a.host, a.port), timeout=5)
    s.settimeout(5)
    return s


def read_byte(s):
    b = s.recv(1)
    return b[0] if b else None


def ending(s, wait=3.0):
    """How the server ended the connection: 'eof', 'reset', 'denied', 'server-error' or 'open'."""
    s.settimeout(wait)
    seen = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            seen += b
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "open"
    finally:
        s.close()
    if SERVER_ERROR in seen:
        return "server-error"
    if ACCESS_DENIED in seen:
        return "denied"
    return "eof"


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def open_test(a, s, ck):
    """Cookie, parameters, one data stream, up to TEST_RUNNING; returns the data socket."""
    s.sendall(ck)
    if read_byte(s) != PARAM_EXCHANGE:
        return None
    s.sendall(good_params())
    if read_byte(s) != CREATE_STREAMS:
        return None
    d = connect(a)
    d.sendall(ck)
    if read_byte(s) != TEST_START or read_byte(s) != TEST_RUNNING:
        d.close()
        return None
    return d


def misbehave(a, kind):
    try:
        s = connect(a)
    except OSError as e:
        return "connect-failed"
    try:
        ck = cookie()
        if kind == "connect-close":
            s.close()
            return "closed-by-us"
        if kind == "garbage-cookie":
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return ending(s)
        if kind == "short-cookie":
            s.sendall(ck[:10])
            s.shutdown(socket.SHUT_WR)
            return ending(s)
        s.sendall(ck)
        first = read_byte(s)
        if first == ACCESS_DENIED:
            s.close()
            return "denied"
        if first != PARAM_EXCHANGE:
            return ending(s)
        if kind == "huge-length":
            s.sendall(struct.pack(">I", 0xFFFFFFF0) + b"{")
            return ending(s)
        if kind == "malformed-json":
            s.sendall(frame(b'{"tcp": true, "time": '))
            return ending(s)
        if kind == "oversized-json":
            s.sendall(frame(b'{"title": "' + b"x" * 9000 + b'"}'))
            return ending(s)
        if kind == "ill-typed-json":
            s.sendall(frame(b'{"tcp": true, "time": "ten", "parallel": [1]}'))
            return ending(s)
        if kind == "stall-params":
            time.sleep(a.stall)
            s.close()
            return "stalled"
        s.sendall(good_params())
        if read_byte(s) != CREATE_STREAMS:
            return ending(s)
        if kind == "bad-state":
            s.sendall(bytes([0x42]))
            return ending(s)
        if kind == "stall-create":
            time.sleep(a.stall)
            s.close()
            return "stalled"
        d = connect(a)
        d.sendall(ck)
        if read_byte(s) != TEST_START or read_byte(s) != TEST_RUNNING:
            d.close()
            return ending(s)
        d.sendall(os.urandom(65536))
        if kind == "reset-mid-test":
            reset(d)
            reset(s)
            return "reset-by-us"
        # stall-mid-test: hold both sockets, read and write nothing.
        time.sleep(a.stall)
        d.close()
        s.close()
        return "stalled"
    except (OSError, socket.timeout) as e:
        try:
            s.close()
        except OSError:
            pass
        return "error:" + type(e).__name__


def good(a):
    deadline = time.time() + 60
    busy = 0
    while True:
        r = subprocess.run([a.iperf3, "-c", a.host, "-p", str(a.port), "-t", "1", "-J"],
                           capture_output=True, text=True, timeout=40)
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            doc = {"error": "no JSON: " + r.stderr.strip()[:200]}
        err = doc.get("error")
        if err is None:
            return {"ok": True, "busy_retries": busy, "bytes": doc["end"]["sum_received"]["bytes"]}
        if "busy" in err and time.time() < deadline:
            busy += 1
            time.sleep(0.5)
            continue
        return {"ok": False, "busy_retries": busy, "error": err}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="198.18.0.2")
    ap.add_argument("--port", type=int, default=5201)
    ap.add_argument("--bad", type=int, default=1000)
    ap.add_argument("--good", type=int, default=50)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--iperf3", default="iperf3")
    ap.add_argument("--stall", type=float, default=0.5, help="seconds a stalling client holds on")
    a = ap.parse_args()
    if ipaddress.ip_address(a.host) not in BENCHMARK_NET:
        sys.exit(f"refusing to send to {a.host}: outside {BENCHMARK_NET}")
    started = time.time()
    every = max(1, a.bad // max(1, a.good))
    outcomes = {}
    goods = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.parallel) as pool:
        pending = []
        for i in range(a.bad):
            kind = KINDS[i % len(KINDS)]
            pending.append((kind, pool.submit(misbehave, a, kind)))
            if i % every == every - 1 and len(goods) < a.good:
                # Good clients run one at a time, in between, as a user's would.
                goods.append(good(a))
            if len(pending) >= 4 * a.parallel:
                kind, f = pending.pop(0)
                outcomes.setdefault(kind, {}).setdefault(f.result(), 0)
                outcomes[kind][f.result()] += 1
        for kind, f in pending:
            outcomes.setdefault(kind, {}).setdefault(f.result(), 0)
            outcomes[kind][f.result()] += 1
    while len(goods) < a.good:
        goods.append(good(a))
    served = sum(1 for g in goods if g["ok"])
    print(json.dumps({
        "bad": a.bad,
        "good": a.good,
        "good_served": served,
        "good_failures": [g for g in goods if not g["ok"]],
        "busy_retries": sum(g["busy_retries"] for g in goods),
        "outcomes": outcomes,
        "seconds": round(time.time() - started, 1),
    }, indent=1), flush=True)
    sys.exit(0 if served == a.good else 1)


if __name__ == "__main__":
    main()
