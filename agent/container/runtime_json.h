// What runc and podman print, read into the container model, and the
// config.json a destination writes for runc. Pure functions (no process,
// no file): tests/unit/container checks them on recorded outputs.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "base/error.h"
#include "container/container.h"

namespace ferry::container {

// Environment variables a migration sets afresh on the destination; a
// container that was migrated before carries old values, which are not
// part of what it runs (dropped from specs and rewritten configs).
inline constexpr std::string_view kHandoffVariables[] = {"LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID",
							 "FERRY_MANIFEST"};

// The annotation a rewritten config.json records its source bundle in
// (rewriteRuncConfig), so that a container migrated before is sent on
// with the bundle other hosts have, not this host's work directory.
inline constexpr std::string_view kBundleAnnotation = "io.ferry.bundle";

// `runc state ID`: id, pid, status, bundle, annotations. The spec is the
// bundle (kBundleAnnotation when it holds an absolute path) and the id as
// name; cgroup and netns are left empty (they need
// the live process). EINVAL when the text is not runc's state document.
Result<ContainerInfo> parseRuncState(std::string_view json);

// `podman inspect --type container ID` (an array of one object): id, name,
// pid, status, annotations, and the spec: image (ImageName, else Image),
// command (Path + Args), environment (without what podman sets by itself:
// HOSTNAME, container; and without kHandoffVariables), bind mounts
// (without the manifest's), working directory, user, annotations (without
// podman's own io.podman.annotations.*, io.kubernetes.cri-o.*,
// io.container.manager and org.opencontainers.image.stopSignal).
Result<ContainerInfo> parsePodmanInspect(std::string_view json);

// True when a runtime's stderr says the container does not exist (runc:
// "container does not exist"; podman: "no such container").
bool saysNoSuchContainer(std::string_view stderrText);

// How a destination rewrites the source bundle's config.json.
struct RuncConfigRewrite {
	std::string sourceBundle;       // absolute: relative root.path and bind sources resolve against it
	std::string netnsPath;          // the network namespace to join
	std::map<std::string, std::string> environment; // set in process.env (replacing same-named entries)
	std::string manifestPath;       // bound read-only at kContainerManifestPath; empty: none
	// The new container's own cgroup: linux.cgroupsPath becomes the
	// source's parent cgroup (the root when it had none) + "/" + cgroupLeaf
	// (systemd form "slice:prefix:name": the name is replaced). Empty:
	// cgroupsPath is dropped and runc derives "/<id>", which is the source
	// container's own cgroup when both have the same id on one machine.
	std::string cgroupLeaf;
};

// The rewritten config.json: root.path absolute into the source bundle
// (the rootfs is shared, not copied), relative bind sources absolute, the
// network namespace entry pointing at netnsPath, kHandoffVariables and the
// `environment` names replaced by `environment`, a read-only bind of the
// manifest file at kContainerManifestPath (replacing an earlier one),
// linux.cgroupsPath set from cgroupLeaf (never the source's: a source on
// the same machine still holds it, frozen, and runc refuses a frozen
// cgroup or, worse, shares a live one), process.terminal false, and
// annotation kBundleAnnotation = sourceBundle unless the config has one
// (from an earlier move). Everything else (hooks, annotations,
// capabilities, other namespaces) is kept. EINVAL when the input is not
// an OCI config runc could run, or when a namespace other than network
// carries a path (joining another process's ipc or uts, as CRI pod
// containers do: that process is not on the destination); the error
// names the namespace type.
Result<std::string> rewriteRuncConfig(std::string_view configJson, const RuncConfigRewrite &rewrite);

} // namespace ferry::container
