// Test hosts on one machine: network namespaces joined by veth pairs to a
// bridge in a "switch" namespace (DESIGN.md, "Test hosts on one machine").
//
// Everything a TestNetwork creates is removed by its destructor, also when
// a test fails (doctest REQUIRE throws, the destructor runs). Namespaces
// are named "ft<pid>-<role>", and the constructor removes the namespaces
// of earlier test processes that died without cleaning up.
//
// Only documentation addresses are used: 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32. No default route is installed, so nothing leaves.
#pragma once

#include <string>
#include <deque>
#include <vector>

#include "base/unique_fd.h"

namespace ferry::test {

// Runs a shell command; throws std::runtime_error naming it if it fails.
void mustRun(const std::string &command);
// Runs a shell command and returns its exit status (no throw).
int runCommand(const std::string &command);
// Runs a shell command and returns its standard output (throws on failure).
std::string captureOutput(const std::string &command);

struct TestHost {
	std::string role;  // "peer", "hostA", ...
	std::string netns; // name for `ip netns exec` and openNetns()
	std::string interface = "eth0";

	// "ip netns exec <netns> <command>"
	std::string exec(const std::string &command) const;
	// An owned fd for setns / runInNetns.
	UniqueFd open() const;
};

class TestNetwork {
public:
	TestNetwork();
	~TestNetwork();
	TestNetwork(const TestNetwork &) = delete;
	TestNetwork &operator=(const TestNetwork &) = delete;

	// Creates a namespace with lo up and `eth0` attached to the bridge,
	// carrying `addresses` (CIDR, e.g. "198.51.100.1/24", "2001:db8::1/64").
	// IPv6 addresses are added without duplicate address detection.
	const TestHost &addHost(const std::string &role, const std::vector<std::string> &addresses);

	// A namespace with only lo up, not attached to anything.
	const TestHost &addIsolatedHost(const std::string &role);

	void addAddress(const TestHost &host, const std::string &cidr);
	void removeAddress(const TestHost &host, const std::string &cidr);

	// The switch namespace holding bridge "br0".
	const std::string &switchNetns() const { return switch_; }

private:
	std::string name(const std::string &role) const;
	void createNetns(const std::string &netns);

	std::string prefix_;
	std::string switch_;
	std::vector<std::string> created_;
	std::deque<TestHost> hosts_; // a deque: references returned by addHost stay valid
	int nextPort_ = 0;
};

} // namespace ferry::test
