// A test "host" for container tests: a scratch directory with its own runc
// root and podman storage, and an isolated network namespace, all removed
// by the destructor (also when a REQUIRE throws). Bundles, rootfs and
// images are made by tests/support/containers.sh, so the bash library the
// e2e tests use is exercised here too.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "container/container.h"
#include "test_network.h"

namespace ferry::test {

// bash -c '. containers.sh; <script>' with the host's variables set.
inline std::string containersShell(const std::string &script)
{
	std::string quoted;
	for (char c : script)
		quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
	return "bash -c '. " FERRY_CONTAINERS_SH "; set -e; " + quoted + "'";
}

inline bool pathExists(const std::string &path)
{
	struct stat st{};
	return ::stat(path.c_str(), &st) == 0;
}

inline bool processAlive(pid_t pid)
{
	// A zombie is dead for our purposes: its fds are closed.
	FILE *f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
	if (!f)
		return false;
	int ignored = 0;
	char name[256] = {}, state = 0;
	int n = std::fscanf(f, "%d (%255[^)]) %c", &ignored, name, &state);
	std::fclose(f);
	return n == 3 && state != 'Z' && state != 'X';
}

inline double secondsSince(std::chrono::steady_clock::time_point start)
{
	return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class ContainerHost {
public:
	explicit ContainerHost(const std::string &role) : host_(network_.addIsolatedHost(role))
	{
		char scratch[] = "/tmp/ferry-ct-XXXXXX";
		if (!::mkdtemp(scratch))
			throw std::runtime_error("mkdtemp failed");
		dir_ = scratch;
		options_.runcRoot = dir_ + "/runc";
		options_.podmanRoot = dir_ + "/podman/root";
		options_.podmanRunRoot = dir_ + "/podman/runroot";
		options_.podmanGlobalArgs = {"--tmpdir", options_.podmanRunRoot + "/libpod-tmp", "--cgroup-manager",
					     "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"};
		options_.podmanExtraArgs = {"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"};
		options_.timeout = std::chrono::milliseconds(60000);
	}
	~ContainerHost()
	{
		// runc containers of this root, then the podman storage, then
		// whatever is still mounted below the scratch directory.
		ferry::test::runCommand("for id in $(runc --root " + options_.runcRoot +
					" list -q 2>/dev/null); do runc --root " + options_.runcRoot +
					" delete --force $id; done");
		if (podmanUsed_)
			ferry::test::runCommand(containersShell("ct_podman_remove_storage " + options_.podmanRoot + " " +
								options_.podmanRunRoot));
		ferry::test::runCommand(containersShell("ct_unmount_below " + dir_ + "; rm -rf " + dir_));
	}
	ContainerHost(const ContainerHost &) = delete;
	ContainerHost &operator=(const ContainerHost &) = delete;

	const std::string &dir() const { return dir_; }
	const TestHost &host() const { return host_; }
	std::string netnsPath() const { return "/run/netns/" + host_.netns; }
	const container::RuntimeOptions &options() const { return options_; }

	// A bundle in <dir>/<name> running `argv` (words for bash) in this
	// host's netns.
	std::string makeBundle(const std::string &name, const std::string &argv)
	{
		std::string bundle = dir_ + "/" + name;
		mustRun(containersShell("CT_NETNS=" + host_.netns + " ct_make_runc_bundle " + bundle + " " + name + " " +
					argv));
		return bundle;
	}

	// runc run -d: a running source container.
	void runRunc(const std::string &name, const std::string &bundle)
	{
		mustRun(containersShell("CT_RUNC_ROOT=" + options_.runcRoot + " ct_runc run -d --bundle " + bundle + " " +
					name + " </dev/null >" + dir_ + "/" + name + ".log 2>&1"));
	}

	// The busybox rootfs as image `tag` in this host's podman storage.
	void importImage(const std::string &tag)
	{
		podmanUsed_ = true;
		mustRun(containersShell("ct_import_podman_image " + options_.podmanRoot + " " + options_.podmanRunRoot +
					" " + tag));
	}

	// podman run -d through ct_podman with this host's storage and netns.
	void runPodman(const std::string &name, const std::string &image, const std::string &argv)
	{
		podmanUsed_ = true;
		mustRun(containersShell("ct_podman_storage " + options_.podmanRoot + " " + options_.podmanRunRoot +
					"; mapfile -t run < <(ct_podman_run_args); ct_podman run -d \"${run[@]}\" --name " +
					name + " --network ns:" + netnsPath() +
					" --annotation io.ferry.migratable=true " + image + " " + argv + " >/dev/null"));
	}

private:
	TestNetwork network_;
	const TestHost &host_;
	std::string dir_;
	container::RuntimeOptions options_;
	bool podmanUsed_ = false;
};

// Forked children that spin, each in the cgroup `dir` (cgroup.procs),
// killed and reaped by the destructor.
class Spinners {
public:
	Spinners(int count, const std::string &cgroupDir)
	{
		for (int i = 0; i < count; i++) {
			pid_t pid = ::fork();
			if (pid < 0)
				throw std::runtime_error("fork failed");
			if (pid == 0) {
				// Spins in user space until killed.
				volatile unsigned long n = 0;
				for (;;)
					n = n + 1;
			}
			pids_.push_back(pid);
			mustRun("echo " + std::to_string(pid) + " > " + cgroupDir + "/cgroup.procs");
		}
	}
	~Spinners()
	{
		for (pid_t pid : pids_)
			::kill(pid, SIGKILL);
		for (pid_t pid : pids_)
			::waitpid(pid, nullptr, 0);
	}
	Spinners(const Spinners &) = delete;
	Spinners &operator=(const Spinners &) = delete;

	const std::vector<pid_t> &pids() const { return pids_; }

	// utime + stime of all, in clock ticks.
	unsigned long long cpuTicks() const
	{
		unsigned long long total = 0;
		for (pid_t pid : pids_) {
			FILE *f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
			if (!f)
				continue;
			unsigned long long utime = 0, stime = 0;
			// Fields 14 and 15; the command name has no spaces here.
			if (std::fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
					&stime) == 2)
				total += utime + stime;
			std::fclose(f);
		}
		return total;
	}

private:
	std::vector<pid_t> pids_;
};

// A cgroup directory made for a test and removed (processes first) at the
// end; `root` is a freezer-capable mount (v1 freezer or cgroup2).
class ScratchCgroup {
public:
	explicit ScratchCgroup(const std::string &root) : dir_(root + "/ferry-test-" + std::to_string(::getpid()))
	{
		::rmdir(dir_.c_str());
		if (::mkdir(dir_.c_str(), 0755) != 0)
			throw std::runtime_error("cannot create cgroup " + dir_);
	}
	~ScratchCgroup()
	{
		// Thawed and emptied first: rmdir refuses a populated cgroup.
		ferry::test::runCommand("if [ -e " + dir_ + "/cgroup.freeze ]; then echo 0 > " + dir_ +
					"/cgroup.freeze; else echo THAWED > " + dir_ + "/freezer.state; fi");
		for (int i = 0; i < 100 && ::rmdir(dir_.c_str()) != 0; i++)
			std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	ScratchCgroup(const ScratchCgroup &) = delete;
	ScratchCgroup &operator=(const ScratchCgroup &) = delete;
	const std::string &dir() const { return dir_; }

private:
	std::string dir_;
};

} // namespace ferry::test
