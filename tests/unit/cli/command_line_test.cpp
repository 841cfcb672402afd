// The ferry command line: every flag, the checks across flags, and the
// small grammars (address specs, --exec quoting, --env, durations). Bad
// input must be an EINVAL Error whose text names the flag.
#include <doctest/doctest.h>

#include <map>

#include "cli/command_line.h"

using namespace ferry;
using namespace ferry::cli;
using namespace std::chrono_literals;

namespace {

using Environment = std::map<std::string, std::string>;

EnvironmentLookup lookupIn(Environment environment)
{
	return [environment](std::string_view name) -> std::optional<std::string> {
		auto it = environment.find(std::string(name));
		if (it == environment.end())
			return std::nullopt;
		return it->second;
	};
}

Result<CommandLine> parse(std::vector<std::string> args, Environment environment = {})
{
	return parseCommandLine(args, lookupIn(std::move(environment)));
}

CommandLine parseOk(std::vector<std::string> args, Environment environment = {})
{
	auto line = parse(args, std::move(environment));
	REQUIRE_MESSAGE(line.ok(), line.error().message());
	return std::move(line).value();
}

// Parsing fails with EINVAL and a message containing `needle`.
void parseFails(std::vector<std::string> args, const std::string &needle)
{
	std::string joined;
	for (const auto &a : args)
		joined += a + " ";
	auto line = parse(args);
	REQUIRE_MESSAGE(!line.ok(), "accepted: " << joined);
	CHECK(line.error().code == EINVAL);
	CHECK_MESSAGE(line.error().what.find(needle) != std::string::npos,
		      "'" << line.error().what << "' does not mention '" << needle << "' (" << joined << ")");
}

std::vector<std::string> migrateArgs(std::vector<std::string> extra = {})
{
	std::vector<std::string> args = {"migrate", "--pid", "42", "--to", "http://198.51.100.2:7411",
					 "--target-netns", "ferry-b"};
	args.insert(args.end(), extra.begin(), extra.end());
	return args;
}

} // namespace

TEST_CASE("the agent URL: default, $FERRY_AGENT, --agent, --from")
{
	CHECK(parseOk({"list"}).agentUrl() == kDefaultAgentUrl);
	CHECK(parseOk({"list"}, {{"FERRY_AGENT", "https://198.51.100.1:7411/"}}).agentUrl() ==
	      "https://198.51.100.1:7411");
	// An empty variable counts as unset.
	CHECK(parseOk({"list"}, {{"FERRY_AGENT", ""}}).agentUrl() == kDefaultAgentUrl);
	CHECK(parseOk({"--agent", "http://[2001:db8::1]:7411", "list"}, {{"FERRY_AGENT", "http://198.51.100.9:1"}})
		      .agentUrl() == "http://[2001:db8::1]:7411");
	auto line = parseOk(migrateArgs({"--from", "http://198.51.100.1:7411"}));
	CHECK(line.agentUrl() == "http://198.51.100.1:7411");
	CHECK(line.common.agentUrl == kDefaultAgentUrl);

	auto bad = parse({"list"}, {{"FERRY_AGENT", "198.51.100.1:7411"}});
	REQUIRE(!bad.ok());
	CHECK(bad.error().what.find("$FERRY_AGENT") != std::string::npos);
	parseFails({"--agent", "ftp://x", "list"}, "--agent");
	parseFails({"--agent", "http://", "list"}, "--agent");
	parseFails(migrateArgs({"--from", "localhost:7411"}), "--from");
	parseFails({"--agent", "http://198.51.100.1:7411", "migrate", "--pid", "1", "--to", "http://198.51.100.2:1",
		    "--target-netns", "b", "--from", "http://198.51.100.3:1"},
		   "--from and --agent");
}

TEST_CASE("common flags before or after the command, --flag=value and -ojson")
{
	auto before = parseOk({"--token-file", "/t", "--cacert", "/ca.pem", "--cert", "/c.pem", "--key", "/k.pem",
			       "--timeout", "5s", "-o", "json", "status", "m-1"});
	auto after = parseOk({"status", "m-1", "--token-file=/t", "--cacert=/ca.pem", "--cert=/c.pem", "--key=/k.pem",
			      "--timeout=5000ms", "-ojson"});
	for (const CommandLine *line : {&before, &after}) {
		CHECK(line->command == Command::Status);
		CHECK(line->migrationId == "m-1");
		CHECK(line->common.tokenFile == "/t");
		CHECK(line->common.caFile == "/ca.pem");
		CHECK(line->common.certFile == "/c.pem");
		CHECK(line->common.keyFile == "/k.pem");
		CHECK(line->common.timeout == 5s);
		CHECK(line->common.output == OutputFormat::Json);
	}
	CHECK(parseOk({"list", "--output", "text"}).common.output == OutputFormat::Text);
	CHECK(parseOk({"list"}).common.output == OutputFormat::Text);
	CHECK(parseOk({"list"}).common.timeout == 30s);

	parseFails({"-o", "yaml", "list"}, "-o/--output");
	parseFails({"list", "-o"}, "--output needs a value");
	parseFails({"list", "--timeout", "0"}, "--timeout");
	parseFails({"list", "--timeout", "5h"}, "--timeout");
	parseFails({"list", "--timeout", "-5s"}, "--timeout");
	parseFails({"list", "--token-file="}, "--token-file needs a non-empty value");
	parseFails({"list", "--cert", "/c.pem"}, "--cert and --key");
	parseFails({"list", "--key", "/k.pem"}, "--cert and --key");
	parseFails({"list", "-o", "json", "-o", "text"}, "--output is given twice");
	parseFails({"list", "--bogus"}, "unknown flag --bogus for ferry list");
	parseFails({"--pid", "1", "migrate"}, "put it after the command");
	parseFails({"list", "--pid", "1"}, "--pid is a flag of 'ferry migrate'");
}

TEST_CASE("commands, ids and positional arguments")
{
	CHECK(parseOk({"list"}).command == Command::List);
	CHECK(parseOk({"doctor"}).command == Command::Doctor);
	auto abort = parseOk({"abort", "m-7"});
	CHECK(abort.command == Command::Abort);
	CHECK(abort.migrationId == "m-7");
	CHECK(abort.abortReason == kDefaultAbortReason);
	CHECK(parseOk({"abort", "m-7", "--reason", "operator cancelled"}).abortReason == "operator cancelled");
	CHECK(parseOk({"--version"}).version);

	parseFails({}, "no command given");
	parseFails({"migrat"}, "unknown command 'migrat'");
	parseFails({"status"}, "needs a migration id");
	parseFails({"status", "a", "b"}, "takes one migration id");
	parseFails({"status", "../etc"}, "is not a migration id");
	parseFails({"status", std::string(129, 'a')}, "is not a migration id");
	parseFails({"list", "extra"}, "takes no argument");
	parseFails({"doctor", "extra"}, "takes no argument");
	parseFails({"abort", "m-7", "--reason", ""}, "--reason needs a non-empty value");
	parseFails({"abort", "m-7", "--reason", std::string(kMaxAbortReasonBytes + 1, 'x')}, "at most 4096");
	parseFails({"status", "m-1", "--reason", "x"}, "--reason is a flag of 'ferry abort'");
}

TEST_CASE("--help wins for every command, even when the rest is incomplete")
{
	for (auto entry : {std::pair{"migrate", Command::Migrate}, std::pair{"status", Command::Status},
			   std::pair{"list", Command::List}, std::pair{"abort", Command::Abort},
			   std::pair{"doctor", Command::Doctor}}) {
		// Not a structured binding: clang 14 cannot capture those in CAPTURE's lambda.
		const char *arg = entry.first;
		Command command = entry.second;
		CAPTURE(arg);
		auto line = parseOk({arg, "--help"});
		CHECK(line.help);
		CHECK(line.command == command);
		CHECK(parseOk({"-h", arg}).command == command);
		std::string text = usage(command);
		CHECK(text.rfind(std::string("Usage: ferry ") + arg, 0) == 0);
		CHECK(text.find("Exit codes") != std::string::npos);
		CHECK(text.find("--token-file") != std::string::npos);
	}
	auto top = parseOk({"--help"});
	CHECK(top.command == Command::None);
	CHECK(usage(Command::None).find("ferry <command>") != std::string::npos);
	// Every migrate flag is documented in its usage.
	std::string migrate = usage(Command::Migrate);
	for (const char *flag : {"--pid", "--netns", "--port", "--to", "--from", "--target-netns", "--address", "--exec",
				 "--env", "--lock-strategy", "--no-wait", "--no-listeners", "--container", "--runtime",
				 "--freeze", "--container-name"})
		CHECK_MESSAGE(migrate.find(flag) != std::string::npos, flag);
	CHECK(usage(Command::Abort).find("--reason") != std::string::npos);
}

TEST_CASE("migrate: every flag lands in the request")
{
	auto line = parseOk({"migrate", "--netns", "ferry-a", "--port", "7000", "--port=7001", "--to",
			     "https://198.51.100.2:7411/", "--target-netns", "ferry-b", "--address",
			     "198.51.100.10/24@eth0", "--address", "2001:db8::10/64@eth0:eth1", "--exec",
			     "/usr/bin/demo --rate '256 k'", "--env", "A=1", "--env", "B=", "--lock-strategy",
			     "drop-inbound", "--no-wait", "--no-listeners"});
	const migration::MigrationRequest &r = line.migrate.request;
	CHECK(line.command == Command::Migrate);
	CHECK(!r.selection.pid);
	CHECK(r.selection.netns == "ferry-a");
	CHECK(r.selection.localPorts == std::vector<uint16_t>{7000, 7001});
	CHECK(!r.selection.includeListeners);
	CHECK(r.targetAgent == "https://198.51.100.2:7411");
	CHECK(r.targetNetns == "ferry-b");
	REQUIRE(r.addresses.size() == 2);
	CHECK(r.addresses[0].cidr == "198.51.100.10/24");
	CHECK(r.addresses[0].sourceInterface == "eth0");
	CHECK(r.addresses[0].targetInterface == "eth0");
	CHECK(r.addresses[1].cidr == "2001:db8::10/64");
	CHECK(r.addresses[1].sourceInterface == "eth0");
	CHECK(r.addresses[1].targetInterface == "eth1");
	CHECK(r.handoff.execArgv == std::vector<std::string>{"/usr/bin/demo", "--rate", "256 k"});
	CHECK(r.handoff.environment == std::map<std::string, std::string>{{"A", "1"}, {"B", ""}});
	CHECK(r.lockStrategy == "drop-inbound");
	CHECK(!line.migrate.wait);

	auto byPid = parseOk(migrateArgs({"--port", "80"}));
	REQUIRE(byPid.migrate.request.selection.pid);
	CHECK(*byPid.migrate.request.selection.pid == 42);
	CHECK(byPid.migrate.request.selection.localPorts == std::vector<uint16_t>{80});
	CHECK(byPid.migrate.request.selection.includeListeners);
	CHECK(byPid.migrate.wait);
	CHECK(byPid.migrate.request.lockStrategy.empty());
	CHECK(byPid.migrate.request.handoff.execArgv.empty());
}

TEST_CASE("migrate: the demo's command line")
{
	auto line = parseOk({"--agent", "http://198.51.100.1:7411", "--token-file", "/run/ferry-demo/token", "-o", "json",
			     "migrate", "--pid", "1234", "--to", "http://198.51.100.2:7411", "--target-netns", "self",
			     "--address", "198.51.100.10/24@eth0", "--exec",
			     "/work/main/build/containers/demo/ferry-demo-server --rate 256k", "--env",
			     "FERRY_HANDOFF_SOCKET=/run/ferry-demo/b/handoff.sock"});
	CHECK(line.agentUrl() == "http://198.51.100.1:7411");
	CHECK(line.common.output == OutputFormat::Json);
	CHECK(line.migrate.request.targetNetns == "self");
	CHECK(line.migrate.request.handoff.execArgv ==
	      std::vector<std::string>{"/work/main/build/containers/demo/ferry-demo-server", "--rate", "256k"});
	CHECK(line.migrate.request.handoff.environment.at("FERRY_HANDOFF_SOCKET") == "/run/ferry-demo/b/handoff.sock");
}

TEST_CASE("migrate: bad input names the flag")
{
	parseFails(migrateArgs({"--pid", "7"}), "--pid is given twice");
	parseFails({"migrate", "--pid", "abc"}, "--pid: 'abc' is not a process id");
	parseFails({"migrate", "--pid", "0"}, "--pid");
	parseFails({"migrate", "--pid", "-3"}, "--pid");
	parseFails({"migrate", "--pid", "99999999999"}, "--pid");
	parseFails({"migrate", "--pid"}, "--pid needs a value");
	parseFails(migrateArgs({"--port", "0"}), "--port: '0' is not a TCP port");
	parseFails(migrateArgs({"--port", "65536"}), "--port");
	parseFails(migrateArgs({"--port", "80x"}), "--port");
	parseFails(migrateArgs({"--port", "80", "--port", "80"}), "--port: 80 is given twice");
	parseFails(migrateArgs({"--netns", "a"}), "--pid, --netns and --container each select connections");
	parseFails({"migrate", "--to", "http://198.51.100.2:1", "--target-netns", "b"}, "which connections?");
	parseFails({"migrate", "--netns", "a", "--to", "http://198.51.100.2:1", "--target-netns", "b"},
		   "--netns needs at least one --port");
	parseFails({"migrate", "--pid", "1", "--target-netns", "b"}, "--to URL is required");
	parseFails({"migrate", "--pid", "1", "--to", "http://198.51.100.2:1"}, "--target-netns is required");
	parseFails({"migrate", "--pid", "1", "--to", "198.51.100.2:1", "--target-netns", "b"}, "--to");
	parseFails(migrateArgs({"--address", "198.51.100.10@eth0"}), "--address: '198.51.100.10' needs a prefix length");
	parseFails(migrateArgs({"--address", "198.51.100.10/24"}), "--address");
	parseFails(migrateArgs({"--address", "198.51.100.10/24@eth0", "--address", "198.51.100.10/24@eth1"}),
		   "is given twice");
	parseFails(migrateArgs({"--exec", "'unterminated"}), "--exec: unterminated '");
	parseFails(migrateArgs({"--exec", "   "}), "--exec: no command");
	parseFails(migrateArgs({"--exec", "a", "--exec", "b"}), "--exec is given twice");
	parseFails(migrateArgs({"--env", "A=1"}), "--env is for the program of --exec");
	parseFails(migrateArgs({"--exec", "a", "--env", "NOEQUALS"}), "--env: 'NOEQUALS' is not K=V");
	parseFails(migrateArgs({"--exec", "a", "--env", "1A=x"}), "--env: '1A' is not a variable name");
	parseFails(migrateArgs({"--exec", "a", "--env", "A=1", "--env", "A=2"}), "--env: A is given twice");
	parseFails(migrateArgs({"--lock-strategy", ""}), "--lock-strategy needs a non-empty value");
	parseFails(migrateArgs({"--no-wait=yes"}), "--no-wait takes no value");
	parseFails(migrateArgs({"extra"}), "takes no argument");
	parseFails(migrateArgs({"--target-netns", "c"}), "--target-netns is given twice");
}

TEST_CASE("migrate --container: the container flags land in the selection")
{
	auto line = parseOk({"migrate", "--container", "web", "--runtime", "podman", "--freeze", "pause",
			     "--container-name", "web-b", "--to", "http://198.51.100.2:7411", "--target-netns",
			     "ferry-b", "--address", "198.51.100.10/24@eth0", "--env", "MODE=migrated", "--port", "7000"});
	const migration::MigrationRequest &r = line.migrate.request;
	REQUIRE(r.selection.container.has_value());
	CHECK_FALSE(r.selection.pid.has_value());
	CHECK(r.selection.netns.empty());
	CHECK(r.selection.container->id == "web");
	REQUIRE(r.selection.container->runtime.has_value());
	CHECK((*r.selection.container->runtime == container::Runtime::Podman));
	CHECK((r.selection.container->freeze == migration::ContainerSelection::Freeze::Pause));
	CHECK(r.selection.container->destinationName == "web-b");
	CHECK(r.selection.localPorts == std::vector<uint16_t>{7000});
	CHECK(r.handoff.execArgv.empty());
	CHECK(r.handoff.environment.at("MODE") == "migrated");
	REQUIRE(r.addresses.size() == 1);

	// Defaults: the agent picks the runtime, the cgroup freezer, the same name.
	auto plain = parseOk({"migrate", "--container=3f2a9c1b", "--to", "http://198.51.100.2:7411", "--target-netns",
			      "self"});
	REQUIRE(plain.migrate.request.selection.container.has_value());
	CHECK(plain.migrate.request.selection.container->id == "3f2a9c1b");
	CHECK_FALSE(plain.migrate.request.selection.container->runtime.has_value());
	CHECK((plain.migrate.request.selection.container->freeze == migration::ContainerSelection::Freeze::Cgroup));
	CHECK(plain.migrate.request.selection.container->destinationName.empty());
	CHECK(parseOk({"migrate", "--container", "c", "--runtime", "runc", "--freeze", "cgroup", "--to", "http://x:1",
		       "--target-netns", "b"})
		      .migrate.request.selection.container->runtime == std::optional(container::Runtime::Runc));
}

TEST_CASE("migrate --container: bad input and conflicts name the flag")
{
	auto containerArgs = [](std::vector<std::string> extra) {
		std::vector<std::string> args = {"migrate", "--container", "web", "--to", "http://198.51.100.2:7411",
						 "--target-netns", "ferry-b"};
		args.insert(args.end(), extra.begin(), extra.end());
		return args;
	};
	parseFails(containerArgs({"--pid", "4"}), "--pid, --netns and --container each select connections; give one");
	parseFails(containerArgs({"--netns", "a", "--port", "1"}), "each select connections");
	parseFails(containerArgs({"--exec", "/bin/demo"}), "--exec starts a program on the destination, --container");
	parseFails(containerArgs({"--container", "other"}), "--container is given twice");
	parseFails(containerArgs({"--runtime", "docker"}), "--runtime: 'docker' is not a container runtime (runc or podman)");
	parseFails(containerArgs({"--freeze", "sigstop"}), "--freeze: 'sigstop' is not a freeze method (cgroup or pause)");
	parseFails(containerArgs({"--container-name", "a/b"}), "--container-name: 'a/b' is not a container name");
	parseFails(containerArgs({"--container-name", "-x"}), "--container-name");
	parseFails({"migrate", "--container", "", "--to", "http://x:1", "--target-netns", "b"},
		   "--container: '' is not a container id or name");
	parseFails({"migrate", "--container", "--rm", "--to", "http://x:1", "--target-netns", "b"}, "--container");
	parseFails({"migrate", "--container", "web", "--target-netns", "b"}, "--to URL is required");
	for (const char *flag : {"--runtime", "--freeze", "--container-name"}) {
		CAPTURE(flag);
		std::string value = std::string(flag) == "--runtime" ? "runc" : std::string(flag) == "--freeze" ? "pause" : "x";
		parseFails(migrateArgs({flag, value}), "go with --container ID");
	}
}

TEST_CASE("address specs: CIDR@SRCIF[:DSTIF]")
{
	auto v4 = parseAddressSpec("198.51.100.10/24@eth0");
	REQUIRE(v4.ok());
	CHECK(v4->cidr == "198.51.100.10/24"); // host bits are the point: kept
	CHECK(v4->sourceInterface == "eth0");
	CHECK(v4->targetInterface == "eth0");

	auto v6 = parseAddressSpec("2001:db8::10/64@veth-a:br-b.100");
	REQUIRE(v6.ok());
	CHECK(v6->cidr == "2001:db8::10/64");
	CHECK(v6->sourceInterface == "veth-a");
	CHECK(v6->targetInterface == "br-b.100");

	CHECK(parseAddressSpec("203.0.113.5/32@" + std::string(15, 'i')).ok());
	for (std::string bad : std::vector<std::string>{"", "@eth0", "198.51.100.10/24", "198.51.100.10/24@", "198.51.100.10/33@eth0",
				"198.51.100.300/24@eth0", "2001:db8::10/129@eth0", "198.51.100.10/24@eth0:",
				"198.51.100.10/24@:eth1", "198.51.100.10/24@" + std::string(16, 'i'),
				"198.51.100.10/24@a/b", "198.51.100.10/24@a b", "198.51.100.10/24@eth0:eth1:eth2",
				"198.51.100.10/24@..", "host.example/24@eth0"}) {
		CAPTURE(bad);
		auto parsed = parseAddressSpec(bad);
		CHECK(!parsed.ok());
		if (!parsed.ok())
			CHECK(parsed.error().code == EINVAL);
	}
}

TEST_CASE("--exec splitting: simple shell-like quoting, no expansion")
{
	using Words = std::vector<std::string>;
	auto split = [](std::string_view text) {
		auto words = splitCommand(text);
		REQUIRE_MESSAGE(words.ok(), words.error().message());
		return *words;
	};
	CHECK(split("/bin/demo --rate 256k") == Words{"/bin/demo", "--rate", "256k"});
	CHECK(split("  a \t b\n c  ") == Words{"a", "b", "c"});
	CHECK(split("a 'b c' \"d e\"") == Words{"a", "b c", "d e"});
	CHECK(split("a 'it'\"'\"'s'") == Words{"a", "it's"});
	CHECK(split("a \"x \\\"y\\\" \\\\ \\$HOME \\` \\n\"") == Words{"a", "x \"y\" \\ $HOME ` \\n"});
	CHECK(split("a\\ b c\\'d") == Words{"a b", "c'd"});
	CHECK(split("a '' \"\" b") == Words{"a", "", "", "b"});
	CHECK(split("a'b'c") == Words{"abc"});
	CHECK(split("$HOME ~ *.txt") == Words{"$HOME", "~", "*.txt"});
	CHECK(split("'\\n'") == Words{"\\n"}); // single quotes keep backslashes

	for (std::string_view bad : {"", "   ", "a 'b", "a \"b", "a \"b\\\"", "a\\"}) {
		CAPTURE(bad);
		auto words = splitCommand(bad);
		CHECK(!words.ok());
		if (!words.ok())
			CHECK(words.error().code == EINVAL);
	}
}

TEST_CASE("--env assignments and durations")
{
	auto env = parseEnvironmentAssignment("FERRY_HANDOFF_SOCKET=/run/a=b.sock");
	REQUIRE(env.ok());
	CHECK(env->first == "FERRY_HANDOFF_SOCKET");
	CHECK(env->second == "/run/a=b.sock");
	CHECK(parseEnvironmentAssignment("_x9=").ok());
	for (std::string_view bad : {"", "=v", "A-B=1", "9A=1", "A B=1", "NOVALUE"})
		CHECK_MESSAGE(!parseEnvironmentAssignment(bad).ok(), bad);

	CHECK(*parseDuration("250ms") == 250ms);
	CHECK(*parseDuration("30s") == 30s);
	CHECK(*parseDuration("2m") == 120s);
	CHECK(*parseDuration("7") == 7s);
	CHECK(*parseDuration("24") == 24s);
	for (std::string_view bad : {"", "0", "0s", "ms", "1.5s", "-1", "1h", "10 s", "1440m1", "1441m", "99999999999999999999"})
		CHECK_MESSAGE(!parseDuration(bad).ok(), bad);
	CHECK(parseDuration("1440m").ok()); // a day is the limit
}
