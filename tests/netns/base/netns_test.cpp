#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "base/netns.h"
#include "test_network.h"

using namespace ferry;

TEST_CASE("runInNetns runs in the namespace and leaves the caller where it was")
{
	test::TestNetwork net;
	const test::TestHost &host = net.addIsolatedHost("inner");

	auto self = openNetns("self");
	REQUIRE(self.ok());
	ino_t before = *netnsInode(self->get());

	auto target = openNetns(host.netns);
	REQUIRE(target.ok());
	ino_t targetInode = *netnsInode(target->get());
	REQUIRE(targetInode != before);

	Result<ino_t> inside = runInNetns(target->get(), [] () -> Result<ino_t> {
		FERRY_TRY_ASSIGN(UniqueFd fd, openNetns("self"));
		return netnsInode(fd.get());
	});
	REQUIRE(inside.ok());
	CHECK(*inside == targetInode);

	auto after = openNetns("self");
	REQUIRE(after.ok());
	CHECK(*netnsInode(after->get()) == before);
}

TEST_CASE("an error inside the namespace is returned and does not leak the namespace")
{
	test::TestNetwork net;
	const test::TestHost &host = net.addIsolatedHost("inner");
	auto target = openNetns(host.netns);
	REQUIRE(target.ok());
	auto self = openNetns("self");
	ino_t before = *netnsInode(self->get());

	Status s = runInNetns(target->get(), []() -> Status { return makeError("inner failure", EIO); });
	REQUIRE_FALSE(s.ok());
	CHECK(s.error().what == "inner failure");
	CHECK(*netnsInode(openNetns("self")->get()) == before);
}

TEST_CASE("a socket made inside keeps its namespace")
{
	test::TestNetwork net;
	const test::TestHost &host = net.addHost("inner", {"198.51.100.7/24"});
	auto target = openNetns(host.netns);
	REQUIRE(target.ok());
	Result<UniqueFd> sock = runInNetns(target->get(), []() -> Result<UniqueFd> {
		UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (!fd)
			return errnoError("socket");
		sockaddr_in sin{};
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(0xc6336407); // 198.51.100.7
		if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) < 0)
			return errnoError("bind");
		return fd;
	});
	REQUIRE(sock.ok());
	// The address exists only inside the namespace, so the bind above proves
	// where the socket lives; binding it here must fail.
	UniqueFd here(::socket(AF_INET, SOCK_STREAM, 0));
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0xc6336407);
	CHECK(::bind(here.get(), reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) == -1);
}

TEST_CASE("bad namespace specs are refused with a clear error")
{
	auto missing = openNetns("ferry-no-such-netns");
	REQUIRE_FALSE(missing.ok());
	CHECK(missing.error().code == ENOENT);
	CHECK(missing.error().context.find("/run/netns/ferry-no-such-netns") != std::string::npos);
	CHECK_FALSE(openNetns("pid:abc").ok());
	CHECK_FALSE(openNetns("../etc").ok());
}

TEST_CASE("ScopedNetns enters for its scope and returns")
{
	test::TestNetwork net;
	const test::TestHost &host = net.addIsolatedHost("inner");
	auto target = openNetns(host.netns);
	REQUIRE(target.ok());
	ino_t targetInode = *netnsInode(target->get());
	ino_t before = *netnsInode(openNetns("self")->get());
	{
		auto inside = ScopedNetns::enter(target->get());
		REQUIRE(inside.ok());
		CHECK(*netnsInode(openNetns("self")->get()) == targetInode);
		ScopedNetns moved = std::move(*inside);
		CHECK(*netnsInode(openNetns("self")->get()) == targetInode);
	}
	CHECK(*netnsInode(openNetns("self")->get()) == before);
}

TEST_CASE("ScopedNetns refuses an fd that is not a namespace and stays put")
{
	ino_t before = *netnsInode(openNetns("self")->get());
	UniqueFd notNetns(::open("/dev/null", O_RDONLY));
	auto inside = ScopedNetns::enter(notNetns.get());
	CHECK_FALSE(inside.ok());
	CHECK(*netnsInode(openNetns("self")->get()) == before);
}
