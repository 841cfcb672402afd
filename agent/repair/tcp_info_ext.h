// struct tcp_info as a current kernel fills it. glibc's definition (Debian
// 12) stops at tcpi_total_retrans (Linux 3.x), and <linux/tcp.h>, which has
// the rest, clashes with <netinet/tcp.h>. The fields below follow the
// kernel's uapi layout; `length` says how many bytes the kernel filled, so
// an older kernel's shorter struct is detected rather than misread.
#pragma once

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

namespace ferry::repair {

struct TcpInfoExt {
	tcp_info base{};
	uint64_t pacingRate = 0;
	uint64_t maxPacingRate = 0;
	uint64_t bytesAcked = 0;
	uint64_t bytesReceived = 0; // Linux >= 4.1
	uint32_t segsOut = 0;
	uint32_t segsIn = 0;        // Linux >= 4.2: every segment the socket received
	socklen_t length = 0;       // bytes the kernel filled (not part of the uapi struct)

	// Whether the receive counters below were filled by the kernel.
	bool hasReceiveCounters() const { return length >= offsetof(TcpInfoExt, segsIn) + sizeof(segsIn); }
	// Nothing reached the socket between the two reads: same state and,
	// where the kernel reports them, the same receive counters. Every
	// segment counts, a bare ACK or a RST too.
	bool receivedNothingSince(const TcpInfoExt &earlier) const
	{
		if (base.tcpi_state != earlier.base.tcpi_state)
			return false;
		if (!hasReceiveCounters() || !earlier.hasReceiveCounters())
			return true;
		return segsIn == earlier.segsIn && bytesReceived == earlier.bytesReceived;
	}
};

static_assert(sizeof(tcp_info) == 104, "glibc's tcp_info is expected to end at tcpi_total_retrans");
static_assert(offsetof(TcpInfoExt, pacingRate) == 104);
static_assert(offsetof(TcpInfoExt, bytesReceived) == 128);
static_assert(offsetof(TcpInfoExt, segsIn) == 140);

} // namespace ferry::repair
