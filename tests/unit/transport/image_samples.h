// Sample snapshots and hand-built image streams for the transport tests,
// the fuzz target's corpus generator and the corpus replay test. No
// doctest here, so the fuzz build can use it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "repair/connection_snapshot.h"
#include "transport/image_format.h"
#include "transport/image_reader.h"
#include "transport/image_writer.h"

namespace ferry::transport::samples {

// Deterministic pseudo-random bytes.
std::vector<uint8_t> bytes(size_t size, uint32_t seed);

// An ESTABLISHED IPv4 connection with every field set to a value other
// than its default, and queues of the given sizes.
repair::ConnectionSnapshot established4(size_t receive, size_t unacked, size_t unsent, uint32_t seed = 1);
// One snapshot of each kind the format carries: IPv4, IPv6 (with a scope
// id), IPv4-mapped, listener, bound-only, every half-closed state,
// CLOSE-with-peer (reset, unread bytes), empty queues, no repair window.
std::vector<repair::ConnectionSnapshot> variety();

ImageHeader header();

// Encodes to memory; aborts the test process (returns empty) only through
// the Result.
Result<std::vector<uint8_t>> encode(const ImageHeader &header, const std::vector<repair::ConnectionSnapshot> &snapshots,
				    WriterOptions options = {});

struct Decoded {
	std::optional<ImageHeader> header;
	std::vector<repair::ConnectionSnapshot> snapshots;
	ImageSummary summary;
};
// Feeds `image` in chunks of chunkSize (0: random sizes from seed).
Result<Decoded> decode(std::span<const uint8_t> image, size_t chunkSize = SIZE_MAX, ImageLimits limits = {},
		       uint32_t seed = 1);

// zstd one-shot helpers for building and inspecting streams by hand.
// endFrame false leaves the frame open (all input flushed), as a sender
// that has not finished; windowLog 0 is zstd's default for the level.
std::vector<uint8_t> compress(std::string_view logical, int level = 1, bool endFrame = true, int windowLog = 0);
std::string decompress(std::span<const uint8_t> image);

// A decompressed stream built piece by piece with correct lengths and
// checksums, which tests then break in one place.
class LogicalImage {
public:
	// Offsets (from the start of the stream) of what was just appended.
	size_t header(std::string_view json, uint16_t version = kFormatVersion, uint16_t flags = 0);
	size_t record(std::string_view manifest, std::string_view queueBytes,
		      std::optional<uint64_t> declaredQueueLength = std::nullopt);
	size_t trailer();                       // correct counts and digest
	size_t trailer(uint64_t records, uint64_t queueBytes, uint64_t offset, uint32_t digest);

	uint64_t records() const { return records_; }
	uint64_t queueBytes() const { return queueBytes_; }
	uint32_t digest() const;
	std::string &bytes() { return bytes_; }

private:
	std::string bytes_;
	uint64_t records_ = 0;
	uint64_t queueBytes_ = 0;
};

// The JSON of a valid header and of a snapshot's manifest (with its queue
// lengths), to be edited by tests.
std::string headerJson();
std::string manifestJson(const repair::ConnectionSnapshot &snapshot);
// The manifest of an ESTABLISHED connection whose only queued bytes are
// `receiveQueue`.
std::string manifestFor(std::string_view receiveQueue);

} // namespace ferry::transport::samples
