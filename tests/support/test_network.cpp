#include "test_network.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace ferry::test {

namespace {

// Removes namespaces "ft<pid>-*" whose process no longer exists.
void sweepDeadTestNamespaces()
{
	std::string list = captureOutput("ip netns list 2>/dev/null | cut -d' ' -f1");
	size_t pos = 0;
	while (pos < list.size()) {
		size_t end = list.find('\n', pos);
		std::string name = list.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
		pos = end == std::string::npos ? list.size() : end + 1;
		if (name.size() < 4 || name.compare(0, 2, "ft") != 0)
			continue;
		size_t dash = name.find('-');
		if (dash == std::string::npos)
			continue;
		pid_t pid = static_cast<pid_t>(std::atoi(name.substr(2, dash - 2).c_str()));
		if (pid <= 0 || (::kill(pid, 0) == 0 || errno == EPERM))
			continue;
		runCommand("ip netns del " + name + " 2>/dev/null");
	}
}

} // namespace

int runCommand(const std::string &command)
{
	int status = std::system(command.c_str());
	if (status == -1)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void mustRun(const std::string &command)
{
	int status = runCommand(command);
	if (status != 0)
		throw std::runtime_error("command failed (exit " + std::to_string(status) + "): " + command);
}

std::string captureOutput(const std::string &command)
{
	FILE *pipe = ::popen(command.c_str(), "r");
	if (!pipe)
		throw std::runtime_error("popen failed: " + command);
	std::string out;
	std::array<char, 4096> buffer;
	size_t n;
	while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
		out.append(buffer.data(), n);
	int status = ::pclose(pipe);
	if (status != 0)
		throw std::runtime_error("command failed: " + command);
	return out;
}

std::string TestHost::exec(const std::string &command) const
{
	return "ip netns exec " + netns + " " + command;
}

UniqueFd TestHost::open() const
{
	UniqueFd fd(::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		throw std::runtime_error("cannot open netns " + netns);
	return fd;
}

TestNetwork::TestNetwork()
{
	static int instance = 0;
	prefix_ = "ft" + std::to_string(::getpid()) + "-" + std::to_string(instance++);
	sweepDeadTestNamespaces();
	switch_ = name("sw");
	createNetns(switch_);
	mustRun("ip -n " + switch_ + " link add br0 type bridge");
	mustRun("ip -n " + switch_ + " link set br0 up");
}

TestNetwork::~TestNetwork()
{
	for (auto it = created_.rbegin(); it != created_.rend(); ++it)
		runCommand("ip netns del " + *it + " 2>/dev/null");
}

std::string TestNetwork::name(const std::string &role) const
{
	return prefix_ + "-" + role;
}

void TestNetwork::createNetns(const std::string &netns)
{
	mustRun("ip netns add " + netns);
	created_.push_back(netns);
	mustRun("ip -n " + netns + " link set lo up");
	// Addresses are usable at once: no duplicate address detection.
	runCommand("ip netns exec " + netns + " sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
}

const TestHost &TestNetwork::addIsolatedHost(const std::string &role)
{
	TestHost host{role, name(role)};
	createNetns(host.netns);
	hosts_.push_back(host);
	return hosts_.back();
}

const TestHost &TestNetwork::addHost(const std::string &role, const std::vector<std::string> &addresses)
{
	TestHost host{role, name(role)};
	createNetns(host.netns);
	std::string port = "p" + std::to_string(nextPort_++);
	mustRun("ip -n " + switch_ + " link add " + port + " type veth peer name eth0 netns " + host.netns);
	mustRun("ip -n " + switch_ + " link set " + port + " master br0 up");
	mustRun("ip -n " + host.netns + " link set eth0 up");
	hosts_.push_back(host);
	for (const std::string &cidr : addresses)
		addAddress(hosts_.back(), cidr);
	return hosts_.back();
}

void TestNetwork::addAddress(const TestHost &host, const std::string &cidr)
{
	bool v6 = cidr.find(':') != std::string::npos;
	mustRun("ip -n " + host.netns + " addr add " + cidr + " dev " + host.interface + (v6 ? " nodad" : ""));
}

void TestNetwork::removeAddress(const TestHost &host, const std::string &cidr)
{
	mustRun("ip -n " + host.netns + " addr del " + cidr + " dev " + host.interface);
}

} // namespace ferry::test
