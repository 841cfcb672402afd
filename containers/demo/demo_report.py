#!/usr/bin/env python3
"""Prints the two-host demo's result table from what the programs reported.

Inputs: the `ferry migrate -o json` result, the demo client's final report
(one JSON object per line; the last "report" counts) and the final status
line of the server that ended on host B. Exit status 0 when the migration
committed and every byte was verified in both directions, 1 otherwise.
"""
import argparse
import json
import sys


def last_event(path, event):
    found = None
    try:
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
                    found = obj
    except OSError:
        pass
    return found


def mib(n):
    return f"{n / (1 << 20):.1f} MiB ({n:,} bytes)"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--migrate", required=True)
    p.add_argument("--migrate-status", type=int, required=True)
    p.add_argument("--client", required=True)
    p.add_argument("--client-status", type=int, required=True)
    p.add_argument("--server", required=True, help="output of the server on B")
    a = p.parse_args()

    try:
        with open(a.migrate) as f:
            migration = json.load(f)
    except (OSError, ValueError):
        migration = {}
    report = last_event(a.client, "report") or {}
    server = last_event(a.server, "final") or {}

    phase = migration.get("phase", "unknown")
    blackout_us = migration.get("blackoutUs")
    lock_us = migration.get("lockWindowUs")
    totals = report.get("totals", {})
    conns = report.get("connections", [])
    upstream = server.get("inheritedReceivedVerified", 0) + server.get("bytesReceivedVerified", 0)
    downstream = totals.get("bytesVerified", 0)
    stalls = [c.get("longestStallMs", 0) for c in conns]
    errors = totals.get("errors", 0) + server.get("errors", 0)
    alive = totals.get("alive", 0)

    ok = (a.migrate_status == 0 and phase == "committed" and a.client_status == 0 and errors == 0
          and alive == len(conns) and len(conns) > 0 and upstream > 0 and downstream > 0)

    rows = [
        ("migration", f"{migration.get('id', '?')}: {phase}"),
        ("sockets moved", f"{migration.get('connections', 0)} ({len(conns)} client connections, "
                          f"{max(0, migration.get('connections', 0) - len(conns))} listener)"),
        ("bytes verified client -> server", mib(upstream) + "  (by the server, on A then on B)"),
        ("bytes verified server -> client", mib(downstream) + "  (by the clients)"),
        ("blackout (freeze to commit)", f"{blackout_us / 1000:.1f} ms" if blackout_us is not None else "-"),
        ("lock window on A", f"{lock_us / 1000:.1f} ms" if lock_us is not None else "-"),
        ("longest stall per client", ", ".join(f"{s:.0f} ms" if isinstance(s, (int, float)) else str(s)
                                               for s in stalls) or "-"),
        ("connections alive after", f"{alive} of {len(conns)}"),
    ]
    if not ok:
        reasons = []
        if phase != "committed":
            reasons.append(f"migration {phase}: {migration.get('error') or 'see ferry output'}")
        if errors:
            reasons.append(f"{errors} verification error(s): "
                           + (server.get("firstError") or next((c.get("error") for c in conns if c.get("error")), "")))
        if alive != len(conns):
            reasons.append("a connection was lost")
        rows.append(("result", "FAIL: " + "; ".join(reasons or ["see the logs"])))
    else:
        rows.append(("result", "PASS: every byte arrived once and in order; no reset"))

    width = max(len(k) for k, _ in rows)
    print()
    print("  ferry two-host demo")
    print("  " + "-" * (width + 40))
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
