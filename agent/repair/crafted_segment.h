// Injects one TCP segment "from the peer" into a local socket.
//
// Used by restore() to replay the peer's FIN, the ACK of our FIN, or a RST
// (see state_plan.h). The segment is built by hand (IPv4 or IPv6 header,
// 20-byte TCP header without options, checksums) and sent on a raw socket
// in the calling thread's network namespace with SO_MARK
// kCraftedPacketMark. Its destination is a local address, so it travels over
// loopback and never leaves the namespace.
#pragma once

#include <cstdint>

#include "base/error.h"
#include "base/flow.h"

namespace ferry::repair {

enum SegmentFlags : uint8_t {
	kSegmentFin = 0x01,
	kSegmentRst = 0x04,
	kSegmentAck = 0x10,
};

struct CraftedSegment {
	FlowId flow;      // as the restored socket sees it: local = destination of the segment
	uint32_t seq = 0; // the peer's sequence number (our rcv_nxt)
	uint32_t ack = 0; // what the peer acknowledges of ours
	uint8_t flags = 0;
	uint16_t window = 0; // unscaled, as on the wire
};

// Builds the segment's bytes (IP header included); exposed for unit tests.
// IPv4-mapped endpoints produce an IPv4 packet.
Result<size_t> buildSegment(const CraftedSegment &segment, uint8_t *out, size_t capacity);

Status injectSegment(const CraftedSegment &segment);

} // namespace ferry::repair
