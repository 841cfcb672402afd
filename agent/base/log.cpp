#include "log.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

namespace ferry::log {

namespace {

struct Registry {
	std::mutex mutex;
	std::vector<Category *> categories;
	Level defaultLevel = Level::Info;
	std::map<std::string, Level, std::less<>> perCategory;
	bool configured = false;
	Sink sink;
};

Registry &registry()
{
	static Registry r;
	return r;
}

std::optional<Level> parseLevel(std::string_view s)
{
	if (s == "debug")
		return Level::Debug;
	if (s == "info")
		return Level::Info;
	if (s == "warn" || s == "warning")
		return Level::Warn;
	if (s == "error")
		return Level::Error;
	if (s == "off" || s == "none")
		return Level::Off;
	return std::nullopt;
}

Level levelFor(const Registry &r, std::string_view name)
{
	auto it = r.perCategory.find(name);
	return it != r.perCategory.end() ? it->second : r.defaultLevel;
}

const char *levelName(Level level)
{
	switch (level) {
	case Level::Debug:
		return "DEBUG";
	case Level::Info:
		return "INFO";
	case Level::Warn:
		return "WARN";
	case Level::Error:
		return "ERROR";
	case Level::Off:
		break;
	}
	return "OFF";
}

bool applySpec(Registry &r, std::string_view spec)
{
	Level defaultLevel = r.defaultLevel;
	std::map<std::string, Level, std::less<>> perCategory;
	while (!spec.empty()) {
		size_t comma = spec.find(',');
		std::string_view item = spec.substr(0, comma);
		spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
		if (item.empty())
			continue;
		size_t eq = item.find('=');
		if (eq == std::string_view::npos) {
			auto level = parseLevel(item);
			if (!level)
				return false;
			defaultLevel = *level;
		} else {
			auto level = parseLevel(item.substr(eq + 1));
			if (!level || eq == 0)
				return false;
			perCategory[std::string(item.substr(0, eq))] = *level;
		}
	}
	r.defaultLevel = defaultLevel;
	r.perCategory = std::move(perCategory);
	r.configured = true;
	for (Category *c : r.categories)
		c->setThreshold(levelFor(r, c->name()));
	return true;
}

void configureFromEnvironment(Registry &r)
{
	if (r.configured)
		return;
	r.configured = true;
	if (const char *spec = std::getenv("FERRY_LOG"))
		applySpec(r, spec);
}

} // namespace

Category::Category(const char *name) : name_(name), threshold_(static_cast<int>(Level::Info))
{
	Registry &r = registry();
	std::lock_guard lock(r.mutex);
	configureFromEnvironment(r);
	threshold_.store(static_cast<int>(levelFor(r, name_)));
	r.categories.push_back(this);
}

bool configure(std::string_view spec)
{
	Registry &r = registry();
	std::lock_guard lock(r.mutex);
	return applySpec(r, spec);
}

void setSink(Sink sink)
{
	Registry &r = registry();
	std::lock_guard lock(r.mutex);
	r.sink = std::move(sink);
}

Line &Line::operator<<(const Field &field)
{
	stream_ << ' ' << field.key << '=';
	bool quote = field.value.empty() || field.value.find_first_of(" \"=") != std::string::npos;
	if (!quote) {
		stream_ << field.value;
		return *this;
	}
	stream_ << '"';
	for (char c : field.value) {
		if (c == '"' || c == '\\')
			stream_ << '\\';
		stream_ << c;
	}
	stream_ << '"';
	return *this;
}

Line::~Line()
{
	std::string text = stream_.str();
	Registry &r = registry();
	if (r.sink) {
		r.sink(level_, category_.name(), text);
		return;
	}
	std::fprintf(stderr, "%s %s: %s\n", levelName(level_), category_.name(), text.c_str());
}

} // namespace ferry::log
