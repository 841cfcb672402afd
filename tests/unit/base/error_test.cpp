#include <doctest/doctest.h>

#include <cerrno>
#include <memory>

#include "base/error.h"

using namespace ferry;

namespace {

Result<int> half(int v)
{
	if (v % 2)
		return makeError("odd value " + std::to_string(v), EINVAL);
	return v / 2;
}

Result<int> quarter(int v)
{
	FERRY_TRY_ASSIGN(int h, half(v));
	FERRY_TRY_ASSIGN(int q, half(h));
	return q;
}

Status checkEven(int v)
{
	FERRY_TRY(half(v));
	return {};
}

} // namespace

TEST_CASE("Result carries a value or an error")
{
	Result<int> good = half(8);
	REQUIRE(good.ok());
	CHECK(*good == 4);

	Result<int> bad = half(3);
	REQUIRE_FALSE(bad.ok());
	CHECK(bad.error().code == EINVAL);
	CHECK(bad.error().what == "odd value 3");
}

TEST_CASE("FERRY_TRY and FERRY_TRY_ASSIGN propagate the first failure")
{
	CHECK(*quarter(8) == 2);
	Result<int> r = quarter(6);
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().what == "odd value 3");
	CHECK(checkEven(4).ok());
	CHECK_FALSE(checkEven(5).ok());
}

TEST_CASE("Result holds move-only values")
{
	Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
	REQUIRE(r.ok());
	std::unique_ptr<int> p = std::move(r).value();
	CHECK(*p == 7);
}

TEST_CASE("context is prepended, most specific first")
{
	Error e = makeError("restore failed", EPERM);
	e.at("flow", "198.51.100.1:80->198.51.100.2:4000").at("phase", "restore");
	CHECK(e.context == "phase=restore flow=198.51.100.1:80->198.51.100.2:4000");
	std::string msg = e.message();
	CHECK(msg.find("restore failed") == 0);
	CHECK(msg.find("Operation not permitted") != std::string::npos);
	CHECK(msg.find("[phase=restore") != std::string::npos);
}

TEST_CASE("errnoError captures errno")
{
	errno = ENOENT;
	Error e = errnoError("open");
	CHECK(e.code == ENOENT);
}
