// MigrationService: what ferryd does, as the HTTP layer (agent/api) sees it.
//
// agent/api turns requests into these calls and their results into JSON;
// agent/migration implements them (MigrationEngine) and is the only place
// that knows the order of the phases. Neither side knows the other's
// internals: the API never touches a socket, the engine never sees HTTP.
//
// One migration has one id, shared by both agents: the source makes it up
// when the user starts a migration and sends it in prepareIncoming().
//
//   user/CLI ──startMigration──▶ source agent S
//   S ──prepareIncoming──▶ D        (negotiate: before the freeze)
//   S ──receiveImage (chunked)──▶ D (S frozen, locked, dumping; D restoring)
//   S ──receiveWorkloadState──▶ D   (the workload's blob, when it gave one)
//   S ──commitIncoming──▶ D         (D: address, unlock, hand over)
//   S: discard, unlock, destroy the source workload
//   either side, before commit: abort()
//
// Errors are Error values whose code is an errno the API maps to HTTP:
//   EINVAL 400 · EACCES/EPERM 403 · ENOENT 404 · EEXIST/EBUSY/EALREADY 409
//   E2BIG/EFBIG 413 · ETIMEDOUT 504 · EAGAIN 503 · anything else 500.
// The Error's text names what was wrong (field, flow, netns, phase).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/flow.h"
#include "container/container.h"

namespace ferry::migration {

enum class Role { Source, Destination };

// In order; a migration moves forward only, to Committed or Aborted.
enum class Phase {
	Negotiating, // S: talking to D. D: checking the request, preparing.
	Prepared,    // D: ready for the image. S: about to freeze.
	Frozen,      // S: workload stopped (blackout starts)
	Locked,      // flows locked on this host
	Streaming,   // S: dumping and sending. D: receiving and restoring.
	Restored,    // D: every socket rebuilt, in repair mode, still locked
	Switching,   // the service address moves
	Committing,
	Committed,   // terminal: the connections live on D
	Aborting,
	Aborted,     // terminal: the connections live on S, as before
};
const char *toString(Phase phase);
const char *toString(Role role);
bool isTerminal(Phase phase);

// A service address that moves with the workload: "198.51.100.10/24" on
// the source's `sourceInterface`, to the destination's `targetInterface`.
struct AddressMove {
	std::string cidr;
	std::string sourceInterface;
	std::string targetInterface;
};

// A container whose connections move (issue 5). The source resolves it
// (the OCI hook's registry first, then the runtime), takes the sockets of
// its processes, freezes it, and destroys it after commit; an abort thaws
// it. The destination starts the same container with the sockets.
struct ContainerSelection {
	std::string id;                            // id, name or unique id prefix
	std::optional<container::Runtime> runtime; // unset: the registry's word, else runc, then podman
	enum class Freeze { Cgroup, Pause };       // cgroup freezer, or runc/podman pause
	Freeze freeze = Freeze::Cgroup;
	std::string destinationName;               // the new container's name; "" = the same
};

// "cgroup" / "pause": the one spelling of a freeze method, for the API,
// the CLI and kubectl-ferry alike.
inline const char *freezeName(ContainerSelection::Freeze freeze)
{
	return freeze == ContainerSelection::Freeze::Pause ? "pause" : "cgroup";
}
inline std::optional<ContainerSelection::Freeze> parseFreeze(std::string_view name)
{
	if (name == "cgroup")
		return ContainerSelection::Freeze::Cgroup;
	if (name == "pause")
		return ContainerSelection::Freeze::Pause;
	return std::nullopt;
}

// Which connections move, on the source.
struct ConnectionSelection {
	std::optional<pid_t> pid;          // the sockets of this process tree...
	std::optional<ContainerSelection> container; // ...or of this container...
	std::string netns;                 // ...or of this netns (spec as openNetns takes)
	std::vector<uint16_t> localPorts;  // restricted to these local ports (empty: all)
	bool includeListeners = true;      // recreate listening sockets on the destination
};

// How the destination hands the restored sockets to the workload.
struct Handoff {
	// Start this program in the target netns with the sockets as fds 3..,
	// LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID and FERRY_MANIFEST
	// (docs/workloads.md). Empty: keep the sockets in the agent until a
	// workload adopts them.
	std::vector<std::string> execArgv;
	std::map<std::string, std::string> environment; // extra variables for execArgv
	// Or start this container (the source fills it from the container it
	// froze). Exclusive with execArgv.
	std::optional<container::ContainerSpec> container;
};

// startMigration(): the user's request to the source agent.
struct MigrationRequest {
	ConnectionSelection selection;
	std::string targetAgent;        // base URL of the destination ferryd
	std::string targetNetns;        // on the destination
	std::vector<AddressMove> addresses;
	Handoff handoff;
	std::string lockStrategy;       // "" = the agent's default
};

// One connection as announced in negotiation (no queue bytes yet).
struct ConnectionSummary {
	FlowId flow;
	std::string state;              // "ESTABLISHED", "LISTEN", ...
	uint64_t receiveQueueBytes = 0;
	uint64_t sendQueueBytes = 0;
};

// prepareIncoming(): the source agent's negotiation with the destination.
struct PrepareRequest {
	std::string migrationId;
	std::string sourceAgent;                   // where S can be reached (for recovery)
	std::string sourceVersion;
	std::map<std::string, bool> kernelFeatures; // repair::KernelFeatures, by name
	std::vector<ConnectionSummary> connections;
	std::string targetNetns;
	std::vector<AddressMove> addresses;
	Handoff handoff;
	uint64_t imageBytesHint = 0;               // expected image size (queues + overhead)
};

struct PrepareReply {
	std::string migrationId;
	std::string destinationVersion;
	std::map<std::string, bool> kernelFeatures;
	bool netnsReady = false;
	bool addressesAvailable = false;  // none of them is configured in the target netns yet
	uint32_t socketsPrepared = 0;     // sockets created ahead of the image
	std::chrono::milliseconds commitDeadline{0}; // D aborts if no commit comes in time
};

// commitIncoming(): what the source hands over at commit. Nothing yet:
// the workload's state travels before it (receiveWorkloadState), as
// bytes, so that the commit stays small inside the blackout.
struct CommitRequest {};

// What D reports when the image has been received and restored.
struct ImageReceipt {
	uint32_t connectionsRestored = 0;
	uint64_t imageBytes = 0;          // compressed, as received
	uint64_t queueBytes = 0;          // receive + send queues restored
};

// Timings are absent until the phase happened.
struct MigrationStatus {
	std::string id;
	Role role = Role::Source;
	Phase phase = Phase::Negotiating;
	std::string peerAgent;
	uint32_t connections = 0;
	uint64_t bytesMoved = 0;          // queue bytes
	uint64_t imageBytes = 0;          // compressed
	std::chrono::system_clock::time_point startedAt{};
	std::optional<std::chrono::microseconds> blackout;   // freeze to commit (S), lock to commit (D)
	std::optional<std::chrono::microseconds> lockWindow; // lock to unlock on this host
	std::optional<std::chrono::microseconds> total;
	std::string error;                // why it aborted, if it did
};

// A progress event (also the body of each server-sent event).
struct MigrationEvent {
	std::string id;
	Phase phase = Phase::Negotiating;
	uint32_t connectionsDone = 0;
	uint32_t connectionsTotal = 0;
	uint64_t bytesDone = 0;
	std::chrono::microseconds elapsed{0};
	std::string message;
};

struct AgentInfo {
	std::string version;
	std::string hostname;
	std::map<std::string, bool> kernelFeatures;
	std::vector<std::string> lockStrategies;
	bool criuAvailable = false;
};

// Counters for /metrics (Prometheus text), since the agent started.
struct MetricsSnapshot {
	std::map<std::string, uint64_t> migrationsByOutcome; // "committed", "aborted"
	uint64_t connectionsMoved = 0;
	uint64_t bytesMoved = 0;
	std::vector<double> blackoutBucketsMs;               // upper bounds, ascending
	std::vector<uint64_t> blackoutBucketCounts;          // cumulative, one per bound
	uint64_t blackoutCount = 0;
	double blackoutSumMs = 0;
	uint32_t activeMigrations = 0;
};

// The image body, pushed chunk by chunk as it arrives: the engine calls
// `body(sink)`; the body calls sink(chunk) for each chunk and returns when
// the upload ended (ok) or broke (error). A sink failure stops the upload.
using ChunkSink = std::function<Status(std::span<const uint8_t> chunk)>;
using ImageBody = std::function<Status(const ChunkSink &sink)>;

using EventHandler = std::function<void(const MigrationEvent &event)>;

class MigrationService {
public:
	virtual ~MigrationService() = default;

	virtual AgentInfo info() const = 0;

	// Source role. Checks the request and starts the migration in the
	// background; returns its status at once (phase Negotiating).
	virtual Result<MigrationStatus> startMigration(const MigrationRequest &request) = 0;

	// Destination role, called by the source agent.
	virtual Result<PrepareReply> prepareIncoming(const PrepareRequest &request) = 0;
	// Blocks until the body has ended and every socket is restored (or it
	// failed, in which case the migration is aborted on this side).
	virtual Result<ImageReceipt> receiveImage(std::string_view id, const ImageBody &body) = 0;
	// The blob the source workload handed over at its safe point, for the
	// workload that starts here at commit. Before commit; a second call
	// replaces the first (the call is idempotent).
	virtual Status receiveWorkloadState(std::string_view id, std::string state) = 0;
	virtual Status commitIncoming(std::string_view id, const CommitRequest &request) = 0;

	// Either role, before commit. Idempotent: aborting an aborted
	// migration succeeds; aborting a committed one is EALREADY.
	virtual Status abort(std::string_view id, std::string_view reason) = 0;

	virtual Result<MigrationStatus> status(std::string_view id) const = 0;
	virtual std::vector<MigrationStatus> list() const = 0;

	// Calls `handler` for every event of migration `id` from now on (and
	// once at once with the current state), until the returned handle is
	// destroyed or the migration ends. ENOENT for an unknown id.
	class Subscription {
	public:
		virtual ~Subscription() = default;
	};
	virtual Result<std::unique_ptr<Subscription>> subscribe(std::string_view id, EventHandler handler) = 0;

	virtual MetricsSnapshot metrics() const = 0;
};

} // namespace ferry::migration
