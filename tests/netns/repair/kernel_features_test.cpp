#include <doctest/doctest.h>

#include <string>

#include "base/netns.h"
#include "repair/kernel_features.h"
#include "test_network.h"

using namespace ferry;
using namespace ferry::repair;

TEST_CASE("the running kernel offers what ferry needs, and describe() says so")
{
	test::TestNetwork net;
	const test::TestHost &host = net.addIsolatedHost("probe");
	UniqueFd ns = host.open();
	Result<KernelFeatures> probed = runInNetns(ns.get(), []() -> Result<KernelFeatures> { return probeKernelFeatures(); });
	REQUIRE(probed.ok());
	const KernelFeatures &f = *probed;
	CHECK(f.repair);
	CHECK(f.repairWindow);
	CHECK(f.timestamp);
	CHECK(f.halfClosedRepair);
	CHECK(f.bufferLock);
	CHECK(f.ipv6);
	CHECK(f.tcpMd5);   // CONFIG_TCP_MD5SIG=y on this machine
	CHECK_FALSE(f.tcpAo); // CONFIG_TCP_AO is off here
	CHECK(f.bpfSocketIterator); // BTF, Linux 6.18, root
	std::string d = f.describe();
	CHECK(d.find("repair=yes") != std::string::npos);
	CHECK(d.find("half_closed=yes") != std::string::npos);
	CHECK(d.find("tcp_ao=no") != std::string::npos);
	CHECK(d.find("bpf_socket_iterator=yes") != std::string::npos);
}
