#include "transport/image_writer.h"

#include <zstd.h>

#include <cstring>

#include "base/log.h"
#include "transport/crc32c.h"
#include "transport/error_context.h"
#include "transport/image_manifest.h"
#include "transport/le_bytes.h"

namespace ferry::transport {

FERRY_DECLARE_LOG_CATEGORY(logTransport);

namespace {

Error zstdError(std::string_view call, size_t code)
{
	return makeError("zstd " + std::string(call) + " failed: " + ZSTD_getErrorName(code));
}

std::span<const uint8_t> bytesOf(const std::string &s)
{
	return {reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

} // namespace

void ImageWriter::CCtxDeleter::operator()(ZSTD_CCtx_s *cctx) const
{
	ZSTD_freeCCtx(cctx);
}

ImageWriter::ImageWriter(std::unique_ptr<ZSTD_CCtx_s, CCtxDeleter> cctx, ImageSink sink, WriterOptions options)
	: cctx_(std::move(cctx)), sink_(std::move(sink)), options_(options), out_(ZSTD_CStreamOutSize())
{
}

ImageWriter::ImageWriter(ImageWriter &&) noexcept = default;
ImageWriter &ImageWriter::operator=(ImageWriter &&) noexcept = default;
ImageWriter::~ImageWriter() = default;

Result<ImageWriter> ImageWriter::create(const ImageHeader &header, ImageSink sink, WriterOptions options)
{
	if (!sink)
		return makeError("image writer needs a sink", EINVAL).at("phase", "image-write");
	// Levels above 19 ("ultra") use windows beyond kMaxWindowLog, which
	// readers refuse; up to 19 zstd keeps the window at 8 MiB or less.
	int level = options.compressionLevel;
	if (level < ZSTD_minCLevel() || level > kMaxCompressionLevel)
		return makeError("zstd compression level " + std::to_string(level) + " is out of range (" +
					 std::to_string(ZSTD_minCLevel()) + " to " + std::to_string(kMaxCompressionLevel) + ")",
				 EINVAL)
			.at("phase", "image-write");
	Result<std::string> json = encodeHeaderJson(header, options.limits);
	if (!json)
		return std::move(appendContext(json.error(), "phase", "image-write"));

	std::unique_ptr<ZSTD_CCtx_s, CCtxDeleter> cctx(ZSTD_createCCtx());
	if (!cctx)
		return makeError("cannot allocate a zstd compression context", ENOMEM).at("phase", "image-write");
	// The zstd frame checksum adds a second, independent check of the
	// whole decompressed stream at almost no cost.
	for (auto [param, value] : {std::pair{ZSTD_c_compressionLevel, level}, std::pair{ZSTD_c_checksumFlag, 1}}) {
		size_t rc = ZSTD_CCtx_setParameter(cctx.get(), param, value);
		if (ZSTD_isError(rc))
			return zstdError("CCtx_setParameter", rc).at("phase", "image-write");
	}

	ImageWriter writer(std::move(cctx), std::move(sink), options);
	std::string bytes(kImageMagic, sizeof(kImageMagic));
	le::append<uint16_t>(bytes, kFormatVersion);
	le::append<uint16_t>(bytes, 0); // flags: none defined in version 1
	le::append<uint32_t>(bytes, static_cast<uint32_t>(json->size()));
	bytes += *json;
	le::append<uint32_t>(bytes, crc32c(0, bytes.data(), bytes.size()));
	Status s = writer.put(bytes, true, options.flushEachRecord ? Mode::Flush : Mode::Continue);
	if (!s)
		return std::move(appendContext(s.error(), "phase", "image-write"));
	return writer;
}

Status ImageWriter::fail(Error error)
{
	appendContext(error, "phase", "image-write");
	failure_ = error;
	return error;
}

Status ImageWriter::add(const repair::ConnectionSnapshot &snapshot)
{
	if (failure_)
		return *failure_;
	if (finished_)
		return makeError("image writer: add() after finish()", EINVAL).at("phase", "image-write");
	Status s = addRecord(snapshot);
	if (!s) {
		Error e = std::move(s).error();
		appendContext(e, "record", std::to_string(summary_.records));
		appendContext(e, "flow", snapshot.flow.toString());
		return fail(std::move(e));
	}
	summary_.records++;
	return {};
}

Status ImageWriter::flush()
{
	if (failure_)
		return *failure_;
	if (finished_)
		return makeError("image writer: flush() after finish()", EINVAL).at("phase", "image-write");
	Status s = put(std::span<const uint8_t>{}, false, Mode::Flush);
	if (!s)
		return fail(std::move(s).error());
	return {};
}

Status ImageWriter::addRecord(const repair::ConnectionSnapshot &snapshot)
{
	const ImageLimits &limits = options_.limits;
	if (summary_.records >= limits.maxRecords)
		return makeError("image already holds " + std::to_string(summary_.records) +
				 " records, the limit");
	FERRY_TRY_ASSIGN(std::string manifest, encodeManifest(snapshot, limits));
	uint64_t queueLength = snapshot.queuedBytes();
	uint64_t recordSize = kRecordFixedSize + manifest.size() + kCrcSize + queueLength + kCrcSize;
	if (summary_.imageBytes + recordSize + kTrailerSize > limits.maxImageBytes)
		return makeError("record of " + std::to_string(recordSize) + " bytes would take the image above its limit of " +
				 std::to_string(limits.maxImageBytes) + " bytes");

	std::string prefix(kRecordTag, sizeof(kRecordTag));
	le::append<uint32_t>(prefix, static_cast<uint32_t>(manifest.size()));
	le::append<uint64_t>(prefix, queueLength);
	prefix += manifest;
	le::append<uint32_t>(prefix, crc32c(0, prefix.data(), prefix.size()));
	FERRY_TRY(put(prefix, true));

	uint32_t queueCrc = 0;
	for (const std::vector<uint8_t> *queue : {&snapshot.receiveQueue, &snapshot.sendUnacked, &snapshot.sendUnsent}) {
		queueCrc = crc32c(queueCrc, *queue);
		FERRY_TRY(put(std::span<const uint8_t>(*queue), true));
	}
	std::string crc;
	le::append<uint32_t>(crc, queueCrc);
	FERRY_TRY(put(crc, true, options_.flushEachRecord ? Mode::Flush : Mode::Continue));
	summary_.queueBytes += queueLength;
	return {};
}

Result<ImageSummary> ImageWriter::finish()
{
	if (failure_)
		return *failure_;
	if (finished_)
		return makeError("image writer: finish() called twice", EINVAL).at("phase", "image-write");
	std::string trailer(kTrailerTag, sizeof(kTrailerTag));
	le::append<uint64_t>(trailer, summary_.records);
	le::append<uint64_t>(trailer, summary_.queueBytes);
	le::append<uint64_t>(trailer, summary_.imageBytes); // the trailer's own offset
	le::append<uint32_t>(trailer, digest_);
	le::append<uint32_t>(trailer, crc32c(0, trailer.data(), trailer.size()));
	Status s = put(trailer, false, Mode::End);
	if (!s) {
		Status failed = fail(std::move(s).error());
		return std::move(failed).error();
	}
	finished_ = true;
	FERRY_LOG(logTransport, Debug) << "image written" << kv("records", summary_.records)
				       << kv("queueBytes", summary_.queueBytes) << kv("imageBytes", summary_.imageBytes)
				       << kv("compressedBytes", summary_.compressedBytes);
	return summary_;
}

Status ImageWriter::put(const std::string &bytes, bool digest, Mode mode)
{
	return put(bytesOf(bytes), digest, mode);
}

Status ImageWriter::put(std::span<const uint8_t> bytes, bool digest, Mode mode)
{
	if (digest)
		digest_ = crc32c(digest_, bytes);
	summary_.imageBytes += bytes.size();

	ZSTD_EndDirective directive = mode == Mode::End ? ZSTD_e_end : mode == Mode::Flush ? ZSTD_e_flush : ZSTD_e_continue;
	ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
	for (;;) {
		ZSTD_outBuffer out{out_.data(), out_.size(), 0};
		size_t remaining = ZSTD_compressStream2(cctx_.get(), &out, &in, directive);
		if (ZSTD_isError(remaining))
			return zstdError("compressStream2", remaining);
		if (out.pos > 0) {
			Status s = sink_(std::span<const uint8_t>(out_.data(), out.pos));
			if (!s)
				return std::move(s).error();
			summary_.compressedBytes += out.pos;
		}
		bool done = directive == ZSTD_e_continue ? in.pos == in.size : remaining == 0;
		if (done)
			return {};
	}
}

} // namespace ferry::transport
