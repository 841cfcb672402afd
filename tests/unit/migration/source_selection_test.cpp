#include <doctest/doctest.h>

#include <cerrno>

#include "migration/source_migration.h"

using namespace ferry;
using namespace ferry::migration;

namespace {

container::ContainerInfo registeredEntry()
{
	container::ContainerInfo c;
	c.runtime = container::Runtime::Podman;
	c.id = "0123456789abcdef";
	c.name = "web";
	c.pid = 4242;
	c.cgroup = "/sys/fs/cgroup/forged"; // what the registration claimed
	return c;
}

} // namespace

TEST_CASE("a registry entry is used as its runtime reports it, spec and cgroup included")
{
	container::ContainerInfo inspected = registeredEntry();
	inspected.cgroup = "/sys/fs/cgroup/machine/libpod-0123";
	inspected.spec.image = "docker.io/library/busybox";
	inspected.spec.command = {"sleep", "1000"};
	auto confirmed = confirmRegistered(registeredEntry(), inspected);
	REQUIRE(confirmed.ok());
	CHECK(confirmed->spec.image == "docker.io/library/busybox");
	CHECK(confirmed->spec.command.size() == 2);
	CHECK(confirmed->cgroup == "/sys/fs/cgroup/machine/libpod-0123");
}

TEST_CASE("a registry entry whose runtime reports another init pid is refused, naming both")
{
	container::ContainerInfo inspected = registeredEntry();
	inspected.pid = 5151;
	auto confirmed = confirmRegistered(registeredEntry(), inspected);
	REQUIRE_FALSE(confirmed.ok());
	CHECK(confirmed.error().code == ESRCH);
	CHECK(confirmed.error().message().find("4242") != std::string::npos);
	CHECK(confirmed.error().message().find("5151") != std::string::npos);
}

TEST_CASE("a registry entry its runtime does not know (another root, or forged) is refused")
{
	Result<container::ContainerInfo> unknown = makeError("no such container", ENOENT);
	auto confirmed = confirmRegistered(registeredEntry(), std::move(unknown));
	REQUIRE_FALSE(confirmed.ok());
	CHECK(confirmed.error().code == ENOENT);
	CHECK(confirmed.error().message().find("registered by the OCI hook") != std::string::npos);
}
