#include "plugin_command_line.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <set>
#include <span>

namespace ferry::kubectl {

namespace {

// One flag: its spellings, whether it takes a value, whether it may repeat,
// whether only `migrate` takes it, and what it does to the command line.
struct FlagSpec {
	std::string_view name;  // "--namespace"
	std::string_view alias; // "-n", or ""
	bool takesValue;
	bool repeatable;
	bool migrateOnly;
	Status (*apply)(PluginCommandLine &line, std::string_view value);
};

Error usageError(std::string what)
{
	return makeError(std::move(what), EINVAL);
}

std::string quoted(std::string_view text)
{
	return "'" + std::string(text) + "'";
}

Status needNonEmpty(std::string_view flag, std::string_view value)
{
	if (value.empty())
		return usageError(std::string(flag) + " needs a non-empty value");
	return {};
}

// --- kubectl's flags -----------------------------------------------------

Status applyNamespace(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("-n/--namespace", value));
	line.resolve.namespaceName = value;
	return {};
}

Status applyContext(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--context", value));
	line.kube.context = value;
	return {};
}

Status applyKubeconfig(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--kubeconfig", value));
	line.kube.kubeconfig = value;
	return {};
}

Status applyOutput(PluginCommandLine &line, std::string_view value)
{
	if (value == "json")
		line.output = cli::OutputFormat::Json;
	else if (value == "text")
		line.output = cli::OutputFormat::Text;
	else
		return usageError("-o/--output: " + quoted(value) + " is not an output format (json or text)");
	return {};
}

Status applyHelp(PluginCommandLine &line, std::string_view)
{
	line.help = true;
	return {};
}

// --- migrate: the pod and the agents ------------------------------------

Status applyContainer(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("-c/--container", value));
	line.resolve.container = value;
	return {};
}

Status applyToNode(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--to-node", value));
	line.resolve.toNode = value;
	return {};
}

Status applyAgentSelector(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--agent-selector", value));
	line.resolve.agents.selector = value;
	return {};
}

Status applyAgentNamespace(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--agent-namespace", value));
	line.resolve.agents.namespaceName = value;
	return {};
}

Status applyAgentScheme(PluginCommandLine &line, std::string_view value)
{
	if (value != "https" && value != "http")
		return usageError("--agent-scheme: " + quoted(value) + " is not http or https");
	line.resolve.agents.scheme = value;
	return {};
}

// --- migrate: the request -----------------------------------------------

Status applyTargetNetns(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--target-netns", value));
	line.request.targetNetns = value;
	return {};
}

Status applyAddress(PluginCommandLine &line, std::string_view value)
{
	auto move = cli::parseAddressSpec(value);
	if (!move.ok())
		return usageError("--address: " + move.error().what);
	for (const migration::AddressMove &other : line.request.addresses) {
		if (other.cidr == move->cidr)
			return usageError("--address: " + move->cidr + " is given twice");
	}
	line.request.addresses.push_back(std::move(*move));
	return {};
}

Status applyPort(PluginCommandLine &line, std::string_view value)
{
	long port = 0;
	auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), port);
	if (value.empty() || ec != std::errc() || end != value.data() + value.size() || port < 1 || port > 65535)
		return usageError("--port: " + quoted(value) + " is not a TCP port (1-65535)");
	auto &ports = line.request.selection.localPorts;
	if (std::find(ports.begin(), ports.end(), port) != ports.end())
		return usageError("--port: " + std::string(value) + " is given twice");
	ports.push_back(static_cast<uint16_t>(port));
	return {};
}

Status applyNoListeners(PluginCommandLine &line, std::string_view)
{
	line.request.selection.includeListeners = false;
	return {};
}

Status applyLockStrategy(PluginCommandLine &line, std::string_view value)
{
	// The agent knows its strategies (GET /v1/info) and refuses others by name.
	FERRY_TRY(needNonEmpty("--lock-strategy", value));
	line.request.lockStrategy = value;
	return {};
}

Status applyFreeze(PluginCommandLine &line, std::string_view value)
{
	auto freeze = migration::parseFreeze(value);
	if (!freeze)
		return usageError("--freeze: " + quoted(value) + " is not cgroup or pause");
	line.freeze = *freeze;
	return {};
}

Status applyDryRun(PluginCommandLine &line, std::string_view)
{
	line.dryRun = true;
	return {};
}

Status applyNoWait(PluginCommandLine &line, std::string_view)
{
	line.wait = false;
	return {};
}

// --- migrate: reaching the agents ---------------------------------------

Status applyTokenFile(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--token-file", value));
	line.access.tokenFile = value;
	return {};
}

Status applyCaFile(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--cacert", value));
	line.access.caFile = value;
	return {};
}

Status applyCertFile(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--cert", value));
	line.access.certFile = value;
	return {};
}

Status applyKeyFile(PluginCommandLine &line, std::string_view value)
{
	FERRY_TRY(needNonEmpty("--key", value));
	line.access.keyFile = value;
	return {};
}

Status applyTimeout(PluginCommandLine &line, std::string_view value)
{
	auto timeout = cli::parseDuration(value);
	if (!timeout.ok())
		return usageError("--timeout: " + timeout.error().what);
	line.access.timeout = *timeout;
	return {};
}

constexpr std::array<FlagSpec, 25> kFlags = {{
	{"--namespace", "-n", true, false, false, applyNamespace},
	{"--context", "", true, false, false, applyContext},
	{"--kubeconfig", "", true, false, false, applyKubeconfig},
	{"--output", "-o", true, false, false, applyOutput},
	{"--help", "-h", false, true, false, applyHelp},
	{"--container", "-c", true, false, true, applyContainer},
	{"--to-node", "", true, false, true, applyToNode},
	{"--agent-selector", "", true, false, true, applyAgentSelector},
	{"--agent-namespace", "", true, false, true, applyAgentNamespace},
	{"--agent-scheme", "", true, false, true, applyAgentScheme},
	{"--target-netns", "", true, false, true, applyTargetNetns},
	{"--address", "", true, true, true, applyAddress},
	{"--port", "", true, true, true, applyPort},
	{"--no-listeners", "", false, false, true, applyNoListeners},
	{"--lock-strategy", "", true, false, true, applyLockStrategy},
	{"--freeze", "", true, false, true, applyFreeze},
	{"--dry-run", "", false, false, true, applyDryRun},
	{"--no-wait", "", false, false, true, applyNoWait},
	{"--token-file", "", true, false, true, applyTokenFile},
	{"--cacert", "", true, false, true, applyCaFile},
	{"--cert", "", true, false, true, applyCertFile},
	{"--key", "", true, false, true, applyKeyFile},
	{"--timeout", "", true, false, true, applyTimeout},
	// kubectl's global flags that change which cluster is asked and that
	// the plugin cannot honour by passing through are refused by name
	// rather than silently ignored.
	{"--server", "-s", true, false, false,
	 [](PluginCommandLine &, std::string_view) -> Status {
		 return usageError("--server is not passed through; use --context or --kubeconfig");
	 }},
	{"--all-namespaces", "-A", false, false, false,
	 [](PluginCommandLine &, std::string_view) -> Status {
		 return usageError("-A/--all-namespaces does not apply: a migration moves one pod (-n names its namespace)");
	 }},
}};

const FlagSpec *findFlag(std::string_view name)
{
	for (const FlagSpec &flag : kFlags) {
		if (flag.name == name || (!flag.alias.empty() && flag.alias == name))
			return &flag;
	}
	return nullptr;
}

std::optional<Command> parseCommandName(std::string_view name)
{
	for (Command command : {Command::Migrate, Command::Version}) {
		if (name == commandName(command))
			return command;
	}
	return std::nullopt;
}

Status validate(PluginCommandLine &line, const std::vector<std::string> &positionals)
{
	switch (line.command) {
	case Command::None:
		return usageError("no command given (migrate or version)");
	case Command::Version:
		if (!positionals.empty())
			return usageError("kubectl ferry version takes no argument, got " + quoted(positionals.front()));
		return {};
	case Command::Migrate:
		break;
	}
	if (positionals.empty())
		return usageError("kubectl ferry migrate needs a pod name");
	if (positionals.size() > 1)
		return usageError("kubectl ferry migrate takes one pod, got also " + quoted(positionals[1]));
	std::string pod = positionals.front();
	// "pod/web-0" is how kubectl names a pod too.
	if (pod.rfind("pod/", 0) == 0 || pod.rfind("pods/", 0) == 0)
		pod = pod.substr(pod.find('/') + 1);
	if (pod.empty() || pod.find('/') != std::string::npos)
		return usageError(quoted(positionals.front()) + " is not a pod name");
	line.resolve.pod = pod;

	if (line.resolve.toNode.empty())
		return usageError("--to-node NODE is required: the node the pod moves to");
	if (line.request.targetNetns.empty() && !line.dryRun)
		return usageError("--target-netns is required: the network namespace on the destination node, as its "
				  "ferryd names it (see 'kubectl ferry migrate --help')");
	if (line.access.certFile.empty() != line.access.keyFile.empty())
		return usageError("--cert and --key go together: a client certificate needs its key");
	if (line.dryRun && !line.wait)
		return usageError("--dry-run starts nothing; --no-wait does not apply");
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
	case Command::Version:
		return "version";
	}
	return "";
}

Result<PluginCommandLine> parsePluginCommandLine(const std::vector<std::string> &args)
{
	PluginCommandLine line;
	// --help anywhere wins, so that "kubectl ferry migrate --help" works
	// however incomplete the rest is.
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
	std::vector<const FlagSpec *> migrateFlags;
	for (size_t i = 0; i < args.size(); ++i) {
		std::string_view arg = args[i];
		if (arg == "--") {
			// Everything after is positional (a pod named "-x" cannot
			// exist, but kubectl accepts the separator).
			for (++i; i < args.size(); ++i)
				positionals.push_back(args[i]);
			break;
		}
		if (arg.size() < 2 || arg[0] != '-') {
			if (line.command == Command::None) {
				auto command = parseCommandName(arg);
				if (!command)
					return usageError("unknown command " + quoted(arg) + " (migrate or version)");
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
			// "-nweb", "-ojson": a short flag with its value attached.
			const FlagSpec *shortFlag = findFlag(arg.substr(0, 2));
			if (shortFlag && shortFlag->takesValue) {
				name = arg.substr(0, 2);
				inlineValue = arg.substr(2);
				if (!inlineValue->empty() && inlineValue->front() == '=')
					inlineValue = inlineValue->substr(1);
			}
		}

		const FlagSpec *flag = findFlag(name);
		if (!flag)
			return usageError("unknown flag " + std::string(name) + " (see 'kubectl ferry " +
					  commandName(line.command) + (line.command == Command::None ? "" : " ") + "--help')");
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
		if (flag->migrateOnly)
			migrateFlags.push_back(flag);
		FERRY_TRY(flag->apply(line, value));
	}

	if (line.command != Command::Migrate && !migrateFlags.empty() && line.command != Command::None)
		return usageError(std::string(migrateFlags.front()->name) + " is a flag of 'kubectl ferry migrate'");
	FERRY_TRY(validate(line, positionals));
	return line;
}

std::string pluginUsage(Command command)
{
	static constexpr const char *kKubectlFlags =
		"kubectl flags (before or after the command):\n"
		"  -n, --namespace NS      the pod's namespace (default: the context's)\n"
		"  --context NAME          the kubeconfig context to use\n"
		"  --kubeconfig FILE       the kubeconfig to use\n"
		"  -o, --output FORMAT     text (default) or json: one JSON document on stdout\n"
		"  -h, --help              this help\n"
		"kubectl itself is $KUBECTL, else 'kubectl' from PATH.\n";
	static constexpr const char *kExitCodes =
		"Exit codes: 0 success (migration committed), 1 migration aborted or failed, or the\n"
		"  pod cannot move as it is, 2 usage error, 3 cannot reach an agent or the API server,\n"
		"  4 refused by an agent or the API server, 5 not found (pod, container, ferryd on a node).\n";

	std::string text;
	switch (command) {
	case Command::None:
		text = "Usage: kubectl ferry [flags] <command> ...\n"
		       "\n"
		       "Moves a pod's container, and its established TCP connections, to another node\n"
		       "with ferry's agents (the ferryd DaemonSet).\n"
		       "\n"
		       "Commands:\n"
		       "  migrate   resolve pod -> node -> agents and drive the migration\n"
		       "  version   print the plugin's version\n"
		       "\n"
		       "Run 'kubectl ferry <command> --help' for a command's flags.\n"
		       "\n";
		break;
	case Command::Migrate:
		text = "Usage: kubectl ferry migrate POD [-c CONTAINER] --to-node NODE --target-netns NS [flags]\n"
		       "\n"
		       "Finds the pod's node and container id, the ferryd pods on that node and on NODE,\n"
		       "starts the migration on the source agent and follows it until it commits (exit 0)\n"
		       "or aborts (exit 1).\n"
		       "\n"
		       "The pod:\n"
		       "  POD                     the pod (or pod/POD) in -n's namespace\n"
		       "  -c, --container NAME    the container that moves (default: the pod's\n"
		       "                          kubectl.kubernetes.io/default-container, else its only one)\n"
		       "  --port P                only connections of this local port (repeatable)\n"
		       "  --no-listeners          do not recreate listening sockets on the destination\n"
		       "  --freeze MODE           cgroup (default) or pause: how the source container stops\n"
		       "Where to:\n"
		       "  --to-node NODE          the destination node (required)\n"
		       "  --target-netns NS       the network namespace on NODE, as its ferryd names it\n"
		       "                          (required unless --dry-run; see docs/kubectl.md)\n"
		       "  --address CIDR@SRCIF[:DSTIF]\n"
		       "                          a service address that moves (repeatable), e.g.\n"
		       "                          198.51.100.10/24@eth0\n"
		       "  --lock-strategy NAME    drop-both-ways or drop-inbound (default: the agent's)\n"
		       "The agents:\n"
		       "  --agent-selector SEL    label selector of the ferryd pods\n"
		       "                          (default app.kubernetes.io/name=ferryd)\n"
		       "  --agent-namespace NS    their namespace (default ferry-system)\n"
		       "  --agent-scheme SCHEME   https (default) or http\n"
		       "  --token-file FILE       bearer token for the agents\n"
		       "  --cacert FILE           CA (PEM) that signed the agents' certificates\n"
		       "  --cert FILE, --key FILE client certificate and key (PEM) for mutual TLS\n"
		       "  --timeout DURATION      limit for each agent request: 500ms, 30s, 2m (default 30s)\n"
		       "Other:\n"
		       "  --dry-run               print the resolution and the request; contact no agent\n"
		       "  --no-wait               return once the migration started, with its id\n"
		       "\n";
		break;
	case Command::Version:
		text = "Usage: kubectl ferry version [-o json]\n"
		       "\n"
		       "Prints the plugin's version.\n"
		       "\n";
		break;
	}
	return text + kKubectlFlags + "\n" + kExitCodes;
}

migration::MigrationRequest buildRequest(const PluginCommandLine &line, const Resolution &resolution)
{
	migration::MigrationRequest request = line.request;
	migration::ContainerSelection selection;
	selection.id = resolution.container.id;
	selection.runtime = resolution.container.runtime;
	selection.freeze = line.freeze;
	request.selection.container = std::move(selection);
	request.targetAgent = resolution.destination.url;
	return request;
}

} // namespace ferry::kubectl
