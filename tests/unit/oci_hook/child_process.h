// A child process that stands in for a container's init: it sleeps until
// the test kills it. The destructor kills and reaps it (by its pid).
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

namespace ferry::test {

class ChildProcess {
public:
	ChildProcess()
	{
		pid_ = ::fork();
		REQUIRE(pid_ >= 0);
		if (pid_ == 0) {
			for (;;)
				::pause();
		}
	}
	~ChildProcess()
	{
		if (pid_ > 0) {
			::kill(pid_, SIGKILL);
			::waitpid(pid_, nullptr, 0);
		}
	}
	ChildProcess(const ChildProcess &) = delete;
	ChildProcess &operator=(const ChildProcess &) = delete;

	pid_t pid() const { return pid_; }

	// Kills it and leaves it a zombie (not reaped).
	void killWithoutReaping()
	{
		::kill(pid_, SIGKILL);
		// Wait until the kernel has made it a zombie, without reaping it.
		siginfo_t info{};
		REQUIRE(::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT) == 0);
	}
	// Kills and reaps it: the pid no longer exists.
	void killAndReap()
	{
		::kill(pid_, SIGKILL);
		::waitpid(pid_, nullptr, 0);
		pid_ = -1;
	}

private:
	pid_t pid_ = -1;
};

} // namespace ferry::test
