#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include "stream_checker.h"

using namespace ferry::test;

TEST_CASE("a stream verifies in any split and depends on seed and offset")
{
	StreamSource source(7);
	std::vector<uint8_t> a = source.next(1000);
	std::vector<uint8_t> b = source.next(3);
	StreamVerifier v(7);
	CHECK(v.verify(a.data(), 10));
	CHECK(v.verify(a.data() + 10, 990));
	CHECK(v.verify(b.data(), b.size()));
	CHECK(v.offset() == 1003);
	CHECK_FALSE(v.firstMismatch().has_value());

	StreamVerifier other(8);
	CHECK_FALSE(other.verify(a.data(), a.size()));
	// A different seed differs early (not necessarily at byte 0).
	REQUIRE(other.firstMismatch().has_value());
	CHECK(*other.firstMismatch() < 16);
}

TEST_CASE("a lost, duplicated or reordered byte is reported where it happens")
{
	StreamSource source(1);
	std::vector<uint8_t> data = source.next(100);

	StreamVerifier lost(1);
	CHECK(lost.verify(data.data(), 50));
	CHECK_FALSE(lost.verify(data.data() + 51, 49));
	REQUIRE(lost.firstMismatch().has_value());
	CHECK(*lost.firstMismatch() >= 50);

	StreamVerifier duplicated(1);
	CHECK(duplicated.verify(data.data(), 60));
	CHECK_FALSE(duplicated.verify(data.data() + 40, 20));
	CHECK(*duplicated.firstMismatch() >= 60);
	// Once broken, always broken.
	CHECK_FALSE(duplicated.verify(data.data() + 60, 1));

	std::vector<uint8_t> swapped = data;
	std::swap(swapped[20], swapped[21]);
	StreamVerifier reordered(1);
	CHECK_FALSE(reordered.verify(swapped.data(), swapped.size()));
	bool same = data[20] == data[21];
	if (!same)
		CHECK(*reordered.firstMismatch() == 20);
}

TEST_CASE("socket helpers move and verify a stream, then see EOF")
{
	int sv[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	StreamSource source(3);
	TransferResult w = writeStream(sv[0], source, 5000);
	CHECK(w.bytes == 5000);
	::shutdown(sv[0], SHUT_WR);
	StreamVerifier v(3);
	TransferResult r = readToEnd(sv[1], v, 2000);
	CHECK(r.bytes == 5000);
	CHECK(r.eof);
	CHECK_FALSE(v.firstMismatch().has_value());
	::close(sv[0]);
	::close(sv[1]);
}
