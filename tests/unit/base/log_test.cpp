#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "base/log.h"

namespace {
FERRY_LOG_CATEGORY(logTest, "test")
FERRY_LOG_CATEGORY(logOther, "other")

struct Captured {
	ferry::log::Level level;
	std::string category;
	std::string line;
};

std::vector<Captured> captured;

int evaluations = 0;
int counted()
{
	return ++evaluations;
}
} // namespace

TEST_CASE("lines carry category, message and key=value fields")
{
	captured.clear();
	ferry::log::setSink([](ferry::log::Level level, std::string_view cat, std::string_view line) {
		captured.push_back({level, std::string(cat), std::string(line)});
	});
	REQUIRE(ferry::log::configure("info"));
	FERRY_LOG(logTest, Info) << "restored" << ferry::kv("flow", "198.51.100.1:80->198.51.100.2:9")
				 << ferry::kv("phase", "a b");
	REQUIRE(captured.size() == 1);
	CHECK(captured[0].category == "test");
	CHECK(captured[0].line == "restored flow=198.51.100.1:80->198.51.100.2:9 phase=\"a b\"");
	ferry::log::setSink({});
}

TEST_CASE("a disabled level does not evaluate its arguments")
{
	captured.clear();
	ferry::log::setSink([](ferry::log::Level level, std::string_view cat, std::string_view line) {
		captured.push_back({level, std::string(cat), std::string(line)});
	});
	REQUIRE(ferry::log::configure("test=warn,debug"));
	evaluations = 0;
	FERRY_LOG(logTest, Info) << counted();
	CHECK(evaluations == 0);
	CHECK(captured.empty());
	FERRY_LOG(logOther, Debug) << counted();
	CHECK(evaluations == 1);
	CHECK(captured.size() == 1);
	ferry::log::setSink({});
}

TEST_CASE("a bad spec is refused and changes nothing")
{
	REQUIRE(ferry::log::configure("info"));
	CHECK_FALSE(ferry::log::configure("test=loud"));
	CHECK_FALSE(ferry::log::configure("=debug"));
	CHECK(logTest().enabled(ferry::log::Level::Info));
	CHECK_FALSE(logTest().enabled(ferry::log::Level::Debug));
}
