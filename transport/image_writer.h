// ImageWriter: encodes ConnectionSnapshots into the image stream, one at a
// time, and hands compressed bytes to a sink as they are produced.
//
//   auto writer = ImageWriter::create(header, sink);   // header goes out
//   writer->add(snapshot);  ... once per connection, in any order
//   auto summary = writer->finish();                  // trailer, end of frame
//
// Memory: the writer never holds more than one record's framing and the
// zstd context (window <= 8 MiB); queue bytes are compressed straight from
// the snapshot's vectors. The snapshot may be discarded once add() returns.
//
// Flushing: with flushEachRecord (the default) every record is flushed to
// the sink as soon as it is added, so that a destination decoding a chunked
// upload sees each connection while the source is still dumping the next.
//
// Errors: a failed add() or finish() (invalid snapshot, limit reached,
// sink error, zstd error) leaves the writer failed: every later call
// returns the same error. An ImageWriter destroyed without finish() leaves
// a truncated stream, which every reader rejects.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/error.h"
#include "repair/connection_snapshot.h"
#include "transport/image_format.h"

struct ZSTD_CCtx_s;

namespace ferry::transport {

// Receives compressed image bytes in order. The span is valid only during
// the call. A failed Status stops the writer (e.g. the upload broke).
using ImageSink = std::function<Status(std::span<const uint8_t> bytes)>;

// zstd's levels 20-22 need windows above kMaxWindowLog.
inline constexpr int kMaxCompressionLevel = 19;

struct WriterOptions {
	int compressionLevel = 3;     // zstd level up to 19; 1 is fast, negative levels faster still
	bool flushEachRecord = true;  // see "Flushing" above
	ImageLimits limits;           // the writer refuses what a reader with these limits would
};

class ImageWriter {
public:
	// Writes the header. Fails on an invalid header (see encodeHeaderJson),
	// an out-of-range compression level, or a sink error.
	static Result<ImageWriter> create(const ImageHeader &header, ImageSink sink, WriterOptions options = {});

	ImageWriter(ImageWriter &&) noexcept;
	ImageWriter &operator=(ImageWriter &&) noexcept;
	~ImageWriter();

	// Appends one record. Precondition: finish() has not been called.
	// Fails, naming the flow, when the snapshot breaks the format's rules
	// (checkSnapshot) or the limits.
	Status add(const repair::ConnectionSnapshot &snapshot);

	// Hands everything added so far to the sink (a zstd flush). With
	// flushEachRecord off, a producer that adds records in batches calls
	// this after each batch: one flush per batch instead of per record
	// keeps idle connections at ~11 instead of ~27 compressed bytes.
	Status flush();

	// Writes the trailer and closes the zstd frame. Afterwards the writer
	// accepts nothing more.
	Result<ImageSummary> finish();

	// Counts so far (compressedBytes: what the sink has been given).
	const ImageSummary &summary() const { return summary_; }

private:
	struct CCtxDeleter {
		void operator()(ZSTD_CCtx_s *cctx) const;
	};
	enum class Mode { Continue, Flush, End };

	ImageWriter(std::unique_ptr<ZSTD_CCtx_s, CCtxDeleter> cctx, ImageSink sink, WriterOptions options);

	Status addRecord(const repair::ConnectionSnapshot &snapshot);
	// Compresses logical bytes; digest says whether they count towards the
	// trailer's whole-stream digest (everything before the trailer does).
	Status put(std::span<const uint8_t> bytes, bool digest, Mode mode = Mode::Continue);
	Status put(const std::string &bytes, bool digest, Mode mode = Mode::Continue);
	Status fail(Error error);

	std::unique_ptr<ZSTD_CCtx_s, CCtxDeleter> cctx_;
	ImageSink sink_;
	WriterOptions options_;
	std::vector<uint8_t> out_;
	uint32_t digest_ = 0;
	ImageSummary summary_;
	bool finished_ = false;
	std::optional<Error> failure_;
};

} // namespace ferry::transport
