// MigrationRecord: the live, shared view of one migration.
//
// The thread that drives a migration (the source's worker, or the HTTP
// thread serving the destination's calls) updates it; status(), list(),
// subscribers and metrics read it. All members are guarded by one mutex;
// the accessors copy.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "migration/migration_service.h"

namespace ferry::migration {

class MigrationRecord {
public:
	// `onFinished` is called once, without any lock held, when the
	// migration reaches Committed or Aborted (the engine's metrics).
	using FinishedHandler = std::function<void(const MigrationStatus &status)>;
	MigrationRecord(std::string id, Role role, std::string peerAgent, FinishedHandler onFinished = {});

	const std::string &id() const { return id_; }
	Role role() const { return role_; }

	MigrationStatus status() const;
	Phase phase() const;

	// Moves to `phase` and tells the subscribers.
	void enter(Phase phase, std::string message = {});
	// Progress within the current phase (connections and bytes so far).
	void progress(uint32_t connectionsDone, uint32_t connectionsTotal, uint64_t bytesDone);
	void setConnections(uint32_t count);
	void addBytes(uint64_t queueBytes, uint64_t imageBytes);
	void setError(std::string error);

	// Marks the start of the blackout (freeze on S, lock on D) and of the
	// lock window; finish() records their ends.
	void markBlackoutStart();
	void markLockStart();
	void markLockEnd();
	void markBlackoutEnd();
	void markTotalEnd();

	// Abort requested by the user or the peer; checked between steps.
	void requestAbort(std::string reason);
	bool abortRequested() const { return abortRequested_.load(); }
	std::string abortReason() const;

	// Subscribers get the current state at once and every event from now
	// on; the returned key removes one (0: the migration had ended, nothing
	// to remove). Handlers run under the record's lock: they must be quick
	// and must not call back into the record.
	uint64_t subscribe(EventHandler handler);
	void unsubscribe(uint64_t key);

private:
	using Clock = std::chrono::steady_clock;
	MigrationEvent eventLocked() const;
	void publishLocked(const MigrationEvent &event);

	const std::string id_;
	const Role role_;
	FinishedHandler onFinished_;
	mutable std::mutex mutex_;
	MigrationStatus status_;
	Clock::time_point started_;
	std::optional<Clock::time_point> blackoutStart_;
	std::optional<Clock::time_point> lockStart_;
	uint32_t connectionsDone_ = 0;
	std::string message_;
	std::string abortReason_;
	std::atomic<bool> abortRequested_{false};
	std::map<uint64_t, EventHandler> subscribers_;
	uint64_t nextSubscriber_ = 1;
};

using MigrationRecordPtr = std::shared_ptr<MigrationRecord>;

} // namespace ferry::migration
