// ferryd: the ferry agent, one per host.
//
// Wires the components together: configuration (agent/api), the workload
// handoff socket and the migration engine (agent/migration), the container
// registry the OCI hook fills (agent/container), the peer client (agent/api
// over transport/), and the HTTP API. The engine recovers
// migrations left in flight by a previous run before the API serves.
//
// Exit codes: 0 after SIGTERM/SIGINT, 1 when start-up fails, 2 for a bad
// command line or configuration.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "api/agent_client.h"
#include "api/agent_config.h"
#include "api/api_server.h"
#include "base/failpoint.h"
#include "base/log.h"
#include "container/container_registry.h"
#include "migration/migration_engine.h"
#include "migration/workload_handoff.h"
#include "netlock/flow_lock.h"

using namespace ferry;

namespace {

FERRY_LOG_CATEGORY(logAgent, "agent")

int fail(const Error &error, const char *what)
{
	std::fprintf(stderr, "ferryd: %s: %s\n", what, error.message().c_str());
	return 1;
}

std::string listenUrl(const api::AgentConfig &config, uint16_t port)
{
	std::string host = config.listen.addressString();
	if (config.listen.family == AF_INET6)
		host = "[" + host + "]";
	return std::string(config.tlsEnabled() ? "https://" : "http://") + host + ":" + std::to_string(port);
}

migration::EnginePolicy policyFrom(const api::AgentConfig &config)
{
	migration::EnginePolicy policy;
	policy.allowedNetns = config.allow.netns;
	policy.allowedInterfaces = config.allow.interfaces;
	for (const api::Cidr &cidr : config.allow.addresses)
		policy.allowedPrefixes.push_back(cidr.toString());
	policy.maxConcurrent = config.limits.maxConcurrentMigrations;
	policy.maxImageBytes = config.limits.maxImageBytes;
	policy.commitTimeout = config.limits.commitTimeout;
	return policy;
}

} // namespace

int main(int argc, char **argv)
{
	auto args = api::parseAgentArguments(argc, argv);
	if (!args.ok()) {
		std::fprintf(stderr, "ferryd: %s\n\n%s", args.error().message().c_str(), api::agentUsage("ferryd").c_str());
		return 2;
	}
	if (args->help) {
		std::fputs(api::agentUsage("ferryd").c_str(), stdout);
		return 0;
	}
	const api::AgentConfig &config = args->config;
	log::configure(config.log);
	auto strategy = netlock::parseLockStrategy(config.lockStrategy);
	if (!strategy) {
		std::fprintf(stderr, "ferryd: lock_strategy (--lock-strategy): '%s' is not drop-both-ways or drop-inbound\n",
			     config.lockStrategy.c_str());
		return 2;
	}

	// Signals are taken synchronously by the main thread; every other
	// thread (HTTP, engine) inherits the blocked mask.
	sigset_t stopSignals;
	sigemptyset(&stopSignals);
	sigaddset(&stopSignals, SIGTERM);
	sigaddset(&stopSignals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);
	signal(SIGPIPE, SIG_IGN);

	// The source holds a duplicate of every migrated socket, the
	// destination every restored one: allow as many fds as the host lets.
	rlimit files{};
	if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
		files.rlim_cur = files.rlim_max;
		::setrlimit(RLIMIT_NOFILE, &files);
	}

	if (::mkdir(config.stateDir.c_str(), 0700) < 0 && errno != EEXIST)
		return fail(errnoError("cannot create the state directory").at("path", config.stateDir), "start-up");

	std::string handoffPath = config.handoffSocket.empty() ? config.stateDir + "/handoff.sock" : config.handoffSocket;
	auto handoff = migration::HandoffServer::listen(handoffPath, 0600);
	if (!handoff.ok())
		return fail(handoff.error(), "handoff socket");

	api::AgentCredentials peerCredentials;
	peerCredentials.caFile = config.clientCa;   // peers are verified against the same CA
	peerCredentials.certFile = config.tlsCert;  // and see this agent's certificate
	peerCredentials.keyFile = config.tlsKey;
	// A peer that stops answering for as long as a commit may take is gone.
	peerCredentials.stallTimeout = std::max(std::chrono::seconds(1),
						std::chrono::duration_cast<std::chrono::seconds>(config.limits.commitTimeout));
	auto credentials = api::loadCredentials(config.tokenFile, peerCredentials);
	if (!credentials.ok())
		return fail(credentials.error(), "credentials");

	// Opened before the engine: a migration of a registered container may
	// be recovered from the journal as soon as the engine starts.
	std::string registryPath = config.stateDir + "/containers.json";
	auto containers = container::ContainerRegistry::open(registryPath);
	if (!containers.ok())
		return fail(containers.error(), "container registry");

	migration::EngineOptions options;
	options.policy = policyFrom(config);
	options.policy.lockStrategy = *strategy;
	options.stateDir = config.stateDir;
	options.agentUrl = config.advertiseUrl.empty() ? listenUrl(config, config.listen.port) : config.advertiseUrl;
	options.peers = api::makeHttpPeerFactory(*credentials);
	options.handoff = handoff->get();
	options.sweepNetns = config.allow.netns;
	options.runtimes = config.runtimes;
	options.containers = containers->get();
	auto engine = migration::MigrationEngine::create(std::move(options));
	if (!engine.ok())
		return fail(engine.error(), "migration engine");

	auto server = api::ApiServer::create(**engine, config, containers->get());
	if (!server.ok())
		return fail(server.error(), "HTTP API");
	Status started = (*server)->start();
	if (!started.ok())
		return fail(started.error(), "HTTP API");

	if (failpointsActive())
		FERRY_LOG(logAgent, Warn) << "FERRY_FAILPOINTS is set: this agent fails on purpose (tests only)";
	std::string url = listenUrl(config, (*server)->port());
	FERRY_LOG(logAgent, Info) << "ferryd ready" << kv("url", url) << kv("state", config.stateDir)
				  << kv("handoff", handoffPath) << kv("containers", registryPath);
	// One line on stdout, for scripts that start ferryd on port 0.
	std::printf("ferryd listening on %s\n", url.c_str());
	std::fflush(stdout);

	int signal = 0;
	sigwait(&stopSignals, &signal);
	FERRY_LOG(logAgent, Info) << "stopping" << kv("signal", strsignal(signal));
	(*server)->stop();
	server->reset();
	engine->reset();
	containers->reset();
	handoff->reset();
	return 0;
}
