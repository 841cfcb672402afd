// The runtime side of a container migration: find a container, pause and
// thaw it through its runtime, destroy it after commit, and start it again
// on the destination with the migrated sockets as inherited fds.
//
// Every call runs the runtime's CLI (runc or podman, as RuntimeOptions
// names them) as a child process with a timeout, and turns a failure into
// an Error that quotes the command and its stderr. Nothing here knows
// about TCP repair: the sockets are plain fds to pass on.
//
// Source:
//   FERRY_TRY_ASSIGN(ContainerInfo c, inspectContainer(options, Runtime::Runc, "web"));
//   ...freeze (cgroup_freezer.h, or pauseContainer), dump, commit...
//   committed ? destroyContainer(options, c) : thaw / resumeContainer(options, c);
//
// Destination:
//   FERRY_TRY(checkCanStart(options, spec));                 // at prepare
//   ContainerStart start{spec, "/run/netns/b", sockets, environment, manifestPath, workDir};
//   FERRY_TRY_ASSIGN(auto created, createContainer(options, start)); // after restore
//   ...resume sockets...
//   FERRY_TRY(created->start());                               // at commit
//   (abort: created->destroy(), or let it go out of scope)
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "container/container.h"

namespace ferry::container {

inline constexpr std::chrono::milliseconds kRuntimeTimeout{30000};

// The container `idOrName` as `runtime` reports it (runc state / podman
// inspect), with its cgroup and netns filled in. ENOENT when the runtime
// does not know it; EINVAL when it is not running or paused ("created",
// "stopped"). podman also accepts a unique prefix of the id. `cgroup` is
// left empty (and a warning logged) when the process is in no cgroup that
// can be frozen: pauseContainer still works then.
Result<ContainerInfo> inspectContainer(const RuntimeOptions &options, Runtime runtime, const std::string &idOrName);

// runc pause / podman pause, and back. Waits until the runtime says so.
// Both runtimes use the v1 freezer on this hybrid host, while
// freezeCgroup(info.cgroup) prefers v2: do not mix the two on one
// container (a container frozen by both needs both thawed).
Status pauseContainer(const RuntimeOptions &options, const ContainerInfo &container);
Status resumeContainer(const RuntimeOptions &options, const ContainerInfo &container);

// Ends the container for good, frozen or not: SIGKILL to every process
// and the runtime's delete (runc delete --force; podman rm --force
// --time 0). Its sockets are closed by the kernel as the processes die (in
// repair mode they close silently). Returns when the processes are gone
// and the cgroup removed. Succeeds when the container is already gone.
// Works on a container paused by the runtime and on one frozen through
// its v2 cgroup (a frozen task still dies of SIGKILL).
Status destroyContainer(const RuntimeOptions &options, Runtime runtime, const std::string &idOrName);

// A socket handed to the new container (as fds 3, 4, ... in order).
struct ContainerSocket {
	int fd = -1;       // borrowed for the call
	std::string name;  // LISTEN_FDNAMES entry
};

struct ContainerStart {
	ContainerSpec spec;
	std::string netnsPath;                          // a path (/run/netns/x or /proc/<pid>/ns/net): the container joins it
	std::vector<ContainerSocket> sockets;
	std::map<std::string, std::string> environment; // added to the container's: LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID, FERRY_MANIFEST
	std::string manifestPath;                       // host file bind-mounted read-only at kContainerManifestPath; empty: none
	std::string workDirectory;                      // existing dir for a rewritten bundle and logs; removed by destroy()
};
// About the manifest bind: the file itself is bound (not its directory,
// which may hold other migrations' manifests). runc creates the mount
// point /run/ferry/manifest.json in the rootfs, which for a shared bundle
// means in the source bundle's rootfs directory, unless the spec mounts a
// tmpfs at /run (then it is made there). A rootfs on a read-only
// filesystem therefore needs /run as a tmpfs in its config.json.
//
// About workDirectory: for runc it becomes the new container's bundle
// (config.json, container.log with the container's stdout and stderr,
// container.pid), so after start() it must outlive the container; the
// next migration of that container reads its config.json from there. For
// podman it only has to exist. If createContainer fails, the half-made
// container is deleted and workDirectory is left to the caller (with
// container.log for diagnosis).

// Where the manifest appears inside the container; FERRY_MANIFEST names it.
inline constexpr std::string_view kContainerManifestPath = "/run/ferry/manifest.json";

// Cheap checks at prepare time that a start would not fail later: the
// runtime binary runs, a runc bundle exists and parses, a podman image is
// present, no container of that name exists. EINVAL/ENOENT/EEXIST naming
// what is wrong.
Status checkCanStart(const RuntimeOptions &options, const ContainerSpec &spec);

// A container set up on the destination, holding the sockets.
//
// runc: createContainer runs `runc create --preserve-fds N` (the container
// exists and holds the fds; its process has not run yet) and start() runs
// `runc start`. podman cannot pass fds to a created container, so for
// podman createContainer only prepares and start() runs `podman run -d
// --preserve-fds N`. Either way start() returns once the runtime reports
// the container running.
//
// The fds are duplicated into the container; the caller keeps its own
// and may close them once createContainer returns (podman: createContainer
// holds close-on-exec duplicates until start() hands them to podman run).
// `environment` is added to the container's own environment, replacing
// same-named entries; LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID and
// FERRY_MANIFEST left from an earlier migration are dropped. The
// container's init is pid 1 of its pid namespace: LISTEN_PID=1.
// Destroying a CreatedContainer that was not started destroys the
// container (abort); after start() it only lets go of it. A start() that
// fails (podman run failing, killed past the timeout, or the container not
// running after it) removes what podman made at once, so the name is free
// for a retry; destroy() removes it if that did not succeed. A createRunc
// whose `runc create` fails or times out deletes the half-made container.
// Every spec is checked with findUnsafeArgument (container.h) first.
//
// Errors: EEXIST when the name is taken, EINVAL/ENOENT/EBADF for a bad
// request (names the field), EIO quoting the runtime's command and stderr
// otherwise.
class CreatedContainer {
public:
	virtual ~CreatedContainer() = default;
	virtual Status start() = 0;
	virtual Status destroy() = 0;   // idempotent
	virtual const std::string &name() const = 0;
	virtual pid_t pid() const = 0;  // its init once started (0 before, for podman)
};

Result<std::unique_ptr<CreatedContainer>> createContainer(const RuntimeOptions &options, const ContainerStart &start);

} // namespace ferry::container
