// The kubectl-ferry command line: kubectl's flag conventions, every
// migrate flag, the mistakes it refuses, the usage text, and the request
// built from a resolution.
#include "kubectl_test_support.h"
#include "plugin_command_line.h"

using namespace ferry;
using namespace ferry::kubectl;
using ferry::test::contains;

namespace {

PluginCommandLine parsed(const std::vector<std::string> &args)
{
	auto line = parsePluginCommandLine(args);
	REQUIRE_MESSAGE(line.ok(), line.error().message());
	return *line;
}

std::string refusal(const std::vector<std::string> &args)
{
	auto line = parsePluginCommandLine(args);
	REQUIRE_MESSAGE(!line.ok(), "accepted, but should not have been");
	CHECK(line.error().code == EINVAL);
	return line.error().what;
}

const std::vector<std::string> kMinimal = {"migrate", "web-0", "--to-node", "worker-2", "--target-netns", "/run/netns/cni-1"};

} // namespace

TEST_CASE("migrate: the pod, kubectl's flags before and after the command, both value forms")
{
	PluginCommandLine line = parsed({"-n", "shop", "--context=prod", "migrate", "web-0", "-c", "app", "--to-node",
					 "worker-2", "--kubeconfig", "/tmp/kc", "--target-netns=/run/netns/cni-1", "-ojson"});
	CHECK(line.command == Command::Migrate);
	CHECK(line.resolve.pod == "web-0");
	CHECK(line.resolve.namespaceName == "shop");
	CHECK(line.resolve.container == "app");
	CHECK(line.resolve.toNode == "worker-2");
	CHECK(line.kube.context == "prod");
	CHECK(line.kube.kubeconfig == "/tmp/kc");
	CHECK(line.request.targetNetns == "/run/netns/cni-1");
	CHECK(line.output == cli::OutputFormat::Json);
	CHECK(line.resolve.agents.selector == kDefaultAgentSelector);
	CHECK(line.resolve.agents.namespaceName == kDefaultAgentNamespace);
	CHECK(line.resolve.agents.scheme == "https");
	CHECK(line.wait);
	CHECK_FALSE(line.dryRun);

	CHECK(parsed({"migrate", "pod/web-0", "--to-node", "w", "--dry-run", "-nshop"}).resolve.pod ==
	      "web-0");
	CHECK(parsed({"migrate", "-n=shop", "web-0", "--to-node", "w", "--dry-run"}).resolve.namespaceName == "shop");
	CHECK(parsed({"migrate", "--container=sidecar", "web-0", "--to-node", "w", "--dry-run"}).resolve.container ==
	      "sidecar");
}

TEST_CASE("migrate: the request flags, the agent flags and the credentials")
{
	PluginCommandLine line =
		parsed({"migrate", "web-0", "--to-node", "worker-2", "--target-netns", "cni-1", "--address",
			"198.51.100.10/24@eth0", "--address", "2001:db8::10/64@eth0:net1", "--port", "8080", "--port", "9090",
			"--no-listeners", "--lock-strategy", "drop-inbound", "--freeze", "pause", "--agent-selector",
			"app=agent", "--agent-namespace", "ops", "--agent-scheme", "http", "--token-file", "/t",
			"--cacert", "/ca", "--cert", "/c", "--key", "/k", "--timeout", "5s", "--no-wait"});
	REQUIRE(line.request.addresses.size() == 2);
	CHECK(line.request.addresses[0].cidr == "198.51.100.10/24");
	CHECK(line.request.addresses[0].targetInterface == "eth0");
	CHECK(line.request.addresses[1].targetInterface == "net1");
	CHECK(line.request.selection.localPorts == std::vector<uint16_t>{8080, 9090});
	CHECK_FALSE(line.request.selection.includeListeners);
	CHECK(line.request.lockStrategy == "drop-inbound");
	CHECK(line.freeze == migration::ContainerSelection::Freeze::Pause);
	CHECK(line.resolve.agents.selector == "app=agent");
	CHECK(line.resolve.agents.namespaceName == "ops");
	CHECK(line.resolve.agents.scheme == "http");
	CHECK(line.access.tokenFile == "/t");
	CHECK(line.access.caFile == "/ca");
	CHECK(line.access.certFile == "/c");
	CHECK(line.access.keyFile == "/k");
	CHECK(line.access.timeout == std::chrono::seconds(5));
	CHECK_FALSE(line.wait);
}

TEST_CASE("migrate: what it refuses, by name")
{
	CHECK(refusal({"migrate", "--to-node", "w", "--target-netns", "n"}) == "kubectl ferry migrate needs a pod name");
	CHECK(contains(refusal({"migrate", "a", "b", "--to-node", "w", "--target-netns", "n"}), "got also 'b'"));
	CHECK(contains(refusal({"migrate", "web-0", "--target-netns", "n"}), "--to-node NODE is required"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w"}), "--target-netns is required"));
	CHECK(contains(refusal({"migrate", "deploy/web", "--to-node", "w", "--dry-run"}), "'deploy/web' is not a pod name"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "--cert", "/c"}),
		       "--cert and --key go together"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "--no-wait"}), "--no-wait does not apply"));
	CHECK(refusal({"migrate", "web-0", "--to-node", "w", "--to-node", "v", "--dry-run"}) == "--to-node is given twice");
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "--address", "10.0.0.1"}), "--address:"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "--port", "0"}), "--port: '0'"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "--port", "80", "--port", "80"}),
		       "given twice"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "--agent-scheme", "ftp"}),
		       "'ftp' is not http or https"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "--freeze", "stop"}),
		       "'stop' is not cgroup or pause"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "-o", "yaml"}),
		       "'yaml' is not an output format"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "--timeout", "0s"}), "--timeout:"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run", "-n", ""}), "-n/--namespace needs"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node"}), "--to-node needs a value"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "--dry-run=yes"}), "takes no value"));
	CHECK(contains(refusal({"migrate", "web-0", "--bogus"}), "unknown flag --bogus (see 'kubectl ferry migrate --help')"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "-s", "https://x"}), "--server is not passed through"));
	CHECK(contains(refusal({"migrate", "web-0", "--to-node", "w", "-A"}), "-A/--all-namespaces does not apply"));
}

TEST_CASE("commands: version, none, unknown; migrate flags belong to migrate")
{
	CHECK(parsed({"version"}).command == Command::Version);
	CHECK(parsed({"version", "-o", "json"}).output == cli::OutputFormat::Json);
	CHECK(parsed({"--context", "x", "version"}).kube.context == "x");
	CHECK(refusal({}) == "no command given (migrate or version)");
	CHECK(refusal({"exec"}) == "unknown command 'exec' (migrate or version)");
	CHECK(refusal({"version", "extra"}) == "kubectl ferry version takes no argument, got 'extra'");
	CHECK(refusal({"version", "--to-node", "w"}) == "--to-node is a flag of 'kubectl ferry migrate'");
}

TEST_CASE("--help anywhere wins, and finds the command")
{
	PluginCommandLine line = parsed({"migrate", "--bogus", "-h"});
	CHECK(line.help);
	CHECK(line.command == Command::Migrate);
	CHECK(parsed({"--help"}).command == Command::None);
	CHECK(parsed({"version", "--help"}).command == Command::Version);
}

TEST_CASE("usage says 'kubectl ferry' and lists every flag the parser takes")
{
	std::string overview = pluginUsage(Command::None);
	CHECK(overview.rfind("Usage: kubectl ferry [flags] <command>", 0) == 0);
	CHECK(contains(overview, "migrate"));
	CHECK(contains(overview, "version"));
	CHECK(contains(overview, "Exit codes: 0"));
	std::string migrate = pluginUsage(Command::Migrate);
	CHECK(migrate.rfind("Usage: kubectl ferry migrate POD [-c CONTAINER] --to-node NODE --target-netns NS", 0) == 0);
	for (const char *flag : {"-n, --namespace", "--context", "--kubeconfig", "-o, --output", "-c, --container",
				 "--to-node", "--target-netns", "--address", "--port", "--no-listeners", "--freeze",
				 "--lock-strategy", "--agent-selector", "--agent-namespace", "--agent-scheme", "--token-file",
				 "--cacert", "--cert FILE, --key FILE", "--timeout", "--dry-run", "--no-wait"})
		CHECK_MESSAGE(contains(migrate, flag), flag);
	CHECK_FALSE(contains(migrate, "Usage: ferry"));
	CHECK(pluginUsage(Command::Version).rfind("Usage: kubectl ferry version", 0) == 0);
}

TEST_CASE("buildRequest: the resolved container, runc, the freeze mode and the destination agent")
{
	PluginCommandLine line = parsed({"migrate", "web-0", "--to-node", "worker-2", "--target-netns", "cni-1", "--port",
					 "8080", "--address", "198.51.100.10/24@eth0", "--freeze", "pause"});
	Resolution resolution;
	resolution.container = {"containerd", container::Runtime::Runc, std::string(64, 'b')};
	resolution.destination = {"worker-2", "ferry-system/ferryd-x", "https://10.0.0.12:7411"};
	migration::MigrationRequest request = buildRequest(line, resolution);
	REQUIRE(request.selection.container);
	CHECK(request.selection.container->id == std::string(64, 'b'));
	REQUIRE(request.selection.container->runtime);
	CHECK(std::string(container::toString(*request.selection.container->runtime)) == "runc");
	CHECK(request.selection.container->freeze == migration::ContainerSelection::Freeze::Pause);
	CHECK(request.selection.container->destinationName.empty());
	CHECK_FALSE(request.selection.pid);
	CHECK(request.selection.netns.empty());
	CHECK(request.selection.localPorts == std::vector<uint16_t>{8080});
	CHECK(request.targetAgent == "https://10.0.0.12:7411");
	CHECK(request.targetNetns == "cni-1");
	REQUIRE(request.addresses.size() == 1);
	CHECK(request.handoff.execArgv.empty());
}
