#include "failpoint.h"

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace ferry {

namespace {

struct Configured {
	FailAction action = FailAction::Error;
	int sleepMs = 0;
};

struct Table {
	std::map<std::string, Configured, std::less<>> points;
};

std::atomic<const Table *> table{nullptr};
std::once_flag loaded;

// Parses "name=action,...". A malformed item is ignored: failpoints are a
// test facility and must never take the agent down.
const Table *load()
{
	auto *t = new Table;
	const char *spec = std::getenv("FERRY_FAILPOINTS");
	std::string_view rest = spec ? spec : "";
	while (!rest.empty()) {
		size_t comma = rest.find(',');
		std::string_view item = rest.substr(0, comma);
		rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
		size_t eq = item.find('=');
		if (eq == std::string_view::npos)
			continue;
		std::string_view name = item.substr(0, eq);
		std::string_view action = item.substr(eq + 1);
		Configured c;
		if (action == "error") {
			c.action = FailAction::Error;
		} else if (action == "corrupt") {
			c.action = FailAction::Corrupt;
		} else if (action.substr(0, 6) == "sleep(" && action.back() == ')') {
			std::string_view ms = action.substr(6, action.size() - 7);
			if (std::from_chars(ms.data(), ms.data() + ms.size(), c.sleepMs).ec != std::errc())
				continue;
			c.action = FailAction::Sleep;
		} else {
			continue;
		}
		t->points.emplace(std::string(name), c);
	}
	return t;
}

const Table &current()
{
	std::call_once(loaded, [] { table.store(load()); });
	return *table.load(std::memory_order_relaxed);
}

} // namespace

std::optional<FailAction> failpoint(std::string_view name)
{
	const Table &t = current();
	if (t.points.empty())
		return std::nullopt;
	auto it = t.points.find(name);
	if (it == t.points.end())
		return std::nullopt;
	if (it->second.action == FailAction::Sleep)
		std::this_thread::sleep_for(std::chrono::milliseconds(it->second.sleepMs));
	return it->second.action;
}

Status hitFailpoint(std::string_view name)
{
	auto action = failpoint(name);
	if (action == FailAction::Error)
		return makeError("failpoint " + std::string(name) + " triggered", EIO).at("failpoint", name);
	return {};
}

bool failpointsActive()
{
	return !current().points.empty();
}

} // namespace ferry
