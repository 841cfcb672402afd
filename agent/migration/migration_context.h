// MigrationContext: what the engine lends to each migration it runs.
//
// Owned by MigrationEngine; every SourceMigration and DestinationMigration
// borrows it and must not outlive the engine.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "container/container.h"
#include "container/container_registry.h"
#include "migration/migration_journal.h"
#include "migration/peer_agent.h"
#include "migration/workload_handoff.h"
#include "netlock/flow_lock.h"
#include "repair/kernel_features.h"

namespace ferry::migration {

struct EnginePolicy {
	// Destination side: where a restore may go. Empty lists allow nothing,
	// except allowedNetns, where an empty list allows nothing either: the
	// operator names every namespace a peer may restore into.
	std::vector<std::string> allowedNetns;
	std::vector<std::string> allowedInterfaces;
	std::vector<std::string> allowedPrefixes; // CIDRs of service and local addresses
	uint32_t maxConcurrent = 4;
	uint64_t maxImageBytes = 4ull << 30;
	// Time allowed between lock and commit, on each side. A destination
	// aborts on its own when it passes; a source gives up waiting for the
	// image receipt.
	std::chrono::milliseconds commitTimeout{30000};
	std::chrono::milliseconds handoffTimeout{5000};
	netlock::LockStrategy lockStrategy = netlock::LockStrategy::DropBothWays;
	std::string workloadStateDir; // where FERRY_MANIFEST files are written
};

struct MigrationContext {
	EnginePolicy policy;
	std::string agentUrl;            // how peers reach this agent (for recovery)
	std::string version;             // "ferry 0.1.0"
	repair::KernelFeatures features; // probed once at start-up
	MigrationJournal journal;
	PeerAgentFactory peers;
	HandoffServer *handoff = nullptr; // may be null: no migration-aware workloads
	container::RuntimeOptions runtimes; // how to call runc and podman
	container::ContainerRegistry *containers = nullptr; // what the OCI hook registered; may be null
};

} // namespace ferry::migration
