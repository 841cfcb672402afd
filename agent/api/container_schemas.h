// JSON wire format of the container registry's routes (docs/protocol.md,
// "Containers"): the body of POST /v1/containers, and the entries that
// GET /v1/containers and GET /v1/containers/{id} return.
//
// Decoding of the registration is strict, as for every other body
// (schemas.h): an unknown or duplicate field, a wrong JSON type, an id or
// name outside the charset, a pid that is not a positive pid_t, a path
// that is not absolute, too many or too long annotations → EINVAL whose
// text names the field, e.g. "pid: expected an integer 1..2147483647".
// Whether the pid is alive is the registry's check (ContainerRegistry::add),
// not the schema's.
//
// Like schemas.h, this header pulls in neither httplib nor RapidJSON.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "container/container.h"

namespace ferry::api {

// Container ids and names appear in URL paths and are handed to runtime
// CLIs as arguments: 1..kMaxContainerIdLength characters of
// [A-Za-z0-9._+-], the first one a letter or digit (never an option).
inline constexpr size_t kMaxContainerIdLength = 128;
bool isValidContainerId(std::string_view id);

// A registration's annotations: each entry is kept in memory and in the
// registry's file, which every registration rewrites whole
// (ContainerRegistry::kMaxContainers entries at most), so the sum of
// their keys and values is bounded too.
inline constexpr size_t kMaxAnnotations = 256;
inline constexpr size_t kMaxAnnotationKey = 256;
inline constexpr size_t kMaxAnnotationValue = 4096;
inline constexpr size_t kMaxAnnotationBytes = 32768;
inline constexpr size_t kMaxContainerPath = 4096;

// POST /v1/containers. Required: id, runtime, pid. Optional: bundle,
// netns ("" or absent → "pid:<pid>"), cgroup, name ("" or absent → the
// id), annotations. The result has status "running".
Result<container::ContainerInfo> parseContainerRegistration(std::string_view json);
// The body a client sends for `info` (the OCI hook): every field above.
std::string containerRegistrationJson(const container::ContainerInfo &info);

// One registry entry:
//   {"id","runtime","name","pid","status","bundle","netns","cgroup","annotations":{}}
std::string containerJson(const container::ContainerInfo &info);
// GET /v1/containers: {"containers": [entry...]}.
std::string containerListJson(const std::vector<container::ContainerInfo> &list);

// Clients' side of the two above (CLI, kubectl-ferry, tests).
Result<container::ContainerInfo> parseContainerEntry(std::string_view json);
Result<std::vector<container::ContainerInfo>> parseContainerList(std::string_view json);

} // namespace ferry::api
