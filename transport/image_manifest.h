// JSON documents of the image stream: the header's and each record's
// manifest (docs/image-format.md, "Header JSON" and "Record manifest").
//
// Used by ImageWriter and ImageReader; exposed for their tests. Decoding is
// strict: every field of the format version is required, has exactly one
// JSON type and range, appears once, and any other field is an error.
// Errors name the document and field ("field=options.keepIdle"); the
// reader adds the record index and byte offset.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"
#include "repair/connection_snapshot.h"
#include "transport/image_format.h"

namespace ferry::transport {

// Byte lengths of a record's three queues, in the order their bytes follow
// the manifest: receive, send unacked, send unsent.
struct QueueLengths {
	uint64_t receive = 0;
	uint64_t sendUnacked = 0;
	uint64_t sendUnsent = 0;

	uint64_t total() const { return receive + sendUnacked + sendUnsent; }
};

// Fails if the header cannot be written as version 1 (producer empty or too
// long, a feature name outside [A-Za-z0-9_.-] or longer than 64 bytes,
// more than 64 features) or the JSON exceeds limits.maxHeaderBytes.
Result<std::string> encodeHeaderJson(const ImageHeader &header, const ImageLimits &limits);
// formatVersion is left at its default; the framing carries it.
Result<ImageHeader> decodeHeaderJson(std::string_view json);

// Validates the snapshot with the same rules the reader applies (see
// checkSnapshot) and returns its manifest.
Result<std::string> encodeManifest(const repair::ConnectionSnapshot &snapshot, const ImageLimits &limits);
// Returns the snapshot with empty queues; their lengths go to `queues`.
Result<repair::ConnectionSnapshot> decodeManifest(std::string_view json, const ImageLimits &limits,
						  QueueLengths &queues);

// Consistency rules beyond JSON types, shared by writer and reader:
// endpoints are of the socket's family; a listener has no peer and no
// queued bytes; a connected state has a peer; each queue is within
// limits.maxQueueBytes; window scales are <= 14; socketError is an errno
// (0..4095); the congestion name is at most 15 bytes of [A-Za-z0-9_.-].
Status checkSnapshot(const repair::ConnectionSnapshot &snapshot, const QueueLengths &queues,
		     const ImageLimits &limits);

} // namespace ferry::transport
