#include "migration/workload_handoff.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "base/base64.h"
#include "base/log.h"
#include "base/unique_fd.h"

namespace ferry::migration {

namespace {

FERRY_LOG_CATEGORY(logHandoff, "migration")

using Clock = std::chrono::steady_clock;

constexpr int kListenBacklog = 16;
// Connections beyond this many are closed at once: a runaway client cannot
// make the agent poll an unbounded set.
constexpr size_t kMaxConnections = 256;
// A connection that sends this many messages that are dropped is closed.
constexpr int kMaxDroppedMessages = 16;
// How deep findWorkload() follows parents before giving up (a loop in
// /proc would be a kernel bug, but a bound costs nothing).
constexpr int kMaxTreeDepth = 1024;
// After accept() fails for lack of fds or memory, the listening socket
// stays readable; pausing it keeps the loop from spinning.
constexpr std::chrono::milliseconds kAcceptBackoff{100};

Error protocolError(std::string what)
{
	return makeError(std::move(what), EPROTO);
}

// A workload-supplied name, safe to put into an error or a log line.
std::string printable(std::string_view s)
{
	constexpr size_t kMax = 32;
	std::string out;
	for (char c : s.substr(0, kMax))
		out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
	if (s.size() > kMax)
		out.append("...");
	return out;
}

bool isPrintableAscii(std::string_view s)
{
	return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string_view memberName(const rapidjson::Value::ConstMemberIterator &m)
{
	return {m->name.GetString(), m->name.GetStringLength()};
}

Result<HelloMessage> parseHello(const rapidjson::Value &body)
{
	HelloMessage hello;
	bool havePid = false;
	bool haveName = false;
	for (auto m = body.MemberBegin(); m != body.MemberEnd(); ++m) {
		std::string_view name = memberName(m);
		if (name == "pid") {
			if (havePid)
				return protocolError("hello field 'pid' appears twice");
			havePid = true;
			if (!m->value.IsInt() || m->value.GetInt() <= 0)
				return protocolError("hello field 'pid' is not a positive integer");
			hello.pid = m->value.GetInt();
		} else if (name == "name") {
			if (haveName)
				return protocolError("hello field 'name' appears twice");
			haveName = true;
			if (!m->value.IsString())
				return protocolError("hello field 'name' is not a string");
			std::string_view value(m->value.GetString(), m->value.GetStringLength());
			if (value.size() > kMaxWorkloadNameBytes || !isPrintableAscii(value))
				return protocolError("hello field 'name' is not printable ASCII of at most " +
						     std::to_string(kMaxWorkloadNameBytes) + " bytes");
			hello.name = value;
		} else {
			return protocolError("hello has an unknown field '" + printable(name) + "'");
		}
	}
	if (!havePid)
		return protocolError("hello has no field 'pid'");
	return hello;
}

Result<ReadyMessage> parseReady(const rapidjson::Value &body)
{
	const rapidjson::Value *state = nullptr;
	for (auto m = body.MemberBegin(); m != body.MemberEnd(); ++m) {
		std::string_view name = memberName(m);
		if (name != "state")
			return protocolError("ready has an unknown field '" + printable(name) + "'");
		if (state)
			return protocolError("ready field 'state' appears twice");
		state = &m->value;
	}
	if (!state)
		return protocolError("ready has no field 'state'");
	if (!state->IsString())
		return protocolError("ready field 'state' is not a string");
	auto blob = base64Decode(std::string_view(state->GetString(), state->GetStringLength()));
	if (!blob)
		return protocolError("ready field 'state' is not base64: " + blob.error().message());
	return ReadyMessage{std::move(blob).value()};
}

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// {"<name>":{<fields>}}
template<typename Fields>
std::string encodeMessage(std::string_view name, Fields &&fields)
{
	rapidjson::StringBuffer buffer;
	JsonWriter w(buffer);
	w.StartObject();
	w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
	w.StartObject();
	fields(w);
	w.EndObject();
	w.EndObject();
	return std::string(buffer.GetString(), buffer.GetSize());
}

// The "key: value" line of /proc/PID/<file>, or nullopt.
std::optional<std::string> procField(pid_t pid, const char *file, std::string_view key)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
	std::string line;
	while (std::getline(in, line))
		if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 && line[key.size()] == ':')
			return line.substr(key.size() + 1);
	return std::nullopt;
}

// The pid that `pid` (as the agent sees it) has in its own, innermost pid
// namespace: the last field of NSpid in /proc/PID/status.
std::optional<pid_t> innermostPid(pid_t pid)
{
	auto field = procField(pid, "status", "NSpid");
	if (!field)
		return std::nullopt;
	std::istringstream in(*field);
	long value = 0;
	long last = 0;
	while (in >> value)
		last = value;
	if (last <= 0)
		return std::nullopt;
	return static_cast<pid_t>(last);
}

// The parent of `pid` from /proc/PID/stat ("pid (comm) state ppid ..."),
// where comm may itself hold spaces and ')'.
std::optional<pid_t> parentOf(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	std::string line;
	if (!std::getline(in, line))
		return std::nullopt;
	size_t close = line.rfind(')');
	if (close == std::string::npos)
		return std::nullopt;
	std::istringstream rest(line.substr(close + 1));
	std::string state;
	long parent = -1;
	if (!(rest >> state >> parent) || parent < 0)
		return std::nullopt;
	return static_cast<pid_t>(parent);
}

// `pid`'s ancestors, nearest first, up to (and without) pid 0.
std::vector<pid_t> ancestorsOf(pid_t pid)
{
	std::vector<pid_t> out;
	for (int depth = 0; depth < kMaxTreeDepth; depth++) {
		auto parent = parentOf(pid);
		if (!parent || *parent <= 0)
			break;
		out.push_back(*parent);
		pid = *parent;
	}
	return out;
}

std::string pidString(pid_t pid)
{
	return std::to_string(pid);
}

} // namespace

Result<WorkloadMessage> parseWorkloadMessage(std::string_view packet, std::optional<WorkloadMessageKind> *kind)
{
	if (kind)
		kind->reset();
	// RapidJSON reads a NUL byte as the end of the input and would ignore
	// whatever follows it; JSON text never holds one.
	if (packet.find('\0') != std::string_view::npos)
		return protocolError("message holds a NUL byte");
	rapidjson::Document doc;
	// Iterative: deep nesting cannot exhaust the stack. Encoding
	// validation: names and strings are UTF-8 or the packet is refused.
	doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(packet.data(),
											  packet.size());
	if (doc.HasParseError())
		return protocolError(std::string("message is not valid JSON: ") +
				     rapidjson::GetParseError_En(doc.GetParseError()) + " at offset " +
				     std::to_string(doc.GetErrorOffset()));
	if (!doc.IsObject())
		return protocolError("message is not a JSON object");
	if (doc.MemberCount() != 1)
		return protocolError("message holds " + std::to_string(doc.MemberCount()) +
				     " members, not exactly one");
	auto member = doc.MemberBegin();
	std::string_view name = memberName(member);
	const rapidjson::Value &body = member->value;

	WorkloadMessage message;
	if (name == "hello")
		message.kind = WorkloadMessageKind::Hello;
	else if (name == "ready")
		message.kind = WorkloadMessageKind::Ready;
	else if (name == "prepare" || name == "resume" || name == "exit")
		return protocolError("message '" + std::string(name) + "' is sent by the agent, not by a workload");
	else
		return protocolError("unknown message '" + printable(name) + "'");
	if (kind)
		*kind = message.kind;
	if (!body.IsObject())
		return protocolError("message '" + std::string(name) + "' is not a JSON object");

	if (message.kind == WorkloadMessageKind::Hello) {
		FERRY_TRY_ASSIGN(message.hello, parseHello(body));
	} else {
		FERRY_TRY_ASSIGN(message.ready, parseReady(body));
	}
	return message;
}

std::string encodePrepare(std::string_view migrationId)
{
	return encodeMessage("prepare", [&](JsonWriter &w) {
		w.Key("migration");
		w.String(migrationId.data(), static_cast<rapidjson::SizeType>(migrationId.size()));
	});
}

std::string encodeResume()
{
	return encodeMessage("resume", [](JsonWriter &) {});
}

std::string encodeExit()
{
	return encodeMessage("exit", [](JsonWriter &) {});
}

Status checkMigrationId(std::string_view migrationId)
{
	auto allowed = [](char c) {
		return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		       c == '_' || c == '-';
	};
	if (migrationId.empty() || migrationId.size() > kMaxMigrationIdBytes ||
	    !std::all_of(migrationId.begin(), migrationId.end(), allowed))
		return makeError("migration id '" + printable(migrationId) + "' is not 1 to " +
					 std::to_string(kMaxMigrationIdBytes) + " characters of [A-Za-z0-9._-]",
				 EINVAL);
	return {};
}

// --- the server ---

namespace {

// Where a workload connection is in the protocol.
enum class Stage {
	Connected, // no hello yet
	Idle,      // registered, running
	Preparing, // prepare sent, waiting for ready
	Ready,     // stopped at its safe point
	Exiting,   // exit sent
};

const char *stageName(Stage stage)
{
	switch (stage) {
	case Stage::Connected:
		return "connected";
	case Stage::Idle:
		return "running";
	case Stage::Preparing:
		return "preparing";
	case Stage::Ready:
		return "stopped";
	case Stage::Exiting:
		return "exiting";
	}
	return "?";
}

} // namespace

// One workload connection. The fd lives as long as the last holder of the
// shared_ptr, so a caller sending on it while the loop closes the
// connection writes to a dead socket (EPIPE), never to a reused fd number.
// Everything but `fd` and `peer` is guarded by Shared::mutex.
struct HandoffServer::Connection {
	UniqueFd fd;
	ucred peer{};
	Stage stage = Stage::Connected;
	bool closed = false;
	RegisteredWorkload workload;
	std::string migration;                   // of the outstanding prepare, or of the stop
	std::optional<Result<std::string>> answer; // for the prepare() waiting on it
	int dropped = 0;
};

struct HandoffServer::Shared {
	std::string path;
	dev_t device = 0;
	ino_t inode = 0;
	UniqueFd listenFd;
	UniqueFd wakeFd;
	std::thread thread;

	mutable std::mutex mutex;
	std::condition_variable changed;
	bool stopping = false;
	std::map<pid_t, std::shared_ptr<Connection>> registry;
};

namespace {

Error pathError(Error error, const std::string &path)
{
	return std::move(error).at("socket", path);
}

// Makes room for the socket at `path`: nothing there, or a stale socket
// that nobody accepts on (removed).
Status clearStaleSocket(const std::string &path, const sockaddr_un &address)
{
	struct stat st{};
	if (::lstat(path.c_str(), &st) != 0) {
		if (errno == ENOENT)
			return {};
		return pathError(errnoError("cannot inspect the handoff socket path"), path);
	}
	if (!S_ISSOCK(st.st_mode))
		return pathError(makeError("the handoff socket path exists and is not a socket; not removing it",
					   EEXIST),
				 path);
	UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	if (!probe)
		return pathError(errnoError("cannot create a unix socket"), path);
	if (::connect(probe.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) == 0 ||
	    errno == EPROTOTYPE)
		return pathError(makeError("another process serves the handoff socket", EADDRINUSE), path);
	if (errno != ECONNREFUSED)
		return pathError(errnoError("cannot probe the existing handoff socket"), path);
	// ECONNREFUSED: a socket file that no socket is bound to any more.
	if (::unlink(path.c_str()) != 0 && errno != ENOENT)
		return pathError(errnoError("cannot remove the stale handoff socket"), path);
	FERRY_LOG(logHandoff, Info) << "removed stale handoff socket" << kv("socket", path);
	return {};
}

Result<sockaddr_un> unixAddress(const std::string &path)
{
	sockaddr_un address{};
	address.sun_family = AF_UNIX;
	if (path.empty() || path.size() >= sizeof(address.sun_path))
		return pathError(makeError("the handoff socket path is empty or longer than " +
						   std::to_string(sizeof(address.sun_path) - 1) + " bytes",
					   ENAMETOOLONG),
				 path);
	std::memcpy(address.sun_path, path.data(), path.size());
	return address;
}

} // namespace

Result<std::unique_ptr<HandoffServer>> HandoffServer::listen(std::string path, mode_t mode)
{
	// Bound under a temporary name in the same directory, chmod'ed, then
	// renamed into place: the socket is never reachable with the umask's
	// mode.
	std::string temporary = path + "." + std::to_string(::getpid()) + ".tmp";
	FERRY_TRY_ASSIGN(sockaddr_un address, unixAddress(path));
	FERRY_TRY_ASSIGN(sockaddr_un temporaryAddress, unixAddress(temporary));
	FERRY_TRY(clearStaleSocket(path, address));

	auto shared = std::make_unique<Shared>();
	shared->path = path;
	shared->listenFd.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	if (!shared->listenFd)
		return pathError(errnoError("cannot create the handoff socket"), path);
	::unlink(temporary.c_str()); // left by an agent that died right here
	if (::bind(shared->listenFd.get(), reinterpret_cast<const sockaddr *>(&temporaryAddress),
		   sizeof(temporaryAddress)) != 0)
		return pathError(errnoError("cannot bind the handoff socket"), temporary);
	if (::chmod(temporary.c_str(), mode) != 0 || ::listen(shared->listenFd.get(), kListenBacklog) != 0 ||
	    ::rename(temporary.c_str(), path.c_str()) != 0) {
		Error error = errnoError("cannot set up the handoff socket");
		::unlink(temporary.c_str());
		return pathError(std::move(error), path);
	}
	struct stat st{};
	if (::stat(path.c_str(), &st) != 0)
		return pathError(errnoError("cannot stat the handoff socket"), path);
	shared->device = st.st_dev;
	shared->inode = st.st_ino;
	shared->wakeFd.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (!shared->wakeFd) {
		Error error = errnoError("cannot create an eventfd");
		::unlink(path.c_str());
		return pathError(std::move(error), path);
	}

	std::unique_ptr<HandoffServer> server(new HandoffServer(std::move(shared)));
	server->shared_->thread = std::thread([s = server.get()] { s->run(); });
	FERRY_LOG(logHandoff, Info) << "handoff socket listening" << kv("socket", path);
	return server;
}

HandoffServer::HandoffServer(std::unique_ptr<Shared> shared) : shared_(std::move(shared)) {}

HandoffServer::~HandoffServer()
{
	{
		std::lock_guard lock(shared_->mutex);
		shared_->stopping = true;
	}
	uint64_t one = 1;
	if (::write(shared_->wakeFd.get(), &one, sizeof(one)) < 0)
		FERRY_LOG(logHandoff, Error) << "cannot wake the handoff loop" << kv("error", std::strerror(errno));
	if (shared_->thread.joinable())
		shared_->thread.join();
	// Only our own socket: an agent started after us may have replaced it.
	struct stat st{};
	if (::stat(shared_->path.c_str(), &st) == 0 && st.st_dev == shared_->device && st.st_ino == shared_->inode)
		::unlink(shared_->path.c_str());
}

const std::string &HandoffServer::path() const
{
	return shared_->path;
}

void HandoffServer::run()
{
	std::vector<std::shared_ptr<Connection>> connections;
	std::vector<pollfd> fds;
	Clock::time_point acceptPausedUntil{};
	for (;;) {
		bool acceptPaused = Clock::now() < acceptPausedUntil;
		fds.clear();
		fds.push_back({shared_->wakeFd.get(), POLLIN, 0});
		fds.push_back({acceptPaused ? -1 : shared_->listenFd.get(), POLLIN, 0});
		for (const auto &c : connections)
			fds.push_back({c->fd.get(), POLLIN | POLLRDHUP, 0});
		int timeout = acceptPaused ? static_cast<int>(kAcceptBackoff.count()) : -1;
		if (::poll(fds.data(), fds.size(), timeout) < 0) {
			if (errno == EINTR)
				continue;
			// poll() fails only for EFAULT/EINVAL/ENOMEM; back off
			// rather than spin.
			FERRY_LOG(logHandoff, Error) << "handoff poll failed" << kv("error", std::strerror(errno));
			std::this_thread::sleep_for(kAcceptBackoff);
			continue;
		}
		if (fds[0].revents) {
			std::lock_guard lock(shared_->mutex);
			if (shared_->stopping)
				break;
		}
		for (size_t i = 0; i < connections.size(); i++)
			if (fds[i + 2].revents && !readPacket(connections[i], fds[i + 2].revents)) {
				std::lock_guard lock(shared_->mutex);
				close(*connections[i], "disconnected");
			}
		std::erase_if(connections, [&](const auto &c) {
			std::lock_guard lock(shared_->mutex);
			return c->closed;
		});
		if (fds[1].revents && !acceptConnections(connections))
			acceptPausedUntil = Clock::now() + kAcceptBackoff;
	}

	std::lock_guard lock(shared_->mutex);
	for (const auto &c : connections)
		close(*c, "agent stopping");
}

bool HandoffServer::acceptConnections(std::vector<std::shared_ptr<Connection>> &connections)
{
	for (;;) {
		UniqueFd fd(::accept4(shared_->listenFd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
		if (!fd) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return true;
			// EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays
			// in the backlog and the socket readable; pause.
			FERRY_LOG(logHandoff, Warn) << "cannot accept a workload connection"
						    << kv("error", std::strerror(errno));
			return false;
		}
		if (connections.size() >= kMaxConnections) {
			// Closed at once, so that the client learns instead of
			// hanging.
			FERRY_LOG(logHandoff, Warn) << "too many workload connections; refusing one"
						    << kv("limit", kMaxConnections);
			continue;
		}
		auto c = std::make_shared<Connection>();
		socklen_t length = sizeof(c->peer);
		if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &c->peer, &length) != 0) {
			FERRY_LOG(logHandoff, Warn) << "cannot read a workload's credentials; closing"
						    << kv("error", std::strerror(errno));
			continue;
		}
		c->fd = std::move(fd);
		FERRY_LOG(logHandoff, Debug) << "workload connected" << kv("peerPid", c->peer.pid)
					     << kv("uid", c->peer.uid);
		connections.push_back(std::move(c));
	}
}

bool HandoffServer::readPacket(const std::shared_ptr<Connection> &connection, short revents)
{
	int fd = connection->fd.get();
	if (!(revents & POLLIN))
		return !(revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL));
	// MSG_TRUNC with MSG_PEEK: the size of the next packet, whatever the
	// buffer, so one allocation of the right size holds it.
	char probe = 0;
	ssize_t size = ::recv(fd, &probe, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
	if (size < 0)
		return errno == EAGAIN || errno == EINTR;
	if (size == 0) {
		// End of stream, or an empty packet: consume it; the hangup
		// flag tells them apart.
		ssize_t n = ::recv(fd, &probe, 1, MSG_DONTWAIT);
		if (n == 0 && (revents & (POLLHUP | POLLRDHUP)))
			return false;
		std::lock_guard lock(shared_->mutex);
		drop(*connection, protocolError("message is empty"));
		return !connection->closed;
	}
	if (static_cast<size_t>(size) > kMaxHandoffPacketBytes) {
		// Reading a SEQPACKET record into a short buffer discards the
		// rest of it.
		(void)!::recv(fd, &probe, 1, MSG_DONTWAIT);
		std::lock_guard lock(shared_->mutex);
		drop(*connection, protocolError("message of " + std::to_string(size) + " bytes is larger than " +
						std::to_string(kMaxHandoffPacketBytes)));
		return !connection->closed;
	}
	std::string packet(static_cast<size_t>(size), '\0');
	ssize_t n = ::recv(fd, packet.data(), packet.size(), MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	packet.resize(static_cast<size_t>(n));
	handlePacket(connection, packet);
	std::lock_guard lock(shared_->mutex);
	return !connection->closed;
}

void HandoffServer::handlePacket(const std::shared_ptr<Connection> &connection, std::string_view packet)
{
	std::optional<WorkloadMessageKind> kind;
	auto message = parseWorkloadMessage(packet, &kind);
	// /proc is read before taking the lock: a hello across pid namespaces
	// names the workload by its inner pid.
	std::optional<pid_t> innerPid;
	if (message && message->kind == WorkloadMessageKind::Hello && message->hello.pid != connection->peer.pid)
		innerPid = innermostPid(connection->peer.pid);

	std::lock_guard lock(shared_->mutex);
	Connection &c = *connection;
	if (c.closed)
		return;
	if (!message) {
		if (kind == WorkloadMessageKind::Ready && c.stage == Stage::Preparing) {
			c.answer = Error(message.error()).at("pid", pidString(c.workload.pid));
			shared_->changed.notify_all();
			return;
		}
		drop(c, message.error());
		return;
	}

	if (message->kind == WorkloadMessageKind::Hello) {
		const HelloMessage &hello = message->hello;
		if (c.stage != Stage::Connected) {
			drop(c, protocolError("hello on a connection that is already registered"));
			return;
		}
		bool samePid = hello.pid == c.peer.pid;
		bool sameInner = innerPid && *innerPid == hello.pid && *innerPid != c.peer.pid;
		if (!samePid && !sameInner) {
			FERRY_LOG(logHandoff, Warn) << "refused workload: hello names another pid than its credentials"
						    << kv("announcedPid", hello.pid) << kv("peerPid", c.peer.pid)
						    << kv("name", printable(hello.name));
			close(c, "refused");
			return;
		}
		if (shared_->registry.count(c.peer.pid)) {
			FERRY_LOG(logHandoff, Warn) << "refused workload: its pid is already registered"
						    << kv("pid", c.peer.pid) << kv("name", printable(hello.name));
			close(c, "refused");
			return;
		}
		c.workload = RegisteredWorkload{c.peer.pid, hello.pid, c.peer.uid, hello.name};
		c.stage = Stage::Idle;
		shared_->registry[c.peer.pid] = connection;
		FERRY_LOG(logHandoff, Info) << "workload registered" << kv("pid", c.peer.pid)
					    << kv("announcedPid", hello.pid) << kv("name", hello.name);
		return;
	}

	if (c.stage != Stage::Preparing) {
		drop(c, protocolError(std::string("ready while the workload is ") + stageName(c.stage) +
				      ", not preparing"));
		return;
	}
	c.stage = Stage::Ready;
	c.answer = std::move(message->ready.state);
	shared_->changed.notify_all();
}

void HandoffServer::drop(Connection &c, const Error &error)
{
	c.dropped++;
	FERRY_LOG(logHandoff, Warn) << "dropped a workload message" << kv("pid", c.peer.pid)
				    << kv("stage", stageName(c.stage)) << kv("error", error.message());
	if (c.dropped >= kMaxDroppedMessages)
		close(c, "too many invalid messages");
}

void HandoffServer::close(Connection &c, std::string_view why)
{
	if (c.closed)
		return;
	c.closed = true;
	auto it = shared_->registry.find(c.workload.pid);
	if (it != shared_->registry.end() && it->second.get() == &c)
		shared_->registry.erase(it);
	if (c.stage == Stage::Preparing)
		c.answer = makeError("workload disconnected before it was ready", ECONNRESET);
	// Shut down rather than close: a caller may still be sending on the fd,
	// which stays open until the last reference goes.
	::shutdown(c.fd.get(), SHUT_RDWR);
	shared_->changed.notify_all();
	if (c.stage != Stage::Connected || why != "disconnected")
		FERRY_LOG(logHandoff, Info) << "workload connection closed" << kv("pid", c.peer.pid)
					    << kv("name", c.workload.name) << kv("stage", stageName(c.stage))
					    << kv("reason", why);
}

std::shared_ptr<HandoffServer::Connection> HandoffServer::registered(pid_t pid) const
{
	auto it = shared_->registry.find(pid);
	return it == shared_->registry.end() ? nullptr : it->second;
}

bool HandoffServer::isRegistered(pid_t pid) const
{
	std::lock_guard lock(shared_->mutex);
	return registered(pid) != nullptr;
}

std::vector<RegisteredWorkload> HandoffServer::workloads() const
{
	std::lock_guard lock(shared_->mutex);
	std::vector<RegisteredWorkload> out;
	for (const auto &[pid, c] : shared_->registry)
		out.push_back(c->workload);
	return out;
}

Result<pid_t> HandoffServer::findWorkload(pid_t pid) const
{
	std::vector<pid_t> pids;
	{
		std::lock_guard lock(shared_->mutex);
		for (const auto &[registeredPid, c] : shared_->registry)
			pids.push_back(registeredPid);
	}
	auto isRegisteredPid = [&](pid_t p) { return std::find(pids.begin(), pids.end(), p) != pids.end(); };
	if (isRegisteredPid(pid))
		return pid;
	for (pid_t ancestor : ancestorsOf(pid))
		if (isRegisteredPid(ancestor))
			return ancestor;

	// Descendants: a registered workload whose ancestors include `pid`,
	// the fewest generations below it.
	std::vector<pid_t> nearest;
	size_t nearestDepth = SIZE_MAX;
	for (pid_t candidate : pids) {
		std::vector<pid_t> chain = ancestorsOf(candidate);
		auto it = std::find(chain.begin(), chain.end(), pid);
		if (it == chain.end())
			continue;
		size_t depth = static_cast<size_t>(it - chain.begin());
		if (depth < nearestDepth) {
			nearest.clear();
			nearestDepth = depth;
		}
		if (depth == nearestDepth)
			nearest.push_back(candidate);
	}
	if (nearest.size() == 1)
		return nearest.front();
	if (nearest.empty())
		return makeError("no registered workload is this process, an ancestor or a descendant of it", ENOENT)
			.at("pid", pidString(pid));
	std::string list;
	for (pid_t p : nearest)
		list.append(list.empty() ? "" : ",").append(pidString(p));
	return makeError("several registered workloads descend from this process; name one of them", EINVAL)
		.at("candidates", list)
		.at("pid", pidString(pid));
}

Status HandoffServer::send(Connection &c, const std::string &packet, Clock::time_point deadline, std::string_view what)
{
	for (;;) {
		if (::send(c.fd.get(), packet.data(), packet.size(), MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
			return {};
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return errnoError("cannot send " + std::string(what) + " to the workload");
		auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
		if (left.count() <= 0)
			return makeError("the workload's socket stayed full; cannot send " + std::string(what),
					 ETIMEDOUT);
		pollfd p{c.fd.get(), POLLOUT, 0};
		if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
			return errnoError("cannot wait to send " + std::string(what) + " to the workload");
	}
}

Result<std::string> HandoffServer::prepare(pid_t pid, std::string_view migrationId, std::chrono::milliseconds timeout)
{
	auto withContext = [&](Error error) {
		return std::move(error).at("migration", printable(migrationId)).at("pid", pidString(pid)).at("phase", "prepare");
	};
	if (auto valid = checkMigrationId(migrationId); !valid)
		return withContext(std::move(valid).error());
	Clock::time_point deadline = Clock::now() + timeout;

	std::shared_ptr<Connection> c;
	{
		std::lock_guard lock(shared_->mutex);
		c = registered(pid);
		if (!c)
			return withContext(makeError("no workload is registered with this pid", ENOENT));
		if (c->stage != Stage::Idle)
			return withContext(makeError(std::string("the workload is already ") + stageName(c->stage) +
							     " for migration " + c->migration,
						     EBUSY));
		c->stage = Stage::Preparing;
		c->migration = migrationId;
		c->answer.reset();
	}
	FERRY_LOG(logHandoff, Info) << "asking workload to prepare" << kv("pid", pid)
				    << kv("migration", std::string(migrationId));

	if (auto sent = send(*c, encodePrepare(migrationId), deadline, "prepare"); !sent) {
		std::lock_guard lock(shared_->mutex);
		if (c->stage == Stage::Preparing)
			c->stage = Stage::Idle;
		return withContext(std::move(sent).error());
	}

	std::optional<Result<std::string>> answer;
	{
		std::unique_lock lock(shared_->mutex);
		shared_->changed.wait_until(lock, deadline, [&] { return c->answer.has_value() || c->closed; });
		answer = std::exchange(c->answer, std::nullopt);
		if (answer && answer->ok()) {
			FERRY_LOG(logHandoff, Info) << "workload ready" << kv("pid", pid)
						    << kv("migration", std::string(migrationId))
						    << kv("stateBytes", answer->value().size());
			return std::move(*answer).value();
		}
		if (c->closed) {
			if (!answer)
				answer = Result<std::string>(makeError("workload disconnected before it was ready", ECONNRESET));
			return withContext(std::move(*answer).error());
		}
		if (!answer)
			answer = Result<std::string>(makeError("workload did not answer prepare within " +
								       std::to_string(timeout.count()) + " ms",
							       ETIMEDOUT));
		// resume() ended this prepare and has sent resume itself.
		if (answer->error().code == ECANCELED)
			return withContext(std::move(*answer).error());
		// A late ready is now dropped; the resume below releases a
		// workload that stopped after all.
		c->stage = Stage::Idle;
	}
	Error error = std::move(*answer).error();
	FERRY_LOG(logHandoff, Warn) << "workload prepare failed; resuming it" << kv("pid", pid)
				    << kv("migration", std::string(migrationId)) << kv("error", error.message());
	if (auto resumed = send(*c, encodeResume(), Clock::now() + kDefaultSendTimeout, "resume"); !resumed)
		FERRY_LOG(logHandoff, Warn) << "cannot resume workload after a failed prepare" << kv("pid", pid)
					    << kv("error", resumed.error().message());
	return withContext(std::move(error));
}

Status HandoffServer::resume(pid_t pid, std::chrono::milliseconds timeout)
{
	std::shared_ptr<Connection> c;
	std::string migration;
	{
		std::lock_guard lock(shared_->mutex);
		c = registered(pid);
		if (!c)
			return makeError("no workload is registered with this pid", ENOENT)
				.at("pid", pidString(pid))
				.at("phase", "resume");
		migration = c->migration;
		if (c->stage == Stage::Exiting)
			return makeError("the workload was already told to exit", EINVAL)
				.at("migration", migration)
				.at("pid", pidString(pid))
				.at("phase", "resume");
		if (c->stage != Stage::Ready && c->stage != Stage::Preparing)
			return {};
		if (c->stage == Stage::Preparing) {
			// A prepare() is still waiting: it fails, and does not
			// send its own resume after ours.
			c->answer = makeError("the migration was aborted while the workload prepared", ECANCELED);
			shared_->changed.notify_all();
		}
		c->stage = Stage::Idle;
	}
	if (auto sent = send(*c, encodeResume(), Clock::now() + timeout, "resume"); !sent)
		return std::move(sent).error().at("migration", migration).at("pid", pidString(pid)).at("phase", "resume");
	FERRY_LOG(logHandoff, Info) << "workload resumed" << kv("pid", pid) << kv("migration", migration);
	return {};
}

Status HandoffServer::exit(pid_t pid, std::chrono::milliseconds timeout)
{
	std::shared_ptr<Connection> c;
	std::string migration;
	{
		std::lock_guard lock(shared_->mutex);
		c = registered(pid);
		if (!c)
			return makeError("no workload is registered with this pid", ENOENT)
				.at("pid", pidString(pid))
				.at("phase", "exit");
		migration = c->migration;
		if (c->stage != Stage::Ready)
			return makeError(std::string("the workload is ") + stageName(c->stage) +
						 ", not stopped at a safe point by prepare",
					 EINVAL)
				.at("pid", pidString(pid))
				.at("phase", "exit");
		c->stage = Stage::Exiting;
	}
	if (auto sent = send(*c, encodeExit(), Clock::now() + timeout, "exit"); !sent) {
		std::lock_guard lock(shared_->mutex);
		if (c->stage == Stage::Exiting)
			c->stage = Stage::Ready; // still stopped: exit or resume may be tried again
		return std::move(sent).error().at("migration", migration).at("pid", pidString(pid)).at("phase", "exit");
	}
	FERRY_LOG(logHandoff, Info) << "workload told to exit" << kv("pid", pid) << kv("migration", migration);
	return {};
}

} // namespace ferry::migration
