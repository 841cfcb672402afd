// DestinationMigration: the destination agent's side of one migration.
//
// Driven by the source agent's calls (MigrationService, destination role),
// each on the HTTP thread that serves it:
//
//   prepare()       check the target netns, interfaces, addresses and the
//                   handoff program against the policy; nothing changes yet
//   receiveImage()  lock the flows in the target netns, then restore each
//                   connection (TCP_REPAIR) as its record arrives; the
//                   sockets stay in repair mode
//   receiveWorkloadState()  keeps the source workload's blob for commit
//                   (any time before it)
//   commit()        add the service addresses and announce them, leave
//                   repair mode, unlock, start the workload with the sockets
//   abort()         drop everything built: sockets closed silently, lock
//                   and addresses removed
//
// With a container handoff (Handoff::container) the order differs from the
// one above, because the container must hold the sockets before any peer
// can reach them:
//   prepare()       also checks the runtime can start the spec
//                   (container::checkCanStart) and resolves the target
//                   netns to a path the runtime joins
//   receiveImage()  after the last socket: writes the FERRY_MANIFEST file
//                   in <workloadStateDir>/containers/<id>/ and has the
//                   runtime create the container with the sockets as fds
//                   3.. (runc create; podman only prepares), journaled
//                   "container_created" first. Half-closed connections
//                   are restored at commit, so with any of them the
//                   container is created at commit instead.
//   commit()        writes the source workload's state into the manifest,
//                   adds the addresses, leaves repair mode while still
//                   locked, starts the container, announces, unlocks and
//                   pushes what the workload wrote while locked (TCP_CORK
//                   off). A container that does not start aborts the
//                   migration: its sockets go back into repair mode and
//                   are discarded, nothing having escaped the lock.
//   abort(), recover()  destroy a created container and its directory.
//
// The engine serialises calls per migration (one at a time) and aborts a
// migration that has not committed within the policy's commit timeout of
// its lock. Every step is journaled before it is taken.
#pragma once

#include <chrono>
#include <memory>

#include "migration/migration_context.h"
#include "migration/migration_record.h"

namespace ferry::migration {

class DestinationMigration {
public:
	// Validates the request (EACCES for what the policy forbids, EINVAL,
	// EEXIST for an address already configured, ENOENT for a missing netns
	// or interface) and journals it.
	static Result<std::unique_ptr<DestinationMigration>> prepare(MigrationContext &context, MigrationRecordPtr record,
								     const PrepareRequest &request,
								     PrepareReply &reply);
	~DestinationMigration();

	Result<ImageReceipt> receiveImage(const ImageBody &body);
	Status receiveWorkloadState(std::string state);
	Status commit(const CommitRequest &request);
	// Idempotent; a no-op once committed or aborted.
	void abort(const std::string &reason);

	// Locked and not committed for longer than the commit timeout.
	bool pastDeadline(std::chrono::steady_clock::time_point now) const;

	// Cleans up after a migration found in the journal at start-up: its
	// restored sockets died with the old agent (silently: they were in
	// repair mode); its lock and any address it added are removed.
	static void recover(MigrationContext &context, MigrationRecord &record, JournalFile &journal);

private:
	struct State;
	explicit DestinationMigration(std::unique_ptr<State> state);
	std::unique_ptr<State> state_;
};

// Whether `request` may be restored here under `policy`: EACCES naming the
// first thing outside the allowlist (netns, interface, address, flow).
Status checkPolicy(const EnginePolicy &policy, const PrepareRequest &request);

} // namespace ferry::migration
