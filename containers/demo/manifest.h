// Inherited sockets: the systemd socket-activation variables and ferry's
// FERRY_MANIFEST, as docs/workloads.md ("Native handoff") defines them.
//
// A new server process calls socketActivation() with its environment, then
// readManifest(), then checkManifest() to tie the two together. Everything
// here only parses and cross-checks; it does not touch the fds, so it can be
// tested without any.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/flow.h"

namespace ferry::demo {

// SD_LISTEN_FDS_START: inherited fds are numbered from 3.
inline constexpr int kListenFdsStart = 3;

struct SocketActivation {
	int count = 0;                  // fds kListenFdsStart .. kListenFdsStart + count - 1
	std::vector<std::string> names; // one per fd, or empty when LISTEN_FDNAMES is unset
};

// Reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES (each nullptr when unset).
// Returns nullopt when LISTEN_PID or LISTEN_FDS is unset, or LISTEN_PID is
// not `ownPid` (the variables were meant for another process: the systemd
// convention says to ignore them). Fails (EINVAL) on values that do not
// parse or disagree (a name count that is not LISTEN_FDS).
Result<std::optional<SocketActivation>> socketActivation(const char *listenPid,
		const char *listenFds, const char *listenFdNames, long ownPid);

struct ManifestConnection {
	int fd = -1;
	std::string name;
	Endpoint local;
	std::optional<Endpoint> remote; // absent for a listener ("remote": "")
	std::string state;              // "ESTABLISHED", "LISTEN", "CLOSE_WAIT"...

	bool isListener() const { return state == "LISTEN"; }
};

struct Manifest {
	static constexpr int kVersion = 1;

	std::string migration;
	std::string state; // the workload's base64 blob; may be empty
	std::vector<ManifestConnection> connections;

	// The entry for `fd`, or nullptr.
	const ManifestConnection *forFd(int fd) const;
};

// Parses FERRY_MANIFEST's JSON. Unknown fields are ignored (ferry may add
// some); missing or mistyped known ones fail with EINVAL and the field's
// path, e.g. "manifest: connections[1].local: missing".
Result<Manifest> parseManifest(std::string_view json);
// Reads and parses the file at `path`; errors carry the path.
Result<Manifest> readManifest(const std::string &path);

// Checks that the manifest describes exactly the inherited fds: every fd
// in the activation range once, nothing else, and the same names as
// LISTEN_FDNAMES when that was given.
Status checkManifest(const Manifest &manifest, const SocketActivation &activation);

} // namespace ferry::demo
