// ContainerRegistry: the containers the OCI hook told this agent about.
//
// ferry-oci-hook (plugins/oci-hook) calls POST /v1/containers at poststart
// for every container annotated io.ferry.migratable=true, and DELETE at
// poststop. `ferry migrate --container X` looks X up here first (by id,
// name or unique id prefix) and asks the runtime only when it is not
// registered.
//
// The registry is kept in memory and in `<stateDir>/containers.json`
// (written atomically on each change), so an agent restart keeps it.
// Entries whose init process has gone (pid plus start time no longer
// match) are dropped when looked up or listed.
//
// Thread-safe: every call takes the registry's mutex.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.h"
#include "container/container.h"

namespace ferry::container {

struct RegisteredContainer {
	ContainerInfo info;           // id, runtime, pid, bundle, netns, cgroup, annotations
	unsigned long long startTime = 0; // /proc/<pid>/stat field 22, taken at registration
};

class ContainerRegistry {
public:
	// Loads `path` if it exists (a missing file is an empty registry; a
	// corrupt one is logged and set aside as <path>.corrupt).
	static Result<std::unique_ptr<ContainerRegistry>> open(std::string path);

	// Adds or replaces the entry for info.id. EINVAL when the id is empty
	// or the pid is not alive.
	Status add(const ContainerInfo &info);
	// ENOENT when not registered.
	Status remove(const std::string &id);
	// By id, name, or a unique prefix of an id (at least 4 characters).
	// ENOENT when none matches, EINVAL when a prefix matches several.
	Result<ContainerInfo> find(const std::string &idOrName) const;
	std::vector<ContainerInfo> list() const;
};

} // namespace ferry::container
