# shellcheck shell=bash
# containers.sh: runc bundles, podman storage and their cleanup for tests
# that run real containers (tests/netns/container, tests/e2e). Source it:
#
#   . tests/support/containers.sh
#   ct_make_runc_bundle "$tmp/web" web /work/main/build/containers/demo/ferry-demo-server --listen 0.0.0.0:7000
#   CT_RUNC_ROOT=$tmp/runc ct_runc run -d --bundle "$tmp/web" web
#   ...
#   ct_cleanup           # also from an EXIT trap: removes all this shell made
#
# A rootfs holds nothing but busybox: the host's /usr, /lib, /lib64 and
# /etc/ld.so.cache are bind-mounted read-only when the container runs, so a
# dynamically linked test binary runs inside without being copied. The
# directory holding the program (argv[0]) is bind-mounted read-only at the
# same path, so argv names it by its host path.
#
# Variables read:
#   CT_NETNS         network namespace for new bundles: a path
#                    (/run/netns/x, /proc/PID/ns/net) or a name of
#                    `ip netns add`; unset: the container gets its own empty one
#   CT_RUNC_ROOT     runc --root for ct_runc (unset: runc's default)
#   CT_PODMAN_ROOT, CT_PODMAN_RUNROOT
#                    podman storage for ct_podman (set by ct_podman_storage)
#   CT_ENV           extra KEY=VALUE entries for new bundles (an array)
#   CT_BINDS         extra host paths bound read-only at the same path (an array)
#
# Only busybox, runc, podman and python3 are needed. Every function returns
# non-zero on failure and says why on stderr.

# What ct_cleanup removes, in reverse order of creation.
CT_CLEANUP_RUNC=()     # "root|id"
CT_CLEANUP_PODMAN=()   # "root|runroot"
CT_CLEANUP_DIRS=()

# Applets the rootfs links to busybox: enough for test scripts.
CT_APPLETS=(sh ash cat echo printf ls mkdir rm sleep test "[" true false env id
	readlink grep sed head tail wc cut tr kill ps nc timeout date stat seq
	yes dd tee sync hostname ip)

# ct_podman_global_args ROOT RUNROOT: the global flags every podman call of
# one storage uses. No systemd here: cgroupfs and a file event log. The
# libpod tmp dir lives in the runroot so that stores never share state.
ct_podman_global_args() {
	printf '%s\n' --root "$1" --runroot "$2" --tmpdir "$2/libpod-tmp" \
		--cgroup-manager cgroupfs --events-backend file --storage-driver overlay
}

# ct_make_rootfs DIR: a minimal rootfs in DIR (created).
ct_make_rootfs() {
	local dir=$1 busybox applet
	busybox=$(command -v busybox) || { echo "ct_make_rootfs: busybox is not installed" >&2; return 1; }
	mkdir -p "$dir"/{bin,proc,sys,dev,tmp,run,usr,lib,lib64,etc,root,var/tmp} || return 1
	# A real file: the host's /bin is a symlink into /usr, which is
	# bind-mounted over the rootfs' /usr at run time.
	cp "$busybox" "$dir/bin/busybox" || return 1
	for applet in "${CT_APPLETS[@]}"; do
		ln -sf busybox "$dir/bin/$applet" || return 1
	done
	# Mount points for the host's files bound at run time.
	: >"$dir/etc/ld.so.cache"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
	: >"$dir/etc/hosts"
	: >"$dir/etc/resolv.conf"
	chmod 1777 "$dir/tmp" "$dir/var/tmp"
}

# ct_netns_path NAME_OR_PATH: a namespace path runc and podman accept.
ct_netns_path() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '/run/netns/%s\n' "$1" ;;
	esac
}

# ct_make_runc_bundle DIR NAME ARGV...: an OCI bundle in DIR (rootfs and
# config.json) whose process runs ARGV. NAME becomes the hostname.
# Annotated io.ferry.migratable=true, no terminal, the network namespace
# of CT_NETNS, no cgroupsPath (runc derives one from the container id, so
# two containers of one bundle do not collide).
ct_make_runc_bundle() {
	local dir=$1 name=$2
	shift 2
	if [ $# -eq 0 ]; then
		echo "ct_make_runc_bundle: no command" >&2
		return 1
	fi
	ct_make_rootfs "$dir/rootfs" || return 1
	rm -f "$dir/config.json"
	runc spec --bundle "$dir" || return 1
	local netns=""
	[ -n "${CT_NETNS:-}" ] && netns=$(ct_netns_path "$CT_NETNS")
	# The program by its absolute host path: its directory is bound at
	# that same path, so argv[0] is valid inside too.
	local program=$1
	case $program in
	/*) ;;
	*/*) program=$(readlink -f "$program") || return 1 ;;
	*) program=$(type -P "$program" || echo "$program") ;;
	esac
	shift
	set -- "$program" "$@"
	CT_PY_NAME=$name CT_PY_NETNS=$netns CT_PY_PROGRAM_DIR=$(dirname "$program") \
		CT_PY_ENV="$(printf '%s\n' "${CT_ENV[@]}")" CT_PY_BINDS="$(printf '%s\n' "${CT_BINDS[@]}")" \
		python3 - "$dir/config.json" "$@" <<'EOF' || return 1
import json, os, sys
path, argv = sys.argv[1], sys.argv[2:]
with open(path) as f:
    config = json.load(f)
process = config["process"]
process["terminal"] = False
process["args"] = argv
process["env"] = [e for e in process["env"] if not e.startswith("TERM=")]
process["env"] += [e for e in os.environ["CT_PY_ENV"].split("\n") if e]
process["cwd"] = "/"
# Tests run as root without user namespaces; the default rlimit (1024
# open files) is kept.
config["hostname"] = os.environ["CT_PY_NAME"]
config["root"]["readonly"] = True
mounts = config["mounts"]
def bind(source, destination=None):
    mounts.append({"destination": destination or source, "type": "bind", "source": source,
                   "options": ["rbind", "ro", "nosuid", "nodev"]})
for d in ["/usr", "/lib", "/lib64"]:
    bind(os.path.realpath(d), d)
bind("/etc/ld.so.cache")
for tmp in ["/tmp", "/run"]:
    mounts.append({"destination": tmp, "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "mode=1777"]})
program_dir = os.environ["CT_PY_PROGRAM_DIR"]
if program_dir and program_dir not in ("/", "/bin", "/usr/bin", "/usr/sbin", "/sbin") \
        and not program_dir.startswith("/usr/"):
    bind(program_dir)
for extra in os.environ["CT_PY_BINDS"].split("\n"):
    if extra:
        bind(extra)
config.setdefault("annotations", {})["io.ferry.migratable"] = "true"
linux = config["linux"]
linux.pop("cgroupsPath", None)
netns = os.environ["CT_PY_NETNS"]
for ns in linux["namespaces"]:
    if ns["type"] == "network":
        if netns:
            ns["path"] = netns
        else:
            ns.pop("path", None)
with open(path, "w") as f:
    json.dump(config, f, indent=1)
EOF
}

# ct_runc ARGS...: runc with CT_RUNC_ROOT as --root when set.
ct_runc() {
	if [ -n "${CT_RUNC_ROOT:-}" ]; then
		runc --root "$CT_RUNC_ROOT" "$@"
	else
		runc "$@"
	fi
}

# ct_runc_track ID: ct_cleanup will kill and delete runc container ID
# (under the current CT_RUNC_ROOT).
ct_runc_track() {
	CT_CLEANUP_RUNC+=("${CT_RUNC_ROOT:-}|$1")
}

# ct_runc_remove ID: kills and deletes a runc container, paused or not.
# Success when it does not exist.
ct_runc_remove() {
	local id=$1
	ct_runc state "$id" >/dev/null 2>&1 || return 0
	# delete --force kills with SIGKILL, thaws a paused container and
	# waits for its processes before removing the cgroups.
	ct_runc delete --force "$id" >/dev/null 2>&1 || {
		ct_runc kill "$id" KILL >/dev/null 2>&1
		ct_runc delete --force "$id"
	}
}

# ct_podman_storage ROOT RUNROOT: selects (and will clean up) a podman
# storage of its own for ct_podman: one per test "host".
ct_podman_storage() {
	CT_PODMAN_ROOT=$1
	CT_PODMAN_RUNROOT=$2
	mkdir -p "$1" "$2" || return 1
	CT_CLEANUP_PODMAN+=("$1|$2")
}

# ct_podman ARGS...: podman on the storage ct_podman_storage selected.
ct_podman() {
	if [ -z "${CT_PODMAN_ROOT:-}" ] || [ -z "${CT_PODMAN_RUNROOT:-}" ]; then
		echo "ct_podman: call ct_podman_storage first" >&2
		return 1
	fi
	local global
	mapfile -t global < <(ct_podman_global_args "$CT_PODMAN_ROOT" "$CT_PODMAN_RUNROOT")
	podman "${global[@]}" "$@"
}

# ct_podman_run_args: the `podman run` flags tests need on this machine
# (raising rlimits is refused here, so keep podman from trying).
ct_podman_run_args() {
	printf '%s\n' --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
}

# ct_import_podman_image ROOT RUNROOT TAG [ROOTFS]: imports a rootfs (a
# new ct_make_rootfs one when ROOTFS is not given) as image TAG into that
# storage, and selects the storage for ct_podman.
ct_import_podman_image() {
	local root=$1 runroot=$2 tag=$3 rootfs=${4:-}
	ct_podman_storage "$root" "$runroot" || return 1
	local made=""
	if [ -z "$rootfs" ]; then
		rootfs=$(mktemp -d "${TMPDIR:-/tmp}/ct-rootfs.XXXXXX") || return 1
		made=$rootfs
		ct_make_rootfs "$rootfs" || { rm -rf "$made"; return 1; }
	fi
	tar -C "$rootfs" -c . | ct_podman import - "$tag" >/dev/null
	local rc=$?
	[ -n "$made" ] && rm -rf "$made"
	return $rc
}

# ct_podman_bind_args: -v flags binding the host's libraries read-only,
# as runc bundles have them (for a dynamically linked program).
ct_podman_bind_args() {
	local d
	for d in /usr /lib /lib64; do
		printf '%s\n' -v "$(readlink -f "$d"):$d:ro"
	done
	printf '%s\n' -v /etc/ld.so.cache:/etc/ld.so.cache:ro
}

# ct_podman_remove_storage ROOT RUNROOT: removes every container of that
# storage, unmounts what it left and deletes both directories.
ct_podman_remove_storage() {
	local root=$1 runroot=$2 global
	mapfile -t global < <(ct_podman_global_args "$root" "$runroot")
	if [ -d "$root" ]; then
		podman "${global[@]}" rm -a -f -t 0 >/dev/null 2>&1
		podman "${global[@]}" system reset -f >/dev/null 2>&1
	fi
	ct_unmount_below "$root"
	ct_unmount_below "$runroot"
	rm -rf "$root" "$runroot"
}

# ct_unmount_below DIR: lazily unmounts every mount at or below DIR
# (deepest first), so that rm -rf cannot reach into a mounted overlay.
ct_unmount_below() {
	local dir
	dir=$(readlink -f "$1" 2>/dev/null) || return 0
	[ -n "$dir" ] && [ "$dir" != / ] || return 0
	awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
}

# ct_track_dir DIR: ct_cleanup removes DIR (after unmounting below it).
ct_track_dir() {
	CT_CLEANUP_DIRS+=("$1")
}

# ct_cleanup: removes every container, storage and directory this shell
# registered. Safe to call twice; meant for an EXIT trap.
ct_cleanup() {
	local entry i
	for ((i = ${#CT_CLEANUP_RUNC[@]} - 1; i >= 0; i--)); do
		entry=${CT_CLEANUP_RUNC[i]}
		CT_RUNC_ROOT=${entry%%|*} ct_runc_remove "${entry#*|}"
	done
	CT_CLEANUP_RUNC=()
	for ((i = ${#CT_CLEANUP_PODMAN[@]} - 1; i >= 0; i--)); do
		entry=${CT_CLEANUP_PODMAN[i]}
		ct_podman_remove_storage "${entry%%|*}" "${entry#*|}"
	done
	CT_CLEANUP_PODMAN=()
	for ((i = ${#CT_CLEANUP_DIRS[@]} - 1; i >= 0; i--)); do
		ct_unmount_below "${CT_CLEANUP_DIRS[i]}"
		rm -rf "${CT_CLEANUP_DIRS[i]}"
	done
	CT_CLEANUP_DIRS=()
}
