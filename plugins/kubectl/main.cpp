// kubectl-ferry: the kubectl plugin (docs/kubectl.md).
//
// kubectl runs it for `kubectl ferry ...` with every argument after
// "ferry". It parses them (plugin_command_line.h), runs kubectl for the
// cluster's answers (kubectl_runner.h, pod_resolution.h) and drives the
// migration through the source agent (plugin_commands.h). The exit codes
// are the `ferry` command's (docs/cli.md).
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "base/log.h"
#include "plugin_commands.h"

using namespace ferry;
using namespace ferry::kubectl;

namespace {

unsigned terminalColumns(int fd)
{
	winsize size{};
	if (::ioctl(fd, TIOCGWINSZ, &size) < 0)
		return 0;
	return size.ws_col;
}

int usageFailure(const std::vector<std::string> &args, const Error &error)
{
	std::fprintf(stderr, "kubectl ferry: %s\n", error.what.c_str());
	std::string help = "kubectl ferry --help";
	for (const std::string &arg : args) {
		if (arg == "migrate" || arg == "version") {
			help = "kubectl ferry " + arg + " --help";
			break;
		}
	}
	std::fprintf(stderr, "Run '%s' for usage.\n", help.c_str());
	return static_cast<int>(cli::ExitCode::Usage);
}

} // namespace

int main(int argc, char **argv)
{
	// The transport's log lines are for agents; the plugin reports its
	// failures itself. FERRY_LOG still turns them on.
	if (!std::getenv("FERRY_LOG"))
		log::configure("warn");
	std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
	auto parsed = parsePluginCommandLine(args);
	if (!parsed.ok())
		return usageFailure(args, parsed.error());
	const PluginCommandLine &line = *parsed;
	if (line.help) {
		std::fputs(pluginUsage(line.command).c_str(), stdout);
		return 0;
	}

	Terminal terminal;
	terminal.outIsTty = ::isatty(STDOUT_FILENO) == 1;
	terminal.errIsTty = ::isatty(STDERR_FILENO) == 1;
	terminal.outColumns = terminalColumns(STDOUT_FILENO);
	terminal.errColumns = terminalColumns(STDERR_FILENO);

	switch (line.command) {
	case Command::Version:
		return static_cast<int>(runVersion(line, terminal));
	case Command::Migrate: {
		KubectlRunner kubectl(kubectlBinary(std::getenv(kKubectlEnvironmentVariable)), line.kube);
		return static_cast<int>(runMigrate(line, kubectl, terminal));
	}
	case Command::None:
		break;
	}
	return static_cast<int>(cli::ExitCode::Usage);
}
