// MigrationEngine: ferryd's implementation of MigrationService.
//
// Owns every migration of this agent, in either role: the source's worker
// threads, the destination's restored sockets, the journal and the
// metrics. A background thread aborts destinations whose commit is late
// and retries recoveries whose outcome could not be known yet.
//
// Construction recovers what the journal says was in flight when the
// agent last stopped (SourceMigration::recover, DestinationMigration::
// recover) and sweeps lock tables of migrations that are not live, before
// the engine serves anything.
//
// Destruction aborts live migrations (before commit) and joins the
// threads.
#pragma once

#include <memory>
#include <string>

#include "migration/migration_context.h"
#include "migration/migration_service.h"

namespace ferry::migration {

struct EngineOptions {
	EnginePolicy policy;
	std::string stateDir;
	std::string agentUrl;     // how peers reach this agent
	PeerAgentFactory peers;
	HandoffServer *handoff = nullptr; // borrowed, may be null; must outlive the engine
	container::RuntimeOptions runtimes;                  // how to call runc and podman
	container::ContainerRegistry *containers = nullptr;  // borrowed, may be null; must outlive the engine
	// Namespaces whose ferry lock tables are swept at start-up when no
	// live migration owns them (the agent's own namespace always is).
	std::vector<std::string> sweepNetns;
};

class MigrationEngine final : public MigrationService {
public:
	static Result<std::unique_ptr<MigrationEngine>> create(EngineOptions options);
	~MigrationEngine() override;

	AgentInfo info() const override;
	Result<MigrationStatus> startMigration(const MigrationRequest &request) override;
	Result<PrepareReply> prepareIncoming(const PrepareRequest &request) override;
	Result<ImageReceipt> receiveImage(std::string_view id, const ImageBody &body) override;
	Status receiveWorkloadState(std::string_view id, std::string state) override;
	Status commitIncoming(std::string_view id, const CommitRequest &request) override;
	Status abort(std::string_view id, std::string_view reason) override;
	Result<MigrationStatus> status(std::string_view id) const override;
	std::vector<MigrationStatus> list() const override;
	Result<std::unique_ptr<Subscription>> subscribe(std::string_view id, EventHandler handler) override;
	MetricsSnapshot metrics() const override;

	struct Impl;

private:
	explicit MigrationEngine(std::unique_ptr<Impl> impl);
	std::unique_ptr<Impl> impl_;
};

} // namespace ferry::migration
