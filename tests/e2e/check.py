#!/usr/bin/env python3
"""JSON checks for the end-to-end tests (tests/e2e/lib.sh calls these).

The inputs are what the programs print: the demo client's and server's
JSON lines (docs/workloads.md, `--help` of each), `ferry -o json` output
(the protocol's MigrationStatus, docs/protocol.md). Each check prints what
it found, and exits 1 with the reason when an expectation does not hold,
so that the test log says which number was wrong.
"""
import argparse
import json
import sys


def fail(message):
    print(f"    check.py: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def note(message):
    print(f"    {message}")


def events(path, event):
    """Every JSON line of `path` whose "event" is `event`, in order."""
    found = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("event") == event:
                found.append(obj)
    return found


def last_event(path, event):
    found = events(path, event)
    if not found:
        fail(f"no {event!r} line in {path}")
    return found[-1]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path} is not one JSON document: {e}")


def cmd_field(a):
    print(last_event(a.file, a.event)[a.key])


def cmd_get(a):
    value = load(a.file)
    for key in a.path.split("."):
        value = value[key]
    print(value)


def check_status(status, a, where):
    if status.get("id") != a.id:
        fail(f"{where}: id {status.get('id')!r}, expected {a.id!r}")
    if status.get("phase") != a.phase:
        fail(f"{where}: phase {status.get('phase')!r} (error {status.get('error')!r}), expected {a.phase!r}")
    error = status.get("error", "")
    if a.phase == "committed" and error:
        fail(f"{where}: committed with error {error!r}")
    if a.error is not None:
        if not error:
            fail(f"{where}: {a.phase} without a reason in 'error'")
        if a.error.lower() not in error.lower():
            fail(f"{where}: error {error!r} does not mention {a.error!r}")
    note(f"{where}: {a.id} {status.get('phase')} role={status.get('role')} "
         f"connections={status.get('connections')} error={error!r}")


def cmd_status(a):
    check_status(load(a.file), a, a.file.rsplit("/", 1)[-1])


def cmd_listed(a):
    listing = load(a.file).get("migrations")
    if not isinstance(listing, list):
        fail(f"{a.file}: no 'migrations' array")
    for status in listing:
        if status.get("id") == a.id:
            check_status(status, a, "ferry list")
            return
    fail(f"ferry list has no {a.id}: {[s.get('id') for s in listing]}")


def by_id(report):
    return {c["id"]: c for c in report.get("connections", [])}


def cmd_client_report(a):
    if a.status != 0:
        fail(f"the client exited {a.status}")
    report = last_event(a.file, "report")
    totals = report.get("totals", {})
    conns = report.get("connections", [])
    note(f"client report: result={report.get('result')} totals={totals}")
    if report.get("result") != "ok":
        fail(f"client result {report.get('result')!r}")
    if totals.get("connections") != a.connections or len(conns) != a.connections:
        fail(f"client had {totals.get('connections')} connections ({len(conns)} listed), expected {a.connections}")
    if totals.get("alive") != a.connections:
        fail(f"only {totals.get('alive')} of {a.connections} connections alive")
    if totals.get("errors") != 0:
        fail(f"client counted {totals.get('errors')} errors")
    bad = [c for c in conns if c.get("error") or c.get("state") not in ("open", "closed")]
    if bad:
        fail(f"connections with an error or a bad end state: {bad[:5]}")
    if not a.idle:
        silent = [c["id"] for c in conns if c.get("bytesVerified", 0) <= 0]
        if silent:
            fail(f"connections that verified no byte: {silent[:10]}")
    if a.grew_since:
        before = json.loads(open(a.grew_since).read())
        if before.get("event") != "progress":
            fail(f"{a.grew_since} is not a progress report")
        old = by_id(before)
        if set(old) != set(by_id(report)):
            fail("the final report lists other connections than the progress report")
        tv0 = before["totals"]["bytesVerified"]
        ts0 = before["totals"]["bytesSent"]
        note(f"bytes verified by the client: {tv0} at the snapshot, {totals['bytesVerified']} at the end; "
             f"sent {ts0} -> {totals['bytesSent']}")
        if not a.idle:
            stuck = [i for i, c in by_id(report).items() if c["bytesVerified"] <= old[i]["bytesVerified"]]
            if stuck:
                fail(f"connections whose verified bytes did not grow after the snapshot: {stuck[:10]}")
            stuck = [i for i, c in by_id(report).items() if c["bytesSent"] <= old[i]["bytesSent"]]
            if stuck:
                fail(f"connections that sent nothing after the snapshot: {stuck[:10]}")


def server_errors(s, where):
    if s.get("errors") != 0:
        fail(f"{where}: {s.get('errors')} errors")
    if s.get("resets", 0) != 0:
        fail(f"{where}: {s.get('resets')} resets")


def cmd_server_grew(a):
    before = json.loads(open(a.before).read())
    after = json.loads(open(a.after).read())
    note(f"server: received {before['bytesReceivedVerified']} -> {after['bytesReceivedVerified']}, "
         f"sent {before['bytesSent']} -> {after['bytesSent']}, connections {after['connections']}, "
         f"prepared {after.get('prepared')}")
    server_errors(after, "server")
    if after.get("connections") != a.connections:
        fail(f"server has {after.get('connections')} connections, expected {a.connections}")
    if after.get("prepared"):
        fail("server is still prepared (stopped for a handoff), not serving")
    if not a.idle:
        if after["bytesReceivedVerified"] <= before["bytesReceivedVerified"]:
            fail("the server verified no new byte from the client")
        if after["bytesSent"] <= before["bytesSent"]:
            fail("the server sent no new byte")


def cmd_server_final(a):
    final = last_event(a.file, "final")
    note(f"server final: {final}")
    server_errors(final, "server")
    if a.inherited:
        if final.get("adopted") != a.connections:
            fail(f"server adopted {final.get('adopted')} connections, expected {a.connections}")
        if not a.idle:
            for key in ("inheritedReceivedVerified", "inheritedSent", "bytesReceivedVerified", "bytesSent"):
                if final.get(key, 0) <= 0:
                    fail(f"server on B: {key} is {final.get(key)}, expected > 0")
    else:
        if final.get("accepted") != a.connections:
            fail(f"server accepted {final.get('accepted')} connections, expected {a.connections}")


def cmd_raw(a):
    """Sends a file's bytes to host:port as they are (no HTTP client to
    fix them up), half-closes when asked, and prints the status code of
    the reply, or "none" when the server closed without one."""
    import socket
    with open(a.request, "rb") as f:
        data = f.read()
    host, port = a.address.rsplit(":", 1)
    reply = b""
    with socket.create_connection((host.strip("[]"), int(port)), timeout=a.timeout) as s:
        try:
            s.sendall(data)
            if a.half_close:
                s.shutdown(socket.SHUT_WR)
            while b"\r\n" not in reply:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except socket.timeout:
            print("timeout")
            return
        except ConnectionError as e:
            print(f"none ({e.__class__.__name__})")
            return
    line = reply.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        print(parts[1])
    else:
        print(f"none ({line[:40]!r})")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("field", help="a field of the last EVENT line")
    s.add_argument("file")
    s.add_argument("event")
    s.add_argument("key")
    s.set_defaults(func=cmd_field)

    s = sub.add_parser("get", help="a dotted path in a JSON document")
    s.add_argument("file")
    s.add_argument("path")
    s.set_defaults(func=cmd_get)

    for name, func in (("status", cmd_status), ("listed", cmd_listed)):
        s = sub.add_parser(name)
        s.add_argument("file")
        s.add_argument("--id", required=True)
        s.add_argument("--phase", required=True)
        s.add_argument("--error")
        s.set_defaults(func=func)

    s = sub.add_parser("client-report")
    s.add_argument("file")
    s.add_argument("--status", type=int, required=True)
    s.add_argument("--connections", type=int, required=True)
    s.add_argument("--grew-since")
    s.add_argument("--idle", action="store_true")
    s.set_defaults(func=cmd_client_report)

    s = sub.add_parser("server-grew")
    s.add_argument("before")
    s.add_argument("after")
    s.add_argument("--connections", type=int, required=True)
    s.add_argument("--idle", action="store_true")
    s.set_defaults(func=cmd_server_grew)

    s = sub.add_parser("server-final")
    s.add_argument("file")
    s.add_argument("--connections", type=int, required=True)
    s.add_argument("--inherited", action="store_true")
    s.add_argument("--idle", action="store_true")
    s.set_defaults(func=cmd_server_final)

    s = sub.add_parser("raw", help="raw bytes to a server; prints the reply's status")
    s.add_argument("address", help="host:port")
    s.add_argument("request", help="file with the bytes to send")
    s.add_argument("--half-close", action="store_true")
    s.add_argument("--timeout", type=float, default=10)
    s.set_defaults(func=cmd_raw)

    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
