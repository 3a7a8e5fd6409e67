#!/usr/bin/env python3
"""Captures seed inputs for the fuzz targets from real stock iperf3 sessions (3.12 and 3.22, in
both roles) inside a throw-away network namespace on its loopback: a relay between client and
server logs the bytes of every TCP connection, and tcpdump captures the packets (a few hundred
bytes of each). Writes raw seeds to fuzz/seeds/<target>/; scripts/fuzz.sh seed adds our own
encoder's output and minimises them into fuzz/corpus/. Needs root (ip netns).

Usage: sudo fuzz/capture_seeds.py IPERF3_312 IPERF3_322
"""
import hashlib, os, socket, struct, subprocess, sys, threading, time

NS = "uniperf-fuzz-seeds"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
COOKIE_LEN = 37


def save(target, data, tag):
    if not data:
        return
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = f"{tag}-{hashlib.sha1(data).hexdigest()[:12]}"
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frames(stream, start):
    """Length-prefixed JSON frames found in a control stream from `start` on."""
    out, i = [], start
    while i + 4 <= len(stream):
        n = struct.unpack(">I", stream[i:i + 4])[0]
        if 2 <= n <= 1 << 20 and i + 4 + n <= len(stream) and stream[i + 4:i + 5] == b"{":
            out.append(stream[i:i + 4 + n])
            i += 4 + n
        else:
            i += 1
    return out


def relay(listen_port, to_port, log, stop):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(16)
    ls.settimeout(0.2)
    while not stop.is_set():
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        s = socket.create_connection(("127.0.0.1", to_port))
        entry = {"c2s": bytearray(), "s2c": bytearray()}
        log.append(entry)
        for a, b, k in ((c, s, "c2s"), (s, c, "s2c")):
            threading.Thread(target=pump, args=(a, b, entry[k]), daemon=True).start()
    ls.close()


def pump(a, b, buf):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            if len(buf) < 4096:
                buf.extend(d[:4096 - len(buf)])
            b.sendall(d)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def ns(*cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", NS, *cmd], check=True, **kw)


def main():
    if os.environ.get("IN_NS") != "1":
        subprocess.run(["ip", "netns", "add", NS], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"], check=True)
            env = dict(os.environ, IN_NS="1")
            subprocess.run(["ip", "netns", "exec", NS, sys.executable, *sys.argv], check=True, env=env)
        finally:
            subprocess.run(["ip", "netns", "del", NS])
        return
    v312, v322 = sys.argv[1], sys.argv[2]
    runs = ["-t 1 -b 100M", "-t 1 -R", "-t 1 --bidir", "-t 1 -P 2", "-u -b 20M -t 1", "-u -b 20M -t 1 -R --udp-counters-64bit",
            "-n 1M -J --get-server-output", "-t 1 -O 1 -T title -M 1400 -N -w 256K -l 64K -C cubic", "-k 100 -l 1K --extra-data xyz"]
    pcap = "/tmp/uniperf-fuzz-seeds.pcap"
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "200", "-c", "400", "-w", pcap, "tcp port 5201 or udp port 5201"],
                            stderr=subprocess.DEVNULL)
    time.sleep(1)
    for server_bin, client_bin, tag in ((v312, v322, "c322-s312"), (v322, v312, "c312-s322")):
        srv = subprocess.Popen([server_bin, "-s", "-p", "5201"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        log, stop = [], threading.Event()
        t = threading.Thread(target=relay, args=(5202, 5201, log, stop), daemon=True)
        t.start()
        time.sleep(0.2)
        for i, args in enumerate(runs):
            del log[:]
            # UDP cannot pass the TCP relay: those runs go straight to the server (tcpdump sees them).
            port = "5201" if args.startswith("-u") else "5202"
            subprocess.run([client_bin, "-c", "127.0.0.1", "-p", port, *args.split()], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
            time.sleep(0.3)
            if not log:
                continue
            ctl = log[0]
            c2s, s2c = bytes(ctl["c2s"]), bytes(ctl["s2c"])
            save("cookie", c2s[:COOKIE_LEN], tag)
            cf, sf = frames(c2s, COOKIE_LEN), frames(s2c, 0)
            for f in cf + sf:
                save("control_frame", b"\x00" + f, tag)
                save("control_frame", b"\x01" + f, tag)
            if cf:
                save("params_json", cf[0][4:], tag)
            for f in cf[1:] + sf:
                save("results_json", f[4:], tag)
            save("control_frame", b"\x01" + s2c[:64], tag + "-states")
            # The server role: the client's control bytes up to the parameters, and a data
            # connection's cookie (the rest would come after the server's answers).
            if cf:
                end = c2s.index(cf[0]) + len(cf[0])
                save("server_control", c2s[:end] + b"#~#" + c2s[:COOKIE_LEN], tag)
        stop.set()
        t.join()
        srv.terminate()
        srv.wait()
    time.sleep(1)
    dump.terminate()
    dump.wait()
    with open(pcap, "rb") as f:
        save("pcap", f.read(), "tcpdump-lo")
    os.unlink(pcap)


main()
