// The demo workload's native handoff, end to end, without TCP repair: the
// test plays ferry. It starts the server (child, host "server") with
// FERRY_HANDOFF_SOCKET, starts clients (children, host "client"), sends
// `prepare`, takes the server's TCP sockets with pidfd_getfd, starts a new
// server with LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID / FERRY_MANIFEST, and
// sends `exit` to the old one. The clients must then see every stream
// continue byte-exact.
//
// The new server shares the very socket objects of the old one, so the
// old process's _exit does not close them: that only holds if the old
// server never calls shutdown() (which acts on the shared socket).
#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "base/flow.h"
#include "handoff_state.h"
#include "test_network.h"

extern char **environ;

using namespace ferry;
using namespace std::chrono_literals;

namespace {

constexpr auto kWait = 10s;

std::string binary(const char *variable)
{
	const char *path = std::getenv(variable);
	REQUIRE_MESSAGE(path, std::string(variable) << " is not set (meson test sets it)");
	return path;
}

// A scratch directory removed at the end of the test.
struct TempDir {
	std::string path;
	TempDir()
	{
		path = "/tmp/ferry-demo-test-XXXXXX";
		REQUIRE(::mkdtemp(path.data()));
	}
	~TempDir() { std::filesystem::remove_all(path); }
	std::string file(const std::string &name) const { return path + "/" + name; }
};

// A child process; killed and reaped by pid when the test ends, also on
// failure.
class Child {
public:
	Child() = default;
	explicit Child(pid_t pid) : pid_(pid) {}
	Child(Child &&o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
	Child &operator=(Child &&o) noexcept
	{
		std::swap(pid_, o.pid_);
		return *this;
	}
	~Child()
	{
		if (pid_ > 0) {
			::kill(pid_, SIGKILL);
			::waitpid(pid_, nullptr, 0);
		}
	}

	pid_t pid() const { return pid_; }
	void signal(int sig) const { REQUIRE(::kill(pid_, sig) == 0); }

	// Waits for the exit; returns the exit status, or 128 + signal.
	int wait(std::chrono::milliseconds timeout = kWait)
	{
		auto deadline = std::chrono::steady_clock::now() + timeout;
		while (true) {
			int status = 0;
			pid_t r = ::waitpid(pid_, &status, WNOHANG);
			REQUIRE(r >= 0);
			if (r == pid_) {
				pid_ = -1;
				return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			}
			REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "child " << pid_ << " did not exit");
			std::this_thread::sleep_for(10ms);
		}
	}

private:
	pid_t pid_ = -1;
};

struct Spawn {
	std::vector<std::string> argv;
	std::vector<std::string> env; // added to ours
	std::string stdoutPath;
	std::vector<int> inherit; // become fds 3, 4, ... in the child
	bool listenPid = false;   // set LISTEN_PID to the child's pid
};

// Starts a program inside the network namespace `netnsFd`.
Child spawn(int netnsFd, const Spawn &s)
{
	std::vector<std::string> envStrings;
	for (char **e = environ; *e; e++) {
		std::string_view v(*e);
		if (v.starts_with("LISTEN_") || v.starts_with("FERRY_MANIFEST=") || v.starts_with("FERRY_HANDOFF_SOCKET="))
			continue;
		envStrings.emplace_back(v);
	}
	envStrings.insert(envStrings.end(), s.env.begin(), s.env.end());
	envStrings.emplace_back("LISTEN_PID=0000000000"); // patched in the child
	size_t listenPidIndex = envStrings.size() - 1;
	std::vector<char *> envp;
	for (auto &e : envStrings)
		envp.push_back(e.data());
	if (!s.listenPid)
		envp.pop_back();
	envp.push_back(nullptr);
	std::vector<std::string> args = s.argv;
	std::vector<char *> argv;
	for (auto &a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	std::string errPath = s.stdoutPath + ".err";
	int maxSource = 2;
	for (int fd : s.inherit)
		maxSource = std::max(maxSource, fd);
	const int count = static_cast<int>(s.inherit.size());

	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		// Only async-signal-safe work from here on.
		if (::setns(netnsFd, CLONE_NEWNET) < 0)
			::_exit(120);
		int out = ::open(s.stdoutPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int err = ::open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (out < 0 || err < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0)
			::_exit(121);
		// Move the sources out of the way first: a source may sit on a
		// target number.
		int base = std::max(maxSource, 3 + count) + 1;
		std::vector<int> moved(static_cast<size_t>(count));
		for (int i = 0; i < count; i++) {
			moved[static_cast<size_t>(i)] = ::fcntl(s.inherit[static_cast<size_t>(i)], F_DUPFD, base);
			if (moved[static_cast<size_t>(i)] < 0)
				::_exit(122);
		}
		for (int i = 0; i < count; i++)
			if (::dup2(moved[static_cast<size_t>(i)], 3 + i) < 0)
				::_exit(123);
		::close_range(static_cast<unsigned>(3 + count), ~0u, 0);
		if (s.listenPid) {
			char *digits = envStrings[listenPidIndex].data() + std::strlen("LISTEN_PID=");
			long p = ::getpid();
			for (int i = 9; i >= 0; i--, p /= 10)
				digits[i] = static_cast<char>('0' + p % 10);
		}
		::execve(argv[0], argv.data(), envp.data());
		::_exit(124);
	}
	return Child(pid);
}

// The JSON lines a child printed so far.
std::vector<std::string> lines(const std::string &path)
{
	std::ifstream in(path);
	std::vector<std::string> out;
	std::string line;
	while (std::getline(in, line))
		if (!line.empty() && line.front() == '{' && line.back() == '}')
			out.push_back(line);
	return out;
}

rapidjson::Document parse(const std::string &line)
{
	rapidjson::Document doc;
	doc.Parse(line.c_str());
	REQUIRE_MESSAGE(doc.IsObject(), "not JSON: " << line);
	return doc;
}

std::string fileText(const std::string &path)
{
	std::ifstream in(path);
	std::ostringstream s;
	s << in.rdbuf();
	return s.str();
}

// Waits for the `index`-th line (0-based) with "event": event.
rapidjson::Document waitForEvent(const std::string &path, const char *event, size_t index = 0)
{
	auto deadline = std::chrono::steady_clock::now() + kWait;
	while (std::chrono::steady_clock::now() < deadline) {
		size_t seen = 0;
		for (const std::string &line : lines(path)) {
			rapidjson::Document doc = parse(line);
			if (doc.HasMember("event") && std::string(doc["event"].GetString()) == event && seen++ == index)
				return doc;
		}
		std::this_thread::sleep_for(20ms);
	}
	FAIL("no '" << event << "' #" << index << " in " << path << "; stderr: " << fileText(path + ".err"));
	return {};
}

size_t countEvents(const std::string &path, const char *event)
{
	size_t n = 0;
	for (const std::string &line : lines(path))
		if (std::string(parse(line)["event"].GetString()) == event)
			n++;
	return n;
}

// Asks a server or client for a status line (SIGUSR1) and returns it.
rapidjson::Document status(const Child &child, const std::string &path, const char *event)
{
	size_t before = countEvents(path, event);
	child.signal(SIGUSR1);
	return waitForEvent(path, event, before);
}

// ferry's end of the handoff socket.
class HandoffListener {
public:
	explicit HandoffListener(const std::string &path) : path_(path)
	{
		fd_ = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
		REQUIRE(fd_);
		sockaddr_un sun{};
		sun.sun_family = AF_UNIX;
		REQUIRE(path.size() < sizeof(sun.sun_path));
		std::strcpy(sun.sun_path, path.c_str());
		REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr *>(&sun), sizeof(sun)) == 0);
		REQUIRE(::listen(fd_.get(), 8) == 0);
	}

	// Accepts the workload `pid` and checks its hello (pid checked with
	// SO_PEERCRED, as ferry does).
	// `out` is the workload's stdout file, for the failure message.
	UniqueFd accept(pid_t pid, const std::string &out)
	{
		pollfd p{fd_.get(), POLLIN, 0};
		if (::poll(&p, 1, 10000) != 1) {
			int status = 0;
			pid_t gone = ::waitpid(pid, &status, WNOHANG);
			FAIL("the workload did not connect to the handoff socket; "
				<< (gone == pid ? "it exited with status " + std::to_string(status) : std::string("it still runs"))
				<< "; stdout: " << fileText(out) << "; stderr: " << fileText(out + ".err"));
		}
		UniqueFd conn(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
		REQUIRE(conn);
		ucred cred{};
		socklen_t len = sizeof(cred);
		REQUIRE(::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0);
		CHECK(cred.pid == pid);
		rapidjson::Document hello = parse(receive(conn.get()));
		REQUIRE(hello.HasMember("hello"));
		CHECK(hello["hello"]["pid"].GetInt() == pid);
		CHECK(std::string(hello["hello"]["name"].GetString()) == "demo");
		return conn;
	}

	static void send(int fd, const std::string &message)
	{
		REQUIRE(::send(fd, message.data(), message.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(message.size()));
	}

	static std::string receive(int fd)
	{
		pollfd p{fd, POLLIN, 0};
		REQUIRE_MESSAGE(::poll(&p, 1, 10000) == 1, "no message from the workload");
		ssize_t size = ::recv(fd, nullptr, 0, MSG_PEEK | MSG_TRUNC);
		REQUIRE(size > 0);
		std::string message(static_cast<size_t>(size), '\0');
		REQUIRE(::recv(fd, message.data(), message.size(), 0) == size);
		return message;
	}

private:
	std::string path_;
	UniqueFd fd_;
};

// Sends prepare and returns the state blob from `ready`.
std::string prepare(int channel, const std::string &migration)
{
	HandoffListener::send(channel, R"({"prepare":{"migration":")" + migration + R"("}})");
	rapidjson::Document ready = parse(HandoffListener::receive(channel));
	REQUIRE(ready.HasMember("ready"));
	REQUIRE(ready["ready"]["state"].IsString());
	return ready["ready"]["state"].GetString();
}

int intOption(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	REQUIRE(::getsockopt(fd, level, name, &v, &len) == 0);
	return v;
}

Endpoint endpointOf(int fd, bool peer)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len)
		     : ::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len);
	REQUIRE(r == 0);
	auto e = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), len);
	REQUIRE(e.ok());
	return *e;
}

const char *tcpStateName(int fd)
{
	if (intOption(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1)
		return "LISTEN";
	tcp_info info{};
	socklen_t len = sizeof(info);
	REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0);
	switch (info.tcpi_state) {
	case TCP_ESTABLISHED:
		return "ESTABLISHED";
	case TCP_CLOSE_WAIT:
		return "CLOSE_WAIT";
	default:
		return "OTHER";
	}
}

// The TCP sockets of `pid`, taken with pidfd_getfd (raw syscalls: the
// glibc wrappers are recent), in the order of their fd numbers.
std::vector<UniqueFd> takeTcpSockets(pid_t pid)
{
	UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
	REQUIRE_MESSAGE(pidfd, "pidfd_open: " << std::strerror(errno));
	std::vector<int> numbers;
	std::string dir = "/proc/" + std::to_string(pid) + "/fd";
	DIR *d = ::opendir(dir.c_str());
	REQUIRE(d);
	while (dirent *e = ::readdir(d)) {
		if (e->d_name[0] == '.')
			continue;
		char link[64] = {};
		std::string path = dir + "/" + e->d_name;
		if (::readlink(path.c_str(), link, sizeof(link) - 1) > 0 && std::strncmp(link, "socket:", 7) == 0)
			numbers.push_back(std::atoi(e->d_name));
	}
	::closedir(d);
	std::sort(numbers.begin(), numbers.end());
	std::vector<UniqueFd> sockets;
	for (int n : numbers) {
		UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), n, 0)));
		REQUIRE_MESSAGE(fd, "pidfd_getfd: " << std::strerror(errno));
		int domain = intOption(fd.get(), SOL_SOCKET, SO_DOMAIN);
		if ((domain == AF_INET || domain == AF_INET6) && intOption(fd.get(), SOL_SOCKET, SO_TYPE) == SOCK_STREAM)
			sockets.push_back(std::move(fd));
	}
	return sockets;
}

// Writes FERRY_MANIFEST for `sockets` (to become fds 3...) and returns the
// LISTEN_FDNAMES value.
std::string writeManifest(const std::string &path, const std::string &migration, const std::string &state,
		const std::vector<UniqueFd> &sockets)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	std::string names;
	int conn = 0, listen = 0;
	w.StartObject();
	w.Key("version");
	w.Int(1);
	w.Key("migration");
	w.String(migration.c_str());
	w.Key("state");
	w.String(state.c_str());
	w.Key("connections");
	w.StartArray();
	for (size_t i = 0; i < sockets.size(); i++) {
		int fd = sockets[i].get();
		std::string stateName = tcpStateName(fd);
		bool listener = stateName == "LISTEN";
		std::string name = listener ? "listen" + std::to_string(listen++) : "conn" + std::to_string(conn++);
		names += (i ? ":" : "") + name;
		w.StartObject();
		w.Key("fd");
		w.Int(3 + static_cast<int>(i));
		w.Key("name");
		w.String(name.c_str());
		w.Key("local");
		w.String(endpointOf(fd, false).toString().c_str());
		w.Key("remote");
		w.String(listener ? "" : endpointOf(fd, true).toString().c_str());
		w.Key("state");
		w.String(stateName.c_str());
		w.EndObject();
	}
	w.EndArray();
	w.EndObject();
	std::ofstream(path) << buffer.GetString();
	return names;
}

struct Hosts {
	test::TestNetwork net;
	// Copies: addHost's references do not survive the next addHost.
	test::TestHost server;
	test::TestHost client;
	UniqueFd serverNs;
	UniqueFd clientNs;
	std::string serverAddress; // "198.51.100.10:0" or "[2001:db8::10]:0"

	explicit Hosts(int family)
	{
		server = net.addHost("server", {"198.51.100.10/24", "2001:db8::10/64"});
		client = net.addHost("client", {"198.51.100.20/24", "2001:db8::20/64"});
		serverNs = server.open();
		clientNs = client.open();
		serverAddress = family == AF_INET ? "198.51.100.10:0" : "[2001:db8::10]:0";
	}
};

struct Server {
	Child process;
	std::string out;
	UniqueFd channel;
};

Server startServer(Hosts &hosts, TempDir &dir, HandoffListener &handoff, const std::string &name)
{
	Server s;
	s.out = dir.file(name + ".out");
	s.process = spawn(hosts.serverNs.get(), Spawn{
		{binary("FERRY_DEMO_SERVER"), "--listen", hosts.serverAddress, "--rate", "512k"},
		{"FERRY_HANDOFF_SOCKET=" + dir.file("handoff.sock")}, s.out, {}, false});
	s.channel = handoff.accept(s.process.pid(), s.out);
	return s;
}

Child startClient(Hosts &hosts, const std::string &server, const std::string &out, int connections, bool idle)
{
	std::vector<std::string> argv = {binary("FERRY_DEMO_CLIENT"), "--connect", server, "--connections",
		std::to_string(connections), "--rate", "512k", "--drain-timeout", "5"};
	if (idle)
		argv.push_back("--idle");
	return spawn(hosts.clientNs.get(), Spawn{argv, {}, out, {}, false});
}

// Waits until the server streams on `connections` connections.
rapidjson::Document waitUntilStreaming(const Server &server, uint64_t connections)
{
	auto deadline = std::chrono::steady_clock::now() + kWait;
	while (true) {
		rapidjson::Document s = status(server.process, server.out, "status");
		if (s["connections"].GetUint64() == connections && s["bytesReceivedVerified"].GetUint64() > 0 &&
		    s["bytesSent"].GetUint64() > 0)
			return s;
		REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "server never streamed on all connections");
		std::this_thread::sleep_for(50ms);
	}
}

// Plays ferry's part of a committed migration: prepare, take the sockets,
// start the successor with them, exit the old one. `tamper` may change the
// blob on its way (to prove that a wrong handoff is caught).
Server handOff(Hosts &hosts, TempDir &dir, HandoffListener &handoff, Server &old, const std::string &migration,
		demo::HandoffState &stateOut, void (*tamper)(demo::HandoffState &) = nullptr)
{
	std::string blob = prepare(old.channel.get(), migration);
	auto decoded = demo::decodeHandoffState(blob);
	REQUIRE_MESSAGE(decoded.ok(), decoded.error().message());
	stateOut = *decoded;
	if (tamper) {
		tamper(*decoded);
		blob = demo::encodeHandoffState(*decoded);
	}

	std::vector<UniqueFd> sockets = takeTcpSockets(old.process.pid());
	REQUIRE(sockets.size() == stateOut.connections.size() + stateOut.listeners.size());
	std::string manifest = dir.file(migration + ".json");
	std::string names = writeManifest(manifest, migration, blob, sockets);

	Server next;
	next.out = dir.file(migration + ".out");
	std::vector<int> inherit;
	for (const UniqueFd &fd : sockets)
		inherit.push_back(fd.get());
	next.process = spawn(hosts.serverNs.get(), Spawn{
		{binary("FERRY_DEMO_SERVER"), "--rate", "512k"},
		{"FERRY_HANDOFF_SOCKET=" + dir.file("handoff.sock"), "LISTEN_FDS=" + std::to_string(sockets.size()),
			"LISTEN_FDNAMES=" + names, "FERRY_MANIFEST=" + manifest},
		next.out, inherit, true});
	// Our copies must go: a socket the test still held would not send its
	// FIN when the server closes it.
	sockets.clear();
	next.channel = handoff.accept(next.process.pid(), next.out);

	HandoffListener::send(old.channel.get(), R"({"exit":{}})");
	CHECK(old.process.wait() == 0);
	rapidjson::Document last = waitForEvent(old.out, "final");
	CHECK(last["errors"].GetUint64() == 0);
	CHECK(last["prepared"].GetBool());
	return next;
}

const rapidjson::Value *clientConnection(const rapidjson::Document &report, const Endpoint &clientEnd)
{
	for (const auto &c : report["connections"].GetArray())
		if (std::string(c["local"].GetString()) == clientEnd.toString())
			return &c;
	return nullptr;
}

// The offset named by a verifier's error ("stream byte differs at offset N ...").
uint64_t offsetInError(const std::string &error)
{
	const std::string marker = "differs at offset ";
	size_t at = error.find(marker);
	REQUIRE_MESSAGE(at != std::string::npos, "not a verification error: " << error);
	return std::strtoull(error.c_str() + at + marker.size(), nullptr, 10);
}

uint64_t sumReceived(const demo::HandoffState &s)
{
	uint64_t total = 0;
	for (const auto &c : s.connections)
		total += c.received;
	return total;
}

void checkCleanReport(const rapidjson::Document &report, uint64_t connections)
{
	INFO(report["totals"]["errors"].GetUint64());
	CHECK(std::string(report["result"].GetString()) == "ok");
	CHECK(report["totals"]["errors"].GetUint64() == 0);
	CHECK(report["totals"]["alive"].GetUint64() == connections);
	for (const auto &c : report["connections"].GetArray()) {
		INFO("connection " << c["id"].GetUint() << ": " << (c.HasMember("error") ? c["error"].GetString() : ""));
		CHECK(std::string(c["state"].GetString()) == "closed"); // drained to a clean end of stream
	}
}

void runCommittedHandoff(int family)
{
	Hosts hosts(family);
	TempDir dir;
	HandoffListener handoff(dir.file("handoff.sock"));
	Server first = startServer(hosts, dir, handoff, "server1");
	std::string address = waitForEvent(first.out, "listening")["address"].GetString();

	std::string streamOut = dir.file("client.out");
	std::string idleOut = dir.file("idle.out");
	Child streaming = startClient(hosts, address, streamOut, 4, false);
	Child idle = startClient(hosts, address, idleOut, 2, true);
	waitUntilStreaming(first, 6);
	std::this_thread::sleep_for(200ms);

	// Two migrations in a row: an adopted server must hand over again.
	demo::HandoffState firstState, secondState;
	auto handoffStart = std::chrono::steady_clock::now();
	Server second = handOff(hosts, dir, handoff, first, "m-1", firstState);
	auto handoffMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - handoffStart).count();
	REQUIRE(firstState.connections.size() == 6);
	REQUIRE(firstState.listeners.size() == 1);
	std::this_thread::sleep_for(500ms);
	rapidjson::Document mid = status(second.process, second.out, "status");
	CHECK(mid["adopted"].GetUint64() == 6);
	CHECK(mid["connections"].GetUint64() == 6);
	CHECK(mid["inheritedReceivedVerified"].GetUint64() == sumReceived(firstState));
	CHECK(mid["bytesReceivedVerified"].GetUint64() > 0); // verified by the new process
	CHECK(mid["bytesSent"].GetUint64() > 0);
	CHECK(mid["errors"].GetUint64() == 0);

	Server third = handOff(hosts, dir, handoff, second, "m-2", secondState);
	std::this_thread::sleep_for(500ms);

	// A new connection after the handoffs goes to the inherited listener.
	std::string lateOut = dir.file("late.out");
	Child late = startClient(hosts, address, lateOut, 1, false);
	std::this_thread::sleep_for(300ms);

	streaming.signal(SIGTERM);
	idle.signal(SIGTERM);
	late.signal(SIGTERM);
	CHECK(streaming.wait() == 0);
	CHECK(idle.wait() == 0);
	CHECK(late.wait() == 0);
	rapidjson::Document report = waitForEvent(streamOut, "report");
	rapidjson::Document idleReport = waitForEvent(idleOut, "report");
	checkCleanReport(report, 4);
	checkCleanReport(idleReport, 2);
	checkCleanReport(waitForEvent(lateOut, "report"), 1);
	CHECK(idleReport["totals"]["bytesVerified"].GetUint64() == 0);

	// Bytes the client verified beyond what the first two servers had sent
	// can only have come from the third one, on the same connection.
	for (const demo::ConnectionState &s : secondState.connections) {
		if (s.idle)
			continue;
		const rapidjson::Value *c = clientConnection(report, s.flow.remote);
		REQUIRE_MESSAGE(c, "no client connection " << s.flow.remote.toString());
		CHECK((*c)["bytesVerified"].GetUint64() > s.sent);
		const demo::ConnectionState *before = firstState.find(s.flow);
		REQUIRE(before);
		CHECK(s.sent > before->sent); // the second server streamed too
		CHECK(s.received > before->received);
	}

	third.process.signal(SIGTERM);
	CHECK(third.process.wait() == 0);
	rapidjson::Document finalStatus = waitForEvent(third.out, "final");
	CHECK(finalStatus["errors"].GetUint64() == 0);
	CHECK(finalStatus["resets"].GetUint64() == 0);
	CHECK(finalStatus["bytesReceivedVerified"].GetUint64() > 0);
	CHECK(finalStatus["accepted"].GetUint64() == 1); // the late client

	MESSAGE("handoff (prepare to exit, test acting as ferry): " << handoffMs << " ms; longest client stall "
		<< report["totals"]["longestStallMs"].GetDouble() << " ms; bytes verified by the client "
		<< report["totals"]["bytesVerified"].GetUint64() << ", by the servers " << finalStatus["inheritedReceivedVerified"].GetUint64() + finalStatus["bytesReceivedVerified"].GetUint64());
}

void runAbortedHandoff(int family)
{
	Hosts hosts(family);
	TempDir dir;
	HandoffListener handoff(dir.file("handoff.sock"));
	Server server = startServer(hosts, dir, handoff, "server");
	std::string address = waitForEvent(server.out, "listening")["address"].GetString();
	std::string clientOut = dir.file("client.out");
	Child client = startClient(hosts, address, clientOut, 3, false);
	waitUntilStreaming(server, 3);

	std::string blob = prepare(server.channel.get(), "m-abort");
	auto state = demo::decodeHandoffState(blob);
	REQUIRE(state.ok());
	rapidjson::Document paused = status(server.process, server.out, "status");
	CHECK(paused["prepared"].GetBool());
	CHECK(paused["bytesReceivedVerified"].GetUint64() == sumReceived(*state));
	// Prepared means hands off the sockets: nothing moves, for a pause of
	// several seconds (what a slow migration looks like to the client).
	std::this_thread::sleep_for(3s);
	rapidjson::Document stillPaused = status(server.process, server.out, "status");
	CHECK(stillPaused["bytesReceivedVerified"].GetUint64() == paused["bytesReceivedVerified"].GetUint64());
	CHECK(stillPaused["bytesSent"].GetUint64() == paused["bytesSent"].GetUint64());

	HandoffListener::send(server.channel.get(), R"({"resume":{}})");
	std::this_thread::sleep_for(500ms);
	rapidjson::Document resumed = status(server.process, server.out, "status");
	CHECK_FALSE(resumed["prepared"].GetBool());
	CHECK(resumed["bytesReceivedVerified"].GetUint64() > paused["bytesReceivedVerified"].GetUint64());
	CHECK(resumed["bytesSent"].GetUint64() > paused["bytesSent"].GetUint64());

	client.signal(SIGTERM);
	CHECK(client.wait() == 0);
	rapidjson::Document report = waitForEvent(clientOut, "report");
	checkCleanReport(report, 3);
	CHECK(report["totals"]["longestStallMs"].GetDouble() >= 3000); // the pause shows as a stall
	MESSAGE("aborted handoff: longest client stall " << report["totals"]["longestStallMs"].GetDouble() << " ms");
	server.process.signal(SIGTERM);
	CHECK(server.process.wait() == 0);
	CHECK(waitForEvent(server.out, "final")["errors"].GetUint64() == 0);
}

} // namespace

TEST_CASE("native handoff: every stream continues byte-exact in a new process (IPv4)")
{
	runCommittedHandoff(AF_INET);
}

TEST_CASE("native handoff: every stream continues byte-exact in a new process (IPv6)")
{
	runCommittedHandoff(AF_INET6);
}

TEST_CASE("resume after prepare carries on in the same process (IPv4)")
{
	runAbortedHandoff(AF_INET);
}

TEST_CASE("resume after prepare carries on in the same process (IPv6)")
{
	runAbortedHandoff(AF_INET6);
}

TEST_CASE("a handoff that loses or repeats a byte is caught on both sides")
{
	Hosts hosts(AF_INET);
	TempDir dir;
	HandoffListener handoff(dir.file("handoff.sock"));
	Server first = startServer(hosts, dir, handoff, "server1");
	std::string address = waitForEvent(first.out, "listening")["address"].GetString();
	std::string clientOut = dir.file("client.out");
	Child client = startClient(hosts, address, clientOut, 2, false);
	waitUntilStreaming(first, 2);

	// A handoff that got one connection's offsets wrong by one byte: the new
	// server skips a client byte on one connection and repeats a byte of its
	// own on the other.
	demo::HandoffState state;
	Server second = handOff(hosts, dir, handoff, first, "m-bad", state, [](demo::HandoffState &s) {
		REQUIRE(s.connections.size() == 2);
		s.connections[0].received += 1;
		REQUIRE(s.connections[1].sent > 0);
		s.connections[1].sent -= 1;
	});
	std::this_thread::sleep_for(500ms);

	client.signal(SIGTERM);
	CHECK(client.wait() == 1);
	rapidjson::Document report = waitForEvent(clientOut, "report");
	CHECK(std::string(report["result"].GetString()) == "failed");
	const rapidjson::Value *repeated = clientConnection(report, state.connections[1].flow.remote);
	REQUIRE(repeated);
	REQUIRE((*repeated).HasMember("error"));
	// The repeated byte shows at the first offset where the stream does not
	// repeat itself: the handed-over offset, or a few bytes after it.
	uint64_t clientSaw = offsetInError((*repeated)["error"].GetString());
	CHECK(clientSaw >= state.connections[1].sent);
	CHECK(clientSaw < state.connections[1].sent + 16);

	second.process.signal(SIGTERM);
	CHECK(second.process.wait() == 1);
	rapidjson::Document finalStatus = waitForEvent(second.out, "final");
	CHECK(finalStatus["errors"].GetUint64() >= 1);
	uint64_t serverSaw = offsetInError(finalStatus["firstError"].GetString());
	CHECK(serverSaw >= state.connections[0].received + 1);
	CHECK(serverSaw < state.connections[0].received + 16);
}
