// ferry: the command for manual host-to-host migration (docs/cli.md).
//
// Parses the command line (command_line.h), loads the credentials, connects
// an AgentClient to the agent and runs one command (commands.h, doctor.h).
// The exit codes are documented in output.h and docs/cli.md.
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "commands.h"
#include "doctor.h"
#include "ferry_version.h"

using namespace ferry;
using namespace ferry::cli;

namespace {

int usageFailure(const std::vector<std::string> &args, const Error &error)
{
	std::fprintf(stderr, "ferry: %s\n", error.what.c_str());
	std::string help = "ferry --help";
	for (const std::string &arg : args) {
		if (arg == "migrate" || arg == "status" || arg == "list" || arg == "abort" || arg == "doctor") {
			help = "ferry " + arg + " --help";
			break;
		}
	}
	std::fprintf(stderr, "Run '%s' for usage.\n", help.c_str());
	return static_cast<int>(ExitCode::Usage);
}

// TLS files are read by libcurl only when it connects, where a missing
// file reads as a TLS failure; naming the flag here is clearer.
Status checkReadable(const char *flag, const std::string &path)
{
	if (!path.empty() && ::access(path.c_str(), R_OK) < 0)
		return makeError(std::string(flag) + ": cannot read " + path + ": " + std::strerror(errno), EINVAL);
	return {};
}

unsigned terminalColumns(int fd)
{
	winsize size{};
	if (::ioctl(fd, TIOCGWINSZ, &size) < 0)
		return 0;
	return size.ws_col;
}

} // namespace

int main(int argc, char **argv)
{
	// Library log lines (the transport's retries) are for agents; the
	// command reports failures itself. FERRY_LOG still turns them on.
	if (!std::getenv("FERRY_LOG"))
		log::configure("warn");
	std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
	auto parsed = parseCommandLine(args, [](std::string_view name) -> std::optional<std::string> {
		const char *value = std::getenv(std::string(name).c_str());
		return value ? std::optional<std::string>(value) : std::nullopt;
	});
	if (!parsed.ok())
		return usageFailure(args, parsed.error());
	const CommandLine &line = *parsed;
	if (line.help) {
		std::fputs(usage(line.command).c_str(), stdout);
		return 0;
	}
	if (line.version) {
		std::printf("ferry %s\n", FERRY_VERSION);
		return 0;
	}

	for (auto [flag, path] : {std::pair{"--cacert", &line.common.caFile}, std::pair{"--cert", &line.common.certFile},
				  std::pair{"--key", &line.common.keyFile}}) {
		if (Status readable = checkReadable(flag, *path); !readable.ok())
			return usageFailure(args, readable.error());
	}
	api::AgentCredentials base;
	base.caFile = line.common.caFile;
	base.certFile = line.common.certFile;
	base.keyFile = line.common.keyFile;
	base.timeout = line.common.timeout;
	auto credentials = api::loadCredentials(line.common.tokenFile, base);

	Terminal terminal;
	terminal.outIsTty = ::isatty(STDOUT_FILENO) == 1;
	terminal.errIsTty = ::isatty(STDERR_FILENO) == 1;
	terminal.outColumns = terminalColumns(STDOUT_FILENO);
	terminal.errColumns = terminalColumns(STDERR_FILENO);

	if (line.command == Command::Doctor) {
		auto checks = runDoctorChecks(line, credentials);
		std::string text = line.common.output == OutputFormat::Json ? doctorJson(checks) + "\n" : doctorText(checks);
		std::fputs(text.c_str(), stdout);
		return static_cast<int>(doctorPassed(checks) ? ExitCode::Ok : ExitCode::Failed);
	}

	if (!credentials.ok())
		return usageFailure(args, makeError("--token-file: " + credentials.error().message(), EINVAL));
	auto agent = api::AgentClient::connect(line.agentUrl(), *credentials);
	if (!agent.ok())
		return usageFailure(args, agent.error());

	ExitCode code = ExitCode::Ok;
	switch (line.command) {
	case Command::Migrate:
		code = runMigrate(line, *agent, terminal);
		break;
	case Command::Status:
		code = runStatus(line, *agent, terminal);
		break;
	case Command::List:
		code = runList(line, *agent, terminal);
		break;
	case Command::Abort:
		code = runAbort(line, *agent, terminal);
		break;
	case Command::Doctor:
	case Command::None:
		break;
	}
	return static_cast<int>(code);
}
