#include <doctest/doctest.h>

#include "container/container.h"

using namespace ferry::container;

TEST_CASE("runtime names round-trip, and nothing else parses")
{
	for (Runtime r : {Runtime::Runc, Runtime::Podman}) {
		auto parsed = parseRuntime(toString(r));
		REQUIRE(parsed.has_value());
		CHECK(std::string(toString(*parsed)) == toString(r));
	}
	CHECK(std::string(toString(Runtime::Runc)) == "runc");
	CHECK(std::string(toString(Runtime::Podman)) == "podman");
	CHECK_FALSE(parseRuntime("").has_value());
	CHECK_FALSE(parseRuntime("Runc").has_value());
	CHECK_FALSE(parseRuntime("crun").has_value());
	CHECK_FALSE(parseRuntime("podman ").has_value());
}
