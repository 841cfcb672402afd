// Test helpers for the workload side of a migration: a scratch directory,
// the ferry_test_workload process (test_workload.cpp) with its stdout on a
// pipe, and a log capture. Header-only; shared by tests/unit/migration and
// tests/netns/migration.
#pragma once

#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"

extern char **environ;

namespace ferry::test {

using namespace std::chrono_literals;

// A directory under /tmp, removed with its contents.
class TempDir {
public:
	TempDir()
	{
		std::string pattern = (std::filesystem::temp_directory_path() / "ferry-workload-XXXXXX").string();
		REQUIRE(::mkdtemp(pattern.data()) != nullptr);
		path_ = pattern;
	}
	~TempDir()
	{
		std::error_code ignored;
		std::filesystem::remove_all(path_, ignored);
	}
	TempDir(const TempDir &) = delete;
	TempDir &operator=(const TempDir &) = delete;

	const std::string &path() const { return path_; }
	std::string file(const std::string &name) const { return path_ + "/" + name; }
	size_t entries() const
	{
		return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(path_),
							 std::filesystem::directory_iterator()));
	}

private:
	std::string path_;
};

// Polls `condition` until it holds or `timeout` passes.
inline bool eventually(const std::function<bool()> &condition, std::chrono::milliseconds timeout = 5s)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	while (!condition()) {
		if (std::chrono::steady_clock::now() > deadline)
			return false;
		std::this_thread::sleep_for(5ms);
	}
	return true;
}

// A process started with posix_spawn, stdout to a pipe the test reads line
// by line. The destructor kills it by pid (SIGKILL) and reaps it.
class Process {
public:
	explicit Process(std::vector<std::string> argv)
	{
		int fds[2];
		REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
		UniqueFd readEnd(fds[0]);
		UniqueFd writeEnd(fds[1]);
		posix_spawn_file_actions_t actions;
		posix_spawn_file_actions_init(&actions);
		posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), STDOUT_FILENO);
		std::vector<char *> args;
		for (std::string &arg : argv)
			args.push_back(arg.data());
		args.push_back(nullptr);
		int error = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
		posix_spawn_file_actions_destroy(&actions);
		REQUIRE_MESSAGE(error == 0, "cannot start ", argv[0]);
		out_ = std::move(readEnd);
	}
	~Process()
	{
		if (!reaped_) {
			::kill(pid_, SIGKILL);
			::waitpid(pid_, nullptr, 0);
		}
	}
	Process(const Process &) = delete;
	Process &operator=(const Process &) = delete;

	pid_t pid() const { return pid_; }

	// The next line of its stdout, "" on timeout or end of output.
	std::string line(std::chrono::milliseconds timeout = 5s)
	{
		auto deadline = std::chrono::steady_clock::now() + timeout;
		for (;;) {
			size_t newline = buffer_.find('\n');
			if (newline != std::string::npos) {
				std::string line = buffer_.substr(0, newline);
				buffer_.erase(0, newline + 1);
				return line;
			}
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
											   std::chrono::steady_clock::now());
			if (left.count() <= 0)
				return "";
			pollfd p{out_.get(), POLLIN, 0};
			if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
				return "";
			char chunk[512];
			ssize_t n = ::read(out_.get(), chunk, sizeof(chunk));
			if (n <= 0)
				return "";
			buffer_.append(chunk, static_cast<size_t>(n));
		}
	}

	// Its exit code (128+signal when killed), -1 if it did not end in time.
	// Precondition: not reaped yet.
	int wait(std::chrono::milliseconds timeout = 5s)
	{
		int status = 0;
		bool ended = eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
		if (!ended)
			return -1;
		reaped_ = true;
		return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	}

private:
	pid_t pid_ = -1;
	bool reaped_ = false; // then pid_ may name another process: never signal it
	UniqueFd out_;
	std::string buffer_;
};

// ferry_test_workload's handoff mode.
inline std::vector<std::string> handoffWorkload(const std::string &socket, std::vector<std::string> options = {})
{
	std::vector<std::string> argv = {FERRY_TEST_WORKLOAD, "handoff", socket};
	argv.insert(argv.end(), options.begin(), options.end());
	return argv;
}

// Collects log lines while it lives (from any thread).
class LogCapture {
public:
	LogCapture()
	{
		ferry::log::setSink([this](ferry::log::Level, std::string_view category, std::string_view line) {
			std::lock_guard lock(mutex_);
			lines_.push_back(std::string(category) + ": " + std::string(line));
		});
	}
	~LogCapture() { ferry::log::setSink({}); }

	size_t count(std::string_view needle) const
	{
		std::lock_guard lock(mutex_);
		size_t n = 0;
		for (const std::string &line : lines_)
			n += line.find(needle) != std::string::npos;
		return n;
	}
	std::string all() const
	{
		std::lock_guard lock(mutex_);
		std::string out;
		for (const std::string &line : lines_)
			out.append(line).append("\n");
		return out;
	}

private:
	mutable std::mutex mutex_;
	std::vector<std::string> lines_;
};

// The key=value report a probe writes (test_workload.cpp, probe mode).
inline std::map<std::string, std::string> readReport(const std::string &path)
{
	std::map<std::string, std::string> out;
	std::ifstream in(path);
	std::string line;
	while (std::getline(in, line)) {
		size_t eq = line.find('=');
		if (eq != std::string::npos)
			out[line.substr(0, eq)] = line.substr(eq + 1);
	}
	return out;
}

} // namespace ferry::test
