#include "migration_record.h"

namespace ferry::migration {

namespace {

std::chrono::microseconds since(std::chrono::steady_clock::time_point start)
{
	return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
}

} // namespace

const char *toString(Phase phase)
{
	switch (phase) {
	case Phase::Negotiating:
		return "negotiating";
	case Phase::Prepared:
		return "prepared";
	case Phase::Frozen:
		return "frozen";
	case Phase::Locked:
		return "locked";
	case Phase::Streaming:
		return "streaming";
	case Phase::Restored:
		return "restored";
	case Phase::Switching:
		return "switching";
	case Phase::Committing:
		return "committing";
	case Phase::Committed:
		return "committed";
	case Phase::Aborting:
		return "aborting";
	case Phase::Aborted:
		return "aborted";
	}
	return "unknown";
}

const char *toString(Role role)
{
	return role == Role::Source ? "source" : "destination";
}

bool isTerminal(Phase phase)
{
	return phase == Phase::Committed || phase == Phase::Aborted;
}

MigrationRecord::MigrationRecord(std::string id, Role role, std::string peerAgent, FinishedHandler onFinished)
	: id_(std::move(id)), role_(role), onFinished_(std::move(onFinished)), started_(Clock::now())
{
	status_.id = id_;
	status_.role = role;
	status_.peerAgent = std::move(peerAgent);
	status_.startedAt = std::chrono::system_clock::now();
}

MigrationStatus MigrationRecord::status() const
{
	std::lock_guard lock(mutex_);
	return status_;
}

Phase MigrationRecord::phase() const
{
	std::lock_guard lock(mutex_);
	return status_.phase;
}

MigrationEvent MigrationRecord::eventLocked() const
{
	MigrationEvent event;
	event.id = id_;
	event.phase = status_.phase;
	event.connectionsDone = connectionsDone_;
	event.connectionsTotal = status_.connections;
	event.bytesDone = status_.bytesMoved;
	event.elapsed = since(started_);
	event.message = message_;
	return event;
}

void MigrationRecord::publishLocked(const MigrationEvent &event)
{
	for (auto &[key, handler] : subscribers_)
		handler(event);
}

void MigrationRecord::enter(Phase phase, std::string message)
{
	std::optional<MigrationStatus> finished;
	{
		std::lock_guard lock(mutex_);
		bool wasTerminal = isTerminal(status_.phase);
		status_.phase = phase;
		message_ = std::move(message);
		publishLocked(eventLocked());
		if (isTerminal(phase)) {
			subscribers_.clear();
			if (!wasTerminal)
				finished = status_;
		}
	}
	if (finished && onFinished_)
		onFinished_(*finished);
}

void MigrationRecord::progress(uint32_t connectionsDone, uint32_t connectionsTotal, uint64_t bytesDone)
{
	std::lock_guard lock(mutex_);
	connectionsDone_ = connectionsDone;
	status_.connections = connectionsTotal;
	status_.bytesMoved = bytesDone;
	publishLocked(eventLocked());
}

void MigrationRecord::setConnections(uint32_t count)
{
	std::lock_guard lock(mutex_);
	status_.connections = count;
}

void MigrationRecord::addBytes(uint64_t queueBytes, uint64_t imageBytes)
{
	std::lock_guard lock(mutex_);
	status_.bytesMoved += queueBytes;
	status_.imageBytes += imageBytes;
}

void MigrationRecord::setError(std::string error)
{
	std::lock_guard lock(mutex_);
	if (status_.error.empty())
		status_.error = std::move(error);
}

void MigrationRecord::markBlackoutStart()
{
	std::lock_guard lock(mutex_);
	blackoutStart_ = Clock::now();
}

void MigrationRecord::markLockStart()
{
	std::lock_guard lock(mutex_);
	lockStart_ = Clock::now();
}

void MigrationRecord::markLockEnd()
{
	std::lock_guard lock(mutex_);
	if (lockStart_)
		status_.lockWindow = since(*lockStart_);
}

void MigrationRecord::markBlackoutEnd()
{
	std::lock_guard lock(mutex_);
	// The first end counts: the source marks it when the destination
	// answers the commit, and again (ignored) once it has cleaned up.
	if (blackoutStart_ && !status_.blackout)
		status_.blackout = since(*blackoutStart_);
}

void MigrationRecord::markTotalEnd()
{
	std::lock_guard lock(mutex_);
	status_.total = since(started_);
}

void MigrationRecord::requestAbort(std::string reason)
{
	std::lock_guard lock(mutex_);
	if (!abortRequested_.exchange(true))
		abortReason_ = std::move(reason);
}

std::string MigrationRecord::abortReason() const
{
	std::lock_guard lock(mutex_);
	return abortReason_;
}

uint64_t MigrationRecord::subscribe(EventHandler handler)
{
	std::lock_guard lock(mutex_);
	handler(eventLocked());
	if (isTerminal(status_.phase))
		return 0;
	uint64_t key = nextSubscriber_++;
	subscribers_.emplace(key, std::move(handler));
	return key;
}

void MigrationRecord::unsubscribe(uint64_t key)
{
	std::lock_guard lock(mutex_);
	subscribers_.erase(key);
}

} // namespace ferry::migration
