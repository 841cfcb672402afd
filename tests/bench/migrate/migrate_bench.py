#!/usr/bin/env python3
"""Migration benchmark (issue 4): N connections moved between two namespace hosts.

Each run builds its own hosts (network namespaces joined by a bridge, as in
containers/demo/two_host_demo.sh), starts ferryd on A and B, the demo server
on A and the demo client in a client namespace, opens N connections (idle or
streaming), migrates the server and its service address from A to B with
`ferry migrate`, and prints one JSON line:

  {"connections":N,"mode":"idle|streaming","blackout_ms":..,
   "lock_window_ms":{"source":..,"destination":..},"longest_peer_gap_ms":..,
   "total_ms":..,"ferryd_peak_rss_kib":{"source":..,"destination":..},
   "committed":true, ...}

blackout_ms is the source's freeze-to-commit (blackoutUs of GET
/v1/migrations/{id}); the destination's lock-to-commit is reported as
"destination_blackout_ms". longest_peer_gap_ms is the longest stall any
peer saw (the client's longestStallMs). Idle connections carry no data and
cannot show a stall, so idle runs add one streaming probe connection to the
same server: it is migrated with the idle ones and its stall is the gap.
Every byte of every connection is verified by the client; a verification
error, a reset or a lost connection makes the run fail ("verified":false).

Needs root. Everything it creates (namespaces, processes, the work
directory) is removed at the end, also on error or Ctrl-C. Processes are
ended by pid: those this script started and those inside its namespaces.

  migrate_bench.py [--build DIR] [--connections 1,100,1000,10000]
                   [--mode idle|streaming] [--repeat 3] [--rate 64k]
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PORT = 7000
AGENT_PORT = 7411
SERVICE = "203.0.113.10"
ADDRESSES = {"a": "203.0.113.1", "b": "203.0.113.2", "client": "203.0.113.100"}
# A streaming run's total rate is capped so that the peers, not the
# migration, would be the bottleneck on a 2-core host.
TOTAL_RATE_CAP = 32 * 1024 * 1024
FD_LIMIT = 20000


def parse_size(text):
    m = re.fullmatch(r"(\d+)([kKmM]?)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text}")
    n = int(m.group(1))
    return n * {"": 1, "k": 1024, "K": 1024, "m": 1 << 20, "M": 1 << 20}[m.group(2)]


class Run:
    """One benchmark run: hosts, agents, workload, one migration, cleanup."""

    def __init__(self, args, connections, index):
        self.args = args
        self.n = connections
        self.prefix = f"fmb{os.getpid()}r{index}"
        self.work = tempfile.mkdtemp(prefix="ferry-migbench-")
        self.procs = []      # Popen objects this run started
        self.namespaces = []
        self.build = args.build

    def binary(self, path):
        full = os.path.join(self.build, path)
        if not os.access(full, os.X_OK):
            sys.exit(f"migrate_bench: {full} is missing; build it first")
        return full

    def ns(self, name):
        return f"{self.prefix}-{name}"

    def sh(self, *argv, check=True):
        return subprocess.run(argv, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def netns_exec(self, name, argv, **kw):
        return ["ip", "netns", "exec", self.ns(name)] + argv

    # -- hosts ---------------------------------------------------------
    def make_hosts(self):
        sw = self.ns("sw")
        self.sh("ip", "netns", "add", sw)
        self.namespaces.append(sw)
        self.sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        self.sh("ip", "-n", sw, "link", "set", "br0", "up")
        for port, (name, address) in enumerate(ADDRESSES.items()):
            host = self.ns(name)
            self.sh("ip", "netns", "add", host)
            self.namespaces.append(host)
            self.sh("ip", "-n", host, "link", "set", "lo", "up")
            self.sh("ip", "-n", sw, "link", "add", f"p{port}", "type", "veth", "peer", "name", "eth0",
                    "netns", host)
            self.sh("ip", "-n", sw, "link", "set", f"p{port}", "master", "br0", "up")
            self.sh("ip", "-n", host, "link", "set", "eth0", "up")
            self.sh("ip", "-n", host, "addr", "add", f"{address}/24", "dev", "eth0")
        self.sh("ip", "-n", self.ns("a"), "addr", "add", f"{SERVICE}/24", "dev", "eth0")

    # -- processes -----------------------------------------------------
    def spawn(self, host, argv, name, env=None, fd_limit=False):
        out = open(os.path.join(self.work, f"{name}.out"), "w")
        err = open(os.path.join(self.work, f"{name}.log"), "w")
        full_env = dict(os.environ)
        full_env.update(env or {})

        def raise_limit():
            if fd_limit:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

        p = subprocess.Popen(self.netns_exec(host, argv), stdout=out, stderr=err, env=full_env,
                             preexec_fn=raise_limit)
        self.procs.append(p)
        return p

    def wait_for(self, path, pattern, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    if pattern in f.read():
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{what} did not start (see {path})")

    def start_agent(self, host):
        state = os.path.join(self.work, host)
        os.makedirs(state)
        p = self.spawn(host, [self.binary("agent/ferryd"), "--listen", f"{ADDRESSES[host]}:{AGENT_PORT}",
                              "--state-dir", state, "--token-file", self.token, "--allow-netns", "self",
                              "--allow-interface", "eth0", "--allow-address", "203.0.113.0/24",
                              "--log", self.args.agent_log],
                       f"ferryd-{host}")
        self.wait_for(os.path.join(self.work, f"ferryd-{host}.out"), "listening", 10, f"ferryd on {host}")
        return p

    def established(self):
        r = self.sh("ip", "netns", "exec", self.ns("a"), "ss", "-Htn", "state", "established",
                    f"( sport = :{PORT} )")
        return sum(1 for line in r.stdout.splitlines() if line.strip())

    def ferry(self, agent, *argv, timeout="120s"):
        return [self.binary("agent/cli/ferry"), "--agent", f"http://{ADDRESSES[agent]}:{AGENT_PORT}",
                "--token-file", self.token, "--timeout", timeout, "-o", "json"] + list(argv)

    @staticmethod
    def vm_hwm_kib(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    @staticmethod
    def last_event(path, event):
        found = None
        try:
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if line.startswith("{"):
                        try:
                            obj = json.loads(line)
                        except ValueError:
                            continue
                        if obj.get("event") == event:
                            found = obj
        except OSError:
            pass
        return found

    # -- the run -------------------------------------------------------
    def execute(self):
        a = self.args
        self.token = os.path.join(self.work, "token")
        with open(self.token, "w") as f:
            f.write(os.urandom(24).hex())
        os.chmod(self.token, 0o600)
        self.make_hosts()
        agent_a = self.start_agent("a")
        agent_b = self.start_agent("b")

        rate = a.rate
        if a.mode == "streaming":
            rate = max(1024, min(rate, TOTAL_RATE_CAP // self.n))
        server_argv = [self.binary("containers/demo/ferry-demo-server"), "--listen", f"{SERVICE}:{PORT}",
                       "--rate", str(rate)]
        server = self.spawn("a", server_argv, "server-a",
                            env={"FERRY_HANDOFF_SOCKET": os.path.join(self.work, "a", "handoff.sock")},
                            fd_limit=True)
        self.wait_for(os.path.join(self.work, "server-a.out"), "listening", 10, "demo server")

        client_bin = self.binary("containers/demo/ferry-demo-client")
        common = ["--connect", f"{SERVICE}:{PORT}", "--rate", str(rate), "--totals-only"]
        clients = []
        if a.mode == "idle":
            clients.append(("client", self.spawn("client", [client_bin, "--connections", str(self.n), "--idle"]
                                                 + common, "client", fd_limit=True)))
            clients.append(("probe", self.spawn("client", [client_bin, "--connections", "1"] + common, "probe")))
            expected = self.n + 1
        else:
            clients.append(("client", self.spawn("client", [client_bin, "--connections", str(self.n)] + common,
                                                 "client", fd_limit=True)))
            expected = self.n
        deadline = time.monotonic() + 60
        while self.established() < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.established()} of {expected} connections opened")
            for name, p in clients:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}")
            time.sleep(0.1)
        time.sleep(a.before)

        loadavg = os.getloadavg()[0]
        started = time.monotonic()
        migrate = subprocess.run(
            self.netns_exec("a", self.ferry("a", "migrate", "--pid", str(server.pid), "--to",
                                            f"http://{ADDRESSES['b']}:{AGENT_PORT}", "--target-netns", "self",
                                            "--address", f"{SERVICE}/24@eth0", "--exec",
                                            " ".join(server_argv[:1] + ["--rate", str(rate)]), "--env",
                                            "FERRY_HANDOFF_SOCKET=" + os.path.join(self.work, "b", "handoff.sock"),
                                            timeout="300s")),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cli_ms = (time.monotonic() - started) * 1000
        try:
            source = json.loads(migrate.stdout)
        except ValueError:
            source = {}
        mid = source.get("id")
        destination = {}
        if mid:
            r = subprocess.run(self.netns_exec("b", self.ferry("b", "status", mid)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
            try:
                destination = json.loads(r.stdout)
            except ValueError:
                destination = {}
        rss = {"source": self.vm_hwm_kib(agent_a.pid), "destination": self.vm_hwm_kib(agent_b.pid)}

        time.sleep(a.after)
        for _, p in clients:
            p.send_signal(signal.SIGTERM)
        statuses = {}
        for name, p in clients:
            try:
                statuses[name] = p.wait(timeout=60 + self.n / 500)
            except subprocess.TimeoutExpired:
                p.kill()
                statuses[name] = None
        reports = {name: self.last_event(os.path.join(self.work, f"{name}.out"), "report") or {}
                   for name, _ in clients}

        def ms(us):
            return None if us is None else round(us / 1000.0, 3)

        gap_source = reports["probe" if a.mode == "idle" else "client"]
        gap = gap_source.get("totals", {}).get("longestStallMs")
        errors = sum(r.get("totals", {}).get("errors", 0) for r in reports.values())
        verified = all(s == 0 for s in statuses.values()) and errors == 0
        result = {
            "connections": self.n,
            "mode": a.mode,
            "blackout_ms": ms(source.get("blackoutUs")),
            "lock_window_ms": {"source": ms(source.get("lockWindowUs")),
                               "destination": ms(destination.get("lockWindowUs"))},
            "longest_peer_gap_ms": None if gap is None else round(gap, 3),
            "total_ms": ms(source.get("totalUs")),
            "ferryd_peak_rss_kib": rss,
            "committed": source.get("phase") == "committed",
            "destination_blackout_ms": ms(destination.get("blackoutUs")),
            "cli_ms": round(cli_ms, 1),
            "verified": verified,
            "probe_connections": 1 if a.mode == "idle" else 0,
            "rate_per_connection": rate,
            "loadavg_1m": round(loadavg, 2),
        }
        if not result["committed"]:
            result["error"] = (source.get("error") or migrate.stderr.strip())[:300]
        if not verified:
            result["client_status"] = statuses
        return result

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # ferryd on B started the new server there: end whatever still
        # runs inside our namespaces, by pid.
        for ns in self.namespaces:
            r = self.sh("ip", "netns", "pids", ns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in self.namespaces:
            self.sh("ip", "netns", "del", ns, check=False)
        if self.args.keep_logs:
            print(f"migrate_bench: logs kept in {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def summarise(results):
    """Median and spread (min..max) of the main figures over repeats."""
    def stats(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}

    first = results[0]
    return {
        "summary": True,
        "connections": first["connections"],
        "mode": first["mode"],
        "runs": len(results),
        "committed": sum(1 for r in results if r["committed"]),
        "verified": sum(1 for r in results if r["verified"]),
        "blackout_ms": stats([r["blackout_ms"] for r in results]),
        "lock_window_ms": {side: stats([r["lock_window_ms"][side] for r in results])
                           for side in ("source", "destination")},
        "longest_peer_gap_ms": stats([r["longest_peer_gap_ms"] for r in results]),
        "total_ms": stats([r["total_ms"] for r in results]),
        "ferryd_peak_rss_kib": {side: stats([r["ferryd_peak_rss_kib"][side] for r in results])
                                for side in ("source", "destination")},
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.environ.get("FERRY_BUILD_DIR", os.path.dirname(os.path.dirname(here))),
                   help="meson build directory with ferryd, ferry and the demo programs")
    p.add_argument("--connections", default="1,100,1000,10000", help="comma-separated connection counts")
    p.add_argument("--mode", choices=("idle", "streaming"), default="idle")
    p.add_argument("--repeat", type=int, default=3, help="runs per connection count")
    p.add_argument("--rate", type=parse_size, default=parse_size("64k"),
                   help="bytes/s per connection when streaming (capped at 32 MiB/s in total)")
    p.add_argument("--before", type=float, default=1.0, help="seconds of traffic before the migration")
    p.add_argument("--after", type=float, default=1.0, help="seconds of traffic after it")
    p.add_argument("--agent-log", default="warn", help="ferryd --log spec, e.g. migration=debug,warn")
    p.add_argument("--keep-logs", action="store_true", help="keep each run's work directory")
    p.add_argument("--summary", action="store_true", help="also print median/min/max per connection count")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("migrate_bench: needs root (network namespaces, nftables, TCP_REPAIR)", file=sys.stderr)
        return 77
    args.build = os.path.abspath(args.build)

    current = None

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    failed = False
    try:
        for n in [int(x) for x in args.connections.split(",") if x]:
            results = []
            for i in range(args.repeat):
                current = Run(args, n, f"{n}x{i}")
                try:
                    result = current.execute()
                except RuntimeError as e:
                    result = {"connections": n, "mode": args.mode, "committed": False, "verified": False,
                              "error": str(e), "blackout_ms": None, "total_ms": None,
                              "lock_window_ms": {"source": None, "destination": None},
                              "longest_peer_gap_ms": None,
                              "ferryd_peak_rss_kib": {"source": None, "destination": None}}
                finally:
                    current.cleanup()
                    current = None
                failed |= not (result["committed"] and result["verified"])
                print(json.dumps(result), flush=True)
                results.append(result)
            if args.summary:
                print(json.dumps(summarise(results)), flush=True)
    except KeyboardInterrupt:
        if current:
            current.cleanup()
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
