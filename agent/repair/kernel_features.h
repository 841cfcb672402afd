// KernelFeatures: what the running kernel's TCP repair interface can do.
//
// probeKernelFeatures() is called once at start-up (ferryd, tests) and its
// result is reported in negotiation, so that a source never sends a
// snapshot the destination cannot rebuild. Probing creates a few sockets in
// the calling thread's network namespace and sends no packet: the probe
// connection is "connected" in repair mode and closed while still in repair
// mode (the repair connect() needs no route, so lo may even be down).
#pragma once

#include <map>
#include <string>

namespace ferry::repair {

struct KernelFeatures {
	bool repair = false;           // TCP_REPAIR accepted (CAP_NET_ADMIN over the netns)
	bool repairWindow = false;     // TCP_REPAIR_WINDOW, Linux >= 4.8
	bool timestamp = false;        // TCP_TIMESTAMP settable in repair mode, Linux >= 3.9
	bool halfClosedRepair = false; // shutdown(SHUT_WR) in repair mode queues a FIN as sent (FIN_WAIT1, no packet)
	bool bufferLock = false;       // SO_BUF_LOCK, Linux >= 5.14: tells and sets whether SO_SNDBUF/SO_RCVBUF were user-set
	bool tcpMd5 = false;           // CONFIG_TCP_MD5SIG: MD5-signed connections exist and are refused
	bool tcpAo = false;            // CONFIG_TCP_AO: TCP-AO connections exist and are refused
	bool ipv6 = false;             // AF_INET6 sockets can be created
	// The BPF TCP socket iterator loads (socket_iterator.h: BTF, Linux >=
	// 5.15, CAP_BPF with CAP_PERFMON or CAP_SYS_ADMIN): a SocketCensus then
	// carries the user options, and snapshot() reads none of them itself.
	// Source-side only, like tcp_md5/tcp_ao: not in toMap().
	bool bpfSocketIterator = false;

	// "repair=yes repair_window=yes ..." for logs and negotiation.
	std::string describe() const;
	// The features by name ("repair", "repair_window", ...), as negotiation
	// and the image header carry them.
	std::map<std::string, bool> toMap() const;

	friend bool operator==(const KernelFeatures &, const KernelFeatures &) = default;
};

KernelFeatures probeKernelFeatures();

} // namespace ferry::repair
