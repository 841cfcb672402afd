#include "transport/image_reader.h"

#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "base/log.h"
#include "transport/crc32c.h"
#include "transport/error_context.h"
#include "transport/le_bytes.h"

namespace ferry::transport {

FERRY_LOG_CATEGORY(logTransport, "transport")

namespace {

constexpr uint8_t kZstdMagic[4] = {0x28, 0xb5, 0x2f, 0xfd}; // ZSTD_MAGICNUMBER, little-endian
// Queue vectors start at most this large and grow with the bytes that
// actually arrive, so a manifest that announces a large queue costs
// nothing until the data is there.
constexpr size_t kInitialQueueReserve = 1 << 20;

std::string hex32(uint32_t v)
{
	char text[11];
	std::snprintf(text, sizeof(text), "0x%08x", v);
	return text;
}

// a + b, or UINT64_MAX if that overflows.
uint64_t saturatingAdd(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

std::string printableTag(const uint8_t *tag)
{
	std::string text;
	for (size_t i = 0; i < kTagSize; i++) {
		char c = static_cast<char>(tag[i]);
		if (c >= 0x21 && c < 0x7f) {
			text += c;
		} else {
			char escaped[5];
			std::snprintf(escaped, sizeof(escaped), "\\x%02x", tag[i]);
			text += escaped;
		}
	}
	return text;
}

void appendBounded(std::vector<uint8_t> &queue, const uint8_t *data, size_t size, uint64_t finalSize)
{
	if (queue.size() + size > queue.capacity()) {
		uint64_t want = std::max<uint64_t>(queue.size() + size, 2 * queue.capacity());
		queue.reserve(static_cast<size_t>(std::min(want, finalSize)));
	}
	queue.insert(queue.end(), data, data + size);
}

} // namespace

void ImageReader::DCtxDeleter::operator()(ZSTD_DCtx_s *dctx) const
{
	ZSTD_freeDCtx(dctx);
}

ImageReader::ImageReader(std::unique_ptr<ZSTD_DCtx_s, DCtxDeleter> dctx, RecordHandler onRecord, ImageLimits limits,
			 HeaderHandler onHeader)
	: dctx_(std::move(dctx)),
	  onRecord_(std::move(onRecord)),
	  onHeader_(std::move(onHeader)),
	  limits_(limits),
	  out_(ZSTD_DStreamOutSize())
{
	enter(Stage::HeaderFixed, kHeaderFixedSize);
}

ImageReader::ImageReader(ImageReader &&) noexcept = default;
ImageReader &ImageReader::operator=(ImageReader &&) noexcept = default;
ImageReader::~ImageReader() = default;

Result<ImageReader> ImageReader::create(RecordHandler onRecord, ImageLimits limits, HeaderHandler onHeader)
{
	if (!onRecord)
		return makeError("image reader needs a record handler", EINVAL).at("phase", "image-decode");
	std::unique_ptr<ZSTD_DCtx_s, DCtxDeleter> dctx(ZSTD_createDCtx());
	if (!dctx)
		return makeError("cannot allocate a zstd decompression context", ENOMEM).at("phase", "image-decode");
	// A frame that asks for a larger window is refused instead of making
	// us allocate what the sender chose.
	size_t rc = ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, kMaxWindowLog);
	if (ZSTD_isError(rc))
		return makeError(std::string("zstd DCtx_setParameter failed: ") + ZSTD_getErrorName(rc))
			.at("phase", "image-decode");
	return ImageReader(std::move(dctx), std::move(onRecord), limits, std::move(onHeader));
}

Error ImageReader::located(Error error, uint64_t offset) const
{
	bool inRecord = stage_ == Stage::RecordFixed || stage_ == Stage::Manifest || stage_ == Stage::ManifestCrc ||
			stage_ == Stage::Queues || stage_ == Stage::QueueCrc;
	if (inRecord)
		appendContext(error, "record", std::to_string(summary_.records));
	appendContext(error, "offset", std::to_string(offset));
	appendContext(error, "compressedOffset", std::to_string(compressedOffset_));
	appendContext(error, "phase", "image-decode");
	return error;
}

Status ImageReader::fail(Error error)
{
	failure_ = error;
	FERRY_LOG(logTransport, Debug) << "image rejected: " << error.message();
	return error;
}

std::string ImageReader::whereInStream() const
{
	std::string record = "record " + std::to_string(summary_.records);
	switch (stage_) {
	case Stage::HeaderFixed:
	case Stage::HeaderJson:
	case Stage::HeaderCrc:
		return "inside the header";
	case Stage::Tag:
		return summary_.records == 0 ? "after the header, before any record or the trailer"
					     : "after record " + std::to_string(summary_.records - 1) +
						       ", before the next record or the trailer";
	case Stage::RecordFixed:
	case Stage::Manifest:
	case Stage::ManifestCrc:
		return "inside the manifest of " + record;
	case Stage::Queues:
	case Stage::QueueCrc:
		return "inside the queue bytes of " + record;
	case Stage::Trailer:
		return "inside the trailer";
	case Stage::Done:
		return "after the trailer";
	}
	return "";
}

void ImageReader::enter(Stage stage, uint64_t need)
{
	stage_ = stage;
	need_ = need;
	stageStart_ = offset_;
	fixed_.clear();
}

Status ImageReader::feed(std::span<const uint8_t> bytes)
{
	if (failure_)
		return *failure_;
	if (finished_)
		return makeError("image reader: feed() after finish()", EINVAL).at("phase", "image-decode");
	Status s = decompress(bytes);
	if (!s)
		return fail(std::move(s).error());
	return {};
}

Result<ImageSummary> ImageReader::finish()
{
	if (failure_)
		return *failure_;
	if (finished_)
		return makeError("image reader: finish() called twice", EINVAL).at("phase", "image-decode");
	finished_ = true;
	std::optional<Error> truncated;
	if (stage_ != Stage::Done)
		truncated = located(makeError("image truncated: the input ended " + whereInStream()), offset_);
	else if (!frameEnded_)
		truncated = located(makeError("image truncated: the input ended before the end of the zstd frame"), offset_);
	if (truncated) {
		Status failed = fail(std::move(*truncated));
		return std::move(failed).error();
	}
	summary_.compressedBytes = compressedOffset_;
	FERRY_LOG(logTransport, Debug) << "image decoded" << kv("records", summary_.records)
				       << kv("queueBytes", summary_.queueBytes) << kv("imageBytes", summary_.imageBytes)
				       << kv("compressedBytes", summary_.compressedBytes);
	return summary_;
}

Status ImageReader::decompress(std::span<const uint8_t> bytes)
{
	// Recognise a non-image early, with a clearer error than zstd's.
	for (size_t i = 0; compressedOffset_ + i < sizeof(kZstdMagic) && i < bytes.size(); i++)
		if (bytes[i] != kZstdMagic[compressedOffset_ + i])
			return located(makeError("not an image: the input does not start with a zstd frame "
						 "(magic 28 b5 2f fd)"),
				       0);

	ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
	for (;;) {
		if (frameEnded_) {
			if (in.pos < in.size)
				return located(makeError("trailing garbage: " + std::to_string(in.size - in.pos) +
							 " bytes after the end of the zstd frame"),
					       offset_);
			return {};
		}
		ZSTD_outBuffer out{out_.data(), out_.size(), 0};
		size_t before = in.pos;
		size_t rc = ZSTD_decompressStream(dctx_.get(), &out, &in);
		compressedOffset_ += in.pos - before;
		if (ZSTD_isError(rc))
			return located(makeError(std::string("corrupt compressed stream: zstd: ") + ZSTD_getErrorName(rc)),
				       offset_);
		FERRY_TRY(parse(out_.data(), out.pos));
		if (rc == 0) {
			frameEnded_ = true;
			if (stage_ != Stage::Done)
				return located(makeError("image truncated: the zstd frame ended " + whereInStream()), offset_);
			continue;
		}
		// zstd may still hold output when it filled our buffer; otherwise
		// it needs more input than this chunk had.
		if (in.pos == in.size && out.pos < out.size)
			return {};
	}
}

Status ImageReader::parse(const uint8_t *data, size_t size)
{
	while (size > 0) {
		if (stage_ == Stage::Done)
			return located(makeError("trailing data: " + std::to_string(size) +
						 " more decompressed bytes after the trailer"),
				       offset_);
		size_t take = static_cast<size_t>(std::min<uint64_t>(need_, size));
		switch (stage_) {
		case Stage::HeaderJson:
		case Stage::Manifest:
			json_.append(reinterpret_cast<const char *>(data), take);
			break;
		case Stage::Queues:
			FERRY_TRY(takeQueueBytes(data, take));
			break;
		default:
			fixed_.insert(fixed_.end(), data, data + take);
			break;
		}
		// The tag is digested once it is known not to be the trailer's;
		// the trailer is not part of the digest it carries.
		if (stage_ != Stage::Tag && stage_ != Stage::Trailer)
			digest_ = crc32c(digest_, data, take);
		bool checksummed = stage_ == Stage::HeaderFixed || stage_ == Stage::HeaderJson ||
				   stage_ == Stage::RecordFixed || stage_ == Stage::Manifest || stage_ == Stage::Queues;
		if (checksummed)
			partCrc_ = crc32c(partCrc_, data, take);
		data += take;
		size -= take;
		offset_ += take;
		need_ -= take;
		if (need_ == 0)
			FERRY_TRY(completeStage());
	}
	return {};
}

Status ImageReader::takeQueueBytes(const uint8_t *data, size_t size)
{
	// The three queues follow each other; route each byte by its position.
	uint64_t position = queueLength_ - need_;
	std::pair<std::vector<uint8_t> *, uint64_t> queues[] = {{&record_.receiveQueue, queues_.receive},
								{&record_.sendUnacked, queues_.sendUnacked},
								{&record_.sendUnsent, queues_.sendUnsent}};
	for (auto [queue, length] : queues) {
		if (size == 0)
			break;
		if (position >= length) {
			position -= length;
			continue;
		}
		size_t n = static_cast<size_t>(std::min<uint64_t>(length - position, size));
		appendBounded(*queue, data, n, length);
		data += n;
		size -= n;
		position = 0;
	}
	return {};
}

Status ImageReader::completeStage()
{
	switch (stage_) {
	case Stage::HeaderFixed: {
		if (std::memcmp(fixed_.data(), kImageMagic, sizeof(kImageMagic)) != 0)
			return located(makeError("not a ferry image: bad magic, the stream does not start with FERRYIMG"), 0);
		uint16_t version = le::load<uint16_t>(&fixed_[8]);
		if (version != kFormatVersion)
			return located(makeError("unsupported image format version " + std::to_string(version) +
						 "; this reader supports version " + std::to_string(kFormatVersion)),
				       8);
		uint16_t flags = le::load<uint16_t>(&fixed_[10]);
		if (flags != 0)
			return located(makeError("header flags " + std::to_string(flags) +
						 " are not defined in format version 1"),
				       10);
		uint32_t length = le::load<uint32_t>(&fixed_[12]);
		if (length == 0 || length > limits_.maxHeaderBytes)
			return located(makeError("header JSON length " + std::to_string(length) +
						 " is 0 or above the limit of " + std::to_string(limits_.maxHeaderBytes)),
				       12);
		header_.reset();
		json_.clear();
		enter(Stage::HeaderJson, length);
		return {};
	}
	case Stage::HeaderJson:
		enter(Stage::HeaderCrc, kCrcSize);
		return {};
	case Stage::HeaderCrc: {
		uint32_t stored = le::load<uint32_t>(fixed_.data());
		if (stored != partCrc_)
			return located(makeError("header checksum mismatch: stored " + hex32(stored) + ", computed " +
						 hex32(partCrc_)),
				       stageStart_);
		Result<ImageHeader> header = decodeHeaderJson(json_);
		if (!header)
			return located(std::move(header).error(), kHeaderFixedSize);
		header_ = std::move(*header);
		if (onHeader_)
			FERRY_TRY(onHeader_(*header_));
		frameStart_ = offset_;
		enter(Stage::Tag, kTagSize);
		return {};
	}
	case Stage::Tag: {
		if (std::memcmp(fixed_.data(), kRecordTag, kTagSize) == 0) {
			if (summary_.records >= limits_.maxRecords)
				return located(makeError("image has more than " + std::to_string(limits_.maxRecords) +
							 " records, the limit"),
					       frameStart_);
			digest_ = crc32c(digest_, fixed_.data(), kTagSize);
			partCrc_ = crc32c(0, fixed_.data(), kTagSize);
			enter(Stage::RecordFixed, kRecordFixedSize - kTagSize);
			return {};
		}
		if (std::memcmp(fixed_.data(), kTrailerTag, kTagSize) == 0) {
			enter(Stage::Trailer, kTrailerSize - kTagSize);
			return {};
		}
		return located(makeError("unknown frame tag '" + printableTag(fixed_.data()) + "' " + whereInStream() +
					 " (expected RCRD or TRLR)"),
			       frameStart_);
	}
	case Stage::RecordFixed: {
		uint32_t manifestLength = le::load<uint32_t>(&fixed_[0]);
		uint64_t queueLength = le::load<uint64_t>(&fixed_[4]);
		if (manifestLength == 0 || manifestLength > limits_.maxManifestBytes)
			return located(makeError("manifest length " + std::to_string(manifestLength) +
						 " is 0 or above the limit of " + std::to_string(limits_.maxManifestBytes)),
				       frameStart_ + 4);
		uint64_t maxQueues = saturatingAdd(saturatingAdd(limits_.maxQueueBytes, limits_.maxQueueBytes),
						   limits_.maxQueueBytes);
		if (queueLength > maxQueues)
			return located(makeError("record queue length " + std::to_string(queueLength) +
						 " is above the limit of 3 x " + std::to_string(limits_.maxQueueBytes)),
				       frameStart_ + 8);
		uint64_t end = saturatingAdd(frameStart_ + kRecordFixedSize + manifestLength + 2 * kCrcSize + kTrailerSize,
					     queueLength);
		if (end > limits_.maxImageBytes)
			return located(makeError("record would take the image above its limit of " +
						 std::to_string(limits_.maxImageBytes) + " bytes"),
				       frameStart_);
		queueLength_ = queueLength;
		json_.clear();
		enter(Stage::Manifest, manifestLength);
		return {};
	}
	case Stage::Manifest:
		enter(Stage::ManifestCrc, kCrcSize);
		return {};
	case Stage::ManifestCrc: {
		uint32_t stored = le::load<uint32_t>(fixed_.data());
		if (stored != partCrc_)
			return located(makeError("record manifest checksum mismatch: stored " + hex32(stored) +
						 ", computed " + hex32(partCrc_)),
				       stageStart_);
		queues_ = {};
		Result<repair::ConnectionSnapshot> snapshot = decodeManifest(json_, limits_, queues_);
		if (!snapshot)
			return located(std::move(snapshot).error(), frameStart_ + kRecordFixedSize);
		if (queues_.total() != queueLength_)
			return located(makeError("manifest queue lengths (receive " + std::to_string(queues_.receive) +
						 " + sendUnacked " + std::to_string(queues_.sendUnacked) +
						 " + sendUnsent " + std::to_string(queues_.sendUnsent) +
						 ") disagree with the record's queue length " +
						 std::to_string(queueLength_))
					       .at("field", "queues"),
				       frameStart_ + kRecordFixedSize);
		record_ = std::move(*snapshot);
		record_.receiveQueue.reserve(std::min<uint64_t>(queues_.receive, kInitialQueueReserve));
		record_.sendUnacked.reserve(std::min<uint64_t>(queues_.sendUnacked, kInitialQueueReserve));
		record_.sendUnsent.reserve(std::min<uint64_t>(queues_.sendUnsent, kInitialQueueReserve));
		partCrc_ = 0;
		if (queueLength_ == 0)
			enter(Stage::QueueCrc, kCrcSize);
		else
			enter(Stage::Queues, queueLength_);
		return {};
	}
	case Stage::Queues:
		enter(Stage::QueueCrc, kCrcSize);
		return {};
	case Stage::QueueCrc: {
		uint32_t stored = le::load<uint32_t>(fixed_.data());
		if (stored != partCrc_)
			return located(makeError("record queue bytes checksum mismatch: stored " + hex32(stored) +
						 ", computed " + hex32(partCrc_)),
				       stageStart_);
		uint64_t index = summary_.records;
		FlowId flow = record_.flow; // formatted only if the handler fails
		summary_.records++;
		summary_.queueBytes += queueLength_;
		Status s = onRecord_(index, std::move(record_));
		record_ = {};
		if (!s) {
			Error e = std::move(s).error();
			appendContext(e, "record", std::to_string(index));
			appendContext(e, "flow", flow.toString());
			appendContext(e, "phase", "image-decode");
			return e;
		}
		frameStart_ = offset_;
		enter(Stage::Tag, kTagSize);
		return {};
	}
	case Stage::Trailer: {
		uint32_t computed = crc32c(crc32c(0, kTrailerTag, kTagSize), fixed_.data(), kTrailerSize - kTagSize - kCrcSize);
		uint32_t stored = le::load<uint32_t>(&fixed_[28]);
		if (stored != computed)
			return located(makeError("trailer checksum mismatch: stored " + hex32(stored) + ", computed " +
						 hex32(computed)),
				       frameStart_ + 32);
		uint64_t records = le::load<uint64_t>(&fixed_[0]);
		uint64_t queueBytes = le::load<uint64_t>(&fixed_[8]);
		uint64_t trailerOffset = le::load<uint64_t>(&fixed_[16]);
		uint32_t digest = le::load<uint32_t>(&fixed_[24]);
		if (records != summary_.records)
			return located(makeError("trailer counts " + std::to_string(records) + " records, the stream holds " +
						 std::to_string(summary_.records))
					       .at("field", "trailer.records"),
				       frameStart_ + 4);
		if (queueBytes != summary_.queueBytes)
			return located(makeError("trailer counts " + std::to_string(queueBytes) +
						 " queue bytes, the stream holds " + std::to_string(summary_.queueBytes))
					       .at("field", "trailer.queueBytes"),
				       frameStart_ + 12);
		if (trailerOffset != frameStart_)
			return located(makeError("trailer says it starts at offset " + std::to_string(trailerOffset) +
						 ", it starts at " + std::to_string(frameStart_))
					       .at("field", "trailer.offset"),
				       frameStart_ + 20);
		if (digest != digest_)
			return located(makeError("stream digest mismatch: trailer has " + hex32(digest) + ", the " +
						 std::to_string(frameStart_) + " bytes before it hash to " + hex32(digest_))
					       .at("field", "trailer.digest"),
				       frameStart_ + 28);
		summary_.imageBytes = offset_;
		enter(Stage::Done, 0);
		return {};
	}
	case Stage::Done:
		break;
	}
	return {};
}

} // namespace ferry::transport
