// Logging with one category per component (repair, netlock, netlink,
// migration, api, transport, ...).
//
//   FERRY_LOG_CATEGORY(logRepair, "repair")        // once, in one .cpp
//   FERRY_LOG(logRepair, Info) << "restored" << kv("flow", flow);
//
// A line is "LEVEL category: message key=value ...". Fields are structured
// key=value pairs so that a migration can be followed by its id, 4-tuple
// and phase. The stream expression is not evaluated when the level is off.
// Never log queue contents or secrets.
//
// Levels come from configure() (ferryd's --log option) or, at first use,
// from the FERRY_LOG environment variable: "info", or "repair=debug,info".
// Lines go to stderr unless a sink is installed with setSink().
#pragma once

#include <atomic>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>

namespace ferry::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

class Category {
public:
	explicit Category(const char *name);
	Category(const Category &) = delete;
	Category &operator=(const Category &) = delete;

	const char *name() const { return name_; }
	bool enabled(Level level) const
	{
		return static_cast<int>(level) >= threshold_.load(std::memory_order_relaxed);
	}
	void setThreshold(Level level) { threshold_.store(static_cast<int>(level)); }

private:
	const char *name_;
	std::atomic<int> threshold_;
};

// Applies a level spec such as "repair=debug,netlock=warn,info" to every
// category, current and future. Returns false (and changes nothing) when
// the spec does not parse.
bool configure(std::string_view spec);

using Sink = std::function<void(Level, std::string_view category, std::string_view line)>;
// Replaces the output; an empty sink restores stderr. Not thread-safe
// against concurrent logging: call it at start-up.
void setSink(Sink sink);

// One key=value field. Values with spaces or quotes are quoted.
struct Field {
	std::string_view key;
	std::string value;
};
template<typename T>
Field kv(std::string_view key, const T &value)
{
	std::ostringstream s;
	s << value;
	return Field{key, s.str()};
}
inline Field kv(std::string_view key, std::string value) { return Field{key, std::move(value)}; }
inline Field kv(std::string_view key, const char *value) { return Field{key, value}; }

// One line under construction; emitted by the destructor.
class Line {
public:
	Line(const Category &category, Level level) : category_(category), level_(level) {}
	~Line();
	Line(const Line &) = delete;
	Line &operator=(const Line &) = delete;

	Line &operator<<(const Field &field);
	template<typename T>
	Line &operator<<(const T &value)
	{
		stream_ << value;
		return *this;
	}

private:
	const Category &category_;
	Level level_;
	std::ostringstream stream_;
};

} // namespace ferry::log

namespace ferry {
using log::kv;
}

#define FERRY_LOG_CATEGORY(fn, name)                                       \
	::ferry::log::Category &fn()                                           \
	{                                                                      \
		static ::ferry::log::Category category(name);                      \
		return category;                                                   \
	}

#define FERRY_DECLARE_LOG_CATEGORY(fn) ::ferry::log::Category &fn()

// A for statement rather than if/else, so that FERRY_LOG under an
// unbraced if never pairs with the caller's else.
#define FERRY_LOG(category, level)                                         \
	for (bool ferry_log_on_ = (category)().enabled(::ferry::log::Level::level); \
	     ferry_log_on_; ferry_log_on_ = false)                             \
		::ferry::log::Line((category)(), ::ferry::log::Level::level)
