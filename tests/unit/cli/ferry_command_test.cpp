// The built `ferry` binary against a real ApiServer (loopback, port 0) in
// front of FakeMigrationService: what a user or a script sees, exit codes
// included. No privileges needed, except that `doctor`'s host checks
// report what the test's user may do (only the agent check is asserted).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rapidjson/document.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "../api/fake_migration_service.h"
#include "api/agent_client.h"
#include "api/api_server.h"
#include "api/schemas.h"

using namespace ferry;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

extern char **environ;

namespace {

constexpr const char *kToken = "cli-test-token";

struct TempDir {
	fs::path path;
	TempDir()
	{
		char name[] = "/tmp/ferry-cli-test-XXXXXX";
		REQUIRE(::mkdtemp(name) != nullptr);
		path = name;
	}
	~TempDir()
	{
		std::error_code ec;
		fs::remove_all(path, ec);
	}
	std::string file(const std::string &name, const std::string &content) const
	{
		std::ofstream(path / name, std::ios::binary) << content;
		return (path / name).string();
	}
};

struct Run {
	int exitCode = -1;
	std::string out;
	std::string err;
};

// Runs the ferry binary with `args` and returns what it printed. stdin is
// /dev/null and stdout/stderr are pipes (not TTYs): the output scripts get.
// With `ttyColumns`, stdout is a pseudo-terminal that wide instead: what a
// person sees.
Run runFerry(const std::vector<std::string> &args, unsigned short ttyColumns = 0)
{
	int outPipe[2], errPipe[2];
	if (ttyColumns) {
		int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		REQUIRE(master >= 0);
		REQUIRE(::grantpt(master) == 0);
		REQUIRE(::unlockpt(master) == 0);
		winsize size{};
		size.ws_row = 24;
		size.ws_col = ttyColumns;
		REQUIRE(::ioctl(master, TIOCSWINSZ, &size) == 0);
		int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
		REQUIRE(slave >= 0);
		outPipe[0] = master;
		outPipe[1] = slave;
	} else {
		REQUIRE(::pipe2(outPipe, O_CLOEXEC) == 0);
	}
	REQUIRE(::pipe2(errPipe, O_CLOEXEC) == 0);
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, outPipe[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&actions, errPipe[1], STDERR_FILENO);
	posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	std::vector<std::string> argvStrings = {FERRY_CLI_BINARY};
	argvStrings.insert(argvStrings.end(), args.begin(), args.end());
	std::vector<char *> argv;
	for (std::string &s : argvStrings)
		argv.push_back(s.data());
	argv.push_back(nullptr);
	// The environment without FERRY_AGENT/FERRY_LOG, so the test decides.
	std::vector<std::string> envStrings;
	for (char **e = environ; *e; ++e) {
		std::string_view v(*e);
		if (v.rfind("FERRY_AGENT=", 0) != 0 && v.rfind("FERRY_LOG=", 0) != 0)
			envStrings.emplace_back(v);
	}
	std::vector<char *> envp;
	for (std::string &s : envStrings)
		envp.push_back(s.data());
	envp.push_back(nullptr);

	pid_t pid = -1;
	int rc = ::posix_spawn(&pid, FERRY_CLI_BINARY, &actions, nullptr, argv.data(), envp.data());
	posix_spawn_file_actions_destroy(&actions);
	::close(outPipe[1]);
	::close(errPipe[1]);
	REQUIRE_MESSAGE(rc == 0, "cannot run " << FERRY_CLI_BINARY);

	Run run;
	pollfd fds[2] = {{outPipe[0], POLLIN, 0}, {errPipe[0], POLLIN, 0}};
	std::string *sinks[2] = {&run.out, &run.err};
	int open = 2;
	auto deadline = std::chrono::steady_clock::now() + 30s;
	while (open > 0 && std::chrono::steady_clock::now() < deadline) {
		if (::poll(fds, 2, 500) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; ++i) {
			if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buffer[4096];
			ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
			if (n > 0) {
				sinks[i]->append(buffer, static_cast<size_t>(n));
			} else if (n == 0 || errno != EINTR) { // a pty master reads EIO once the child is gone
				::close(fds[i].fd);
				fds[i].fd = -1;
				--open;
			}
		}
	}
	bool timedOut = open > 0;
	if (timedOut)
		::kill(pid, SIGKILL); // our own child, by pid
	for (pollfd &p : fds) {
		if (p.fd >= 0)
			::close(p.fd);
	}
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	REQUIRE_MESSAGE(!timedOut, "ferry did not finish within 30 s; stderr: " << run.err);
	REQUIRE_MESSAGE(WIFEXITED(status), "ferry was killed by a signal; stderr: " << run.err);
	run.exitCode = WEXITSTATUS(status);
	return run;
}

// An agent on 127.0.0.1 with a token, in front of the fake engine.
struct Agent {
	TempDir dir;
	test::FakeMigrationService fake;
	std::unique_ptr<api::ApiServer> server;
	std::string url;
	std::string tokenFile;

	Agent()
	{
		tokenFile = dir.file("token", std::string(kToken) + "\n");
		api::AgentConfig config;
		config.listen = *Endpoint::parse("127.0.0.1:0");
		config.stateDir = (dir.path / "state").string();
		config.tokenFile = tokenFile;
		config.allow.netns = {"ferry-*"};
		config.allow.interfaces = {"eth*"};
		auto created = api::ApiServer::create(fake, config);
		REQUIRE_MESSAGE(created.ok(), created.error().message());
		server = std::move(*created);
		Status started = server->start();
		REQUIRE_MESSAGE(started.ok(), started.error().message());
		url = "http://127.0.0.1:" + std::to_string(server->port());
	}
	~Agent() { server->stop(); }

	// `ferry --agent URL --token-file FILE args...`
	Run ferry(std::vector<std::string> args) const
	{
		args.insert(args.begin(), {"--agent", url, "--token-file", tokenFile});
		return runFerry(args);
	}
};

migration::MigrationStatus statusOf(const std::string &id, migration::Phase phase)
{
	migration::MigrationStatus st;
	st.id = id;
	st.role = migration::Role::Source;
	st.phase = phase;
	st.peerAgent = "http://198.51.100.2:7411";
	st.connections = 4;
	st.bytesMoved = 65536;
	st.imageBytes = 4096;
	st.total = 42000us;
	if (phase == migration::Phase::Committed) {
		st.blackout = 3870us;
		st.lockWindow = 3410us;
	} else if (phase == migration::Phase::Aborted) {
		st.error = "destination refused: restore failed";
	}
	return st;
}

migration::MigrationEvent eventOf(const std::string &id, migration::Phase phase, uint32_t done, std::string message)
{
	migration::MigrationEvent e;
	e.id = id;
	e.phase = phase;
	e.connectionsDone = done;
	e.connectionsTotal = 4;
	e.bytesDone = done * 16384;
	e.elapsed = std::chrono::microseconds(1000 * (done + 1));
	e.message = std::move(message);
	return e;
}

const std::vector<std::string> kMigrateArgs = {
	"migrate", "--pid", "4242", "--to", "http://198.51.100.2:7411", "--target-netns", "ferry-b",
	"--address", "198.51.100.10/24@eth0", "--exec", "/usr/bin/demo --rate '256 k'",
	"--env", "FERRY_HANDOFF_SOCKET=/run/h.sock"};

// Plays the engine's part of one migration: waits for ferry to follow the
// events, sends progress, then ends in `end` (status first, then its event,
// as the engine does).
void driveMigration(test::FakeMigrationService &fake, const std::string &id, migration::Phase end)
{
	REQUIRE(fake.waitForSubscribers(1, 10s));
	fake.emit(eventOf(id, migration::Phase::Frozen, 0, "workload frozen"));
	fake.emit(eventOf(id, migration::Phase::Streaming, 2, "dumping"));
	fake.addMigration(statusOf(id, end));
	fake.emit(eventOf(id, end, end == migration::Phase::Committed ? 4 : 2, ""));
}

bool contains(const std::string &haystack, const std::string &needle)
{
	return haystack.find(needle) != std::string::npos;
}

} // namespace

TEST_CASE("migrate follows the events to a commit: exit 0 and the final status as JSON")
{
	Agent agent;
	auto run = std::async(std::launch::async, [&] {
		std::vector<std::string> args = {"-o", "json"};
		args.insert(args.end(), kMigrateArgs.begin(), kMigrateArgs.end());
		return agent.ferry(args);
	});
	driveMigration(agent.fake, "m-1", migration::Phase::Committed);
	Run result = run.get();
	CHECK_MESSAGE(result.exitCode == 0, result.err);
	auto status = api::fromJson<migration::MigrationStatus>(result.out);
	REQUIRE_MESSAGE(status.ok(), result.out);
	CHECK(status->id == "m-1");
	CHECK(std::string(api::phaseName(status->phase)) == "committed");
	CHECK(status->blackout == 3870us);
	CHECK(status->connections == 4);
	// One JSON document and nothing else on stdout; no progress noise on a
	// non-TTY stderr.
	CHECK(std::count(result.out.begin(), result.out.end(), '\n') == 1);
	CHECK(result.err.empty());

	// The request the agent got is what the flags said.
	auto calls = agent.fake.calls();
	REQUIRE(calls.starts.size() == 1);
	const migration::MigrationRequest &r = calls.starts[0];
	REQUIRE(r.selection.pid);
	CHECK(*r.selection.pid == 4242);
	CHECK(r.targetAgent == "http://198.51.100.2:7411");
	CHECK(r.targetNetns == "ferry-b");
	REQUIRE(r.addresses.size() == 1);
	CHECK(r.addresses[0].cidr == "198.51.100.10/24");
	CHECK(r.addresses[0].targetInterface == "eth0");
	CHECK(r.handoff.execArgv == std::vector<std::string>{"/usr/bin/demo", "--rate", "256 k"});
	CHECK(r.handoff.environment.at("FERRY_HANDOFF_SOCKET") == "/run/h.sock");
	CHECK(agent.fake.waitForSubscribers(0, 5s)); // the stream was closed
}

TEST_CASE("migrate in text: progress lines, then the result")
{
	Agent agent;
	auto run = std::async(std::launch::async, [&] { return agent.ferry(kMigrateArgs); });
	driveMigration(agent.fake, "m-1", migration::Phase::Committed);
	Run result = run.get();
	CHECK_MESSAGE(result.exitCode == 0, result.err);
	CHECK(result.out.rfind("migration m-1 started on " + agent.url, 0) == 0);
	// Plain lines, one per event, when stdout is not a TTY.
	CHECK(!contains(result.out, "\r"));
	CHECK(contains(result.out, "\nfrozen "));
	CHECK(contains(result.out, "workload frozen\n"));
	CHECK(contains(result.out, "\nstreaming    2/4 connections"));
	CHECK(contains(result.out, "\nmigration m-1 committed\n"));
	CHECK(contains(result.out, "blackout     3.87 ms\n"));
	CHECK(contains(result.out, "lock window  3.41 ms\n"));
	CHECK(contains(result.out, "destination  http://198.51.100.2:7411\n"));
	CHECK(result.out.find("streaming") < result.out.find("committed\n"));
}

TEST_CASE("migrate on a TTY: one live line, redrawn in place and ticking between events")
{
	Agent agent;
	auto run = std::async(std::launch::async, [&] {
		std::vector<std::string> args = {"--agent", agent.url, "--token-file", agent.tokenFile};
		args.insert(args.end(), kMigrateArgs.begin(), kMigrateArgs.end());
		return runFerry(args, 60);
	});
	REQUIRE(agent.fake.waitForSubscribers(1, 10s));
	agent.fake.emit(eventOf("m-1", migration::Phase::Streaming, 1,
				"a long message that does not fit in sixty columns at all, not even close"));
	// No event for a while: the elapsed time must still move.
	std::this_thread::sleep_for(1200ms);
	agent.fake.addMigration(statusOf("m-1", migration::Phase::Committed));
	agent.fake.emit(eventOf("m-1", migration::Phase::Committed, 4, ""));
	Run result = run.get();
	CHECK_MESSAGE(result.exitCode == 0, result.err);

	// Each redraw goes back to column 0 and clears the line.
	std::vector<std::string> draws;
	for (size_t at = result.out.find("\r\x1b[K"); at != std::string::npos;) {
		size_t next = result.out.find("\r\x1b[K", at + 1);
		draws.push_back(result.out.substr(at + 4, next == std::string::npos ? std::string::npos : next - at - 4));
		at = next;
	}
	size_t streamingDraws = 0;
	std::set<std::string> distinct;
	for (const std::string &draw : draws) {
		if (draw.rfind("streaming", 0) != 0)
			continue;
		++streamingDraws;
		distinct.insert(draw);
		// Cut to the terminal's width, so that it never wraps.
		CHECK(draw.size() < 60);
	}
	// One event, but the ticker redrew it with a moving clock.
	CHECK(streamingDraws >= 3);
	CHECK(distinct.size() >= 3);
	CHECK(contains(result.out, "migration m-1 committed"));
	// The live line was cleared before the result was printed.
	CHECK(contains(result.out, "\r\x1b[Kmigration m-1 committed"));
}

TEST_CASE("migrate that aborts: exit 1, the status with its error, the reason on stderr")
{
	Agent agent;
	auto run = std::async(std::launch::async, [&] {
		std::vector<std::string> args = kMigrateArgs;
		args.insert(args.end(), {"-o", "json"});
		return agent.ferry(args);
	});
	driveMigration(agent.fake, "m-1", migration::Phase::Aborted);
	Run result = run.get();
	CHECK(result.exitCode == 1);
	auto status = api::fromJson<migration::MigrationStatus>(result.out);
	REQUIRE_MESSAGE(status.ok(), result.out);
	CHECK(std::string(api::phaseName(status->phase)) == "aborted");
	CHECK(status->error == "destination refused: restore failed");
	CHECK(contains(result.err, "destination refused: restore failed"));

	// Text output says it too.
	Agent again;
	auto text = std::async(std::launch::async, [&] { return again.ferry(kMigrateArgs); });
	driveMigration(again.fake, "m-1", migration::Phase::Aborted);
	Run textResult = text.get();
	CHECK(textResult.exitCode == 1);
	CHECK(contains(textResult.out, "migration m-1 aborted: destination refused: restore failed\n"));
}

TEST_CASE("migrate --no-wait returns at once with the starting status")
{
	Agent agent;
	Run result = agent.ferry({"-o", "json", "migrate", "--netns", "ferry-a", "--port", "7000", "--port", "7001",
				  "--to", "http://198.51.100.2:7411", "--target-netns", "ferry-b", "--no-wait",
				  "--lock-strategy", "drop-inbound", "--no-listeners"});
	CHECK_MESSAGE(result.exitCode == 0, result.err);
	auto status = api::fromJson<migration::MigrationStatus>(result.out);
	REQUIRE_MESSAGE(status.ok(), result.out);
	CHECK(std::string(api::phaseName(status->phase)) == "negotiating");
	CHECK(agent.fake.liveSubscriptions() == 0);
	auto calls = agent.fake.calls();
	REQUIRE(calls.starts.size() == 1);
	CHECK(calls.starts[0].selection.netns == "ferry-a");
	CHECK(calls.starts[0].selection.localPorts == std::vector<uint16_t>{7000, 7001});
	CHECK(!calls.starts[0].selection.includeListeners);
	CHECK(calls.starts[0].lockStrategy == "drop-inbound");

	Run text = agent.ferry({"migrate", "--pid", "1", "--to", "http://198.51.100.2:7411", "--target-netns", "b",
				"--no-wait"});
	CHECK(text.exitCode == 0);
	CHECK(contains(text.out, "migration m-2 started"));
	CHECK(contains(text.out, "ferry status m-2"));
}

TEST_CASE("migrate refused by the agent: exit 1 and the agent's reason")
{
	Agent agent;
	agent.fake.startError = makeError("selection: give a pid, or a netns with local ports", EINVAL);
	Run result = agent.ferry({"-o", "json", "migrate", "--pid", "1", "--to", "http://198.51.100.2:7411",
				  "--target-netns", "b"});
	CHECK(result.exitCode == 1);
	CHECK(contains(result.err, "ferry migrate: cannot start the migration: selection: give a pid"));
	auto error = api::fromJson<api::ErrorReply>(result.out);
	REQUIRE_MESSAGE(error.ok(), result.out);
	CHECK(error->error.code == EINVAL);

	agent.fake.startError = makeError("too many migrations in progress", EAGAIN);
	CHECK(agent.ferry({"migrate", "--pid", "1", "--to", "http://198.51.100.2:7411", "--target-netns", "b"})
		      .exitCode == 1);
}

namespace {

// What a source engine records when its destination refuses the
// negotiation: the peer client's (AgentClient) error for a real answer of
// `destination`, with the migration id in front of its context, as
// SourceMigration::run() passes it to rollBack().
std::string refusedPrepareReason(const Agent &destination, const std::string &token, const std::string &id)
{
	api::AgentCredentials credentials;
	credentials.token = token;
	auto client = api::AgentClient::connect(destination.url, credentials);
	REQUIRE_MESSAGE(client.ok(), client.error().message());
	migration::PrepareRequest prepare;
	prepare.migrationId = id;
	prepare.sourceAgent = "http://198.51.100.1:7411";
	prepare.targetNetns = "not-allowed-here"; // the agent allows ferry-*
	auto reply = client->prepare(prepare);
	REQUIRE(!reply.ok());
	return std::move(reply).error().at("migration", id).message();
}

} // namespace

TEST_CASE("migrate refused by the destination (403 allowlist, 401 token): exit 4, the reason as for any abort")
{
	Agent destination;
	const std::string forbidden = refusedPrepareReason(destination, kToken, "m-1");
	INFO(forbidden);
	CHECK(contains(forbidden, "status=403"));
	const std::string badToken = refusedPrepareReason(destination, "not-the-token", "m-1");
	INFO(badToken);
	CHECK(contains(badToken, "status=401"));

	struct Case {
		std::string reason;
		std::string hint;
	};
	for (const Case &c : {Case{forbidden, "refused the migration: check its allowlist"},
			      Case{badToken, "refused the credentials of the source agent"}}) {
		// JSON: the aborted MigrationStatus on stdout, the reason and a
		// hint on stderr.
		Agent source;
		auto run = std::async(std::launch::async, [&] {
			std::vector<std::string> args = {"-o", "json"};
			args.insert(args.end(), kMigrateArgs.begin(), kMigrateArgs.end());
			return source.ferry(args);
		});
		REQUIRE(source.fake.waitForSubscribers(1, 10s));
		migration::MigrationStatus st = statusOf("m-1", migration::Phase::Aborted);
		st.error = c.reason;
		source.fake.addMigration(st);
		source.fake.emit(eventOf("m-1", migration::Phase::Aborted, 0, c.reason));
		Run result = run.get();
		CHECK_MESSAGE(result.exitCode == 4, result.err);
		auto status = api::fromJson<migration::MigrationStatus>(result.out);
		REQUIRE_MESSAGE(status.ok(), result.out);
		CHECK(std::string(api::phaseName(status->phase)) == "aborted");
		CHECK(status->error == c.reason);
		CHECK(contains(result.err, "ferry migrate: migration m-1 aborted: " + c.reason + "\n"));
		CHECK(contains(result.err, "ferry migrate: the destination http://198.51.100.2:7411 " + c.hint));

		// `ferry status` tells the same outcome, for scripts that used
		// --no-wait.
		Run shown = source.ferry({"status", "m-1"});
		CHECK(shown.exitCode == 4);
		CHECK(contains(shown.out, "error        " + c.reason + "\n"));

		// Text: the reason on stdout as for any abort.
		Agent again;
		auto text = std::async(std::launch::async, [&] { return again.ferry(kMigrateArgs); });
		REQUIRE(again.fake.waitForSubscribers(1, 10s));
		again.fake.addMigration(st);
		again.fake.emit(eventOf("m-1", migration::Phase::Aborted, 0, c.reason));
		Run textResult = text.get();
		CHECK(textResult.exitCode == 4);
		CHECK(contains(textResult.out, "migration m-1 aborted: " + c.reason + "\n"));
		CHECK(contains(textResult.err, c.hint));
	}
}

TEST_CASE("list and status, text and JSON")
{
	Agent agent;
	agent.fake.addMigration(statusOf("m-a", migration::Phase::Committed));
	agent.fake.addMigration(statusOf("m-b", migration::Phase::Aborted));

	Run list = agent.ferry({"list"});
	CHECK(list.exitCode == 0);
	CHECK(list.out.rfind("ID ", 0) == 0);
	CHECK(contains(list.out, "\nm-a "));
	CHECK(contains(list.out, "\nm-b "));

	Run listJson = agent.ferry({"list", "-o", "json"});
	CHECK(listJson.exitCode == 0);
	auto decoded = api::fromJson<api::MigrationList>(listJson.out);
	REQUIRE_MESSAGE(decoded.ok(), listJson.out);
	CHECK(decoded->migrations.size() == 2);

	Run status = agent.ferry({"status", "m-a"});
	CHECK(status.exitCode == 0);
	CHECK(contains(status.out, "phase        committed\n"));
	Run statusJson = agent.ferry({"status", "m-a", "--output=json"});
	CHECK(statusJson.exitCode == 0);
	auto st = api::fromJson<migration::MigrationStatus>(statusJson.out);
	REQUIRE_MESSAGE(st.ok(), statusJson.out);
	CHECK(st->id == "m-a");
	CHECK(st->lockWindow == 3410us);

	// An aborted migration's status exits 1, so scripts can test it.
	Run aborted = agent.ferry({"status", "m-b"});
	CHECK(aborted.exitCode == 1);
	CHECK(contains(aborted.out, "error        destination refused: restore failed\n"));

	Run missing = agent.ferry({"-o", "json", "status", "m-nope"});
	CHECK(missing.exitCode == 5);
	CHECK(contains(missing.err, "m-nope"));
	auto error = api::fromJson<api::ErrorReply>(missing.out);
	REQUIRE_MESSAGE(error.ok(), missing.out);
	CHECK(error->error.code == ENOENT);

	Agent empty;
	Run none = empty.ferry({"list"});
	CHECK(none.exitCode == 0);
	CHECK(none.out == "no migrations\n");
}

TEST_CASE("abort: the reason reaches the agent; committed ones cannot be aborted")
{
	Agent agent;
	agent.fake.addMigration(statusOf("m-a", migration::Phase::Streaming));
	Run result = agent.ferry({"abort", "m-a", "--reason", "operator cancelled"});
	CHECK_MESSAGE(result.exitCode == 0, result.err);
	CHECK(result.out == "migration m-a aborted\n");
	auto calls = agent.fake.calls();
	REQUIRE(calls.aborts.size() == 1);
	CHECK(calls.aborts[0] == std::pair<std::string, std::string>{"m-a", "operator cancelled"});

	agent.fake.addMigration(statusOf("m-b", migration::Phase::Streaming));
	Run json = agent.ferry({"-o", "json", "abort", "m-b"});
	CHECK(json.exitCode == 0);
	auto st = api::fromJson<migration::MigrationStatus>(json.out);
	REQUIRE_MESSAGE(st.ok(), json.out);
	CHECK(std::string(api::phaseName(st->phase)) == "aborted");
	CHECK(agent.fake.calls().aborts.back().second == "aborted by the operator (ferry abort)");

	agent.fake.abortError = makeError("migration m-c already committed", EALREADY);
	Run late = agent.ferry({"abort", "m-c"});
	CHECK(late.exitCode == 1);
	CHECK(contains(late.err, "already committed"));

	agent.fake.abortError = makeError("no migration m-d", ENOENT);
	CHECK(agent.ferry({"abort", "m-d"}).exitCode == 5);
}

TEST_CASE("credentials and reachability: exit 4 when refused, 3 when unreachable, 2 for a bad token file")
{
	Agent agent;
	std::string wrong = agent.dir.file("wrong", "not-the-token\n");
	Run refused = runFerry({"--agent", agent.url, "--token-file", wrong, "list"});
	CHECK(refused.exitCode == 4);
	CHECK(contains(refused.err, "authentication refused"));
	Run anonymous = runFerry({"--agent", agent.url, "-o", "json", "status", "m-1"});
	CHECK(anonymous.exitCode == 4);
	CHECK(api::fromJson<api::ErrorReply>(anonymous.out).ok());

	// A port nobody listens on: the server's, after it stopped.
	std::string url = agent.url;
	agent.server->stop();
	Run unreachable = runFerry({"--agent", url, "--token-file", agent.tokenFile, "--timeout", "2s", "list"});
	CHECK(unreachable.exitCode == 3);
	CHECK(contains(unreachable.err, "is ferryd running at " + url));
	CHECK(!contains(unreachable.err, "retrying")); // library log lines stay quiet

	Run noToken = runFerry({"--agent", url, "--token-file", agent.dir.path.string() + "/missing", "list"});
	CHECK(noToken.exitCode == 2);
	CHECK(contains(noToken.err, "--token-file"));
	Run noCa = runFerry({"--agent", url, "--cacert", agent.dir.path.string() + "/missing.pem", "list"});
	CHECK(noCa.exitCode == 2);
	CHECK(contains(noCa.err, "--cacert: cannot read"));
}

TEST_CASE("usage errors: exit 2, the flag named on stderr, nothing on stdout")
{
	for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
		     {},
		     {"frobnicate"},
		     {"migrate", "--pid", "x", "--to", "http://198.51.100.2:1", "--target-netns", "b"},
		     {"migrate", "--pid", "1"},
		     {"status"},
		     {"-o", "yaml", "list"},
		     {"abort", "m-1", "--reason"},
		     {"migrate", "--pid", "1", "--to", "http://198.51.100.2:1", "--target-netns", "b", "--address", "x"}}) {
		std::string joined;
		for (const auto &a : args)
			joined += a + " ";
		CAPTURE(joined);
		Run run = runFerry(args);
		CHECK(run.exitCode == 2);
		CHECK(run.out.empty());
		CHECK(run.err.rfind("ferry: ", 0) == 0);
		CHECK(contains(run.err, "--help' for usage"));
	}
	Run pid = runFerry({"migrate", "--pid", "x"});
	CHECK(contains(pid.err, "--pid: 'x' is not a process id"));
	CHECK(contains(pid.err, "Run 'ferry migrate --help'"));
}

TEST_CASE("--help for every command, --version")
{
	for (const char *command : {"migrate", "status", "list", "abort", "doctor"}) {
		CAPTURE(command);
		Run run = runFerry({command, "--help"});
		CHECK(run.exitCode == 0);
		CHECK(run.out.rfind(std::string("Usage: ferry ") + command, 0) == 0);
		CHECK(run.err.empty());
	}
	Run top = runFerry({"--help"});
	CHECK(top.exitCode == 0);
	CHECK(contains(top.out, "Usage: ferry [flags] <command>"));
	Run version = runFerry({"--version"});
	CHECK(version.exitCode == 0);
	CHECK(version.out.rfind("ferry ", 0) == 0);
}

TEST_CASE("doctor checks the agent and its credentials")
{
	Agent agent;
	Run good = agent.ferry({"doctor", "-o", "json"});
	rapidjson::Document doc;
	doc.Parse(good.out.c_str());
	REQUIRE_MESSAGE(!doc.HasParseError(), good.out);
	REQUIRE(doc["checks"].IsArray());
	const rapidjson::Value *agentCheck = nullptr;
	bool requiredFailed = false;
	for (const auto &check : doc["checks"].GetArray()) {
		if (std::string(check["name"].GetString()).rfind("agent ", 0) == 0)
			agentCheck = &check;
		if (check["required"].GetBool() && !check["ok"].GetBool())
			requiredFailed = true;
	}
	REQUIRE(agentCheck != nullptr);
	CHECK((*agentCheck)["ok"].GetBool());
	CHECK(contains((*agentCheck)["detail"].GetString(), "0.1.0-test"));
	// The verdict and the exit code follow the required checks.
	CHECK(doc["ok"].GetBool() == !requiredFailed);
	CHECK(good.exitCode == (requiredFailed ? 1 : 0));

	std::string wrong = agent.dir.file("wrong", "not-the-token\n");
	Run bad = runFerry({"--agent", agent.url, "--token-file", wrong, "doctor"});
	CHECK(bad.exitCode == 1);
	CHECK(contains(bad.out, "FAIL  agent " + agent.url + ": refused the credentials"));
	CHECK(contains(bad.out, "required check"));
}
