// ImageReader: decodes an image stream pushed to it in chunks of any size,
// as they arrive (e.g. from a cpp-httplib ContentReader), and hands each
// connection to a callback as soon as its record is complete and checked.
//
//   auto reader = ImageReader::create(onRecord, limits, onHeader);
//   for each chunk: FERRY_TRY(reader->feed(chunk));   // calls back 0..n times
//   FERRY_TRY_ASSIGN(auto summary, reader->finish()); // end of input
//
// Trust: a record is delivered once its manifest and queue checksums and
// its consistency checks pass. The image as a whole (record count, digest,
// end of stream) is only known good when finish() succeeds, so a
// destination must not commit anything it restored before that.
//
// Memory: bounded by the limits, whatever the input claims: the zstd
// window (<= 8 MiB), one manifest, and the queues of the record being
// decoded, which grow as bytes arrive rather than by what the manifest
// announces.
//
// Errors: the first error (bad input, or a callback's failure) is
// returned by that feed() or finish() and by every later call. It names
// what is wrong and where: the part of the stream, the record index, the
// JSON field, "offset" (in the decompressed stream) and "compressedOffset"
// (input bytes consumed when the error was found).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "repair/connection_snapshot.h"
#include "transport/image_format.h"
#include "transport/image_manifest.h"

struct ZSTD_DCtx_s;

namespace ferry::transport {

class ImageReader {
public:
	// Called once, when the header has been read and checked. A failure
	// stops decoding (e.g. a kernel feature the destination lacks).
	using HeaderHandler = std::function<Status(const ImageHeader &header)>;
	// Called once per record, in stream order; index counts from 0. The
	// snapshot is the callee's. A failure stops decoding.
	using RecordHandler = std::function<Status(uint64_t index, repair::ConnectionSnapshot &&snapshot)>;

	static Result<ImageReader> create(RecordHandler onRecord, ImageLimits limits = {}, HeaderHandler onHeader = {});

	ImageReader(ImageReader &&) noexcept;
	ImageReader &operator=(ImageReader &&) noexcept;
	~ImageReader();

	// Decodes the next compressed bytes. Precondition: finish() not called.
	Status feed(std::span<const uint8_t> bytes);
	// The input has ended: fails if the stream is truncated (no trailer, or
	// the zstd frame not closed), otherwise returns what the image held.
	Result<ImageSummary> finish();

	// The header, once it has been read.
	const std::optional<ImageHeader> &header() const { return header_; }

private:
	struct DCtxDeleter {
		void operator()(ZSTD_DCtx_s *dctx) const;
	};
	// Where the parser is in the decompressed stream.
	enum class Stage {
		HeaderFixed,    // magic, version, flags, JSON length
		HeaderJson,
		HeaderCrc,
		Tag,            // "RCRD" or "TRLR"
		RecordFixed,    // manifest length, queue length
		Manifest,
		ManifestCrc,
		Queues,
		QueueCrc,
		Trailer,        // everything after the tag
		Done,
	};

	ImageReader(std::unique_ptr<ZSTD_DCtx_s, DCtxDeleter> dctx, RecordHandler onRecord, ImageLimits limits,
		    HeaderHandler onHeader);

	Status decompress(std::span<const uint8_t> bytes);
	Status parse(const uint8_t *data, size_t size);
	Status completeStage();
	Status takeQueueBytes(const uint8_t *data, size_t size);
	void enter(Stage stage, uint64_t need);
	std::string whereInStream() const;
	Error located(Error error, uint64_t offset) const;
	Status fail(Error error);

	std::unique_ptr<ZSTD_DCtx_s, DCtxDeleter> dctx_;
	RecordHandler onRecord_;
	HeaderHandler onHeader_;
	ImageLimits limits_;
	std::vector<uint8_t> out_;

	// Compressed side.
	uint64_t compressedOffset_ = 0;
	bool frameEnded_ = false;
	bool finished_ = false;
	std::optional<Error> failure_;

	// Decompressed side.
	Stage stage_ = Stage::HeaderFixed;
	uint64_t need_ = 0;           // bytes still missing in the current stage
	uint64_t offset_ = 0;         // decompressed bytes parsed so far
	uint64_t stageStart_ = 0;     // offset where the current stage began
	uint64_t frameStart_ = 0;     // offset of the current header/record/trailer
	std::vector<uint8_t> fixed_;  // fixed-size fields of the current stage
	std::string json_;            // header JSON or manifest being collected
	uint32_t digest_ = 0;         // CRC32C of everything before the trailer
	uint32_t partCrc_ = 0;        // CRC32C of the current checksummed part
	std::optional<ImageHeader> header_;

	// The record being decoded.
	uint64_t queueLength_ = 0;
	QueueLengths queues_;
	repair::ConnectionSnapshot record_;
	ImageSummary summary_;
};

} // namespace ferry::transport
