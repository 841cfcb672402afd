#include "plugin_commands.h"

#include <unistd.h>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstring>
#include <optional>
#include <thread>

#include "api/agent_client.h"
#include "api/schemas.h"
#include "ferry_version.h"

namespace ferry::kubectl {

namespace {

using cli::ExitCode;
using cli::OutputFormat;

// As `ferry migrate`: how often the event stream may break in a row
// before the command stops following. The migration carries on in the
// agents either way.
constexpr int kMaxFollowRetries = 5;
constexpr std::chrono::milliseconds kFollowRetryDelay{200};

void printLine(std::FILE *file, const std::string &text)
{
	std::fputs(text.c_str(), file);
	std::fputc('\n', file);
	std::fflush(file);
}

std::string prefixFor(Command command)
{
	return std::string("kubectl ferry") + (command == Command::None ? "" : " ") + commandName(command);
}

// Progress of a migration as its events arrive. Text output: stdout,
// rewritten in place on a TTY, one line per event otherwise. JSON output
// keeps stdout for the one document: progress goes to stderr, and only
// when a person watches it.
class ProgressLine {
public:
	ProgressLine(const PluginCommandLine &line, Terminal &terminal)
	{
		if (line.output == OutputFormat::Text) {
			file_ = terminal.out;
			live_ = terminal.outIsTty;
			columns_ = terminal.outColumns;
		} else if (terminal.errIsTty) {
			file_ = terminal.err;
			live_ = true;
			columns_ = terminal.errColumns;
		}
	}
	~ProgressLine() { finish(); }
	ProgressLine(const ProgressLine &) = delete;
	ProgressLine &operator=(const ProgressLine &) = delete;

	void show(const migration::MigrationEvent &event)
	{
		if (!file_)
			return;
		std::string text = cli::progressText(event);
		if (!live_) {
			printLine(file_, text);
			return;
		}
		// A line longer than the terminal wraps, and "\r" could no
		// longer take it back.
		if (columns_ > 1 && text.size() >= columns_)
			text.resize(columns_ - 1);
		std::fputs(("\r\x1b[K" + text).c_str(), file_);
		std::fflush(file_);
		drawn_ = true;
	}

	// Clears the live line before anything else is printed. Idempotent.
	void finish()
	{
		if (drawn_) {
			std::fputs("\r\x1b[K", file_);
			std::fflush(file_);
			drawn_ = false;
		}
	}

private:
	std::FILE *file_ = nullptr;
	bool live_ = false;
	size_t columns_ = 0;
	bool drawn_ = false;
};

// The final status of migration `id`, following its events meanwhile; the
// stream is taken up again after it breaks (an agent restart, a proxy).
Result<migration::MigrationStatus> follow(api::AgentClient &agent, const std::string &id, ProgressLine &progress)
{
	int retries = 0;
	for (;;) {
		Status followed = agent.followEvents(id, [&](const migration::MigrationEvent &event) {
			progress.show(event);
			return true;
		});
		auto status = agent.status(id);
		if (status.ok() && (status->phase == migration::Phase::Committed || status->phase == migration::Phase::Aborted))
			return status;
		if (!followed.ok() && cli::exitCodeFor(followed.error()) != ExitCode::Unreachable)
			return std::move(followed).error().at("migration", id);
		if (!status.ok() && cli::exitCodeFor(status.error()) != ExitCode::Unreachable)
			return std::move(status).error().at("migration", id);
		if (++retries > kMaxFollowRetries) {
			Error error = !followed.ok() ? std::move(followed).error()
				    : !status.ok()   ? std::move(status).error()
						     : makeError("the agent keeps ending the event stream before the "
								 "migration ends",
								 EPROTO);
			return std::move(error).at("migration", id);
		}
		std::this_thread::sleep_for(kFollowRetryDelay * retries);
	}
}

std::string hintFor(ExitCode code, bool resolving, const PluginCommandLine &line)
{
	switch (code) {
	case ExitCode::Unreachable:
		return resolving ? "can kubectl reach the cluster? (--context, --kubeconfig)"
				 : "is the source agent reachable from here? (--agent-scheme, --cacert for TLS)";
	case ExitCode::Refused:
		return resolving ? "kubectl-ferry needs 'get' on pods in the pod's namespace and in " +
					   line.resolve.agents.namespaceName
				 : "check the credentials (--token-file, --cert/--key) and the agents' allowlist";
	case ExitCode::NotFound:
		return resolving ? "is the ferryd DaemonSet deployed? (--agent-selector, --agent-namespace)" : "";
	default:
		return {};
	}
}

ExitCode report(const PluginCommandLine &line, Terminal &terminal, std::string_view doing, const Error &error,
		ExitCode code, bool resolving)
{
	std::string prefix = prefixFor(line.command);
	// A resolution error's code is only the kind of failure, chosen here
	// for the exit code: its strerror ("No such file or directory" for a
	// missing agent) would mislead. Agent errors keep theirs, as in ferry.
	std::string text = resolving ? error.what + (error.context.empty() ? "" : " [" + error.context + "]")
				     : error.message();
	std::fprintf(terminal.err, "%s: %.*s: %s\n", prefix.c_str(), static_cast<int>(doing.size()), doing.data(),
		     text.c_str());
	// A hint that only repeats the error helps nobody: the NotFound hint
	// is about the agents, not about a pod that does not exist.
	std::string hint = hintFor(code, resolving, line);
	if (code == ExitCode::NotFound && error.what.find("ferryd") == std::string::npos)
		hint.clear();
	if (!hint.empty())
		std::fprintf(terminal.err, "%s: %s\n", prefix.c_str(), hint.c_str());
	std::fflush(terminal.err);
	if (line.output == OutputFormat::Json)
		printLine(terminal.out, api::toJson(error));
	return code;
}

ExitCode usageFailure(Terminal &terminal, const std::string &what)
{
	std::fprintf(terminal.err, "kubectl ferry: %s\nRun 'kubectl ferry migrate --help' for usage.\n", what.c_str());
	std::fflush(terminal.err);
	return ExitCode::Usage;
}

// TLS files are read by libcurl only when it connects, where a missing
// file reads as a TLS failure; naming the flag here is clearer.
Status checkReadable(const char *flag, const std::string &path)
{
	if (!path.empty() && ::access(path.c_str(), R_OK) < 0)
		return makeError(std::string(flag) + ": cannot read " + path + ": " + std::strerror(errno), EINVAL);
	return {};
}

template<typename Writer>
void writeAgent(Writer &w, const AgentEndpoint &agent)
{
	w.StartObject();
	w.Key("node");
	w.String(agent.node.c_str());
	w.Key("pod");
	w.String(agent.pod.c_str());
	w.Key("url");
	w.String(agent.url.c_str());
	w.EndObject();
}

} // namespace

ExitCode exitCodeForResolution(const Error &error)
{
	switch (error.code) {
	case EINVAL:
		return ExitCode::Usage;
	case ENOENT:
		return ExitCode::NotFound;
	case EACCES:
	case EPERM:
		return ExitCode::Refused;
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ETIMEDOUT:
		return ExitCode::Unreachable;
	default:
		return ExitCode::Failed;
	}
}

std::string dryRunText(const Resolution &r, const migration::MigrationRequest &request)
{
	auto agentText = [](const AgentEndpoint &agent) { return agent.url + " (" + agent.pod + " on " + agent.node + ")"; };
	std::string text;
	text += "pod                " + r.podNamespace + "/" + r.podName +
		(r.podIp.empty() ? std::string() : " (" + r.podIp + ")") + "\n";
	text += "container          " + r.containerName + "\n";
	text += "container id       " + r.container.criRuntime + "://" + r.container.id + "\n";
	text += std::string("runtime            ") + container::toString(r.container.runtime) + " (via " +
		r.container.criRuntime + ")\n";
	text += "node               " + r.node + " -> " + r.toNode + "\n";
	text += "source agent       " + agentText(r.source) + "\n";
	text += "destination agent  " + agentText(r.destination) + "\n";
	text += "target netns       " + (request.targetNetns.empty() ? std::string("(not given)") : request.targetNetns) +
		"\n";
	for (const migration::AddressMove &move : request.addresses)
		text += "address            " + move.cidr + " " + move.sourceInterface + " -> " + move.targetInterface + "\n";
	text += "dry run: no agent was contacted\n";
	return text;
}

std::string dryRunJson(const Resolution &r, const migration::MigrationRequest &request)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	w.StartObject();
	w.Key("pod");
	w.StartObject();
	w.Key("name");
	w.String(r.podName.c_str());
	w.Key("namespace");
	w.String(r.podNamespace.c_str());
	w.Key("ip");
	w.String(r.podIp.c_str());
	w.Key("node");
	w.String(r.node.c_str());
	w.EndObject();
	w.Key("container");
	w.StartObject();
	w.Key("name");
	w.String(r.containerName.c_str());
	w.Key("id");
	w.String(r.container.id.c_str());
	w.Key("criRuntime");
	w.String(r.container.criRuntime.c_str());
	w.Key("runtime");
	w.String(container::toString(r.container.runtime));
	w.EndObject();
	w.Key("toNode");
	w.String(r.toNode.c_str());
	w.Key("sourceAgent");
	writeAgent(w, r.source);
	w.Key("destinationAgent");
	writeAgent(w, r.destination);
	// The request exactly as the source agent would receive it, so that
	// a dry run shows what a real run sends.
	std::string body = api::toJson(request);
	w.Key("request");
	w.RawValue(body.c_str(), body.size(), rapidjson::kObjectType);
	w.EndObject();
	return std::string(buffer.GetString(), buffer.GetSize());
}

ExitCode runVersion(const PluginCommandLine &line, Terminal &terminal)
{
	if (line.output == OutputFormat::Json)
		printLine(terminal.out, std::string("{\"version\":\"") + FERRY_VERSION + "\"}");
	else
		printLine(terminal.out, std::string("kubectl-ferry ") + FERRY_VERSION);
	return ExitCode::Ok;
}

ExitCode runMigrate(const PluginCommandLine &line, const KubectlRunner &kubectl, Terminal &terminal)
{
	// Unreadable credentials are a usage error, found before the cluster
	// is asked anything (as `ferry` does: nothing on stdout, exit 2).
	std::optional<api::AgentCredentials> credentials;
	if (!line.dryRun) {
		for (auto [flag, path] : {std::pair{"--cacert", &line.access.caFile},
					  std::pair{"--cert", &line.access.certFile}, std::pair{"--key", &line.access.keyFile}}) {
			if (Status readable = checkReadable(flag, *path); !readable.ok())
				return usageFailure(terminal, readable.error().what);
		}
		api::AgentCredentials base;
		base.caFile = line.access.caFile;
		base.certFile = line.access.certFile;
		base.keyFile = line.access.keyFile;
		base.timeout = line.access.timeout;
		auto loaded = api::loadCredentials(line.access.tokenFile, base);
		if (!loaded.ok())
			return usageFailure(terminal, "--token-file: " + loaded.error().message());
		credentials = std::move(*loaded);
	}

	const std::string podName =
		(line.resolve.namespaceName.empty() ? std::string() : line.resolve.namespaceName + "/") + line.resolve.pod;
	auto resolved = resolve(kubectl, line.resolve);
	if (!resolved.ok())
		return report(line, terminal, "cannot resolve pod " + podName, resolved.error(),
			      exitCodeForResolution(resolved.error()), true);
	const Resolution &resolution = *resolved;
	const migration::MigrationRequest request = buildRequest(line, resolution);

	if (line.dryRun) {
		if (line.output == OutputFormat::Json)
			printLine(terminal.out, dryRunJson(resolution, request));
		else
			std::fputs(dryRunText(resolution, request).c_str(), terminal.out);
		std::fflush(terminal.out);
		return ExitCode::Ok;
	}

	auto agent = api::AgentClient::connect(resolution.source.url, *credentials);
	if (!agent.ok())
		return report(line, terminal, "cannot reach the source agent " + resolution.source.url, agent.error(),
			      cli::exitCodeFor(agent.error()), false);

	auto started = agent->startMigration(request);
	if (!started.ok())
		return report(line, terminal, "cannot start the migration on " + resolution.source.url, started.error(),
			      cli::exitCodeFor(started.error()), false);
	const std::string id = started->id;
	const std::string summary = "migration " + id + " started: pod " + resolution.podNamespace + "/" +
				    resolution.podName + " container " + resolution.containerName + ", " + resolution.node +
				    " (" + resolution.source.url + ") -> " + resolution.toNode + " (" +
				    resolution.destination.url + ")";

	if (!line.wait) {
		if (line.output == OutputFormat::Json) {
			printLine(terminal.out, api::toJson(*started));
		} else {
			printLine(terminal.out, summary);
			printLine(terminal.out, "follow it with: ferry --agent " + resolution.source.url + " status " + id);
		}
		return ExitCode::Ok;
	}

	if (line.output == OutputFormat::Text)
		printLine(terminal.out, summary);
	ProgressLine progress(line, terminal);
	auto final = follow(*agent, id, progress);
	progress.finish();
	if (!final.ok()) {
		ExitCode code = report(line, terminal, "lost track of migration " + id, final.error(),
				       cli::exitCodeFor(final.error()), false);
		std::fprintf(terminal.err,
			     "kubectl ferry migrate: the migration goes on in the agents; 'ferry --agent %s status %s' "
			     "tells how it ended\n",
			     resolution.source.url.c_str(), id.c_str());
		return code;
	}
	if (line.output == OutputFormat::Json)
		printLine(terminal.out, api::toJson(*final));
	else
		std::fputs(cli::resultText(*final).c_str(), terminal.out);
	std::fflush(terminal.out);
	if (line.output == OutputFormat::Json && final->phase != migration::Phase::Committed && !final->error.empty())
		std::fprintf(terminal.err, "kubectl ferry migrate: migration %s aborted: %s\n", id.c_str(),
			     final->error.c_str());
	return final->phase == migration::Phase::Committed ? ExitCode::Ok : ExitCode::Failed;
}

} // namespace ferry::kubectl
