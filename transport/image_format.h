// The ferry image stream: what a source agent sends to a destination for
// one migration. docs/image-format.md is the specification; this header
// holds the constants and the plain types that ImageWriter and ImageReader
// share.
//
// Layout, in short: one zstd frame whose decompressed content is
//   header  (magic, format version, JSON: producer, kernel features)
//   record* (JSON manifest of one ConnectionSnapshot + its queue bytes)
//   trailer (record count, queue byte count, stream length, digest)
// The header, each record's manifest, each record's queue bytes and the
// trailer carry their own CRC32C, so that a corruption is reported with the
// part and record it is in; the trailer's digest covers every byte before it.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ferry::transport {

// "FERRYIMG": the first eight bytes of the decompressed stream.
inline constexpr char kImageMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'I', 'M', 'G'};
// Bumped on any change a version-1 reader would not decode correctly; see
// "Versioning" in docs/image-format.md.
inline constexpr uint16_t kFormatVersion = 1;
inline constexpr char kRecordTag[4] = {'R', 'C', 'R', 'D'};
inline constexpr char kTrailerTag[4] = {'T', 'R', 'L', 'R'};

// Fixed sizes of the framing (bytes); all integers are little-endian.
inline constexpr size_t kHeaderFixedSize = 16;  // magic, version, flags, json length
inline constexpr size_t kRecordFixedSize = 16;  // tag, manifest length, queue length
inline constexpr size_t kTagSize = 4;
inline constexpr size_t kTrailerSize = 36;      // tag, 3 x u64, digest, crc
inline constexpr size_t kCrcSize = 4;

// The zstd window is capped so that a decoder's memory does not depend on
// what the encoder chose: 2^23 = 8 MiB.
inline constexpr int kMaxWindowLog = 23;

// Bounds that both sides enforce. The writer refuses to produce what the
// reader would reject; the reader never allocates beyond them, so memory
// stays bounded by maxQueueBytes x 3 plus the zstd window, whatever the
// input claims.
struct ImageLimits {
	uint32_t maxHeaderBytes = 64 * 1024;    // header JSON
	uint32_t maxManifestBytes = 64 * 1024;  // one record's JSON manifest
	uint64_t maxQueueBytes = 256ull << 20;  // each of the three queues of a record
	uint64_t maxRecords = 1u << 20;
	uint64_t maxImageBytes = 16ull << 30;   // decompressed stream, header to trailer
};

// The header's content. Kernel features are the source's probe results
// (e.g. "tcpRepairWindow": true) so the destination can refuse early.
struct ImageHeader {
	uint16_t formatVersion = kFormatVersion; // the reader fills in what it read
	std::string producer;                    // e.g. "ferry 0.1.0"
	std::map<std::string, bool> kernelFeatures;

	friend bool operator==(const ImageHeader &, const ImageHeader &) = default;
};

// What a finished image contained, from either side.
struct ImageSummary {
	uint64_t records = 0;
	uint64_t queueBytes = 0;      // sum of all records' queue bytes
	uint64_t imageBytes = 0;      // decompressed stream, including the trailer
	uint64_t compressedBytes = 0; // what went to the sink / came from feed()
};

} // namespace ferry::transport
