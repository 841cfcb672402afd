// What the kubectl-ferry tests share: a temporary directory, a process run
// with its output captured, the recorded fixtures, and a stand-in kubectl.
//
// The stand-in is a shell script that records the argv it got (one
// argument a line, "--" after each call) and prints a recorded
// `kubectl get -o json` fixture. It tests what kubectl-ferry sends to
// kubectl and does with its answer; it does not pretend to be a cluster.
#pragma once

#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ferry::test {

namespace fs = std::filesystem;

struct TempDir {
	fs::path path;
	TempDir()
	{
		char name[] = "/tmp/ferry-kubectl-test-XXXXXX";
		REQUIRE(::mkdtemp(name) != nullptr);
		path = name;
	}
	~TempDir()
	{
		std::error_code ec;
		fs::remove_all(path, ec);
	}
	TempDir(const TempDir &) = delete;
	TempDir &operator=(const TempDir &) = delete;

	std::string file(const std::string &name, const std::string &content, bool executable = false) const
	{
		fs::path p = path / name;
		std::ofstream(p, std::ios::binary) << content;
		if (executable)
			fs::permissions(p, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
		return p.string();
	}
};

inline std::string readFile(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	std::stringstream buffer;
	buffer << in.rdbuf();
	return buffer.str();
}

inline std::string fixturePath(const std::string &name)
{
	return std::string(FERRY_KUBECTL_FIXTURES) + "/" + name;
}

inline std::string fixture(const std::string &name)
{
	std::string text = readFile(fixturePath(name));
	REQUIRE_MESSAGE(!text.empty(), "missing fixture " << fixturePath(name));
	return text;
}

// Single-quoted for sh: the script's paths are the test's own temp dirs,
// but quoting keeps it right for any path.
inline std::string shellQuoted(const std::string &text)
{
	std::string out = "'";
	for (char c : text)
		out += c == '\'' ? std::string("'\\''") : std::string(1, c);
	return out + "'";
}

// A stand-in kubectl in `dir`: `get pod ...` prints podJson (or fails with
// podError on stderr and exit 1), `get pods ...` prints agentsJson.
struct FakeKubectl {
	std::string binary;
	std::string record;

	FakeKubectl(const TempDir &dir, const std::string &podJson, const std::string &agentsJson,
		    const std::string &podError = "")
	{
		record = (dir.path / "kubectl-argv").string();
		std::string pod = dir.file("pod.json", podJson);
		std::string agents = dir.file("agents.json", agentsJson);
		std::string podFailure = podError.empty() ? "/bin/cat " + shellQuoted(pod)
							  : "printf '%s\\n' " + shellQuoted(podError) + " >&2; exit 1";
		binary = dir.file("kubectl",
				  "#!/bin/sh\n"
				  "{ for a in \"$@\"; do printf '%s\\n' \"$a\"; done; echo --; } >> " +
					  shellQuoted(record) +
					  "\n"
					  "case \" $* \" in\n"
					  "*\" get pods \"*) /bin/cat " +
					  shellQuoted(agents) +
					  " ;;\n"
					  "*\" get pod \"*) " +
					  podFailure +
					  " ;;\n"
					  "*) echo \"fake kubectl: unexpected call: $*\" >&2; exit 64 ;;\n"
					  "esac\n",
				  true);
	}

	// Each call's argv (without argv[0]), in order.
	std::vector<std::vector<std::string>> calls() const
	{
		std::vector<std::vector<std::string>> out(1);
		std::istringstream in(readFile(record));
		for (std::string line; std::getline(in, line);) {
			if (line == "--")
				out.emplace_back();
			else
				out.back().push_back(line);
		}
		out.pop_back();
		return out;
	}
};

struct Run {
	int exitCode = -1;
	std::string out;
	std::string err;
};

// Runs argv[0] (a path, or a name looked up in the PATH of `environment`)
// with stdin /dev/null and stdout/stderr captured. `environment` replaces
// the test's own entirely. Kills the child (by its pid) after `timeout`.
inline Run runProcess(const std::vector<std::string> &args, const std::vector<std::string> &environment,
		      std::chrono::seconds timeout = std::chrono::seconds(60))
{
	int outPipe[2], errPipe[2];
	REQUIRE(::pipe2(outPipe, O_CLOEXEC) == 0);
	REQUIRE(::pipe2(errPipe, O_CLOEXEC) == 0);
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, outPipe[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&actions, errPipe[1], STDERR_FILENO);
	posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	std::vector<std::string> argvStrings = args;
	std::vector<char *> argv;
	for (std::string &s : argvStrings)
		argv.push_back(s.data());
	argv.push_back(nullptr);
	std::vector<std::string> envStrings = environment;
	std::vector<char *> envp;
	for (std::string &s : envStrings)
		envp.push_back(s.data());
	envp.push_back(nullptr);

	// posix_spawnp looks the name up in the caller's PATH; the child's
	// PATH is what the test wants searched, so look it up there.
	std::string program = args.front();
	if (program.find('/') == std::string::npos) {
		for (const std::string &e : environment) {
			if (e.rfind("PATH=", 0) != 0)
				continue;
			std::istringstream dirs(e.substr(5));
			for (std::string dir; std::getline(dirs, dir, ':');) {
				std::string candidate = dir + "/" + program;
				if (::access(candidate.c_str(), X_OK) == 0) {
					program = candidate;
					break;
				}
			}
		}
	}

	pid_t pid = -1;
	int rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), envp.data());
	posix_spawn_file_actions_destroy(&actions);
	::close(outPipe[1]);
	::close(errPipe[1]);
	if (rc != 0) {
		::close(outPipe[0]);
		::close(errPipe[0]);
		FAIL("cannot run " << program << ": " << std::strerror(rc));
	}

	Run run;
	pollfd fds[2] = {{outPipe[0], POLLIN, 0}, {errPipe[0], POLLIN, 0}};
	std::string *sinks[2] = {&run.out, &run.err};
	auto deadline = std::chrono::steady_clock::now() + timeout;
	bool timedOut = false;
	int open = 2;
	while (open > 0) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0) {
			timedOut = true;
			break;
		}
		if (::poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; ++i) {
			if (fds[i].fd < 0 || !fds[i].revents)
				continue;
			char buffer[8192];
			ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
			if (n > 0) {
				sinks[i]->append(buffer, static_cast<size_t>(n));
			} else if (n == 0 || errno != EINTR) {
				::close(fds[i].fd);
				fds[i].fd = -1;
				--open;
			}
		}
	}
	if (timedOut)
		::kill(pid, SIGKILL);
	for (pollfd &p : fds) {
		if (p.fd >= 0)
			::close(p.fd);
	}
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	REQUIRE_MESSAGE(!timedOut, args.front() << " did not finish in time; stderr: " << run.err);
	REQUIRE_MESSAGE(WIFEXITED(status), args.front() << " was killed by a signal; stderr: " << run.err);
	run.exitCode = WEXITSTATUS(status);
	return run;
}

inline bool contains(const std::string &haystack, const std::string &needle)
{
	return haystack.find(needle) != std::string::npos;
}

} // namespace ferry::test
