#!/usr/bin/env python3
"""A TCP proxy that misbehaves on request, for fault tests. Standard library only.

    proxy = FaultProxy(upstream=("127.0.0.1", 8090))
    port = proxy.start()                 # listens on 127.0.0.1:<port>
    proxy.set(latency_ms=3000)           # every chunk, either way, held 3 s
    proxy.set(reset=True)                # RST (SO_LINGER 0) on accept and on a connection's next data
    proxy.set(blackhole=True)            # accept and read, never forward (either way)
    proxy.set(down=True)                 # listener closed (connect refused), open connections closed
    proxy.set()                          # all clear: forwards again on the same port
    proxy.stop()

A setting applies to new connections and to open ones (a chunk held for latency is released when
the latency is lowered). One thread per connection, both directions through one selector, so a
connection's sockets are only ever closed by the thread that uses them.

CLI: faultproxy.py --upstream HOST:PORT [--listen PORT], then one JSON object per line on stdin,
e.g. {"latency_ms": 3000} or {"down": true} or {} (clear). faultproxy.py --selftest checks it.
"""
import argparse
import json
import selectors
import socket
import struct
import sys
import threading
import time

_FIELDS = ("latency_ms", "reset", "blackhole", "down")


class FaultProxy:
    def __init__(self, upstream, host="127.0.0.1", port=0):
        self.upstream = upstream
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._settings = dict(latency_ms=0, reset=False, blackhole=False, down=False)
        self._listener = None
        self._stopped = threading.Event()
        self._accepter = None
        self.stats = dict(accepted=0, resets=0, refused_closes=0, dropped_bytes=0, forwarded_bytes=0)
        self.events = None  # a list to record (monotonic time, connection, what) into, for debugging
        self._conn_ids = 0

    # ---------------------------------------------------------------------------- control
    def start(self):
        self._listen()
        self._accepter = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._accepter.start()
        return self.port

    def set(self, latency_ms=0, reset=False, blackhole=False, down=False):
        with self._lock:
            self._settings = dict(latency_ms=int(latency_ms), reset=bool(reset),
                                  blackhole=bool(blackhole), down=bool(down))
            if down and self._listener is not None:
                _close_listener(self._listener)  # connects are refused from now on
                self._listener = None
        if not down and self._listener is None and not self._stopped.is_set():
            self._listen()

    def settings(self):
        with self._lock:
            return dict(self._settings)

    def stop(self):
        self._stopped.set()
        with self._lock:
            if self._listener is not None:
                _close_listener(self._listener)
                self._listener = None
        if self._accepter:
            self._accepter.join(timeout=2)

    # ---------------------------------------------------------------------------- internals
    def _listen(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):  # the same port again after `down`
            try:
                sock.bind((self.host, self.port))
                break
            except OSError:
                time.sleep(0.02)
        else:
            sock.close()
            raise OSError(f"faultproxy: cannot listen on {self.host}:{self.port} again")
        sock.listen(512)
        sock.settimeout(0.05)
        self.port = sock.getsockname()[1]
        with self._lock:
            self._listener = sock

    def _count(self, key, n=1):
        with self._lock:
            self.stats[key] += n

    def _note(self, conn, what):
        if self.events is not None:
            self.events.append((time.monotonic(), conn, what))

    def _accept_loop(self):
        while not self._stopped.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                time.sleep(0.02)
                continue
            try:
                client, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            self._count("accepted")
            with self._lock:
                self._conn_ids += 1
                conn_id = self._conn_ids
            self._note(conn_id, "accepted")
            if self.settings()["reset"]:
                self._count("resets")
                self._note(conn_id, "rst on accept")
                _rst(client)
                continue
            threading.Thread(target=self._serve, args=(client, conn_id), daemon=True).start()

    def _serve(self, client, conn_id=0):
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            _rst(client)
            return
        client.setblocking(False)
        upstream.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        end = "close"
        try:
            while not self._stopped.is_set():
                s = self.settings()
                if s["down"]:
                    self._count("refused_closes")
                    break
                events = sel.select(timeout=0.05)
                for key, _ in events:
                    src, dst = key.fileobj, key.data
                    try:
                        data = src.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        self._note(conn_id, f"recv error {e!r}")
                        return
                    if not data:
                        self._note(conn_id, "eof from " + ("client" if src is client else "upstream"))
                        return
                    arrived = time.monotonic()
                    self._note(conn_id, f"{len(data)} bytes from " + ("client" if src is client else "upstream"))
                    while True:  # re-read: a setting changed while this chunk waits applies to it
                        s = self.settings()
                        if s["down"] or s["reset"] or s["blackhole"] or self._stopped.is_set():
                            break
                        left = arrived + s["latency_ms"] / 1000 - time.monotonic()
                        if left <= 0:
                            break
                        time.sleep(min(left, 0.02))
                    if s["down"]:
                        self._count("refused_closes")
                        return
                    if s["reset"]:
                        self._count("resets")
                        self._note(conn_id, "rst on data")
                        end = "rst"
                        return
                    if s["blackhole"]:
                        self._count("dropped_bytes", len(data))
                        continue
                    try:
                        _send_all(dst, data)
                    except OSError:
                        return
                    self._count("forwarded_bytes", len(data))
        finally:
            sel.close()
            for sock in (client, upstream):
                if end == "rst":
                    _rst(sock)
                else:
                    sock.close()


def _close_listener(sock):
    # shutdown first: a listener another thread polls in accept() would otherwise keep listening
    # (and completing handshakes) until that poll returns.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _send_all(sock, data):
    view = memoryview(data)
    deadline = time.monotonic() + 10
    while view:
        try:
            sent = sock.send(view)
            view = view[sent:]
        except (BlockingIOError, InterruptedError):
            if time.monotonic() > deadline:
                raise OSError("faultproxy: peer stopped reading")
            time.sleep(0.005)


# -------------------------------------------------------------------------------- self-test
class _Echo:
    """An upstream that echoes every chunk back."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)


def selftest():
    """Checks each fault against an echo server; returns a dict of timings, raises on a failure."""
    echo = _Echo()
    proxy = FaultProxy(("127.0.0.1", echo.port))
    port = proxy.start()
    out = {}

    def roundtrip(conn, payload=b"ping", timeout=2.0):
        conn.settimeout(timeout)
        started = time.monotonic()
        conn.sendall(payload)
        got = conn.recv(100)
        return got, time.monotonic() - started

    def expect(name, cond, detail=""):
        if not cond:
            raise AssertionError(f"faultproxy selftest: {name} {detail}")

    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        got, _ = roundtrip(c)
        expect("clear forwards", got == b"ping", repr(got))
        proxy.set(latency_ms=300)  # applies to the open connection
        got, took = roundtrip(c)
        expect("latency on an open connection", got == b"ping" and 0.55 <= took < 1.5, f"{got!r} {took:.2f}s")
        out["latency_300ms_roundtrip_s"] = round(took, 3)
        proxy.set(blackhole=True)
        try:
            got, _ = roundtrip(c, timeout=0.4)
            expect("blackhole swallows", False, f"got {got!r}")
        except socket.timeout:
            pass
        c.close()
        c = socket.create_connection(("127.0.0.1", port), timeout=2)  # accepted while blackholed
        try:
            got, _ = roundtrip(c, timeout=0.3)
            expect("blackhole swallows on a new connection", False, f"got {got!r}")
        except socket.timeout:
            pass
        proxy.set()
        c.close()
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        got, _ = roundtrip(c)
        expect("clear after blackhole", got == b"ping", repr(got))
        proxy.set(reset=True)  # open connection: RST on its next data
        try:
            got, _ = roundtrip(c)
            expect("reset on next data", False, f"got {got!r}")
        except ConnectionResetError:
            pass
        c.close()
        try:  # new connection: RST on accept
            c = socket.create_connection(("127.0.0.1", port), timeout=2)
            got, _ = roundtrip(c)
            expect("reset on accept", False, f"got {got!r}")
        except (ConnectionResetError, BrokenPipeError):
            pass
        c.close()
        proxy.set()
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        proxy.set(down=True)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            expect("down refuses", False)
        except ConnectionRefusedError:
            pass
        c.settimeout(1)
        try:
            closed = c.recv(10) == b""
        except ConnectionResetError:
            closed = True
        expect("down closes open connections", closed)
        c.close()
        proxy.set()
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        got, _ = roundtrip(c)
        expect("up again on the same port", got == b"ping", repr(got))
        c.close()
        out["checks"] = 9
        return out
    finally:
        proxy.stop()
        echo.sock.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", help="HOST:PORT")
    p.add_argument("--listen", type=int, default=0)
    p.add_argument("--selftest", action="store_true")
    args = p.parse_args()
    if args.selftest:
        print(json.dumps({"test": "faultproxy_selftest", **selftest()}))
        return 0
    if not args.upstream:
        p.error("--upstream is required")
    host, port = args.upstream.rsplit(":", 1)
    proxy = FaultProxy((host, int(port)), port=args.listen)
    print(json.dumps({"listen": proxy.start()}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            wanted = json.loads(line)
            proxy.set(**{k: wanted[k] for k in _FIELDS if k in wanted})
            print(json.dumps(proxy.settings()), flush=True)
        except (ValueError, TypeError) as e:
            print(json.dumps({"error": str(e)}), flush=True)
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
