// SourceMigration: the source agent's side of one migration.
//
// Runs on its own thread, from negotiation to Committed or Aborted:
//
//   discover sockets, take them (pidfd_getfd)   ─ before the freeze
//   negotiate with the destination (prepare)    ─ before the freeze
//   freeze (handoff or SIGSTOP)                 ─ blackout starts
//   lock the flows (nftables)
//   dump each socket (TCP_REPAIR) into the image, streamed to the
//     destination as it is produced (pipelined)
//   remove the service addresses
//   commit on the destination                   ─ blackout ends
//   discard the sockets silently, unlock, end the frozen workload
//
// A container selection (ConnectionSelection::container) changes three
// steps: discovery resolves the container (the OCI hook's registry, else
// runc state / podman inspect) and takes the sockets its processes hold
// (its cgroup's, else its init's tree) in its netns; the freeze is the
// cgroup freezer or the runtime's pause, after the handoff of a
// migration-aware workload inside it; after commit the runtime destroys
// the container (its repaired sockets close silently), and an abort thaws
// it. The PrepareRequest then carries Handoff::container, the spec the
// destination starts.
//
// Every step is journaled (fsync) before it is taken. Until the commit has
// been sent, any failure or abort() rolls back in reverse: addresses back,
// sockets out of repair mode (byte-exact), unlock, thaw, and the
// destination is told to drop what it built. After the commit has been
// sent, the outcome is the destination's: the source asks it, and finishes
// or rolls back as it says.
#pragma once

#include <memory>

#include "migration/migration_context.h"
#include "migration/migration_record.h"

namespace ferry::migration {

class SourceMigration {
public:
	SourceMigration(MigrationContext &context, MigrationRecordPtr record, MigrationRequest request,
			JournalFile journal);
	~SourceMigration();

	// Drives the migration to its end. Call once, on a thread of its own.
	void run();

	// Finishes a migration found in the journal at start-up, whose agent
	// died: rolls back, or completes a commit the destination confirms.
	// Returns false if the outcome cannot be known yet (the destination
	// is unreachable after a commit was sent); the engine retries later.
	static bool recover(MigrationContext &context, MigrationRecord &record, JournalFile &journal);

private:
	struct State;
	std::unique_ptr<State> state_;
};

// The container a registry entry (what the OCI hook said at poststart)
// names, as its runtime reports it now (`inspected`, from
// inspectContainer(entry.runtime, entry.id)). The registry keeps no spec
// and may hold an entry the runtime does not know (another runtime root)
// or a forged one: only the runtime's answer is used, and only when its
// init pid is the registered one. Errors: the runtime's own (ENOENT: it
// does not know the container) and ESRCH for another init pid, naming both.
Result<container::ContainerInfo> confirmRegistered(const container::ContainerInfo &registered,
						   Result<container::ContainerInfo> inspected);

} // namespace ferry::migration
