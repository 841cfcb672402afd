#include "output.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <string_view>

#include "api/schemas.h"

namespace ferry::cli {

namespace {

// Whether `context` ("key=value key=value ...") has a field named `key`.
bool hasField(const std::string &context, std::string_view key)
{
	std::string needle = std::string(key) + "=";
	for (size_t pos = context.find(needle); pos != std::string::npos; pos = context.find(needle, pos + 1)) {
		if (pos == 0 || context[pos - 1] == ' ')
			return true;
	}
	return false;
}

// Whether `context` has exactly the field "key=value".
bool hasFieldValue(std::string_view context, std::string_view key, std::string_view value)
{
	std::string field = std::string(key) + "=" + std::string(value);
	for (size_t pos = context.find(field); pos != std::string_view::npos; pos = context.find(field, pos + 1)) {
		size_t end = pos + field.size();
		if ((pos == 0 || context[pos - 1] == ' ') && (end == context.size() || context[end] == ' '))
			return true;
	}
	return false;
}

// The context of an Error::message() text ("what: strerror [context]"),
// or "" when it has none.
std::string_view messageContext(std::string_view message)
{
	if (message.empty() || message.back() != ']')
		return {};
	size_t open = message.rfind(" [");
	if (open == std::string_view::npos)
		return {};
	return message.substr(open + 2, message.size() - open - 3);
}

bool isTransportCode(int code)
{
	switch (code) {
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case EHOSTUNREACH:
	case EHOSTDOWN:
	case ENETUNREACH:
	case ETIMEDOUT:
	case EPROTO:
		return true;
	default:
		return false;
	}
}

std::string printf1(const char *format, double value)
{
	char buffer[64];
	std::snprintf(buffer, sizeof buffer, format, value);
	return buffer;
}

std::string optionalDuration(const std::optional<std::chrono::microseconds> &duration)
{
	return duration ? formatDuration(*duration) : std::string("-");
}

std::string bytesWithExact(uint64_t bytes)
{
	std::string text = formatBytes(bytes);
	if (bytes >= 1024)
		text += " (" + std::to_string(bytes) + " B)";
	return text;
}

std::string padRight(std::string text, size_t width)
{
	if (text.size() < width)
		text.append(width - text.size(), ' ');
	return text;
}

// Rows of "label  value" with the labels in one column.
std::string fieldLines(const std::vector<std::pair<std::string, std::string>> &rows, const std::string &indent)
{
	size_t width = 0;
	for (const auto &[label, value] : rows)
		width = std::max(width, label.size());
	std::string out;
	for (const auto &[label, value] : rows)
		out += indent + padRight(label, width) + "  " + value + "\n";
	return out;
}

std::vector<std::pair<std::string, std::string>> outcomeRows(const migration::MigrationStatus &status)
{
	return {
		{"connections", std::to_string(status.connections)},
		{"bytes moved", bytesWithExact(status.bytesMoved)},
		{"image", bytesWithExact(status.imageBytes)},
		{"blackout", optionalDuration(status.blackout)},
		{"lock window", optionalDuration(status.lockWindow)},
		{"total", optionalDuration(status.total)},
	};
}

} // namespace

ExitCode exitCodeFor(const Error &error)
{
	if (error.code == EACCES || error.code == EPERM)
		return ExitCode::Refused;
	if (error.code == ENOENT)
		return ExitCode::NotFound;
	if (hasField(error.context, "status"))
		return ExitCode::Failed; // the agent answered, and said no
	if (isTransportCode(error.code) || hasField(error.context, "url"))
		return ExitCode::Unreachable;
	return ExitCode::Failed;
}

int refusalStatus(const migration::MigrationStatus &status)
{
	if (status.phase != migration::Phase::Aborted)
		return 0;
	std::string_view context = messageContext(status.error);
	for (int refused : {401, 403}) {
		if (hasFieldValue(context, "status", std::to_string(refused)))
			return refused;
	}
	return 0;
}

ExitCode exitCodeFor(const migration::MigrationStatus &status)
{
	if (status.phase != migration::Phase::Aborted)
		return ExitCode::Ok;
	return refusalStatus(status) ? ExitCode::Refused : ExitCode::Failed;
}

std::string formatBytes(uint64_t bytes)
{
	constexpr double kKiB = 1024.0;
	if (bytes < 1024)
		return std::to_string(bytes) + " B";
	double value = static_cast<double>(bytes);
	if (value < kKiB * kKiB)
		return printf1("%.1f KiB", value / kKiB);
	if (value < kKiB * kKiB * kKiB)
		return printf1("%.1f MiB", value / (kKiB * kKiB));
	return printf1("%.2f GiB", value / (kKiB * kKiB * kKiB));
}

std::string formatDuration(std::chrono::microseconds duration)
{
	int64_t us = duration.count();
	if (us < 0)
		us = 0;
	if (us < 1000)
		return std::to_string(us) + " us";
	double ms = static_cast<double>(us) / 1000.0;
	if (ms < 10)
		return printf1("%.2f ms", ms);
	if (ms < 100)
		return printf1("%.1f ms", ms);
	if (ms < 1000)
		return printf1("%.0f ms", ms);
	if (ms < 60000)
		return printf1("%.2f s", ms / 1000.0);
	int64_t seconds = us / 1000000;
	char buffer[32];
	std::snprintf(buffer, sizeof buffer, "%" PRId64 "m%02" PRId64 "s", seconds / 60, seconds % 60);
	return buffer;
}

std::string formatTime(std::chrono::system_clock::time_point time)
{
	auto us = std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
	std::time_t seconds = static_cast<std::time_t>(us / 1000000);
	long fraction = static_cast<long>(us % 1000000);
	if (fraction < 0) {
		fraction += 1000000;
		seconds -= 1;
	}
	std::tm tm{};
	gmtime_r(&seconds, &tm);
	char buffer[48];
	std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, fraction);
	return buffer;
}

std::string progressText(const migration::MigrationEvent &event)
{
	std::string connections = event.connectionsTotal
		? std::to_string(event.connectionsDone) + "/" + std::to_string(event.connectionsTotal) + " connections"
		: std::string("- connections");
	std::string line = padRight(api::phaseName(event.phase), 11) + "  " + padRight(connections, 18) + "  " +
			   padRight(formatBytes(event.bytesDone), 10) + "  " + formatDuration(event.elapsed);
	if (!event.message.empty())
		line += "  " + event.message;
	return line;
}

std::string resultText(const migration::MigrationStatus &status)
{
	std::string head = "migration " + status.id + " ";
	if (status.phase == migration::Phase::Committed)
		head += "committed";
	else if (status.phase == migration::Phase::Aborted)
		head += "aborted" + (status.error.empty() ? std::string() : ": " + status.error);
	else
		head += std::string("is ") + api::phaseName(status.phase);
	auto rows = outcomeRows(status);
	if (!status.peerAgent.empty())
		rows.emplace_back(status.role == migration::Role::Source ? "destination" : "source", status.peerAgent);
	return head + "\n" + fieldLines(rows, "  ");
}

std::string statusText(const migration::MigrationStatus &status)
{
	std::vector<std::pair<std::string, std::string>> rows = {
		{"id", status.id},
		{"role", api::roleName(status.role)},
		{"phase", api::phaseName(status.phase)},
		{"peer", status.peerAgent.empty() ? std::string("-") : status.peerAgent},
		{"started", formatTime(status.startedAt)},
	};
	for (auto &row : outcomeRows(status))
		rows.push_back(std::move(row));
	if (!status.error.empty())
		rows.emplace_back("error", status.error);
	return fieldLines(rows, "");
}

std::string listText(const std::vector<migration::MigrationStatus> &migrations)
{
	if (migrations.empty())
		return "no migrations\n";
	std::vector<std::vector<std::string>> table;
	table.push_back({"ID", "ROLE", "PHASE", "CONNS", "BYTES", "BLACKOUT", "STARTED", "PEER"});
	for (const migration::MigrationStatus &m : migrations) {
		table.push_back({m.id, api::roleName(m.role), api::phaseName(m.phase), std::to_string(m.connections),
				 formatBytes(m.bytesMoved), optionalDuration(m.blackout), formatTime(m.startedAt),
				 m.peerAgent.empty() ? std::string("-") : m.peerAgent});
	}
	std::vector<size_t> widths(table.front().size(), 0);
	for (const auto &row : table) {
		for (size_t c = 0; c < row.size(); ++c)
			widths[c] = std::max(widths[c], row[c].size());
	}
	std::string out;
	for (const auto &row : table) {
		std::string line;
		for (size_t c = 0; c < row.size(); ++c)
			line += c + 1 == row.size() ? row[c] : padRight(row[c], widths[c]) + "  ";
		out += line + "\n";
	}
	return out;
}

std::string listJson(const std::vector<migration::MigrationStatus> &migrations)
{
	return api::toJson(api::MigrationList{migrations});
}

bool doctorPassed(const std::vector<DoctorCheck> &checks)
{
	return std::all_of(checks.begin(), checks.end(), [](const DoctorCheck &c) { return c.ok || !c.required; });
}

std::string doctorText(const std::vector<DoctorCheck> &checks)
{
	std::string out;
	size_t failedRequired = 0;
	for (const DoctorCheck &check : checks) {
		out += check.ok ? "ok    " : "FAIL  ";
		out += check.name;
		if (!check.required)
			out += " (optional)";
		out += ": " + check.detail + "\n";
		if (!check.ok && check.required)
			++failedRequired;
	}
	if (failedRequired == 0)
		out += "this host can take part in a migration\n";
	else
		out += std::to_string(failedRequired) + " required check" + (failedRequired == 1 ? "" : "s") +
		       " failed: this host cannot take part in a migration\n";
	return out;
}

std::string doctorJson(const std::vector<DoctorCheck> &checks)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	w.StartObject();
	w.Key("ok");
	w.Bool(doctorPassed(checks));
	w.Key("checks");
	w.StartArray();
	for (const DoctorCheck &check : checks) {
		w.StartObject();
		w.Key("name");
		w.String(check.name.c_str(), static_cast<rapidjson::SizeType>(check.name.size()));
		w.Key("required");
		w.Bool(check.required);
		w.Key("ok");
		w.Bool(check.ok);
		w.Key("detail");
		w.String(check.detail.c_str(), static_cast<rapidjson::SizeType>(check.detail.size()));
		w.EndObject();
	}
	w.EndArray();
	w.EndObject();
	return std::string(buffer.GetString(), buffer.GetSize());
}

} // namespace ferry::cli
