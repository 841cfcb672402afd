// The destination side: createContainer + start for runc and podman in a
// network namespace the test made, with a connected TCP socket and a
// listener handed over as fds 3 and 4. The container (busybox sh) proves
// what it got by writing a report on fd 3, which the test reads at the
// peer end of that connection.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <fstream>

#include "base/netns.h"
#include "base/unique_fd.h"
#include "container/container_runtime.h"
#include "container_host.h"

using namespace ferry;
using namespace ferry::container;
using namespace ferry::test;
using namespace std::chrono_literals;

namespace {

// What the container runs: a report of its fds, environment and manifest
// on fd 3, then it stays up.
constexpr const char *kReportScript =
	"echo \"fds=$LISTEN_FDS names=$LISTEN_FDNAMES listen_pid=$LISTEN_PID pid=$$ manifest=$FERRY_MANIFEST\" >&3; "
	"echo \"fd3=$(readlink /proc/self/fd/3) fd4=$(readlink /proc/self/fd/4) fd5=$(readlink /proc/self/fd/5)\" >&3; "
	"cat /run/ferry/manifest.json >&3; echo >&3; echo end >&3; exec sleep 1000";

struct SocketSet {
	UniqueFd peer;      // the test's end of the connection
	UniqueFd accepted;  // handed over as fd 3 ("conn")
	UniqueFd listener;  // handed over as fd 4 ("listen")
	ino_t acceptedInode = 0;
	ino_t listenerInode = 0;
};

ino_t inodeOf(int fd)
{
	struct stat st{};
	REQUIRE(::fstat(fd, &st) == 0);
	return st.st_ino;
}

// A connected pair and a listener, all inside the host's netns, on
// loopback and port 0.
SocketSet makeSockets(const ContainerHost &host)
{
	UniqueFd netns = host.host().open();
	SocketSet set;
	Status made = runInNetns(netns.get(), [&]() -> Status {
		sockaddr_in address{};
		address.sin_family = AF_INET;
		address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t length = sizeof(address);
		UniqueFd server(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (!server || ::bind(server.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address)) != 0 ||
		    ::listen(server.get(), 4) != 0 ||
		    ::getsockname(server.get(), reinterpret_cast<sockaddr *>(&address), &length) != 0)
			return errnoError("listener");
		set.peer.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (!set.peer || ::connect(set.peer.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address)) != 0)
			return errnoError("connect");
		set.accepted.reset(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
		if (!set.accepted)
			return errnoError("accept");
		// The listener handed over is the one that accepted: it stays
		// bound in the netns.
		set.listener = std::move(server);
		return {};
	});
	REQUIRE_MESSAGE(made.ok(), made.error().message());
	set.acceptedInode = inodeOf(set.accepted.get());
	set.listenerInode = inodeOf(set.listener.get());
	return set;
}

// Everything the peer receives until the container writes "end".
std::string readReport(int fd)
{
	std::string text;
	auto deadline = std::chrono::steady_clock::now() + 20s;
	while (text.find("\nend\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
		pollfd p{fd, POLLIN, 0};
		if (::poll(&p, 1, 200) <= 0)
			continue;
		char buffer[4096];
		ssize_t n = ::read(fd, buffer, sizeof(buffer));
		if (n <= 0)
			break;
		text.append(buffer, static_cast<size_t>(n));
	}
	return text;
}

std::string writeManifest(const ContainerHost &host)
{
	std::string path = host.dir() + "/manifest-m1.json";
	std::ofstream(path) << R"({"version":1,"migration":"m1","connections":[]})";
	return path;
}

ContainerStart startFor(const ContainerHost &host, const ContainerSpec &spec, const SocketSet &sockets,
			const std::string &workDirectory)
{
	ContainerStart start;
	start.spec = spec;
	start.netnsPath = host.netnsPath();
	start.sockets = {{sockets.accepted.get(), "conn"}, {sockets.listener.get(), "listen"}};
	start.environment = {{"LISTEN_FDS", "2"},
			     {"LISTEN_FDNAMES", "conn:listen"},
			     {"LISTEN_PID", "1"},
			     {"FERRY_MANIFEST", std::string(kContainerManifestPath)}};
	start.manifestPath = writeManifest(host);
	start.workDirectory = workDirectory;
	::mkdir(workDirectory.c_str(), 0700);
	return start;
}

void checkReport(const std::string &report, const SocketSet &sockets)
{
	CAPTURE(report);
	CHECK(report.find("fds=2 names=conn:listen listen_pid=1 pid=1 manifest=/run/ferry/manifest.json\n") !=
	      std::string::npos);
	// The very sockets, at 3 and 4, and nothing of the agent's at 5.
	CHECK(report.find("fd3=socket:[" + std::to_string(sockets.acceptedInode) + "] fd4=socket:[" +
			  std::to_string(sockets.listenerInode) + "] fd5=\n") != std::string::npos);
	CHECK(report.find(R"({"version":1,"migration":"m1","connections":[]})") != std::string::npos);
}

} // namespace

TEST_CASE("runc: create holds the sockets, start runs the container with them")
{
	ContainerHost host("runcdst");
	// The source bundle, as the source host's container left it.
	std::string bundle = host.makeBundle("web", std::string("sh -c '") + kReportScript + "'");
	ContainerSpec spec;
	spec.runtime = Runtime::Runc;
	spec.name = "web-moved";
	spec.bundle = bundle;
	REQUIRE(checkCanStart(host.options(), spec).ok());

	SocketSet sockets = makeSockets(host);
	ContainerStart start = startFor(host, spec, sockets, host.dir() + "/work");

	auto begin = std::chrono::steady_clock::now();
	auto created = createContainer(host.options(), start);
	std::printf("runc create: %.3f ms\n", secondsSince(begin) * 1e3);
	REQUIRE_MESSAGE(created.ok(), created.error().message());
	CHECK((*created)->pid() == 0);
	// Created, not running: the report has not come, and the name is taken.
	CHECK(captureOutput("runc --root " + host.options().runcRoot + " state web-moved").find("\"created\"") !=
	      std::string::npos);
	CHECK(checkCanStart(host.options(), spec).error().code == EEXIST);
	// The caller's fds are its own still; the container holds duplicates.
	sockets.accepted.reset();
	sockets.listener.reset();

	begin = std::chrono::steady_clock::now();
	Status started = (*created)->start();
	std::printf("runc start: %.3f ms\n", secondsSince(begin) * 1e3);
	REQUIRE_MESSAGE(started.ok(), started.error().message());
	pid_t pid = (*created)->pid();
	CHECK(pid > 0);
	checkReport(readReport(sockets.peer.get()), sockets);

	// The rootfs is the source bundle's, the config is the rewritten one.
	auto info = inspectContainer(host.options(), Runtime::Runc, "web-moved");
	REQUIRE(info.ok());
	CHECK(info->pid == pid);
	CHECK(info->bundle == host.dir() + "/work");
	CHECK(pathExists(host.dir() + "/work/config.json"));

	// After start, destroy() only lets go.
	CHECK((*created)->destroy().ok());
	created->reset();
	CHECK(processAlive(pid));
	CHECK(destroyContainer(host.options(), Runtime::Runc, "web-moved").ok());
	CHECK_FALSE(processAlive(pid));
}

TEST_CASE("runc: the same container name on the same machine while the source is paused")
{
	// Two agents' hosts on one machine, as in the e2e tests: the source
	// still holds its cgroup, paused, when the destination starts a
	// container of the same name from the same bundle.
	ContainerHost source("runcsrc");
	ContainerHost destination("runcdst2");
	std::string bundle = source.makeBundle("web", std::string("sh -c '") + kReportScript + "'");
	source.runRunc("web", bundle);
	auto original = inspectContainer(source.options(), Runtime::Runc, "web");
	REQUIRE_MESSAGE(original.ok(), original.error().message());
	REQUIRE(pauseContainer(source.options(), *original).ok());

	SocketSet sockets = makeSockets(destination);
	ContainerStart start = startFor(destination, original->spec, sockets, destination.dir() + "/work");
	REQUIRE(checkCanStart(destination.options(), original->spec).ok());
	auto created = createContainer(destination.options(), start);
	REQUIRE_MESSAGE(created.ok(), created.error().message());
	Status started = (*created)->start();
	REQUIRE_MESSAGE(started.ok(), started.error().message());
	checkReport(readReport(sockets.peer.get()), sockets);

	auto moved = inspectContainer(destination.options(), Runtime::Runc, "web");
	REQUIRE(moved.ok());
	CHECK(moved->cgroup != original->cgroup);
	CHECK(moved->status == "running");
	// Destroying the source after commit leaves the destination alone.
	REQUIRE(destroyContainer(source.options(), Runtime::Runc, "web").ok());
	CHECK_FALSE(processAlive(original->pid));
	CHECK(processAlive(moved->pid));
	CHECK(inspectContainer(destination.options(), Runtime::Runc, "web")->status == "running");
	CHECK(destroyContainer(destination.options(), Runtime::Runc, "web").ok());
	CHECK_FALSE(pathExists(moved->cgroup));
}

TEST_CASE("runc: destroy before start leaves nothing behind")
{
	ContainerHost host("runcabort");
	std::string bundle = host.makeBundle("web", std::string("sh -c '") + kReportScript + "'");
	ContainerSpec spec;
	spec.runtime = Runtime::Runc;
	spec.name = "web-moved";
	spec.bundle = bundle;
	SocketSet sockets = makeSockets(host);
	ContainerStart start = startFor(host, spec, sockets, host.dir() + "/work");
	{
		auto created = createContainer(host.options(), start);
		REQUIRE_MESSAGE(created.ok(), created.error().message());
		pid_t init = std::stoi(captureOutput("cat " + host.dir() + "/work/container.pid"));
		CHECK(processAlive(init));
		CHECK((*created)->destroy().ok());
		CHECK((*created)->destroy().ok()); // idempotent
		CHECK_FALSE(processAlive(init));
		CHECK((*created)->start().error().code == EINVAL);
	}
	CHECK(inspectContainer(host.options(), Runtime::Runc, "web-moved").error().code == ENOENT);
	CHECK_FALSE(pathExists(host.dir() + "/work"));
	CHECK(captureOutput("runc --root " + host.options().runcRoot + " list -q").empty());
	// The container's copies are gone: closing ours ends the connection.
	sockets.accepted.reset();
	char byte;
	CHECK(::recv(sockets.peer.get(), &byte, 1, 0) == 0);

	SUBCASE("and so does letting it go out of scope")
	{
		::mkdir(start.workDirectory.c_str(), 0700);
		SocketSet more = makeSockets(host);
		start.sockets = {{more.accepted.get(), "conn"}};
		{
			auto created = createContainer(host.options(), start);
			REQUIRE(created.ok());
		}
		CHECK(inspectContainer(host.options(), Runtime::Runc, "web-moved").error().code == ENOENT);
		CHECK_FALSE(pathExists(start.workDirectory));
	}
}

TEST_CASE("runc: what cannot start is refused early, naming it")
{
	ContainerHost host("runcbad");
	ContainerSpec spec;
	spec.runtime = Runtime::Runc;
	spec.name = "x";
	spec.bundle = host.dir() + "/missing";
	CHECK(checkCanStart(host.options(), spec).error().code == ENOENT);
	spec.bundle = "relative";
	CHECK(checkCanStart(host.options(), spec).error().code == EINVAL);
	RuntimeOptions broken = host.options();
	broken.runcBinary = "/nonexistent/runc";
	spec.bundle = host.makeBundle("ok", "true");
	CHECK(checkCanStart(host.options(), spec).ok());
	auto noRuntime = checkCanStart(broken, spec);
	REQUIRE_FALSE(noRuntime.ok());
	CHECK(noRuntime.error().what.find("/nonexistent/runc") != std::string::npos);

	// A bundle whose program does not exist: create fails, quoting runc.
	std::string bad = host.makeBundle("bad", "/nonexistent-program");
	spec.bundle = bad;
	SocketSet sockets = makeSockets(host);
	ContainerStart start = startFor(host, spec, sockets, host.dir() + "/work");
	auto created = createContainer(host.options(), start);
	if (created.ok()) {
		// runc 1.1 reports a missing program at start, not at create.
		Status started = (*created)->start();
		REQUIRE_FALSE(started.ok());
		MESSAGE(started.error().message());
		CHECK(started.error().what.find("nonexistent-program") != std::string::npos);
	} else {
		MESSAGE(created.error().message());
		CHECK(created.error().what.find("runc cannot create the container: `runc --root") == 0);
		CHECK(created.error().what.find("nonexistent-program") != std::string::npos);
	}
	CHECK(inspectContainer(host.options(), Runtime::Runc, "x").error().code == ENOENT);

	// A namespace path that does not exist: runc refuses at create.
	ContainerSpec good = spec;
	good.bundle = host.dir() + "/ok";
	ContainerStart elsewhere = startFor(host, good, sockets, host.dir() + "/work2");
	elsewhere.netnsPath = "/run/netns/ferry-no-such-netns";
	auto refused = createContainer(host.options(), elsewhere);
	REQUIRE_FALSE(refused.ok());
	MESSAGE(refused.error().message());
	CHECK(refused.error().code == EIO);
	CHECK(refused.error().what.find("ferry-no-such-netns") != std::string::npos);
	CHECK(inspectContainer(host.options(), Runtime::Runc, "x").error().code == ENOENT);
}

TEST_CASE("podman: start runs the container with the sockets at 3 and 4")
{
	ContainerHost host("podmandst");
	host.importImage("localhost/ferry-test:1");
	ContainerSpec spec;
	spec.runtime = Runtime::Podman;
	spec.name = "web-moved";
	spec.image = "localhost/ferry-test:1";
	spec.command = {"/bin/sh", "-c", kReportScript};
	spec.environment = {"PATH=/bin:/usr/bin", "LISTEN_FDS=99"};
	spec.annotations = {{std::string(kMigratableAnnotation), "true"}};
	spec.workingDirectory = "/tmp";
	REQUIRE(checkCanStart(host.options(), spec).ok());

	SocketSet sockets = makeSockets(host);
	ContainerStart start = startFor(host, spec, sockets, host.dir() + "/work");
	auto created = createContainer(host.options(), start);
	REQUIRE_MESSAGE(created.ok(), created.error().message());
	CHECK((*created)->pid() == 0);
	// podman cannot hold fds for a created container: createContainer kept
	// duplicates, so the caller may close its own now.
	sockets.accepted.reset();
	sockets.listener.reset();

	auto begin = std::chrono::steady_clock::now();
	Status started = (*created)->start();
	std::printf("podman run -d (start): %.3f ms\n", secondsSince(begin) * 1e3);
	REQUIRE_MESSAGE(started.ok(), started.error().message());
	CHECK((*created)->pid() > 0);
	checkReport(readReport(sockets.peer.get()), sockets);

	auto info = inspectContainer(host.options(), Runtime::Podman, "web-moved");
	REQUIRE(info.ok());
	CHECK(info->pid == (*created)->pid());
	CHECK(info->annotations.at(std::string(kMigratableAnnotation)) == "true");
	CHECK(info->spec.workingDirectory == "/tmp");
	CHECK(info->spec.command == spec.command);
	// Inspecting the moved container gives a spec without the handoff.
	for (const std::string &e : info->spec.environment)
		CHECK(e.rfind("LISTEN_", 0) != 0);
	CHECK(checkCanStart(host.options(), spec).error().code == EEXIST);

	pid_t pid = (*created)->pid();
	created->reset(); // lets go: the container keeps running
	CHECK(processAlive(pid));
	CHECK(destroyContainer(host.options(), Runtime::Podman, "web-moved").ok());
	CHECK_FALSE(processAlive(pid));
}

TEST_CASE("podman: destroy before start leaves nothing, and a missing image is found early")
{
	ContainerHost host("podmanabort");
	host.importImage("localhost/ferry-test:1");
	ContainerSpec spec;
	spec.runtime = Runtime::Podman;
	spec.name = "web-moved";
	spec.image = "localhost/ferry-test:1";
	spec.command = {"/bin/sh", "-c", kReportScript};
	SocketSet sockets = makeSockets(host);
	ContainerStart start = startFor(host, spec, sockets, host.dir() + "/work");
	auto created = createContainer(host.options(), start);
	REQUIRE(created.ok());
	sockets.accepted.reset();
	CHECK((*created)->destroy().ok());
	CHECK_FALSE(pathExists(host.dir() + "/work"));
	// No copy of the connection is left anywhere: the peer sees EOF.
	char byte;
	CHECK(::recv(sockets.peer.get(), &byte, 1, 0) == 0);
	CHECK(captureOutput(containersShell("ct_podman_storage " + host.options().podmanRoot + " " +
					     host.options().podmanRunRoot + "; ct_podman ps -a -q")) == "");

	spec.image = "localhost/ferry-absent:1";
	CHECK(checkCanStart(host.options(), spec).error().code == ENOENT);
}

TEST_CASE("podman: a run that made a container but did not leave it running leaves no container, and the name is free")
{
	ContainerHost host("podmanfail");
	host.importImage("localhost/ferry-test:1");
	ContainerSpec spec;
	spec.runtime = Runtime::Podman;
	spec.name = "web-moved";
	spec.image = "localhost/ferry-test:1";
	// Exits at once: `podman run -d` succeeds, the "running" check fails.
	spec.command = {"/bin/true"};
	SocketSet sockets = makeSockets(host);
	ContainerStart start = startFor(host, spec, sockets, host.dir() + "/work");
	auto created = createContainer(host.options(), start);
	REQUIRE(created.ok());
	Status started = (*created)->start();
	REQUIRE_FALSE(started.ok());
	MESSAGE(started.error().message());
	CHECK((*created)->destroy().ok());
	std::string storage = "ct_podman_storage " + host.options().podmanRoot + " " + host.options().podmanRunRoot + "; ";
	CHECK(captureOutput(containersShell(storage + "ct_podman ps -a -q")) == "");
	// A retry under the same name is not refused as taken.
	spec.command = {"/bin/sh", "-c", kReportScript};
	CHECK(checkCanStart(host.options(), spec).ok());
}

TEST_CASE("runc: a create killed past the timeout leaves no container, and the name is free")
{
	ContainerHost host("runctimeout");
	std::string bundle = host.makeBundle("web", std::string("sh -c '") + kReportScript + "'");
	// runc that creates the container, then hangs: the timeout hits after
	// runc init holds the sockets and the name.
	std::string runc = host.dir() + "/slow-runc";
	{
		std::ofstream script(runc);
		script << "#!/bin/sh\nrunc \"$@\" || exit $?\ncase \" $* \" in *\" create \"*) exec sleep 1000;; esac\n";
	}
	REQUIRE(::chmod(runc.c_str(), 0755) == 0);
	RuntimeOptions slow = host.options();
	slow.runcBinary = runc;
	slow.timeout = std::chrono::milliseconds(5000);
	ContainerSpec spec;
	spec.runtime = Runtime::Runc;
	spec.name = "web-moved";
	spec.bundle = bundle;
	SocketSet sockets = makeSockets(host);
	ContainerStart start = startFor(host, spec, sockets, host.dir() + "/work");
	auto created = createContainer(slow, start);
	REQUIRE_FALSE(created.ok());
	MESSAGE(created.error().message());
	CHECK(created.error().code == ETIMEDOUT);
	CHECK(captureOutput("runc --root " + host.options().runcRoot + " list -q").empty());
	CHECK(checkCanStart(host.options(), spec).ok());
	// No copy of the connection is left in a runc init: the peer sees EOF.
	sockets.accepted.reset();
	char byte;
	CHECK(::recv(sockets.peer.get(), &byte, 1, 0) == 0);
}
