// FakeMigrationService: a second, in-memory implementation of
// MigrationService for the API tests. It records every call, answers with
// what the test configured, and lets the test push progress events to
// subscribers. Thread-safe: the server calls it from its worker threads.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "migration/migration_service.h"

namespace ferry::test {

class FakeMigrationService : public migration::MigrationService {
public:
	// --- what the fake answers ------------------------------------------
	migration::AgentInfo agentInfo{"0.1.0-test", "host-a", {{"repair_window", true}}, {"nft-set"}, false};
	migration::MetricsSnapshot metricsSnapshot;
	std::optional<Error> startError, prepareError, commitError, abortError;
	bool throwFromInfo = false;
	// receiveImage: fail the sink after this many bytes (0: never).
	uint64_t sinkFailsAfter = 0;
	// receiveImage: called with each chunk as the sink gets it.
	std::function<void(size_t chunkSize)> onChunk;

	// --- what the fake saw -----------------------------------------------
	struct Calls {
		std::vector<migration::MigrationRequest> starts;
		std::vector<migration::PrepareRequest> prepares;
		std::vector<std::string> commits;
		std::vector<migration::CommitRequest> commitRequests;
		std::vector<std::pair<std::string, std::string>> states; // id, workload state
		std::vector<std::pair<std::string, std::string>> aborts;
		std::vector<std::vector<uint8_t>> imageChunks;
		Status imageBodyStatus;
		int imageCalls = 0;
	};
	Calls calls() const
	{
		std::lock_guard lock(mutex_);
		return calls_;
	}

	void addMigration(migration::MigrationStatus status)
	{
		std::lock_guard lock(mutex_);
		migrations_[status.id] = std::move(status);
	}

	void addMigration(const std::string &id, migration::Role role, migration::Phase phase)
	{
		migration::MigrationStatus st;
		st.id = id;
		st.role = role;
		st.phase = phase;
		addMigration(std::move(st));
	}

	// Delivers `event` to every live subscriber of its migration.
	void emit(const migration::MigrationEvent &event)
	{
		std::lock_guard lock(mutex_);
		for (auto &[token, sub] : subscribers_) {
			if (sub.first == event.id)
				sub.second(event);
		}
	}

	size_t liveSubscriptions() const
	{
		std::lock_guard lock(mutex_);
		return subscribers_.size();
	}

	bool waitForSubscribers(size_t n, std::chrono::milliseconds timeout)
	{
		std::unique_lock lock(mutex_);
		return changed_.wait_for(lock, timeout, [&] { return subscribers_.size() == n; });
	}

	// --- MigrationService ------------------------------------------------
	migration::AgentInfo info() const override
	{
		if (throwFromInfo)
			throw std::runtime_error("engine exploded");
		return agentInfo;
	}

	Result<migration::MigrationStatus> startMigration(const migration::MigrationRequest &request) override
	{
		std::lock_guard lock(mutex_);
		calls_.starts.push_back(request);
		if (startError)
			return *startError;
		migration::MigrationStatus st;
		st.id = "m-" + std::to_string(calls_.starts.size());
		st.role = migration::Role::Source;
		st.phase = migration::Phase::Negotiating;
		st.peerAgent = request.targetAgent;
		migrations_[st.id] = st;
		return st;
	}

	Result<migration::PrepareReply> prepareIncoming(const migration::PrepareRequest &request) override
	{
		std::lock_guard lock(mutex_);
		calls_.prepares.push_back(request);
		if (prepareError)
			return *prepareError;
		migration::PrepareReply reply;
		reply.migrationId = request.migrationId;
		reply.destinationVersion = "0.1.0-test";
		reply.netnsReady = true;
		reply.addressesAvailable = true;
		reply.socketsPrepared = static_cast<uint32_t>(request.connections.size());
		reply.commitDeadline = std::chrono::milliseconds(30000);
		migration::MigrationStatus st;
		st.id = request.migrationId;
		st.role = migration::Role::Destination;
		st.phase = migration::Phase::Prepared;
		migrations_[st.id] = st;
		return reply;
	}

	Result<migration::ImageReceipt> receiveImage(std::string_view id, const migration::ImageBody &body) override
	{
		{
			std::lock_guard lock(mutex_);
			calls_.imageCalls++;
			if (!migrations_.count(std::string(id)))
				return makeError("no migration " + std::string(id), ENOENT);
		}
		uint64_t total = 0;
		Status status = body([&](std::span<const uint8_t> chunk) -> Status {
			if (sinkFailsAfter && total + chunk.size() > sinkFailsAfter)
				return makeError("image record 3: checksum mismatch", EINVAL);
			total += chunk.size();
			{
				std::lock_guard lock(mutex_);
				calls_.imageChunks.emplace_back(chunk.begin(), chunk.end());
			}
			if (onChunk)
				onChunk(chunk.size());
			return {};
		});
		std::lock_guard lock(mutex_);
		calls_.imageBodyStatus = status;
		if (!status.ok())
			return std::move(status).error();
		return migration::ImageReceipt{1, total, total};
	}

	Status receiveWorkloadState(std::string_view id, std::string state) override
	{
		std::lock_guard lock(mutex_);
		if (!migrations_.count(std::string(id)))
			return makeError("no migration " + std::string(id), ENOENT);
		calls_.states.emplace_back(id, std::move(state));
		return {};
	}

	Status commitIncoming(std::string_view id, const migration::CommitRequest &request) override
	{
		std::lock_guard lock(mutex_);
		calls_.commits.emplace_back(id);
		calls_.commitRequests.push_back(request);
		if (commitError)
			return *commitError;
		auto it = migrations_.find(std::string(id));
		if (it == migrations_.end())
			return makeError("no migration " + std::string(id), ENOENT);
		it->second.phase = migration::Phase::Committed;
		return {};
	}

	Status abort(std::string_view id, std::string_view reason) override
	{
		std::lock_guard lock(mutex_);
		calls_.aborts.emplace_back(id, reason);
		if (abortError)
			return *abortError;
		auto it = migrations_.find(std::string(id));
		if (it == migrations_.end())
			return makeError("no migration " + std::string(id), ENOENT);
		it->second.phase = migration::Phase::Aborted;
		it->second.error = std::string(reason);
		return {};
	}

	Result<migration::MigrationStatus> status(std::string_view id) const override
	{
		std::lock_guard lock(mutex_);
		auto it = migrations_.find(std::string(id));
		if (it == migrations_.end())
			return makeError("no migration " + std::string(id), ENOENT);
		return it->second;
	}

	std::vector<migration::MigrationStatus> list() const override
	{
		std::lock_guard lock(mutex_);
		std::vector<migration::MigrationStatus> out;
		for (const auto &[id, st] : migrations_)
			out.push_back(st);
		return out;
	}

	Result<std::unique_ptr<Subscription>> subscribe(std::string_view id, migration::EventHandler handler) override
	{
		std::lock_guard lock(mutex_);
		auto it = migrations_.find(std::string(id));
		if (it == migrations_.end())
			return makeError("no migration " + std::string(id), ENOENT);
		// As the contract says: once at once with the current state.
		migration::MigrationEvent now;
		now.id = it->first;
		now.phase = it->second.phase;
		now.message = "current state";
		handler(now);
		int token = nextToken_++;
		subscribers_[token] = {std::string(id), std::move(handler)};
		changed_.notify_all();
		return std::unique_ptr<Subscription>(new FakeSubscription(*this, token));
	}

	migration::MetricsSnapshot metrics() const override
	{
		std::lock_guard lock(mutex_);
		return metricsSnapshot;
	}

private:
	class FakeSubscription : public Subscription {
	public:
		FakeSubscription(FakeMigrationService &owner, int token) : owner_(owner), token_(token) {}
		~FakeSubscription() override
		{
			std::lock_guard lock(owner_.mutex_);
			owner_.subscribers_.erase(token_);
			owner_.changed_.notify_all();
		}

	private:
		FakeMigrationService &owner_;
		int token_;
	};

	mutable std::mutex mutex_;
	std::condition_variable changed_;
	Calls calls_;
	std::map<std::string, migration::MigrationStatus> migrations_;
	std::map<int, std::pair<std::string, migration::EventHandler>> subscribers_;
	int nextToken_ = 1;
};

} // namespace ferry::test
