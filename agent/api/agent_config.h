// AgentConfig: ferryd's configuration, from a JSON file and the command line.
//
// Precedence: built-in defaults, then the file named by --config, then each
// command-line flag. Every field of the file has a flag (docs/configuration.md
// lists them with their defaults; configs/ferryd.json is the example).
//
// Parsing is strict: an unknown field, a wrong type, a bad CIDR, a TLS
// certificate without its key (or the other way round), or an agent that
// would accept requests without any credential while `insecure_plain_http`
// is not set are errors (EINVAL) whose text names the field or flag, e.g.
// "limits.max_image_bytes: expected an integer >= 1".
//
// Nothing here opens a socket or reads a certificate; the token file is
// read by readTokenFile(), at start-up, by ApiServer.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "allowlist.h"
#include "base/error.h"
#include "base/flow.h"
#include "container/container.h"

namespace ferry::api {

struct AgentLimits {
	uint32_t maxConcurrentMigrations = 4;
	uint64_t maxImageBytes = uint64_t(4) << 30;      // one migration's image, compressed
	std::chrono::milliseconds commitTimeout{30000};  // lock to commit, on each host
	uint64_t maxRequestBodyBytes = uint64_t(16) << 20; // JSON bodies (10,000 connections fit)
};

struct AgentConfig {
	Endpoint listen = defaultListen();  // port 0: any free port (ApiServer::port() tells)
	std::string stateDir = "/var/lib/ferry";
	std::string tlsCert;                // PEM; with tlsKey, serve HTTPS
	std::string tlsKey;
	std::string clientCa;               // PEM CA; clients must present a certificate it signed
	std::string tokenFile;              // bearer token, one line
	Allowlist allow;
	AgentLimits limits;
	bool insecurePlainHttp = false;     // allow serving with no credential at all
	std::string advertiseUrl;           // how peers reach this agent; "" = derived from listen
	std::string handoffSocket;          // workload handoff socket; "" = <state_dir>/handoff.sock
	std::string lockStrategy = "drop-both-ways"; // netlock strategy name (ferryd checks it)
	std::string log = "info";           // level spec, as FERRY_LOG takes it
	// How ferryd calls runc and podman for container migrations (the
	// "runtimes" object): binaries, state roots, extra `podman run` args.
	container::RuntimeOptions runtimes;

	bool tlsEnabled() const { return !tlsCert.empty(); }
	bool mutualTls() const { return !clientCa.empty(); }
	bool hasCredential() const { return !tokenFile.empty() || mutualTls(); }

	static Endpoint defaultListen();
};

// Applies the fields present in `json` on top of `base`.
Result<AgentConfig> parseAgentConfig(std::string_view json, AgentConfig base = {});
Result<AgentConfig> loadAgentConfig(const std::string &path, AgentConfig base = {});

// Cross-field rules (TLS pairs, credentials, log spec). parseAgentArguments()
// runs it on the final result; call it yourself after building a config in
// code.
Status validateAgentConfig(const AgentConfig &config);

struct AgentArguments {
	AgentConfig config;
	bool help = false;       // --help: print agentUsage() and exit 0
	std::string configFile;  // --config, if given
};

// ferryd's argv: "--flag value" or "--flag=value"; see agentUsage().
// argv[0] is skipped. Positional arguments are errors.
Result<AgentArguments> parseAgentArguments(int argc, const char *const *argv);
std::string agentUsage(std::string_view program);

// The token in `path`, without surrounding whitespace. Fails when the file
// cannot be read or holds an empty token. Never puts the token in an Error.
Result<std::string> readTokenFile(const std::string &path);

// Whether `spec` is a valid log level spec ("info", "api=debug,warn").
bool isValidLogSpec(std::string_view spec);

} // namespace ferry::api
