#include "command_line.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <set>

#include "api/cidr.h"
#include "api/schemas.h"

namespace ferry::cli {

namespace {

constexpr std::array kCommands = {Command::Migrate, Command::Status, Command::List, Command::Abort, Command::Doctor};

// One flag: its spellings, whether it takes a value, whether it may repeat,
// and what it does to the command line.
struct FlagSpec {
	std::string_view name;  // "--pid"
	std::string_view alias; // "-o", or ""
	bool takesValue;
	bool repeatable;
	Status (*apply)(CommandLine &line, std::string_view value);
};

Error usageError(std::string what)
{
	return makeError(std::move(what), EINVAL);
}

std::string quoted(std::string_view text)
{
	return "'" + std::string(text) + "'";
}

template<typename T>
std::optional<T> parseInteger(std::string_view text)
{
	T value{};
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
	if (text.empty() || ec != std::errc() || end != text.data() + text.size())
		return std::nullopt;
	return value;
}

Result<std::string> parseAgentUrl(std::string_view flag, std::string_view text)
{
	std::string url(text);
	while (!url.empty() && url.back() == '/')
		url.pop_back();
	for (std::string_view scheme : {"http://", "https://"}) {
		if (url.rfind(scheme, 0) == 0 && url.size() > scheme.size())
			return url;
	}
	return usageError(std::string(flag) + ": " + quoted(text) +
			  " is not an agent URL (expected http://HOST:PORT or https://HOST:PORT)");
}

Status needNonEmpty(std::string_view flag, std::string_view value)
{
	if (value.empty())
		return usageError(std::string(flag) + " needs a non-empty value");
	return {};
}

// --- common flags --------------------------------------------------------

Status applyAgent(CommandLine &line, std::string_view value)
{
	FERRY_TRY_ASSIGN(line.common.agentUrl, parseAgentUrl("--agent", value));
	line.common.agentGiven = true;
	return {};
}

Status applyTokenFile(CommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--token-file", value));
	line.common.tokenFile = value;
	return {};
}

Status applyCaFile(CommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--cacert", value));
	line.common.caFile = value;
	return {};
}

Status applyCertFile(CommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--cert", value));
	line.common.certFile = value;
	return {};
}

Status applyKeyFile(CommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--key", value));
	line.common.keyFile = value;
	return {};
}

Status applyTimeout(CommandLine &line, std::string_view value)
{
	auto timeout = parseDuration(value);
	if (!timeout.ok())
		return usageError("--timeout: " + timeout.error().what);
	line.common.timeout = *timeout;
	return {};
}

Status applyOutput(CommandLine &line, std::string_view value)
{
	if (value == "json")
		line.common.output = OutputFormat::Json;
	else if (value == "text")
		line.common.output = OutputFormat::Text;
	else
		return usageError("-o/--output: " + quoted(value) + " is not an output format (json or text)");
	return {};
}

Status applyHelp(CommandLine &line, std::string_view)
{
	line.help = true;
	return {};
}

Status applyVersion(CommandLine &line, std::string_view)
{
	line.version = true;
	return {};
}

constexpr std::array<FlagSpec, 9> kCommonFlags = {{
	{"--agent", "", true, false, applyAgent},
	{"--token-file", "", true, false, applyTokenFile},
	{"--cacert", "", true, false, applyCaFile},
	{"--cert", "", true, false, applyCertFile},
	{"--key", "", true, false, applyKeyFile},
	{"--timeout", "", true, false, applyTimeout},
	{"--output", "-o", true, false, applyOutput},
	{"--help", "-h", false, true, applyHelp},
	{"--version", "", false, false, applyVersion},
}};

// --- migrate -------------------------------------------------------------

Status applyPid(CommandLine &line, std::string_view value)
{
	auto pid = parseInteger<long long>(value);
	if (!pid || *pid <= 0 || *pid > INT_MAX)
		return usageError("--pid: " + quoted(value) + " is not a process id (an integer > 0)");
	line.migrate.request.selection.pid = static_cast<pid_t>(*pid);
	return {};
}

Status applyNetns(CommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--netns", value));
	line.migrate.request.selection.netns = value;
	return {};
}

Status applyPort(CommandLine &line, std::string_view value)
{
	auto port = parseInteger<long>(value);
	if (!port || *port < 1 || *port > 65535)
		return usageError("--port: " + quoted(value) + " is not a TCP port (1-65535)");
	auto &ports = line.migrate.request.selection.localPorts;
	if (std::find(ports.begin(), ports.end(), *port) != ports.end())
		return usageError("--port: " + std::string(value) + " is given twice");
	ports.push_back(static_cast<uint16_t>(*port));
	return {};
}

Status applyTo(CommandLine &line, std::string_view value)
{
	FERRY_TRY_ASSIGN(line.migrate.request.targetAgent, parseAgentUrl("--to", value));
	return {};
}

Status applyFrom(CommandLine &line, std::string_view value)
{
	FERRY_TRY_ASSIGN(line.migrate.sourceAgent, parseAgentUrl("--from", value));
	return {};
}

Status applyTargetNetns(CommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--target-netns", value));
	line.migrate.request.targetNetns = value;
	return {};
}

Status applyAddress(CommandLine &line, std::string_view value)
{
	auto move = parseAddressSpec(value);
	if (!move.ok())
		return usageError("--address: " + move.error().what);
	for (const migration::AddressMove &other : line.migrate.request.addresses) {
		if (other.cidr == move->cidr)
			return usageError("--address: " + move->cidr + " is given twice");
	}
	line.migrate.request.addresses.push_back(std::move(*move));
	return {};
}

Status applyExec(CommandLine &line, std::string_view value)
{
	auto argv = splitCommand(value);
	if (!argv.ok())
		return usageError("--exec: " + argv.error().what);
	line.migrate.request.handoff.execArgv = std::move(*argv);
	return {};
}

Status applyEnv(CommandLine &line, std::string_view value)
{
	auto assignment = parseEnvironmentAssignment(value);
	if (!assignment.ok())
		return usageError("--env: " + assignment.error().what);
	auto [it, inserted] = line.migrate.request.handoff.environment.insert(std::move(*assignment));
	if (!inserted)
		return usageError("--env: " + it->first + " is given twice");
	return {};
}

Status applyLockStrategy(CommandLine &line, std::string_view value)
{
	// The agent knows which strategies it has (GET /v1/info lists them)
	// and refuses an unknown one by name.
	FERRY_TRY(needNonEmpty("--lock-strategy", value));
	line.migrate.request.lockStrategy = value;
	return {};
}

Status applyNoWait(CommandLine &line, std::string_view)
{
	line.migrate.wait = false;
	return {};
}

Status applyNoListeners(CommandLine &line, std::string_view)
{
	line.migrate.request.selection.includeListeners = false;
	return {};
}

// The container flags fill one ContainerSelection; --runtime, --freeze and
// --container-name without --container are caught in validate().
migration::ContainerSelection &containerSelection(CommandLine &line)
{
	auto &selection = line.migrate.request.selection;
	if (!selection.container)
		selection.container.emplace();
	return *selection.container;
}

// Container ids and names reach the runtimes' command lines: the API's
// rule (a letter or digit first, so never a flag).
bool isContainerName(std::string_view name)
{
	auto alnum = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
	return !name.empty() && name.size() <= 128 && alnum(name.front()) &&
	       std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '+' || c == '-'; });
}

Status applyContainer(CommandLine &line, std::string_view value)
{
	if (!isContainerName(value))
		return usageError("--container: " + quoted(value) +
				  " is not a container id or name (1-128 characters of A-Z a-z 0-9 . _ + -, starting "
				  "with a letter or digit)");
	containerSelection(line).id = value;
	return {};
}

Status applyRuntime(CommandLine &line, std::string_view value)
{
	auto runtime = container::parseRuntime(value);
	if (!runtime)
		return usageError("--runtime: " + quoted(value) + " is not a container runtime (runc or podman)");
	containerSelection(line).runtime = *runtime;
	return {};
}

Status applyFreeze(CommandLine &line, std::string_view value)
{
	auto freeze = migration::parseFreeze(value);
	if (!freeze)
		return usageError("--freeze: " + quoted(value) + " is not a freeze method (cgroup or pause)");
	containerSelection(line).freeze = *freeze;
	return {};
}

Status applyContainerName(CommandLine &line, std::string_view value)
{
	if (!isContainerName(value))
		return usageError("--container-name: " + quoted(value) +
				  " is not a container name (1-128 characters of A-Z a-z 0-9 . _ + -, starting with a "
				  "letter or digit)");
	containerSelection(line).destinationName = value;
	return {};
}

constexpr std::array<FlagSpec, 16> kMigrateFlags = {{
	{"--pid", "", true, false, applyPid},
	{"--netns", "", true, false, applyNetns},
	{"--container", "", true, false, applyContainer},
	{"--runtime", "", true, false, applyRuntime},
	{"--freeze", "", true, false, applyFreeze},
	{"--container-name", "", true, false, applyContainerName},
	{"--port", "", true, true, applyPort},
	{"--to", "", true, false, applyTo},
	{"--from", "", true, false, applyFrom},
	{"--target-netns", "", true, false, applyTargetNetns},
	{"--address", "", true, true, applyAddress},
	{"--exec", "", true, false, applyExec},
	{"--env", "", true, true, applyEnv},
	{"--lock-strategy", "", true, false, applyLockStrategy},
	{"--no-wait", "", false, false, applyNoWait},
	{"--no-listeners", "", false, false, applyNoListeners},
}};

// --- abort ---------------------------------------------------------------

Status applyReason(CommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--reason", value));
	if (value.size() > kMaxAbortReasonBytes)
		return usageError("--reason: at most " + std::to_string(kMaxAbortReasonBytes) + " bytes");
	line.abortReason = value;
	return {};
}

constexpr std::array<FlagSpec, 1> kAbortFlags = {{
	{"--reason", "", true, false, applyReason},
}};

std::span<const FlagSpec> commandFlags(Command command)
{
	switch (command) {
	case Command::Migrate:
		return kMigrateFlags;
	case Command::Abort:
		return kAbortFlags;
	default:
		return {};
	}
}

const FlagSpec *findFlag(std::span<const FlagSpec> flags, std::string_view name)
{
	for (const FlagSpec &flag : flags) {
		if (flag.name == name || (!flag.alias.empty() && flag.alias == name))
			return &flag;
	}
	return nullptr;
}

std::optional<Command> parseCommandName(std::string_view name)
{
	for (Command command : kCommands) {
		if (name == commandName(command))
			return command;
	}
	return std::nullopt;
}

std::string where(Command command)
{
	return command == Command::None ? std::string("ferry") : std::string("ferry ") + commandName(command);
}

// Checks that belong to the whole command line rather than one flag.
Status validate(CommandLine &line, const std::vector<std::string> &positionals)
{
	const CommonOptions &common = line.common;
	if (common.certFile.empty() != common.keyFile.empty())
		return usageError("--cert and --key go together: a client certificate needs its key");

	auto noPositionals = [&]() -> Status {
		if (!positionals.empty())
			return usageError(where(line.command) + " takes no argument, got " + quoted(positionals.front()));
		return {};
	};
	auto oneMigrationId = [&]() -> Status {
		if (positionals.empty())
			return usageError(where(line.command) + " needs a migration id (see 'ferry list')");
		if (positionals.size() > 1)
			return usageError(where(line.command) + " takes one migration id, got also " + quoted(positionals[1]));
		if (!api::isValidMigrationId(positionals.front()))
			return usageError(quoted(positionals.front()) +
					  " is not a migration id (1-128 characters of A-Z a-z 0-9 . _ -)");
		line.migrationId = positionals.front();
		return {};
	};

	switch (line.command) {
	case Command::None:
		if (line.version)
			return noPositionals();
		return usageError("no command given (migrate, status, list, abort or doctor)");
	case Command::List:
	case Command::Doctor:
		return noPositionals();
	case Command::Status:
	case Command::Abort:
		return oneMigrationId();
	case Command::Migrate:
		break;
	}

	FERRY_TRY(noPositionals());
	const migration::MigrationRequest &request = line.migrate.request;
	const migration::ConnectionSelection &selection = request.selection;
	if (selection.container && selection.container->id.empty())
		return usageError("--runtime, --freeze and --container-name go with --container ID");
	int selections = int(selection.pid.has_value()) + int(!selection.netns.empty()) + int(selection.container.has_value());
	if (selections > 1)
		return usageError("--pid, --netns and --container each select connections; give one");
	if (selections == 0)
		return usageError("which connections? give --pid PID, --container ID, or --netns NS with --port P");
	if (selection.container && !request.handoff.execArgv.empty())
		return usageError("--exec starts a program on the destination, --container starts the container "
				  "there; give one");
	if (!selection.netns.empty() && selection.localPorts.empty())
		return usageError("--netns needs at least one --port (the local ports whose connections move)");
	if (request.targetAgent.empty())
		return usageError("--to URL is required: the destination agent");
	if (request.targetNetns.empty())
		return usageError("--target-netns is required: the namespace on the destination ('self' for its own)");
	if (!request.handoff.environment.empty() && request.handoff.execArgv.empty() && !selection.container)
		return usageError("--env is for the program of --exec or the container of --container; give one");
	if (!line.migrate.sourceAgent.empty() && common.agentGiven)
		return usageError("--from and --agent both name the source agent; give one");
	return {};
}

} // namespace

const char *commandName(Command command)
{
	switch (command) {
	case Command::None:
		return "";
	case Command::Migrate:
		return "migrate";
	case Command::Status:
		return "status";
	case Command::List:
		return "list";
	case Command::Abort:
		return "abort";
	case Command::Doctor:
		return "doctor";
	}
	return "";
}

Result<CommandLine> parseCommandLine(const std::vector<std::string> &args, const EnvironmentLookup &environment)
{
	CommandLine line;
	if (environment) {
		if (auto agent = environment(kAgentEnvironmentVariable); agent && !agent->empty()) {
			auto url = parseAgentUrl("$FERRY_AGENT", *agent);
			if (!url.ok())
				return std::move(url).error();
			line.common.agentUrl = *url;
		}
	}

	// --help anywhere wins, so that "ferry migrate --help" works however
	// incomplete the rest is. Only the command is looked for.
	if (std::any_of(args.begin(), args.end(), [](const std::string &a) { return a == "--help" || a == "-h"; })) {
		line.help = true;
		for (const std::string &arg : args) {
			if (auto command = parseCommandName(arg)) {
				line.command = *command;
				break;
			}
		}
		return line;
	}

	std::vector<std::string> positionals;
	std::set<std::string_view> seen;
	for (size_t i = 0; i < args.size(); ++i) {
		std::string_view arg = args[i];
		if (arg.size() < 2 || arg[0] != '-') {
			if (line.command == Command::None) {
				auto command = parseCommandName(arg);
				if (!command)
					return usageError("unknown command " + quoted(arg) +
							  " (migrate, status, list, abort or doctor)");
				line.command = *command;
			} else {
				positionals.emplace_back(arg);
			}
			continue;
		}

		std::string_view name = arg;
		std::optional<std::string_view> inlineValue;
		if (arg.rfind("--", 0) == 0) {
			if (size_t eq = arg.find('='); eq != std::string_view::npos) {
				name = arg.substr(0, eq);
				inlineValue = arg.substr(eq + 1);
			}
		} else if (arg.size() > 2) {
			// "-ojson": a short flag with its value attached.
			const FlagSpec *shortFlag = findFlag(kCommonFlags, arg.substr(0, 2));
			if (shortFlag && shortFlag->takesValue) {
				name = arg.substr(0, 2);
				inlineValue = arg.substr(2);
			}
		}

		const FlagSpec *flag = findFlag(kCommonFlags, name);
		if (!flag)
			flag = findFlag(commandFlags(line.command), name);
		if (!flag) {
			for (Command other : kCommands) {
				if (findFlag(commandFlags(other), name))
					return usageError(std::string(name) + " is a flag of 'ferry " + commandName(other) +
							  "'" + (line.command == Command::None ? "; put it after the command" : ""));
			}
			return usageError("unknown flag " + std::string(name) + " for " + where(line.command) +
					  " (see '" + where(line.command) + " --help')");
		}
		if (!flag->repeatable && !seen.insert(flag->name).second)
			return usageError(std::string(flag->name) + " is given twice");

		std::string_view value;
		if (flag->takesValue) {
			if (inlineValue) {
				value = *inlineValue;
			} else {
				if (i + 1 >= args.size())
					return usageError(std::string(flag->name) + " needs a value");
				value = args[++i];
			}
		} else if (inlineValue) {
			return usageError(std::string(flag->name) + " takes no value");
		}
		FERRY_TRY(flag->apply(line, value));
	}

	FERRY_TRY(validate(line, positionals));
	return line;
}

std::string usage(Command command)
{
	static constexpr const char *kCommon =
		"Common flags (before or after the command):\n"
		"  --agent URL         the agent to talk to (default: $FERRY_AGENT, else http://127.0.0.1:7411)\n"
		"  --token-file FILE   bearer token for the agent\n"
		"  --cacert FILE       CA (PEM) that signed the agent's certificate\n"
		"  --cert FILE         client certificate (PEM) for mutual TLS; needs --key\n"
		"  --key FILE          its private key\n"
		"  --timeout DURATION  limit for each request: 500ms, 30s, 2m (default 30s)\n"
		"  -o, --output FORMAT text (default) or json: one JSON document on stdout\n"
		"  -h, --help          this help\n";
	static constexpr const char *kExitCodes =
		"Exit codes: 0 success (migration committed), 1 migration aborted or failed,\n"
		"  2 usage error, 3 cannot reach the agent, 4 refused by the agent (401/403),\n"
		"  5 not found.\n";

	std::string text;
	switch (command) {
	case Command::None:
		text = "Usage: ferry [flags] <command> ...\n"
		       "\n"
		       "Moves established TCP connections, and the workload that owns them, to another host.\n"
		       "\n"
		       "Commands:\n"
		       "  migrate   start a migration on the source agent and follow it to the end\n"
		       "  status    show one migration\n"
		       "  list      list the agent's migrations\n"
		       "  abort     abort a migration before it commits\n"
		       "  doctor    check that this host can take part in a migration\n"
		       "\n"
		       "Run 'ferry <command> --help' for a command's flags.\n"
		       "\n";
		break;
	case Command::Migrate:
		text = "Usage: ferry migrate (--pid PID | --container ID | --netns NS --port P...) --to URL\n"
		       "                     --target-netns NS [flags]\n"
		       "\n"
		       "Starts a migration on the source agent (--agent, or --from) and, unless --no-wait,\n"
		       "follows its progress until it commits (exit 0) or aborts (exit 1).\n"
		       "\n"
		       "Which connections:\n"
		       "  --pid PID             the sockets of this process tree\n"
		       "  --container ID        the sockets of this runc or podman container (id, name or\n"
		       "                        unique id prefix); the container itself moves: it is\n"
		       "                        started on the destination with them and removed here\n"
		       "  --runtime NAME        runc or podman (default: what the OCI hook registered, else\n"
		       "                        runc, then podman)\n"
		       "  --freeze HOW          cgroup (default: the cgroup freezer) or pause (the runtime's\n"
		       "                        pause)\n"
		       "  --container-name NAME the container's name on the destination (default: the same)\n"
		       "  --netns NS            the sockets of this network namespace (name, path or pid:N)...\n"
		       "  --port P              ...with this local port (repeatable; required with --netns,\n"
		       "                        restricts --pid and --container)\n"
		       "  --no-listeners        do not recreate listening sockets on the destination\n"
		       "Where to:\n"
		       "  --to URL              the destination agent (required)\n"
		       "  --from URL            the source agent, instead of --agent\n"
		       "  --target-netns NS     the namespace on the destination (required; 'self': the agent's)\n"
		       "  --address CIDR@SRCIF[:DSTIF]\n"
		       "                        a service address that moves (repeatable), e.g.\n"
		       "                        198.51.100.10/24@eth0 or 2001:db8::10/64@eth0:eth1\n"
		       "Handoff on the destination:\n"
		       "  --exec \"CMD ARGS\"     start CMD with the connections as fds 3.. (LISTEN_FDS,\n"
		       "                        LISTEN_FDNAMES, LISTEN_PID, FERRY_MANIFEST); quoting as in sh,\n"
		       "                        without expansion\n"
		       "  --env K=V             an environment variable for CMD, or added to the container's\n"
		       "                        on the destination (repeatable)\n"
		       "Other:\n"
		       "  --lock-strategy NAME  drop-both-ways or drop-inbound (default: the agent's)\n"
		       "  --no-wait             print the migration id and return once it started\n"
		       "\n";
		break;
	case Command::Status:
		text = "Usage: ferry status ID [flags]\n"
		       "\n"
		       "Shows one migration: role, phase, connections, bytes, timings, error.\n"
		       "Exit 0 when shown, 1 when the migration aborted, 5 when the agent has no such id.\n"
		       "\n";
		break;
	case Command::List:
		text = "Usage: ferry list [flags]\n"
		       "\n"
		       "Lists the agent's migrations, in either role, oldest first.\n"
		       "\n";
		break;
	case Command::Abort:
		text = "Usage: ferry abort ID [--reason TEXT] [flags]\n"
		       "\n"
		       "Aborts a migration before it commits: the connections carry on at the source.\n"
		       "Aborting an aborted migration succeeds; a committed one cannot be aborted (exit 1).\n"
		       "\n"
		       "  --reason TEXT   why, recorded in the migration's status (default: \"" +
		       std::string(kDefaultAbortReason) + "\")\n\n";
		break;
	case Command::Doctor:
		text = "Usage: ferry doctor [flags]\n"
		       "\n"
		       "Checks that this host can take part in a migration: TCP repair features of the\n"
		       "kernel, CAP_NET_ADMIN and CAP_SYS_PTRACE, nftables, pidfd_getfd, IPv6, criu, and\n"
		       "that the agent answers and accepts the credentials. Prints ok or FAIL per check;\n"
		       "exits 1 when a required check fails.\n"
		       "\n";
		break;
	}
	return text + kCommon + "\n" + kExitCodes;
}

Result<migration::AddressMove> parseAddressSpec(std::string_view spec)
{
	size_t at = spec.rfind('@');
	if (at == std::string_view::npos)
		return usageError(quoted(spec) + " is not CIDR@SRCIF[:DSTIF] (e.g. 198.51.100.10/24@eth0)");
	std::string_view cidrText = spec.substr(0, at);
	std::string_view interfaces = spec.substr(at + 1);
	if (cidrText.find('/') == std::string_view::npos)
		return usageError(quoted(cidrText) + " needs a prefix length (e.g. 198.51.100.10/24)");
	auto cidr = api::Cidr::parse(cidrText, api::Cidr::HostBits::Allowed);
	if (!cidr.ok())
		return usageError(quoted(cidrText) + " is not an address with a prefix length");

	std::string_view source = interfaces;
	std::string_view target = interfaces;
	if (size_t colon = interfaces.find(':'); colon != std::string_view::npos) {
		source = interfaces.substr(0, colon);
		target = interfaces.substr(colon + 1);
	}
	for (std::string_view name : {source, target}) {
		// The kernel's dev_valid_name(): IFNAMSIZ - 1 bytes at most.
		bool valid = !name.empty() && name.size() <= 15 && name != "." && name != ".." &&
			     std::none_of(name.begin(), name.end(), [](char c) {
				     return c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\0';
			     });
		if (!valid)
			return usageError(quoted(name) + " in " + quoted(spec) +
					  " is not an interface name (1-15 bytes, no '/', ':' or space)");
	}
	migration::AddressMove move;
	move.cidr = cidr->toString();
	move.sourceInterface = source;
	move.targetInterface = target;
	return move;
}

Result<std::vector<std::string>> splitCommand(std::string_view text)
{
	std::vector<std::string> words;
	std::string word;
	bool inWord = false;
	for (size_t i = 0; i < text.size(); ++i) {
		char c = text[i];
		if (c == ' ' || c == '\t' || c == '\n') {
			if (inWord)
				words.push_back(std::move(word));
			word.clear();
			inWord = false;
			continue;
		}
		inWord = true;
		if (c == '\\') {
			if (i + 1 >= text.size())
				return usageError("a backslash ends " + quoted(text) + "; nothing to escape");
			word.push_back(text[++i]);
		} else if (c == '\'') {
			size_t end = text.find('\'', i + 1);
			if (end == std::string_view::npos)
				return usageError("unterminated ' in " + quoted(text));
			word.append(text.substr(i + 1, end - i - 1));
			i = end;
		} else if (c == '"') {
			size_t j = i + 1;
			for (; j < text.size() && text[j] != '"'; ++j) {
				if (text[j] == '\\' && j + 1 < text.size() &&
				    (text[j + 1] == '"' || text[j + 1] == '\\' || text[j + 1] == '$' || text[j + 1] == '`'))
					++j;
				word.push_back(text[j]);
			}
			if (j >= text.size())
				return usageError("unterminated \" in " + quoted(text));
			i = j;
		} else {
			word.push_back(c);
		}
	}
	if (inWord)
		words.push_back(std::move(word));
	if (words.empty())
		return usageError("no command in " + quoted(text));
	return words;
}

Result<std::pair<std::string, std::string>> parseEnvironmentAssignment(std::string_view text)
{
	size_t eq = text.find('=');
	if (eq == std::string_view::npos)
		return usageError(quoted(text) + " is not K=V");
	std::string_view key = text.substr(0, eq);
	auto isKeyChar = [](char c, bool first) {
		return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || (!first && c >= '0' && c <= '9');
	};
	bool valid = !key.empty();
	for (size_t i = 0; valid && i < key.size(); ++i)
		valid = isKeyChar(key[i], i == 0);
	if (!valid)
		return usageError(quoted(key) + " is not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
	std::string_view value = text.substr(eq + 1);
	if (value.find('\0') != std::string_view::npos)
		return usageError("the value of " + std::string(key) + " holds a NUL byte");
	return std::pair<std::string, std::string>(key, value);
}

Result<std::chrono::milliseconds> parseDuration(std::string_view text)
{
	size_t digits = 0;
	while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
		++digits;
	auto number = parseInteger<uint64_t>(text.substr(0, digits));
	std::string_view unit = text.substr(digits);
	uint64_t scale = 0;
	if (unit == "ms")
		scale = 1;
	else if (unit == "s" || unit.empty())
		scale = 1000;
	else if (unit == "m")
		scale = 60 * 1000;
	constexpr uint64_t kMaxMs = uint64_t(24) * 3600 * 1000; // a day; more is a typo
	if (!number || scale == 0 || *number == 0 || *number > kMaxMs / scale)
		return usageError(quoted(text) + " is not a duration (e.g. 500ms, 30s, 2m; > 0, at most a day)");
	return std::chrono::milliseconds(*number * scale);
}

} // namespace ferry::cli
