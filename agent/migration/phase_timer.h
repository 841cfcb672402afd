// PhaseTimer: debug-level timing of the steps of one migration, so that the
// blackout can be taken apart (tests/bench/migrate, docs/architecture.md
// "Performance").
//
// mark(step) logs, at debug level in the "migration" category, how long the
// step that just ended took and how far into the blackout it ended:
//   timing migration=m-... role=source step=lock step_us=180 since_start_us=950
// Costs one clock read per mark when debug is off. Not thread-safe: one
// timer belongs to the thread that drives one side of one migration.
#pragma once

#include <chrono>
#include <string>

#include "base/log.h"

namespace ferry::migration {

FERRY_DECLARE_LOG_CATEGORY(logMigration);

class PhaseTimer {
public:
	using Clock = std::chrono::steady_clock;

	PhaseTimer(const std::string &migrationId, const char *role) : id_(migrationId), role_(role) {}

	// Starts (or restarts) the clock: the blackout's start on each side.
	void start()
	{
		start_ = Clock::now();
		last_ = start_;
	}

	// Ends the step `step`, which began at the previous mark (or start()).
	void mark(const char *step)
	{
		Clock::time_point now = Clock::now();
		FERRY_LOG(logMigration, Debug) << "timing" << kv("migration", id_) << kv("role", role_)
					       << kv("step", step) << kv("step_us", micros(now - last_))
					       << kv("since_start_us", micros(now - start_));
		last_ = now;
	}

private:
	static long long micros(Clock::duration d)
	{
		return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
	}

	const std::string &id_;
	const char *role_;
	Clock::time_point start_ = Clock::now();
	Clock::time_point last_ = start_;
};

} // namespace ferry::migration
