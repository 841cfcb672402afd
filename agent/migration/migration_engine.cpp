#include "migration_engine.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "base/log.h"
#include "ferry_version.h"
#include "migration/destination_migration.h"
#include "migration/source_migration.h"
#include "netlock/lock_sweep.h"
#include "netlock/lock_table.h"

extern char **environ;

namespace ferry::migration {

FERRY_DECLARE_LOG_CATEGORY(logMigration);

namespace {

// Terminal migrations kept for status() and list().
constexpr size_t kKeptFinished = 256;
constexpr double kBlackoutBucketsMs[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};

std::string newMigrationId()
{
	std::random_device random;
	char suffix[9];
	std::snprintf(suffix, sizeof(suffix), "%08x", random());
	std::time_t now = std::time(nullptr);
	std::tm utc{};
	::gmtime_r(&now, &utc);
	char stamp[20];
	std::strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &utc);
	return std::string("m-") + stamp + "-" + suffix;
}

// `criu check` passes: CRIU can carry process memory on this host.
bool criuWorks()
{
	const char *argv[] = {"criu", "check", nullptr};
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid = 0;
	int rc = ::posix_spawnp(&pid, "criu", &actions, nullptr, const_cast<char **>(argv), environ);
	posix_spawn_file_actions_destroy(&actions);
	if (rc != 0)
		return false;
	int status = 0;
	if (::waitpid(pid, &status, 0) < 0)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

} // namespace

struct MigrationEngine::Impl {
	MigrationContext context;
	bool criu = false;

	struct Entry {
		MigrationRecordPtr record;
		std::unique_ptr<SourceMigration> source;
		std::thread worker;
		std::shared_ptr<DestinationMigration> destination;
		std::optional<JournalFile> pendingRecovery; // source outcome not known yet
		uint64_t order = 0;
	};

	mutable std::mutex mutex;
	std::map<std::string, Entry, std::less<>> entries;
	uint64_t nextOrder = 0;

	mutable std::mutex metricsMutex;
	MetricsSnapshot counters;

	std::mutex reaperMutex;
	std::condition_variable reaperWake;
	bool stopping = false;
	std::thread reaper;

	explicit Impl(MigrationContext c) : context(std::move(c)) {}

	uint32_t activeLocked() const
	{
		return static_cast<uint32_t>(std::count_if(entries.begin(), entries.end(), [](const auto &e) {
			return !isTerminal(e.second.record->phase());
		}));
	}

	void countOutcome(const MigrationStatus &st)
	{
		std::lock_guard lock(metricsMutex);
		counters.migrationsByOutcome[toString(st.phase)] += 1;
		if (st.phase != Phase::Committed)
			return;
		counters.connectionsMoved += st.connections;
		counters.bytesMoved += st.bytesMoved;
		if (st.blackout) {
			double ms = static_cast<double>(st.blackout->count()) / 1000.0;
			counters.blackoutCount += 1;
			counters.blackoutSumMs += ms;
			for (size_t i = 0; i < counters.blackoutBucketsMs.size(); ++i)
				if (ms <= counters.blackoutBucketsMs[i])
					counters.blackoutBucketCounts[i] += 1;
		}
	}

	MigrationRecordPtr newRecord(const std::string &id, Role role, const std::string &peer)
	{
		return std::make_shared<MigrationRecord>(id, role, peer,
							 [this](const MigrationStatus &st) { countOutcome(st); });
	}

	// Drops the oldest finished entries beyond kKeptFinished.
	void pruneLocked()
	{
		std::vector<std::pair<uint64_t, std::string>> finished;
		for (auto &[id, e] : entries)
			if (isTerminal(e.record->phase()) && !e.worker.joinable() && !e.pendingRecovery)
				finished.emplace_back(e.order, id);
		if (finished.size() <= kKeptFinished)
			return;
		std::sort(finished.begin(), finished.end());
		for (size_t i = 0; i < finished.size() - kKeptFinished; ++i)
			entries.erase(finished[i].second);
	}

	void reap()
	{
		std::unique_lock lock(reaperMutex);
		auto lastRecovery = std::chrono::steady_clock::now();
		while (!stopping) {
			reaperWake.wait_for(lock, std::chrono::milliseconds(100));
			if (stopping)
				break;
			auto now = std::chrono::steady_clock::now();
			std::vector<std::shared_ptr<DestinationMigration>> late;
			std::vector<std::string> finishedWorkers;
			{
				std::lock_guard guard(mutex);
				for (auto &[id, e] : entries) {
					if (e.destination && e.destination->pastDeadline(now))
						late.push_back(e.destination);
					if (e.worker.joinable() && isTerminal(e.record->phase()))
						finishedWorkers.push_back(id);
				}
			}
			for (auto &d : late)
				d->abort("commit timeout: no commit within the allowed time after lock");
			for (const std::string &id : finishedWorkers) {
				std::thread worker;
				{
					std::lock_guard guard(mutex);
					auto it = entries.find(id);
					if (it != entries.end())
						worker = std::move(it->second.worker);
				}
				if (worker.joinable())
					worker.join();
			}
			if (now - lastRecovery > std::chrono::seconds(2)) {
				lastRecovery = now;
				retryRecoveries();
			}
			std::lock_guard guard(mutex);
			pruneLocked();
		}
	}

	void retryRecoveries()
	{
		std::vector<std::string> pending;
		{
			std::lock_guard guard(mutex);
			for (auto &[id, e] : entries)
				if (e.pendingRecovery)
					pending.push_back(id);
		}
		for (const std::string &id : pending) {
			MigrationRecordPtr record;
			std::optional<JournalFile> journal;
			{
				std::lock_guard guard(mutex);
				auto it = entries.find(id);
				if (it == entries.end() || !it->second.pendingRecovery)
					continue;
				record = it->second.record;
				journal = std::move(it->second.pendingRecovery);
				it->second.pendingRecovery.reset();
			}
			if (SourceMigration::recover(context, *record, *journal))
				continue;
			std::lock_guard guard(mutex);
			entries[id].pendingRecovery = std::move(journal);
		}
	}

	Status recoverAll(const std::vector<std::string> &sweepNetns)
	{
		FERRY_TRY_ASSIGN(std::vector<JournalFile> live, context.journal.openLive());
		std::vector<std::string> liveIds;
		for (JournalFile &journal : live) {
			const JournalEntry *first = journal.entries().empty() ? nullptr : &journal.entries().front();
			std::string role = first ? first->field("role") : std::string();
			std::string peer = first ? first->field("peer") : std::string();
			auto record = newRecord(journal.migrationId(), role == "destination" ? Role::Destination : Role::Source,
						peer);
			FERRY_LOG(logMigration, Warn) << "recovering migration left by the previous run"
						      << kv("migration", journal.migrationId()) << kv("role", role)
						      << kv("last_step", std::string(journal.lastStep()));
			Entry entry;
			entry.record = record;
			entry.order = nextOrder++;
			if (role == "destination") {
				DestinationMigration::recover(context, *record, journal);
			} else if (!SourceMigration::recover(context, *record, journal)) {
				liveIds.push_back(journal.migrationId());
				entry.pendingRecovery = std::move(journal);
			}
			entries.emplace(record->id(), std::move(entry));
		}
		for (const std::string &netns : sweepNetns) {
			auto swept = netlock::sweep(netns, liveIds);
			if (!swept.ok()) {
				FERRY_LOG(logMigration, Warn) << "lock sweep failed" << kv("netns", netns)
							      << kv("error", swept.error().message());
				continue;
			}
			for (const std::string &id : *swept)
				FERRY_LOG(logMigration, Warn) << "removed a leftover lock" << kv("netns", netns)
							      << kv("migration", id);
		}
		return {};
	}

	Result<std::shared_ptr<DestinationMigration>> destination(std::string_view id) const
	{
		std::lock_guard guard(mutex);
		auto it = entries.find(id);
		if (it == entries.end())
			return makeError("no migration '" + std::string(id) + "'", ENOENT);
		if (!it->second.destination)
			return makeError("migration '" + std::string(id) + "' is not incoming to this agent", EINVAL);
		return it->second.destination;
	}
};

Result<std::unique_ptr<MigrationEngine>> MigrationEngine::create(EngineOptions options)
{
	if (!options.peers)
		return makeError("the engine needs a way to reach peer agents", EINVAL);
	FERRY_TRY_ASSIGN(MigrationJournal journal, MigrationJournal::open(options.stateDir));
	MigrationContext context{options.policy, options.agentUrl, std::string("ferry ") + FERRY_VERSION,
				 repair::probeKernelFeatures(), std::move(journal), std::move(options.peers),
				 options.handoff, options.runtimes, options.containers};
	if (context.policy.workloadStateDir.empty())
		context.policy.workloadStateDir = options.stateDir;
	auto impl = std::make_unique<Impl>(std::move(context));
	impl->criu = criuWorks();
	impl->counters.blackoutBucketsMs.assign(std::begin(kBlackoutBucketsMs), std::end(kBlackoutBucketsMs));
	impl->counters.blackoutBucketCounts.assign(impl->counters.blackoutBucketsMs.size(), 0);
	FERRY_LOG(logMigration, Info) << "kernel features" << kv("features", impl->context.features.describe());

	std::vector<std::string> sweepNetns = options.sweepNetns;
	if (std::find(sweepNetns.begin(), sweepNetns.end(), "self") == sweepNetns.end())
		sweepNetns.push_back("self");
	FERRY_TRY(impl->recoverAll(sweepNetns));
	Impl *raw = impl.get();
	impl->reaper = std::thread([raw] { raw->reap(); });
	return std::unique_ptr<MigrationEngine>(new MigrationEngine(std::move(impl)));
}

MigrationEngine::MigrationEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MigrationEngine::~MigrationEngine()
{
	{
		std::lock_guard guard(impl_->mutex);
		for (auto &[id, e] : impl_->entries)
			if (!isTerminal(e.record->phase()))
				e.record->requestAbort("the agent is shutting down");
	}
	{
		std::lock_guard lock(impl_->reaperMutex);
		impl_->stopping = true;
	}
	impl_->reaperWake.notify_all();
	if (impl_->reaper.joinable())
		impl_->reaper.join();
	for (auto &[id, e] : impl_->entries) {
		if (e.worker.joinable())
			e.worker.join();
		if (e.destination)
			e.destination->abort("the agent is shutting down");
	}
}

AgentInfo MigrationEngine::info() const
{
	AgentInfo info;
	info.version = impl_->context.version;
	char host[256] = {};
	::gethostname(host, sizeof(host) - 1);
	info.hostname = host;
	info.kernelFeatures = impl_->context.features.toMap();
	info.lockStrategies = {std::string(netlock::strategyName(netlock::LockStrategy::DropBothWays)),
			       std::string(netlock::strategyName(netlock::LockStrategy::DropInbound))};
	info.criuAvailable = impl_->criu;
	return info;
}

Result<MigrationStatus> MigrationEngine::startMigration(const MigrationRequest &request)
{
	if (request.targetAgent.empty())
		return makeError("targetAgent: the destination agent's URL is required", EINVAL);
	if (request.targetNetns.empty())
		return makeError("targetNetns: the destination namespace is required", EINVAL);
	const ConnectionSelection &selection = request.selection;
	int chosen = int(selection.pid.has_value()) + int(selection.container.has_value()) + int(!selection.netns.empty());
	if (chosen != 1 || (!selection.netns.empty() && selection.localPorts.empty()))
		return makeError("selection: give a pid, a container, or a netns with local ports", EINVAL);
	if (selection.container && !request.handoff.execArgv.empty())
		return makeError("handoff: a container migration starts the container on the destination; execArgv "
				 "does not apply",
				 EINVAL);

	std::lock_guard guard(impl_->mutex);
	if (impl_->activeLocked() >= impl_->context.policy.maxConcurrent)
		return makeError("too many migrations in progress", EAGAIN);
	std::string id = newMigrationId();
	FERRY_TRY_ASSIGN(JournalFile journal, impl_->context.journal.create(id));
	auto record = impl_->newRecord(id, Role::Source, request.targetAgent);
	Impl::Entry &entry = impl_->entries[id];
	entry.record = record;
	entry.order = impl_->nextOrder++;
	entry.source = std::make_unique<SourceMigration>(impl_->context, record, request, std::move(journal));
	SourceMigration *source = entry.source.get();
	entry.worker = std::thread([source] { source->run(); });
	FERRY_LOG(logMigration, Info) << "migration started" << kv("migration", id) << kv("role", "source")
				      << kv("destination", request.targetAgent);
	return record->status();
}

Result<PrepareReply> MigrationEngine::prepareIncoming(const PrepareRequest &request)
{
	FERRY_TRY(netlock::validateMigrationId(request.migrationId));
	MigrationRecordPtr record;
	{
		std::lock_guard guard(impl_->mutex);
		if (impl_->entries.count(request.migrationId))
			return makeError("migration '" + request.migrationId + "' exists already", EEXIST);
		if (impl_->activeLocked() >= impl_->context.policy.maxConcurrent)
			return makeError("too many migrations in progress", EAGAIN);
		record = impl_->newRecord(request.migrationId, Role::Destination, request.sourceAgent);
		Impl::Entry &entry = impl_->entries[request.migrationId];
		entry.record = record;
		entry.order = impl_->nextOrder++;
	}
	PrepareReply reply;
	reply.kernelFeatures = impl_->context.features.toMap();
	auto prepared = DestinationMigration::prepare(impl_->context, record, request, reply);
	std::lock_guard guard(impl_->mutex);
	if (!prepared.ok()) {
		impl_->entries.erase(request.migrationId);
		return std::move(prepared).error().at("migration", request.migrationId);
	}
	impl_->entries[request.migrationId].destination = std::move(*prepared);
	return reply;
}

Result<ImageReceipt> MigrationEngine::receiveImage(std::string_view id, const ImageBody &body)
{
	FERRY_TRY_ASSIGN(auto destination, impl_->destination(id));
	return destination->receiveImage(body);
}

Status MigrationEngine::receiveWorkloadState(std::string_view id, std::string state)
{
	FERRY_TRY_ASSIGN(auto destination, impl_->destination(id));
	return destination->receiveWorkloadState(std::move(state));
}

Status MigrationEngine::commitIncoming(std::string_view id, const CommitRequest &request)
{
	FERRY_TRY_ASSIGN(auto destination, impl_->destination(id));
	return destination->commit(request);
}

Status MigrationEngine::abort(std::string_view id, std::string_view reason)
{
	MigrationRecordPtr record;
	std::shared_ptr<DestinationMigration> destination;
	{
		std::lock_guard guard(impl_->mutex);
		auto it = impl_->entries.find(id);
		if (it == impl_->entries.end())
			return makeError("no migration '" + std::string(id) + "'", ENOENT);
		record = it->second.record;
		destination = it->second.destination;
	}
	Phase phase = record->phase();
	if (phase == Phase::Aborted)
		return {};
	if (phase == Phase::Committed || phase == Phase::Committing)
		return makeError("migration '" + std::string(id) + "' has committed; it cannot be aborted", EALREADY);
	std::string why = reason.empty() ? std::string("aborted by request") : std::string(reason);
	if (destination)
		destination->abort(why);
	else
		record->requestAbort(why);
	return {};
}

Result<MigrationStatus> MigrationEngine::status(std::string_view id) const
{
	std::lock_guard guard(impl_->mutex);
	auto it = impl_->entries.find(id);
	if (it == impl_->entries.end())
		return makeError("no migration '" + std::string(id) + "'", ENOENT);
	return it->second.record->status();
}

std::vector<MigrationStatus> MigrationEngine::list() const
{
	std::lock_guard guard(impl_->mutex);
	std::vector<std::pair<uint64_t, MigrationStatus>> ordered;
	for (const auto &[id, e] : impl_->entries)
		ordered.emplace_back(e.order, e.record->status());
	std::sort(ordered.begin(), ordered.end(), [](const auto &a, const auto &b) { return a.first < b.first; });
	std::vector<MigrationStatus> out;
	for (auto &[order, st] : ordered)
		out.push_back(std::move(st));
	return out;
}

namespace {

class RecordSubscription final : public MigrationService::Subscription {
public:
	RecordSubscription(MigrationRecordPtr record, uint64_t key) : record_(std::move(record)), key_(key) {}
	~RecordSubscription() override
	{
		if (key_)
			record_->unsubscribe(key_);
	}

private:
	MigrationRecordPtr record_;
	uint64_t key_;
};

} // namespace

Result<std::unique_ptr<MigrationService::Subscription>> MigrationEngine::subscribe(std::string_view id,
										    EventHandler handler)
{
	MigrationRecordPtr record;
	{
		std::lock_guard guard(impl_->mutex);
		auto it = impl_->entries.find(id);
		if (it == impl_->entries.end())
			return makeError("no migration '" + std::string(id) + "'", ENOENT);
		record = it->second.record;
	}
	uint64_t key = record->subscribe(std::move(handler));
	return std::unique_ptr<Subscription>(std::make_unique<RecordSubscription>(record, key));
}

MetricsSnapshot MigrationEngine::metrics() const
{
	MetricsSnapshot snapshot;
	{
		std::lock_guard lock(impl_->metricsMutex);
		snapshot = impl_->counters;
	}
	std::lock_guard guard(impl_->mutex);
	snapshot.activeMigrations = impl_->activeLocked();
	return snapshot;
}

} // namespace ferry::migration
