// HandoffServer with a workload in its own pid namespace, as in a
// container: it names itself by its pid there (1), the agent checks that
// against SO_PEERCRED through NSpid and registers it under the pid the
// agent sees. Needs root for the pid namespace (unshare --pid).
#include <doctest/doctest.h>

#include <cerrno>

#include "migration/workload_handoff.h"
#include "../../unit/migration/workload_test_support.h"

using namespace ferry;
using namespace ferry::migration;
using namespace ferry::test;

namespace {

// unshare(1) forks the workload as pid 1 of a new pid namespace and kills
// it when unshare itself dies (--kill-child).
std::vector<std::string> inPidNamespace(std::vector<std::string> argv)
{
	std::vector<std::string> out = {"/usr/bin/unshare", "--pid", "--fork", "--kill-child"};
	out.insert(out.end(), argv.begin(), argv.end());
	return out;
}

} // namespace

TEST_CASE("a workload in its own pid namespace registers as pid 1 under the pid the agent sees")
{
	TempDir dir;
	auto server = HandoffServer::listen(dir.file("handoff.sock"));
	REQUIRE_MESSAGE(server.ok(), server.error().message());
	HandoffServer &handoff = **server;

	Process container(inPidNamespace(handoffWorkload(handoff.path(), {"--name", "contained", "--state", "s"})));
	CHECK(container.line() == "hello 1");
	REQUIRE(eventually([&] { return handoff.workloads().size() == 1; }));
	RegisteredWorkload workload = handoff.workloads().front();
	CHECK(workload.announcedPid == 1);
	CHECK(workload.name == "contained");
	CHECK(workload.pid != 1);
	CHECK(workload.pid != container.pid());

	// The user names the container by the runtime's pid (unshare here).
	auto found = handoff.findWorkload(container.pid());
	REQUIRE_MESSAGE(found.ok(), found.error().message());
	CHECK(*found == workload.pid);

	auto blob = handoff.prepare(workload.pid, "m-pidns", 5s);
	REQUIRE_MESSAGE(blob.ok(), blob.error().message());
	CHECK(*blob == "s");
	CHECK(container.line() == "prepare m-pidns");
	REQUIRE(handoff.exit(workload.pid).ok());
	CHECK(container.line() == "exit");
	CHECK(container.wait() == 0);
	CHECK(eventually([&] { return handoff.workloads().empty(); }));
}

TEST_CASE("a workload in its own pid namespace that names another pid is refused")
{
	LogCapture logs;
	TempDir dir;
	auto server = HandoffServer::listen(dir.file("handoff.sock"));
	REQUIRE_MESSAGE(server.ok(), server.error().message());

	Process container(inPidNamespace(handoffWorkload((*server)->path(), {"--announce-pid", "7"})));
	CHECK(container.line() == "hello 7");
	CHECK(container.line() == "eof");
	CHECK(container.wait() == 3);
	CHECK((*server)->workloads().empty());
	CHECK(logs.count("refused workload") == 1);
}
