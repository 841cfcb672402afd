// HandoffServer: ferryd's end of the workload handoff socket.
//
// A migration-aware workload connects to a unix SOCK_SEQPACKET socket (its
// path is in FERRY_HANDOFF_SOCKET), says hello, and waits. When a migration
// is about to freeze it, the agent asks it to reach a safe point (prepare);
// the workload stops touching its sockets and answers ready with an opaque
// state blob. The migration then either aborts (resume: carry on) or
// commits (exit). The protocol is docs/workloads.md, "The handoff socket":
// one JSON object per packet.
//
//   FERRY_TRY_ASSIGN(auto server, HandoffServer::listen(stateDir + "/handoff.sock"));
//   ...
//   FERRY_TRY_ASSIGN(pid_t workload, server->findWorkload(userPid));
//   FERRY_TRY_ASSIGN(std::string blob, server->prepare(workload, id, 5s));
//   ...freeze, lock, dump, stream...
//   committed ? server->exit(workload) : server->resume(workload);
//
// Threads. listen() starts one thread that accepts connections and reads
// every packet (a poll loop; the destructor stops it). All public calls are
// thread-safe and may block the caller up to their timeout; they never
// block the poll loop, so a slow workload cannot stall the others.
//
// Trust. The socket is created with mode 0600 (only the agent's user can
// connect), and the pid in hello must match the peer's credentials
// (SO_PEERCRED): a hello whose pid differs is logged and the connection is
// closed. A workload in another pid namespace may name itself by its pid
// in that namespace (often 1); it is registered under the pid the agent
// sees. Anything else a workload sends that does not parse or is not
// expected in its current state is logged and dropped, and the connection
// stays; a connection that keeps doing so is closed. Nothing a workload
// sends can crash the agent or make it allocate more than one packet
// (kMaxHandoffPacketBytes).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace ferry::migration {

// --- The messages (exposed for tests and for workloads written in C++) ---

// The largest packet the agent reads. The state blob travels in one ready
// packet, base64-encoded: about 6 MiB of blob. A larger packet is dropped.
// (The sender's SO_SNDBUF also bounds a packet: raise it for large blobs.)
constexpr size_t kMaxHandoffPacketBytes = 8u << 20;
constexpr size_t kMaxWorkloadNameBytes = 64;
constexpr size_t kMaxMigrationIdBytes = 128;

// {"hello":{"pid":1234,"name":"demo"}}; "name" may be left out.
struct HelloMessage {
	pid_t pid = 0;    // > 0, as the workload sees itself
	std::string name; // printable ASCII, at most kMaxWorkloadNameBytes
};

// {"ready":{"state":"<base64>"}}
struct ReadyMessage {
	std::string state; // decoded; may be empty
};

enum class WorkloadMessageKind { Hello, Ready };

// What a workload sends. Only the member named by `kind` is meaningful.
struct WorkloadMessage {
	WorkloadMessageKind kind = WorkloadMessageKind::Hello;
	HelloMessage hello;
	ReadyMessage ready;
};

// Parses one packet from a workload, strictly: one JSON object holding
// exactly one message; the message's object holds exactly its fields, each
// of its type; no other member anywhere; strings are valid UTF-8. Error
// (EPROTO) saying what is wrong. When the packet names a known message but
// its body is wrong, `*kind` (if given) is set to that message's kind, so
// that a bad ready can fail the prepare waiting for it.
Result<WorkloadMessage> parseWorkloadMessage(std::string_view packet,
					     std::optional<WorkloadMessageKind> *kind = nullptr);

// What the agent sends. Preconditions for encodePrepare: the id passes
// checkMigrationId().
std::string encodePrepare(std::string_view migrationId);
std::string encodeResume();
std::string encodeExit();

// A migration id is 1..kMaxMigrationIdBytes of [A-Za-z0-9._-]: it appears
// in file names (the manifest) and log lines. EINVAL otherwise.
Status checkMigrationId(std::string_view migrationId);

// --- The server ---

// A workload that said hello and was accepted.
struct RegisteredWorkload {
	pid_t pid = 0;          // as the agent sees it (SO_PEERCRED)
	pid_t announcedPid = 0; // as the workload named itself (differs across pid namespaces)
	uid_t uid = 0;
	std::string name;
};

class HandoffServer {
public:
	static constexpr std::chrono::milliseconds kDefaultSendTimeout{1000};

	// Creates the socket at `path` and starts serving. `path` is in the
	// agent's state directory, which must exist. A stale socket file left
	// by a dead agent is replaced; a live one (something accepts
	// connections on it) is EADDRINUSE, and a path that is not a socket is
	// EEXIST: neither is removed. The socket appears at `path` with `mode`
	// already set (it is bound under a temporary name, chmod'ed, then
	// renamed), so there is no moment when others could connect.
	static Result<std::unique_ptr<HandoffServer>> listen(std::string path, mode_t mode = 0600);

	// Stops the poll thread, closes every workload connection (a workload
	// sees its connection end) and removes the socket file if it is still
	// the one this server created. Calls still waiting in other threads
	// must have returned before the server is destroyed.
	~HandoffServer();
	HandoffServer(const HandoffServer &) = delete;
	HandoffServer &operator=(const HandoffServer &) = delete;

	const std::string &path() const;

	bool isRegistered(pid_t pid) const;
	std::vector<RegisteredWorkload> workloads() const;

	// The registered workload for `pid`, which the user may have named
	// loosely: the workload itself, one of its descendants (a worker of
	// the workload), or an ancestor (the container's init, a shell or
	// runtime that started it). Prefers the pid itself, then the nearest
	// ancestor, then a descendant. ENOENT when none is related to `pid`;
	// EINVAL when several descendants are registered and none is closer.
	Result<pid_t> findWorkload(pid_t pid) const;

	// Sends prepare to the workload `pid` and waits up to `timeout` for
	// its ready. Returns the decoded state blob (may be empty). After
	// success the workload is stopped at its safe point: exactly one of
	// resume() or exit() must follow.
	// Errors: ENOENT (not registered), EBUSY (a prepare is already
	// outstanding or the workload is stopped for another migration),
	// EINVAL (bad migration id), ETIMEDOUT (no ready in time),
	// ECONNRESET (the workload disconnected), EPROTO (its ready was
	// malformed). On every error after the prepare was sent, the agent
	// sends resume, so that a workload that answers late carries on
	// instead of waiting for ever.
	Result<std::string> prepare(pid_t pid, std::string_view migrationId, std::chrono::milliseconds timeout);

	// The migration was aborted: the workload carries on. Succeeds without
	// sending anything when the workload is not stopped (abort paths call
	// it without knowing how far prepare got). ENOENT when not registered.
	Status resume(pid_t pid, std::chrono::milliseconds timeout = kDefaultSendTimeout);

	// The migration committed: the workload exits without closing its
	// sockets' streams. Only after a successful prepare (EINVAL
	// otherwise). Returns once the message is sent; the registration ends
	// when the workload disconnects.
	Status exit(pid_t pid, std::chrono::milliseconds timeout = kDefaultSendTimeout);

private:
	struct Connection;
	struct Shared;

	explicit HandoffServer(std::unique_ptr<Shared> shared);

	void run();
	bool acceptConnections(std::vector<std::shared_ptr<Connection>> &connections);
	bool readPacket(const std::shared_ptr<Connection> &connection, short revents);
	void handlePacket(const std::shared_ptr<Connection> &connection, std::string_view packet);
	void drop(Connection &connection, const Error &error);
	void close(Connection &connection, std::string_view why);
	std::shared_ptr<Connection> registered(pid_t pid) const; // with the mutex held
	Status send(Connection &connection, const std::string &packet, std::chrono::steady_clock::time_point deadline,
		    std::string_view what);

	std::unique_ptr<Shared> shared_;
};

} // namespace ferry::migration
