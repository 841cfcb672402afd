// ferry-oci-hook: an OCI runtime hook (runc config.json "hooks", podman
// hooks.d) that registers containers annotated io.ferry.migratable=true
// with the local ferryd at poststart and deregisters them at poststop.
//
// Fail-open, always: the runtime fails the container when a hook exits
// non-zero, and a migration agent that is down, slow or misconfigured
// must never stop a container from starting. Every problem (bad
// arguments, bad stdin, no agent, a refusal) is one line on stderr and in
// syslog, and the exit status is 0; the container is then simply not
// registered. The whole run is bounded by --timeout-ms (1 s by default):
// reading stdin, connecting and the answer share that budget.
#include <poll.h>
#include <syslog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "api/agent_client.h"
#include "api/container_schemas.h"
#include "hook_invocation.h"
#include "transport/http_client.h"

using namespace ferry;
using namespace ferry::ocihook;
using Clock = std::chrono::steady_clock;

namespace {

// One line to stderr (the runtime shows it when it reports hook output)
// and to syslog (where an operator finds why a container is missing from
// `ferry` after the fact). Never the token.
void report(int priority, const std::string &line)
{
	if (priority <= LOG_WARNING)
		std::fprintf(stderr, "ferry-oci-hook: %s\n", line.c_str());
	syslog(priority, "%s", line.c_str());
}

// Reads the state from stdin until EOF, for at most `timeout`: a runtime
// writes it at once and closes the pipe, and a hook left waiting would
// hold up the container.
Result<std::string> readState(std::chrono::milliseconds timeout)
{
	auto deadline = Clock::now() + timeout;
	std::string text;
	char buffer[8192];
	while (true) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
		if (left <= 0)
			return makeError("stdin: no complete OCI state within the timeout", ETIMEDOUT);
		pollfd p{STDIN_FILENO, POLLIN, 0};
		int ready = ::poll(&p, 1, static_cast<int>(left));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0)
			return errnoError("stdin: poll failed");
		if (ready == 0)
			continue;
		ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errnoError("stdin: read failed");
		if (n == 0)
			return text;
		if (text.size() + static_cast<size_t>(n) > kMaxStateBytes)
			return makeError("stdin: larger than " + std::to_string(kMaxStateBytes) + " bytes, not an OCI state",
					 E2BIG);
		text.append(buffer, static_cast<size_t>(n));
	}
}

// The agent's error message from a JSON error body, else the status.
std::string describe(const transport::HttpResponse &response)
{
	std::string body = response.body.substr(0, 300);
	while (!body.empty() && (body.back() == '\n' || body.back() == '\r'))
		body.pop_back();
	return "HTTP " + std::to_string(response.status) + (body.empty() ? "" : ": " + body);
}

// Does the work; an Error is what report() logs.
Status run(int argc, char **argv)
{
	auto args = parseHookArguments(argc, argv, processEnvironment());
	if (!args)
		return std::move(args).error().at("phase", "arguments");
	if (args->help) {
		std::fputs(hookUsage().c_str(), stdout);
		return {};
	}
	const HookSettings &settings = args->settings;
	auto start = Clock::now();

	FERRY_TRY_ASSIGN(std::string text, readState(settings.timeout));
	FERRY_TRY_ASSIGN(OciState state, parseOciState(text));
	FERRY_TRY_ASSIGN(Stage stage, resolveStage(args->stage, state));
	if (!isMigratable(state)) {
		// runc config.json hooks run for every container they are in;
		// only the annotated ones are ferry's business.
		syslog(LOG_DEBUG, "container %s is not annotated %s=true; nothing to do", state.id.c_str(),
		       std::string(container::kMigratableAnnotation).c_str());
		return {};
	}
	if (!api::isValidContainerId(state.id))
		return makeError("container id '" + state.id + "' has characters ferryd does not accept", EINVAL);

	transport::HttpClientOptions options;
	options.baseUrl = settings.agentUrl;
	options.caFile = settings.caFile;
	options.certFile = settings.certFile;
	options.keyFile = settings.keyFile;
	FERRY_TRY_ASSIGN(api::AgentCredentials credentials, api::loadCredentials(settings.tokenFile));
	options.bearerToken = credentials.token;
	// What is left of the budget after stdin: connect and answer both fit.
	auto left = std::chrono::duration_cast<std::chrono::milliseconds>(settings.timeout - (Clock::now() - start));
	if (left < std::chrono::milliseconds(50))
		left = std::chrono::milliseconds(50);
	options.connectTimeout = left;
	options.requestTimeout = left;
	options.retries = 0;
	options.stallTimeout = std::chrono::seconds(1);
	FERRY_TRY_ASSIGN(transport::HttpClient client, transport::HttpClient::create(options));

	const char *stageName = toString(stage);
	if (stage == Stage::Poststart) {
		container::ContainerInfo info = registrationFor(state, resolveRuntime(settings.runtime, state));
		FERRY_TRY_ASSIGN(transport::HttpResponse response,
				 client.send("POST", "/v1/containers", api::containerRegistrationJson(info), false));
		if (response.status != 201)
			return makeError("the agent refused the registration: " + describe(response), EPROTO)
				.at("agent", settings.agentUrl)
				.at("container", state.id)
				.at("stage", stageName);
		syslog(LOG_INFO, "registered container %s (%s, pid %d) with %s", state.id.c_str(),
		       container::toString(info.runtime), static_cast<int>(info.pid), settings.agentUrl.c_str());
		return {};
	}
	FERRY_TRY_ASSIGN(transport::HttpResponse response,
			 client.send("DELETE", "/v1/containers/" + state.id, "", true));
	if (response.status == 404) {
		// Already gone: the agent dropped it when its process ended.
		syslog(LOG_INFO, "container %s was not registered with %s", state.id.c_str(), settings.agentUrl.c_str());
		return {};
	}
	if (response.status != 204)
		return makeError("the agent refused the deregistration: " + describe(response), EPROTO)
			.at("agent", settings.agentUrl)
			.at("container", state.id)
			.at("stage", stageName);
	syslog(LOG_INFO, "deregistered container %s from %s", state.id.c_str(), settings.agentUrl.c_str());
	return {};
}

} // namespace

int main(int argc, char **argv)
{
	openlog("ferry-oci-hook", LOG_PID, LOG_DAEMON);
	Status done = run(argc, argv);
	if (!done.ok())
		report(LOG_WARNING, done.error().message() + "; ignored, the container is not affected");
	closelog();
	return 0;
}
