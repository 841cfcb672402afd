// The container model: what ferry knows about a runc or podman container,
// and what a destination needs to start the same container again.
//
// agent/container talks to the container runtimes (their CLIs and the
// cgroup filesystem) and knows nothing about sockets, HTTP or the order of
// a migration: agent/migration calls it at the right moments.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::container {

enum class Runtime { Runc, Podman };
const char *toString(Runtime runtime);               // "runc", "podman"
std::optional<Runtime> parseRuntime(std::string_view name);

// How this agent calls the runtimes. Empty fields: the runtime's default.
// Two agents on one machine (the tests' hosts) keep apart by giving each
// its own roots.
struct RuntimeOptions {
	std::string runcBinary = "runc";
	std::string runcRoot;       // runc --root
	std::string podmanBinary = "podman";
	std::string podmanRoot;     // podman --root (image and container storage)
	std::string podmanRunRoot;  // podman --runroot
	std::vector<std::string> podmanExtraArgs; // appended to `podman run` (e.g. --ulimit ...)
	// Global flags before every podman subcommand, after --root/--runroot:
	// e.g. --tmpdir, --cgroup-manager cgroupfs, --events-backend file where
	// the host has no systemd. They must be the same for every call on one
	// storage (podman records some of them in its database).
	std::vector<std::string> podmanGlobalArgs;
	std::chrono::milliseconds timeout{30000}; // per runtime command (kRuntimeTimeout); SIGKILL past it
};

// A bind mount the container had, carried to the destination (podman).
struct BindMount {
	std::string source;       // host path; must exist on the destination too
	std::string destination;  // path in the container
	bool readOnly = false;
};

// What a destination needs to start the same container. The source agent
// fills it from the runtime (inspectContainer) and sends it in the
// PrepareRequest; nothing in it is a host-local handle.
struct ContainerSpec {
	Runtime runtime = Runtime::Runc;
	std::string name;                      // the destination container's name (runc: its id)
	// runc: the OCI bundle directory. The destination reads its
	// config.json and rootfs at the same path.
	std::string bundle;
	// podman: what `podman inspect` says the container runs.
	std::string image;                     // must be present on the destination
	std::vector<std::string> command;      // the full argv (entrypoint + cmd)
	std::vector<std::string> environment;  // KEY=VALUE
	std::vector<BindMount> mounts;
	std::string workingDirectory;
	std::string user;
	std::map<std::string, std::string> annotations;
};

// Why `spec` cannot go to a runtime's command line as it is, or nullopt
// when it can. A spec comes from a peer agent, and its values become
// arguments of runc and podman: a value starting with '-' would be read as
// an option (`podman image exists --help` succeeds), and podman's mount
// syntax gives ':' and ',' in a path a meaning (`/x:U` chowns the host
// source). Refused: a leading '-' in name, image, bundle, user or
// command[0]; a bundle or working directory that is not absolute; mount
// paths that are not absolute, hold ':', ',' or a NUL, or have a ".."
// component. `field` is the ContainerSpec's wire name ("image",
// "mounts[2].source"), `problem` says what is wrong.
struct SpecProblem {
	std::string field;
	std::string problem;
};
std::optional<SpecProblem> findUnsafeArgument(const ContainerSpec &spec);

// A container running on this host, as its runtime (or the OCI hook)
// describes it.
struct ContainerInfo {
	Runtime runtime = Runtime::Runc;
	std::string id;        // runc: the container id; podman: the full 64-hex id
	std::string name;      // podman: its name; runc: the id again
	pid_t pid = 0;         // its init process, as this host sees it
	std::string status;    // "running", "paused", "created", "stopped"
	std::string bundle;    // OCI bundle directory
	std::string netns;     // openNetns() spec of its network namespace ("pid:<pid>" or a path)
	std::string cgroup;    // its freezer cgroup directory (cgroup_freezer.h), absolute
	std::map<std::string, std::string> annotations;
	ContainerSpec spec;    // how to start it again elsewhere
};

// The annotation that marks a container as one ferry may migrate (the OCI
// hook registers only these).
inline constexpr std::string_view kMigratableAnnotation = "io.ferry.migratable";

} // namespace ferry::container
