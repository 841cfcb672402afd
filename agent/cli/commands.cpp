#include "commands.h"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "api/schemas.h"

namespace ferry::cli {

namespace {

// How often the event stream may break (transport failure, or the agent
// ending it before the migration ended) in a row before migrate gives up
// following: the migration itself carries on in the agent either way.
constexpr int kMaxFollowRetries = 5;
constexpr std::chrono::milliseconds kFollowRetryDelay{200};

void printLine(std::FILE *file, const std::string &text)
{
	std::fputs(text.c_str(), file);
	std::fputc('\n', file);
	std::fflush(file);
}

// Progress of a migration as its events arrive. Text output: to stdout,
// rewritten in place on a TTY, one line per event otherwise. JSON output
// keeps stdout for the one document, so progress goes to stderr, and only
// when a person is watching it (a TTY).
//
// On a TTY the line also ticks between events: a long streaming phase
// sends few events, and a clock that stands still looks like a hang. The
// ticker only redraws the last event with the time since it arrived added.
class ProgressDisplay {
public:
	ProgressDisplay(const CommandLine &line, Terminal &terminal)
	{
		if (line.common.output == OutputFormat::Text) {
			file_ = terminal.out;
			live_ = terminal.outIsTty;
			columns_ = terminal.outColumns;
		} else if (terminal.errIsTty) {
			file_ = terminal.err;
			live_ = true;
			columns_ = terminal.errColumns;
		}
		if (live_)
			ticker_ = std::thread([this] { tick(); });
	}

	~ProgressDisplay() { finish(); }
	ProgressDisplay(const ProgressDisplay &) = delete;
	ProgressDisplay &operator=(const ProgressDisplay &) = delete;

	void show(const migration::MigrationEvent &event)
	{
		if (!file_)
			return;
		if (!live_) {
			printLine(file_, progressText(event));
			return;
		}
		std::lock_guard lock(mutex_);
		last_ = event;
		lastAt_ = std::chrono::steady_clock::now();
		drawLocked(event);
	}

	// Stops the ticker and clears the live line, before anything else is
	// printed. Idempotent.
	void finish()
	{
		{
			std::lock_guard lock(mutex_);
			if (stopped_)
				return;
			stopped_ = true;
			if (last_) {
				std::fputs("\r\x1b[K", file_);
				std::fflush(file_);
			}
		}
		wake_.notify_all();
		if (ticker_.joinable())
			ticker_.join();
	}

private:
	static constexpr std::chrono::milliseconds kTick{250};

	void drawLocked(const migration::MigrationEvent &event)
	{
		std::string text = progressText(event);
		if (columns_ > 1 && text.size() >= columns_)
			text.resize(columns_ - 1);
		// Back to column 0 and clear to the end of the line.
		std::fputs(("\r\x1b[K" + text).c_str(), file_);
		std::fflush(file_);
	}

	void tick()
	{
		std::unique_lock lock(mutex_);
		while (!wake_.wait_for(lock, kTick, [this] { return stopped_; })) {
			if (!last_ || migration::Phase::Committed == last_->phase || migration::Phase::Aborted == last_->phase)
				continue;
			migration::MigrationEvent now = *last_;
			now.elapsed += std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
											       lastAt_);
			drawLocked(now);
		}
	}

	std::FILE *file_ = nullptr;
	bool live_ = false;
	size_t columns_ = 0;
	std::mutex mutex_;
	std::condition_variable wake_;
	bool stopped_ = false;
	std::optional<migration::MigrationEvent> last_;
	std::chrono::steady_clock::time_point lastAt_;
	std::thread ticker_;
};

std::string hintFor(ExitCode code, const CommandLine &line)
{
	switch (code) {
	case ExitCode::Unreachable:
		return "is ferryd running at " + line.agentUrl() + "? (--agent, $FERRY_AGENT; --cacert for TLS)";
	case ExitCode::Refused:
		return "check the credentials (--token-file, --cert/--key) and the agent's allowlist";
	case ExitCode::NotFound:
		return line.migrationId.empty() ? std::string() : "'ferry list' shows the agent's migrations";
	default:
		return {};
	}
}

ExitCode printStatus(const CommandLine &line, Terminal &terminal, const migration::MigrationStatus &status)
{
	if (line.common.output == OutputFormat::Json)
		printLine(terminal.out, api::toJson(status));
	else
		std::fputs(statusText(status).c_str(), terminal.out);
	std::fflush(terminal.out);
	return exitCodeFor(status);
}

// Follows the events of migration `id` until it ends and returns its final
// status. The stream may break or end early (an agent restart, a proxy);
// the status is then asked for and the stream taken up again.
Result<migration::MigrationStatus> follow(api::AgentClient &agent, const std::string &id, ProgressDisplay &progress)
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
		if (!followed.ok() && exitCodeFor(followed.error()) != ExitCode::Unreachable)
			return std::move(followed).error().at("migration", id);
		if (!status.ok() && exitCodeFor(status.error()) != ExitCode::Unreachable)
			return std::move(status).error().at("migration", id);
		if (++retries > kMaxFollowRetries) {
			Error error = !followed.ok() ? std::move(followed).error()
				    : !status.ok()   ? std::move(status).error()
						     : makeError("the agent keeps ending the event stream before the "
								 "migration ends", EPROTO);
			return std::move(error).at("migration", id);
		}
		std::this_thread::sleep_for(kFollowRetryDelay * retries);
	}
}

} // namespace

ExitCode reportError(const CommandLine &line, Terminal &terminal, std::string_view doing, const Error &error)
{
	ExitCode code = exitCodeFor(error);
	std::string prefix = std::string("ferry") + (line.command == Command::None ? "" : " ") + commandName(line.command);
	std::fprintf(terminal.err, "%s: %.*s: %s\n", prefix.c_str(), static_cast<int>(doing.size()), doing.data(),
		     error.message().c_str());
	if (std::string hint = hintFor(code, line); !hint.empty())
		std::fprintf(terminal.err, "%s: %s\n", prefix.c_str(), hint.c_str());
	std::fflush(terminal.err);
	if (line.common.output == OutputFormat::Json)
		printLine(terminal.out, api::toJson(error));
	return code;
}

ExitCode runMigrate(const CommandLine &line, api::AgentClient &agent, Terminal &terminal)
{
	const migration::MigrationRequest &request = line.migrate.request;
	auto started = agent.startMigration(request);
	if (!started.ok())
		return reportError(line, terminal, "cannot start the migration", started.error());
	const std::string id = started->id;

	if (!line.migrate.wait) {
		if (line.common.output == OutputFormat::Json) {
			printLine(terminal.out, api::toJson(*started));
		} else {
			printLine(terminal.out, "migration " + id + " started on " + agent.url() + " -> " +
							request.targetAgent);
			printLine(terminal.out, "follow it with: ferry status " + id);
		}
		return ExitCode::Ok;
	}

	if (line.common.output == OutputFormat::Text)
		printLine(terminal.out, "migration " + id + " started on " + agent.url() + " -> " + request.targetAgent);
	ProgressDisplay progress(line, terminal);
	auto final = follow(agent, id, progress);
	progress.finish();
	if (!final.ok()) {
		ExitCode code = reportError(line, terminal, "lost track of migration " + id, final.error());
		std::fprintf(terminal.err, "ferry migrate: the migration goes on in the agent; 'ferry status %s' tells how it ended\n",
			     id.c_str());
		return code;
	}
	if (line.common.output == OutputFormat::Json)
		printLine(terminal.out, api::toJson(*final));
	else
		std::fputs(resultText(*final).c_str(), terminal.out);
	std::fflush(terminal.out);
	// The JSON document carries the error too, but a person reading the
	// script's log sees stderr.
	if (line.common.output == OutputFormat::Json && final->phase != migration::Phase::Committed &&
	    !final->error.empty())
		std::fprintf(terminal.err, "ferry migrate: migration %s aborted: %s\n", id.c_str(), final->error.c_str());
	if (final->phase == migration::Phase::Committed)
		return ExitCode::Ok;
	int refused = refusalStatus(*final);
	if (!refused)
		return ExitCode::Failed;
	// Not this command's credentials that were refused: the source
	// agent's, by the destination, or the destination's allowlist said no.
	if (refused == 401)
		std::fprintf(terminal.err,
			     "ferry migrate: the destination %s refused the credentials of the source agent %s: "
			     "agents that migrate to each other share one token (ferryd --token-file)\n",
			     final->peerAgent.c_str(), agent.url().c_str());
	else
		std::fprintf(terminal.err,
			     "ferry migrate: the destination %s refused the migration: check its allowlist "
			     "(--allow-netns, --allow-interface, --allow-address) and privileges\n",
			     final->peerAgent.c_str());
	std::fflush(terminal.err);
	return ExitCode::Refused;
}

ExitCode runStatus(const CommandLine &line, api::AgentClient &agent, Terminal &terminal)
{
	auto status = agent.status(line.migrationId);
	if (!status.ok())
		return reportError(line, terminal, "cannot get migration " + line.migrationId, status.error());
	return printStatus(line, terminal, *status);
}

ExitCode runList(const CommandLine &line, api::AgentClient &agent, Terminal &terminal)
{
	auto migrations = agent.list();
	if (!migrations.ok())
		return reportError(line, terminal, "cannot list migrations", migrations.error());
	if (line.common.output == OutputFormat::Json)
		printLine(terminal.out, listJson(*migrations));
	else
		std::fputs(listText(*migrations).c_str(), terminal.out);
	std::fflush(terminal.out);
	return ExitCode::Ok;
}

ExitCode runAbort(const CommandLine &line, api::AgentClient &agent, Terminal &terminal)
{
	Status aborted = agent.abort(line.migrationId, line.abortReason);
	if (!aborted.ok())
		return reportError(line, terminal, "cannot abort migration " + line.migrationId, aborted.error());
	auto status = agent.status(line.migrationId);
	if (!status.ok())
		return reportError(line, terminal, "aborted migration " + line.migrationId + ", but cannot read it back",
				   status.error());
	if (line.common.output == OutputFormat::Json)
		printLine(terminal.out, api::toJson(*status));
	else
		std::fputs(("migration " + line.migrationId + " " + api::phaseName(status->phase) + "\n").c_str(),
			   terminal.out);
	std::fflush(terminal.out);
	return ExitCode::Ok;
}

} // namespace ferry::cli
