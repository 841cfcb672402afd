// ContainerRegistry: the containers the OCI hook told this agent about.
//
// ferry-oci-hook (plugins/oci-hook) calls POST /v1/containers at poststart
// for every container annotated io.ferry.migratable=true, and DELETE at
// poststop. `ferry migrate --container X` looks X up here first (by id,
// name or unique id prefix) and asks the runtime only when it is not
// registered.
//
// The registry is kept in memory and in `<stateDir>/containers.json`
// (written atomically on each change: a temporary file, fsync, rename,
// fsync of the directory), so an agent restart keeps it. Entries whose
// init process has gone (pid plus start time no longer match, or the
// process is a zombie) are dropped when looked up or listed, and the file
// is rewritten then.
//
// What is kept of a ContainerInfo: runtime, id, name, pid, status, bundle,
// netns, cgroup and annotations. `spec` is not: it describes how to start
// the container elsewhere and is asked of the runtime (inspectContainer)
// when a migration needs it, so entries come back with an empty spec.
//
// The start time ties an entry to one process: a pid that the kernel hands
// to another process after the container died must not make that process
// migratable. It is read at add() from /proc/<pid>/stat (field 22, clock
// ticks since boot) and stored in the file; entries survive an agent
// restart but not a reboot (the start times no longer match).
//
// Thread-safe: every call takes the registry's mutex. A failure to write
// the file fails add() and remove() (the memory copy is then left as it
// was); failing to rewrite it after dropping dead entries is only logged.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "container/container.h"

namespace ferry::container {

struct RegisteredContainer {
	ContainerInfo info;           // id, runtime, pid, bundle, netns, cgroup, annotations
	unsigned long long startTime = 0; // /proc/<pid>/stat field 22, taken at registration
};

// The start time (clock ticks after boot) of `pid`, from /proc/<pid>/stat.
// nullopt when the process does not exist or is a zombie: a container
// whose init is a zombie has ended.
std::optional<unsigned long long> processStartTime(pid_t pid);

class ContainerRegistry {
public:
	// Shortest prefix `find` accepts.
	static constexpr size_t kMinPrefix = 4;
	// Most entries kept. Every add rewrites and fsyncs the whole file
	// under the lock, and the registration route is open to local
	// clients: the bound keeps that cost and the file's size finite
	// (with api/container_schemas.h's bound on an entry's annotations,
	// 32 KiB, at most some 130 MiB).
	static constexpr size_t kMaxContainers = 4096;

	// Loads `path` if it exists (a missing file is an empty registry; a
	// corrupt one is logged and set aside as <path>.corrupt). Fails only
	// when the file exists but cannot be read, or cannot be set aside.
	// `maxContainers`: kMaxContainers, smaller in tests.
	static Result<std::unique_ptr<ContainerRegistry>> open(std::string path, size_t maxContainers = kMaxContainers);

	ContainerRegistry(const ContainerRegistry &) = delete;
	ContainerRegistry &operator=(const ContainerRegistry &) = delete;

	// Adds or replaces the entry for info.id; an entry of another id with
	// the same pid is replaced too (one entry per process). EINVAL when
	// the id is empty or the pid is not alive; EAGAIN when kMaxContainers
	// live entries are registered and info.id is not one of them; EIO (or
	// the write's errno) when the file cannot be written.
	Status add(const ContainerInfo &info);
	// ENOENT when not registered.
	Status remove(const std::string &id);
	// By id, name, or a unique prefix of an id (at least 4 characters), in
	// that order of precedence. ENOENT when none matches, EINVAL when a
	// name or a prefix matches several.
	Result<ContainerInfo> find(const std::string &idOrName) const;
	// The live entries, ordered by id.
	std::vector<ContainerInfo> list() const;

	const std::string &path() const { return path_; }


private:
	ContainerRegistry(std::string path, size_t maxContainers) : path_(std::move(path)), maxContainers_(maxContainers) {}

	// Both with mutex_ held.
	void dropDeadLocked() const;
	Status persistLocked(const std::vector<RegisteredContainer> &entries) const;

	const std::string path_;
	const size_t maxContainers_;
	mutable std::mutex mutex_;
	// Sorted by id. Mutable: lookups drop dead entries as they find them.
	mutable std::vector<RegisteredContainer> entries_;
};

} // namespace ferry::container
