#include "kubectl_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "base/unique_fd.h"

extern char **environ;

namespace ferry::kubectl {

namespace {

std::string trimmed(std::string_view text)
{
	size_t begin = text.find_first_not_of(" \t\r\n");
	if (begin == std::string_view::npos)
		return {};
	size_t end = text.find_last_not_of(" \t\r\n");
	return std::string(text.substr(begin, end - begin + 1));
}

// kubectl's stderr, as one quotable piece: trimmed, lines joined with
// "; ", and cut so that a chatty failure (a stack of retries) does not
// bury the message.
std::string quotedStderr(std::string_view text)
{
	std::string out;
	size_t pos = 0;
	while (pos < text.size()) {
		size_t end = text.find('\n', pos);
		std::string line = trimmed(text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos));
		if (!line.empty()) {
			if (!out.empty())
				out += "; ";
			out += line;
		}
		if (end == std::string_view::npos)
			break;
		pos = end + 1;
	}
	if (out.size() > kMaxQuotedStderr) {
		out.resize(kMaxQuotedStderr);
		out += "...";
	}
	return out;
}

std::string commandText(const std::vector<std::string> &argv)
{
	std::string text;
	for (const std::string &arg : argv) {
		if (!text.empty())
			text += ' ';
		text += arg;
	}
	return text;
}

bool contains(std::string_view text, std::string_view needle)
{
	return text.find(needle) != std::string_view::npos;
}

struct ChildOutput {
	std::string out;
	std::string err;
	int status = 0;
	bool timedOut = false;
};

// Reads both pipes until they close or the deadline passes, then reaps the
// child; past the deadline the child is killed first. kubectl can leave a
// credential helper of its own holding the pipes open; the deadline bounds
// that too.
ChildOutput collect(pid_t pid, UniqueFd outFd, UniqueFd errFd, std::chrono::milliseconds timeout)
{
	ChildOutput result;
	auto deadline = std::chrono::steady_clock::now() + timeout;
	pollfd fds[2] = {{outFd.get(), POLLIN, 0}, {errFd.get(), POLLIN, 0}};
	std::string *sinks[2] = {&result.out, &result.err};
	int open = 2;
	while (open > 0) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0) {
			result.timedOut = true;
			break;
		}
		int ready = ::poll(fds, 2, static_cast<int>(left.count()));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0)
			break;
		for (int i = 0; i < 2; ++i) {
			if (fds[i].fd < 0 || fds[i].revents == 0)
				continue;
			char buffer[16384];
			ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
			if (n > 0) {
				sinks[i]->append(buffer, static_cast<size_t>(n));
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				fds[i].fd = -1;
				--open;
			}
		}
	}
	if (result.timedOut)
		::kill(pid, SIGKILL);
	while (::waitpid(pid, &result.status, 0) < 0 && errno == EINTR) {
	}
	return result;
}

} // namespace

KubectlRunner::KubectlRunner(std::string binary, KubectlGlobals globals, std::chrono::milliseconds timeout)
	: binary_(std::move(binary)), globals_(std::move(globals)), timeout_(timeout)
{
}

std::vector<std::string> KubectlRunner::argv(const std::vector<std::string> &args) const
{
	std::vector<std::string> argv = {binary_};
	if (!globals_.kubeconfig.empty())
		argv.push_back("--kubeconfig=" + globals_.kubeconfig);
	if (!globals_.context.empty())
		argv.push_back("--context=" + globals_.context);
	argv.insert(argv.end(), args.begin(), args.end());
	return argv;
}

Result<std::string> KubectlRunner::run(const std::vector<std::string> &args) const
{
	std::vector<std::string> argvStrings = argv(args);
	// The error context shows the command as the user could retype it:
	// "kubectl", not the full path of $KUBECTL.
	std::vector<std::string> shown = argvStrings;
	shown[0] = "kubectl";
	const std::string command = commandText(shown);

	int outPipe[2];
	int errPipe[2];
	if (::pipe2(outPipe, O_CLOEXEC) < 0)
		return errnoError("cannot run kubectl: pipe").at("command", command);
	UniqueFd outRead(outPipe[0]), outWrite(outPipe[1]);
	if (::pipe2(errPipe, O_CLOEXEC) < 0)
		return errnoError("cannot run kubectl: pipe").at("command", command);
	UniqueFd errRead(errPipe[0]), errWrite(errPipe[1]);

	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&actions, outWrite.get(), STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&actions, errWrite.get(), STDERR_FILENO);
	std::vector<char *> argvPointers;
	for (std::string &arg : argvStrings)
		argvPointers.push_back(arg.data());
	argvPointers.push_back(nullptr);
	pid_t pid = -1;
	// posix_spawnp: a binary without '/' is looked up in PATH, as a shell
	// would, but nothing else a shell does happens to the arguments.
	int rc = ::posix_spawnp(&pid, binary_.c_str(), &actions, nullptr, argvPointers.data(), environ);
	posix_spawn_file_actions_destroy(&actions);
	outWrite.reset();
	errWrite.reset();
	if (rc != 0) {
		std::string hint = rc == ENOENT ? " (is kubectl installed? $KUBECTL names another binary)" : "";
		return makeError("cannot run '" + binary_ + "': " + std::strerror(rc) + hint).at("command", command);
	}

	ChildOutput child = collect(pid, std::move(outRead), std::move(errRead), timeout_);
	if (child.timedOut) {
		return makeError("kubectl did not finish within " + std::to_string(timeout_.count() / 1000) +
					 " s (is the API server reachable?)",
				 ETIMEDOUT)
			.at("command", command);
	}
	if (WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0)
		return std::move(child.out);

	std::string why = quotedStderr(child.err);
	std::string how = WIFEXITED(child.status) ? "exited with " + std::to_string(WEXITSTATUS(child.status))
						  : "was killed by signal " + std::to_string(WTERMSIG(child.status));
	return makeError("kubectl " + how + (why.empty() ? std::string() : ": " + why), classifyKubectlError(child.err))
		.at("command", command);
}

std::string kubectlBinary(const char *value)
{
	return value && *value ? std::string(value) : std::string(kDefaultKubectl);
}

int classifyKubectlError(std::string_view text)
{
	// kubectl prints the API's status reason in parentheses:
	//   Error from server (NotFound): pods "web-0" not found
	//   Error from server (Forbidden): pods "web-0" is forbidden: User ...
	if (contains(text, "(NotFound)"))
		return ENOENT;
	if (contains(text, "(Forbidden)") || contains(text, "(Unauthorized)") ||
	    contains(text, "You must be logged in to the server"))
		return EACCES;
	if (contains(text, "Unable to connect to the server") || contains(text, "connection refused") ||
	    contains(text, "The connection to the server") || contains(text, "no such host") ||
	    contains(text, "i/o timeout") || contains(text, "dial tcp"))
		return ECONNREFUSED;
	// The user's invocation: a context or cluster the kubeconfig lacks, a
	// kubeconfig that does not exist, a flag kubectl does not know.
	if ((contains(text, "context \"") && contains(text, "does not exist")) ||
	    contains(text, "context was not found for specified context") || contains(text, "unknown flag") ||
	    contains(text, "unknown shorthand flag") || (contains(text, "stat ") && contains(text, "no such file")))
		return EINVAL;
	return 0;
}

} // namespace ferry::kubectl
