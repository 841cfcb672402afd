// HandoffServer against real processes and real unix sockets: the test
// workload (test_workload.cpp) registers, prepares, resumes and exits; raw
// sockets in the test play workloads that lie, talk nonsense or vanish.
// No privileges needed.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <future>

#include "migration/workload_handoff.h"
#include "workload_test_support.h"

using namespace ferry;
using namespace ferry::migration;
using namespace ferry::test;

namespace {

std::unique_ptr<HandoffServer> startServer(const std::string &path, mode_t mode = 0600)
{
	auto server = HandoffServer::listen(path, mode);
	REQUIRE_MESSAGE(server.ok(), server.error().message());
	return std::move(server).value();
}

// A workload process that has registered.
pid_t registered(HandoffServer &server, Process &workload)
{
	REQUIRE(workload.line().rfind("hello ", 0) == 0);
	REQUIRE(eventually([&] { return server.isRegistered(workload.pid()); }));
	return workload.pid();
}

// The test process itself as a workload, over a raw socket.
class RawClient {
public:
	explicit RawClient(const std::string &path)
	{
		fd_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
		REQUIRE(fd_);
		sockaddr_un address{};
		address.sun_family = AF_UNIX;
		REQUIRE(path.size() < sizeof(address.sun_path));
		path.copy(address.sun_path, path.size());
		REQUIRE(::connect(fd_.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address)) == 0);
	}

	void send(std::string_view packet)
	{
		REQUIRE(::send(fd_.get(), packet.data(), packet.size(), MSG_NOSIGNAL) ==
			static_cast<ssize_t>(packet.size()));
	}
	// The next packet; "<eof>" when the server closed, "<timeout>".
	std::string receive(std::chrono::milliseconds timeout = 5s)
	{
		pollfd p{fd_.get(), POLLIN, 0};
		if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1)
			return "<timeout>";
		char buffer[4096];
		ssize_t n = ::recv(fd_.get(), buffer, sizeof(buffer), 0);
		if (n <= 0)
			return "<eof>";
		return std::string(buffer, static_cast<size_t>(n));
	}
	void close() { fd_.reset(); }

private:
	UniqueFd fd_;
};

std::string hello(pid_t pid)
{
	return "{\"hello\":{\"pid\":" + std::to_string(pid) + ",\"name\":\"raw\"}}";
}

} // namespace

TEST_CASE("a workload registers, hands over its state, resumes, and exits on commit")
{
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));
	struct stat st{};
	REQUIRE(::stat(server->path().c_str(), &st) == 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK((st.st_mode & 0777) == 0600);

	Process workload(handoffWorkload(server->path(), {"--name", "demo", "--state", "\\x00blob\\xff"}));
	pid_t pid = registered(*server, workload);
	auto list = server->workloads();
	REQUIRE(list.size() == 1);
	CHECK(list[0].pid == pid);
	CHECK(list[0].announcedPid == pid);
	CHECK(list[0].uid == ::getuid());
	CHECK(list[0].name == "demo");

	auto blob = server->prepare(pid, "m-1", 5s);
	REQUIRE_MESSAGE(blob.ok(), blob.error().message());
	CHECK(*blob == std::string("\0blob\xff", 6));
	CHECK(workload.line() == "prepare m-1");

	// Stopped for m-1: another migration must wait.
	auto again = server->prepare(pid, "m-other", 1s);
	REQUIRE_FALSE(again.ok());
	CHECK(again.error().code == EBUSY);
	CHECK(again.error().what.find("m-1") != std::string::npos);

	REQUIRE(server->resume(pid).ok());
	CHECK(workload.line() == "resume");

	blob = server->prepare(pid, "m-2", 5s);
	REQUIRE_MESSAGE(blob.ok(), blob.error().message());
	CHECK(workload.line() == "prepare m-2");
	REQUIRE(server->exit(pid).ok());
	CHECK(workload.line() == "exit");
	CHECK(workload.wait() == 0);
	CHECK(eventually([&] { return !server->isRegistered(pid); }));

	auto gone = server->prepare(pid, "m-3", 1s);
	REQUIRE_FALSE(gone.ok());
	CHECK(gone.error().code == ENOENT);
}

TEST_CASE("a workload that never answers prepare times out, and is resumed")
{
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));
	Process workload(handoffWorkload(server->path(), {"--silent"}));
	pid_t pid = registered(*server, workload);

	auto started = std::chrono::steady_clock::now();
	auto blob = server->prepare(pid, "m-slow", 300ms);
	auto elapsed = std::chrono::steady_clock::now() - started;
	REQUIRE_FALSE(blob.ok());
	CHECK(blob.error().code == ETIMEDOUT);
	std::string message = blob.error().message();
	CHECK(message.find("did not answer prepare within 300 ms") != std::string::npos);
	CHECK(message.find("pid=" + std::to_string(pid)) != std::string::npos);
	CHECK(message.find("migration=m-slow") != std::string::npos);
	CHECK(elapsed >= 300ms);
	CHECK(elapsed < 3s);

	CHECK(workload.line() == "prepare m-slow");
	CHECK(workload.line() == "resume");
	CHECK(server->isRegistered(pid));

	// Not stopped: exit is refused, resume has nothing to do.
	auto exited = server->exit(pid);
	REQUIRE_FALSE(exited.ok());
	CHECK(exited.error().code == EINVAL);
	CHECK(server->resume(pid).ok());
	CHECK(workload.line(300ms).empty());
}

TEST_CASE("a slow workload does not hold up another one")
{
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));
	Process slow(handoffWorkload(server->path(), {"--silent"}));
	Process quick(handoffWorkload(server->path(), {"--state", "q"}));
	pid_t slowPid = registered(*server, slow);
	pid_t quickPid = registered(*server, quick);

	auto slowPrepare = std::async(std::launch::async, [&] { return server->prepare(slowPid, "m-a", 3s); });
	auto started = std::chrono::steady_clock::now();
	auto quickBlob = server->prepare(quickPid, "m-b", 3s);
	CHECK(std::chrono::steady_clock::now() - started < 2s); // not held up by the slow one (3 s)
	REQUIRE(quickBlob.ok());
	CHECK(*quickBlob == "q");
	CHECK(slowPrepare.get().error().code == ETIMEDOUT);
	REQUIRE(server->resume(quickPid).ok());
}

TEST_CASE("a workload lying about its pid is refused and logged")
{
	LogCapture logs;
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));
	pid_t claimed = ::getpid(); // a real process, but not the workload
	Process liar(handoffWorkload(server->path(), {"--announce-pid", std::to_string(claimed)}));

	CHECK(liar.line() == "hello " + std::to_string(claimed));
	CHECK(liar.line() == "eof");
	CHECK(liar.wait() == 3);
	CHECK_FALSE(server->isRegistered(liar.pid()));
	CHECK_FALSE(server->isRegistered(claimed));
	CHECK(server->workloads().empty());
	CHECK(logs.count("refused workload: hello names another pid than its credentials announcedPid=" +
			 std::to_string(claimed) + " peerPid=" + std::to_string(liar.pid())) == 1);

	// The same lie from a raw socket: closed too.
	RawClient raw(server->path());
	raw.send(hello(::getppid()));
	CHECK(raw.receive() == "<eof>");
}

TEST_CASE("malformed messages are logged and dropped; the server keeps serving")
{
	LogCapture logs;
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));

	RawClient raw(server->path());
	const std::string garbage[] = {
		"not json",
		"",
		"{\"hello\":{\"pid\":\"1\"}}",
		"{\"ready\":{\"state\":\"\"}}", // before hello
		"{\"resume\":{}}",
		std::string(100000, '{'),
		"{\"hello\":{\"pid\":1}}" + std::string(1, '\0'),
	};
	for (const std::string &packet : garbage)
		raw.send(packet);
	// Still connected: a valid hello on the same connection registers.
	raw.send(hello(::getpid()));
	REQUIRE(eventually([&] { return server->isRegistered(::getpid()); }));
	CHECK(logs.count("dropped a workload message") == std::size(garbage));
	CHECK(logs.count("message is not valid JSON") >= 2);
	CHECK(logs.count("message is empty") == 1);
	CHECK(logs.count("ready while the workload is connected") == 1);

	// A real workload on another connection is served as usual.
	Process workload(handoffWorkload(server->path(), {"--state", "ok"}));
	pid_t pid = registered(*server, workload);
	auto blob = server->prepare(pid, "m-1", 5s);
	REQUIRE_MESSAGE(blob.ok(), blob.error().message());
	CHECK(*blob == "ok");
	REQUIRE(server->resume(pid).ok());

	// A connection that keeps talking nonsense is closed.
	RawClient noisy(server->path());
	for (int i = 0; i < 16; i++)
		noisy.send("nonsense");
	CHECK(noisy.receive() == "<eof>");
	CHECK(server->isRegistered(pid));
}

TEST_CASE("a malformed ready fails the prepare at once and resumes the workload")
{
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));
	RawClient raw(server->path());
	raw.send(hello(::getpid()));
	REQUIRE(eventually([&] { return server->isRegistered(::getpid()); }));

	auto prepared = std::async(std::launch::async, [&] { return server->prepare(::getpid(), "m-bad", 10s); });
	CHECK(raw.receive() == R"({"prepare":{"migration":"m-bad"}})");
	raw.send(R"({"ready":{"state":"not base64!"}})");
	auto blob = prepared.get();
	REQUIRE_FALSE(blob.ok());
	CHECK(blob.error().code == EPROTO);
	CHECK(blob.error().what.find("not base64") != std::string::npos);
	CHECK(raw.receive() == R"({"resume":{}})");
	CHECK(server->isRegistered(::getpid()));
}

TEST_CASE("a workload that disconnects while preparing fails the prepare")
{
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));
	RawClient raw(server->path());
	raw.send(hello(::getpid()));
	REQUIRE(eventually([&] { return server->isRegistered(::getpid()); }));

	auto prepared = std::async(std::launch::async, [&] { return server->prepare(::getpid(), "m-gone", 10s); });
	CHECK(raw.receive() == R"({"prepare":{"migration":"m-gone"}})");
	raw.close();
	auto blob = prepared.get();
	REQUIRE_FALSE(blob.ok());
	CHECK(blob.error().code == ECONNRESET);
	CHECK(blob.error().message().find("migration=m-gone") != std::string::npos);
	CHECK(eventually([&] { return !server->isRegistered(::getpid()); }));
}

TEST_CASE("resume from an abort ends a prepare that is still waiting")
{
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));
	RawClient raw(server->path());
	raw.send(hello(::getpid()));
	REQUIRE(eventually([&] { return server->isRegistered(::getpid()); }));

	auto prepared = std::async(std::launch::async, [&] { return server->prepare(::getpid(), "m-abort", 10s); });
	CHECK(raw.receive() == R"({"prepare":{"migration":"m-abort"}})");
	REQUIRE(server->resume(::getpid()).ok());
	auto blob = prepared.get();
	REQUIRE_FALSE(blob.ok());
	CHECK(blob.error().code == ECANCELED);
	// Exactly one resume reaches the workload.
	CHECK(raw.receive() == R"({"resume":{}})");
	CHECK(raw.receive(300ms) == "<timeout>");
}

TEST_CASE("a pid registers once; bad calls name the pid")
{
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));
	RawClient first(server->path());
	first.send(hello(::getpid()));
	REQUIRE(eventually([&] { return server->isRegistered(::getpid()); }));
	RawClient second(server->path());
	second.send(hello(::getpid()));
	CHECK(second.receive() == "<eof>");
	CHECK(server->workloads().size() == 1);

	auto bad = server->prepare(::getpid(), "m/../x", 1s);
	REQUIRE_FALSE(bad.ok());
	CHECK(bad.error().code == EINVAL);
	auto unknown = server->resume(1);
	REQUIRE_FALSE(unknown.ok());
	CHECK(unknown.error().code == ENOENT);
	CHECK(unknown.error().context.find("pid=1") != std::string::npos);
}

TEST_CASE("findWorkload accepts the workload, its descendants and its ancestors")
{
	TempDir dir;
	auto server = startServer(dir.file("handoff.sock"));
	Process workload(handoffWorkload(server->path(), {"--spawn-child"}));
	std::string childLine = workload.line();
	REQUIRE(childLine.rfind("child ", 0) == 0);
	pid_t child = std::stoi(childLine.substr(6));
	pid_t pid = registered(*server, workload);

	auto found = server->findWorkload(pid);
	REQUIRE(found.ok());
	CHECK(*found == pid);
	found = server->findWorkload(child); // a worker of the workload
	REQUIRE(found.ok());
	CHECK(*found == pid);
	found = server->findWorkload(::getpid()); // the test started it
	REQUIRE(found.ok());
	CHECK(*found == pid);

	Process unrelated({"/bin/sleep", "30"});
	found = server->findWorkload(unrelated.pid());
	REQUIRE_FALSE(found.ok());
	CHECK(found.error().code == ENOENT);

	Process sibling(handoffWorkload(server->path()));
	pid_t siblingPid = registered(*server, sibling);
	found = server->findWorkload(::getpid());
	REQUIRE_FALSE(found.ok());
	CHECK(found.error().code == EINVAL);
	CHECK(found.error().context.find(std::to_string(siblingPid)) != std::string::npos);
	CHECK(found.error().context.find(std::to_string(pid)) != std::string::npos);
	found = server->findWorkload(child);
	REQUIRE(found.ok());
	CHECK(*found == pid);

	::kill(child, SIGKILL); // dies with its parent anyway; by pid, now
}

TEST_CASE("the socket file: stale replaced, live or foreign refused, removed on stop")
{
	TempDir dir;
	std::string path = dir.file("handoff.sock");

	// A socket file nobody listens on, as a crashed agent leaves it.
	{
		UniqueFd stale(::socket(AF_UNIX, SOCK_SEQPACKET, 0));
		sockaddr_un address{};
		address.sun_family = AF_UNIX;
		path.copy(address.sun_path, path.size());
		REQUIRE(::bind(stale.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address)) == 0);
	}
	{
		auto server = startServer(path, 0660);
		struct stat st{};
		REQUIRE(::stat(path.c_str(), &st) == 0);
		CHECK((st.st_mode & 0777) == 0660);

		auto second = HandoffServer::listen(path);
		REQUIRE_FALSE(second.ok());
		CHECK(second.error().code == EADDRINUSE);
		// The first one still serves.
		RawClient raw(path);
		raw.send(hello(::getpid()));
		CHECK(eventually([&] { return server->isRegistered(::getpid()); }));
	}
	struct stat st{};
	CHECK(::stat(path.c_str(), &st) != 0);
	CHECK(dir.entries() == 0); // no temporary name left behind either

	{
		std::ofstream file(path);
		file << "not a socket";
	}
	auto foreign = HandoffServer::listen(path);
	REQUIRE_FALSE(foreign.ok());
	CHECK(foreign.error().code == EEXIST);
	std::ifstream kept(path);
	std::string content;
	std::getline(kept, content);
	CHECK(content == "not a socket");

	auto tooLong = HandoffServer::listen(dir.path() + "/" + std::string(120, 'x'));
	REQUIRE_FALSE(tooLong.ok());
	CHECK(tooLong.error().code == ENAMETOOLONG);
}
