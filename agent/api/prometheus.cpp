#include "prometheus.h"

#include <charconv>
#include <cmath>
#include <map>

namespace ferry::api {

namespace {

// Shortest text that reads back as the same double; Prometheus's own
// spellings for the non-finite values.
std::string number(double v)
{
	if (std::isnan(v))
		return "NaN";
	if (std::isinf(v))
		return v > 0 ? "+Inf" : "-Inf";
	char buf[64];
	auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
	return ec == std::errc() ? std::string(buf, end) : "NaN";
}

std::string labelValue(const std::string &v)
{
	std::string out;
	for (char c : v) {
		if (c == '\\')
			out += "\\\\";
		else if (c == '"')
			out += "\\\"";
		else if (c == '\n')
			out += "\\n";
		else
			out += c;
	}
	return out;
}

void header(std::string &out, const char *name, const char *type, const char *help)
{
	out.append("# HELP ").append(name).append(" ").append(help).append("\n");
	out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

} // namespace

std::string renderPrometheus(const migration::MetricsSnapshot &m)
{
	std::string out;
	header(out, "ferry_migrations_total", "counter", "Migrations that ended, by outcome, since the agent started.");
	std::map<std::string, uint64_t> outcomes = {{"committed", 0}, {"aborted", 0}};
	for (const auto &[outcome, count] : m.migrationsByOutcome)
		outcomes[outcome] = count;
	for (const auto &[outcome, count] : outcomes)
		out += "ferry_migrations_total{outcome=\"" + labelValue(outcome) + "\"} " + std::to_string(count) + "\n";

	header(out, "ferry_connections_moved_total", "counter", "TCP connections moved by committed migrations.");
	out += "ferry_connections_moved_total " + std::to_string(m.connectionsMoved) + "\n";

	header(out, "ferry_bytes_moved_total", "counter", "Queue bytes (receive and send) moved by committed migrations.");
	out += "ferry_bytes_moved_total " + std::to_string(m.bytesMoved) + "\n";

	header(out, "ferry_blackout_seconds", "histogram", "Blackout of committed migrations: freeze to commit (source), lock to commit (destination).");
	size_t buckets = std::min(m.blackoutBucketsMs.size(), m.blackoutBucketCounts.size());
	for (size_t i = 0; i < buckets; ++i) {
		// An engine that lists +Inf itself gets it once, below.
		if (std::isinf(m.blackoutBucketsMs[i]))
			continue;
		out += "ferry_blackout_seconds_bucket{le=\"" + number(m.blackoutBucketsMs[i] / 1000.0) + "\"} " +
		       std::to_string(m.blackoutBucketCounts[i]) + "\n";
	}
	out += "ferry_blackout_seconds_bucket{le=\"+Inf\"} " + std::to_string(m.blackoutCount) + "\n";
	out += "ferry_blackout_seconds_sum " + number(m.blackoutSumMs / 1000.0) + "\n";
	out += "ferry_blackout_seconds_count " + std::to_string(m.blackoutCount) + "\n";

	header(out, "ferry_active_migrations", "gauge", "Migrations in flight on this agent, either role.");
	out += "ferry_active_migrations " + std::to_string(m.activeMigrations) + "\n";
	return out;
}

} // namespace ferry::api
