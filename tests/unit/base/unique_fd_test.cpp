#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <utility>

#include "base/unique_fd.h"

using ferry::UniqueFd;

namespace {
bool isOpen(int fd)
{
	return ::fcntl(fd, F_GETFD) != -1;
}
} // namespace

TEST_CASE("UniqueFd closes on destruction")
{
	int raw = ::open("/dev/null", O_RDONLY);
	REQUIRE(raw >= 0);
	{
		UniqueFd fd(raw);
		CHECK(fd.isValid());
		CHECK(isOpen(raw));
	}
	CHECK_FALSE(isOpen(raw));
}

TEST_CASE("UniqueFd moves ownership")
{
	UniqueFd a(::open("/dev/null", O_RDONLY));
	int raw = a.get();
	UniqueFd b = std::move(a);
	CHECK_FALSE(a.isValid());
	CHECK(b.get() == raw);
	UniqueFd c;
	c = std::move(b);
	CHECK(c.get() == raw);
	CHECK(isOpen(raw));
}

TEST_CASE("release gives up ownership, reset replaces")
{
	UniqueFd a(::open("/dev/null", O_RDONLY));
	int raw = a.release();
	CHECK_FALSE(a.isValid());
	CHECK(isOpen(raw));
	a.reset(raw);
	CHECK(a.get() == raw);
	a.reset();
	CHECK_FALSE(isOpen(raw));
}
