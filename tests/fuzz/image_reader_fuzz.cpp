// libFuzzer target for the image decoder (ImageReader).
//
// Input layout, so that the fuzzer reaches the parser behind zstd too:
//   byte 0, bit 0: 0 = the rest is a compressed image, fed as is;
//                  1 = the rest is a decompressed stream, compressed here
//                      first, so mutations land in the framing and JSON.
//   byte 0, bits 1-7: seed for the chunk sizes the input is fed in.
// A decoded image is encoded again and decoded once more; any difference
// is a codec bug and aborts.
//
// The same entry point replays the corpus as a unit test in the normal
// build (tests/unit/transport/image_corpus_test.cpp).
#include <zstd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "image_reader_fuzz.h"
#include "transport/image_reader.h"
#include "transport/image_writer.h"

namespace ferry::transport::fuzz {

namespace {

ImageLimits fuzzLimits()
{
	// Small limits keep every input's worst case far below the fuzzer's
	// RSS limit, while still letting the limit checks trigger.
	ImageLimits limits;
	limits.maxHeaderBytes = 4096;
	limits.maxManifestBytes = 8192;
	limits.maxQueueBytes = 1 << 20;
	limits.maxRecords = 1000;
	limits.maxImageBytes = 8 << 20;
	return limits;
}

bool sameEndpoint(const Endpoint &a, const Endpoint &b)
{
	return a.family == b.family && a.address == b.address && a.port == b.port && a.scopeId == b.scopeId;
}

bool same(const repair::ConnectionSnapshot &a, const repair::ConnectionSnapshot &b)
{
	return a.family == b.family && sameEndpoint(a.flow.local, b.flow.local) &&
	       sameEndpoint(a.flow.remote, b.flow.remote) && a.state == b.state && a.bound == b.bound &&
	       a.backlog == b.backlog && a.sendSeq == b.sendSeq && a.receiveSeq == b.receiveSeq &&
	       a.receiveQueue == b.receiveQueue && a.sendUnacked == b.sendUnacked && a.sendUnsent == b.sendUnsent &&
	       a.negotiated == b.negotiated && a.timestamp == b.timestamp && a.window == b.window &&
	       a.socketError == b.socketError && a.options == b.options;
}

struct Decoded {
	std::optional<ImageHeader> header;
	std::vector<repair::ConnectionSnapshot> snapshots;
};

Result<Decoded> decodeInChunks(std::span<const uint8_t> image, unsigned seed)
{
	Decoded decoded;
	FERRY_TRY_ASSIGN(ImageReader reader, ImageReader::create(
						     [&](uint64_t, repair::ConnectionSnapshot &&s) -> Status {
							     decoded.snapshots.push_back(std::move(s));
							     return {};
						     },
						     fuzzLimits()));
	// Chunk sizes from 1 byte up, cycling, so that every stage boundary
	// of the parser is eventually split.
	size_t pos = 0;
	unsigned step = seed;
	while (pos < image.size()) {
		size_t n = seed == 0 ? image.size() : 1 + (step * 2654435761u) % 97;
		n = std::min(n, image.size() - pos);
		FERRY_TRY(reader.feed(image.subspan(pos, n)));
		pos += n;
		step++;
	}
	FERRY_TRY(reader.finish());
	decoded.header = reader.header();
	return decoded;
}

[[noreturn]] void codecBug(const char *what)
{
	std::fprintf(stderr, "image codec bug: %s\n", what);
	std::abort();
}

} // namespace

Status decodeFuzzInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return makeError("empty fuzz input");
	uint8_t mode = data[0];
	std::span<const uint8_t> rest(data + 1, size - 1);
	std::vector<uint8_t> compressed;
	if (mode & 1) {
		compressed.resize(ZSTD_compressBound(rest.size()));
		size_t n = ZSTD_compress(compressed.data(), compressed.size(), rest.data(), rest.size(), 1);
		if (ZSTD_isError(n))
			codecBug("zstd cannot compress the input");
		compressed.resize(n);
		rest = compressed;
	}
	FERRY_TRY_ASSIGN(Decoded first, decodeInChunks(rest, mode >> 1));

	// What the reader accepted, the writer must be able to write, and the
	// reader must read back identically.
	if (!first.header)
		codecBug("image accepted without a header");
	std::vector<uint8_t> again;
	WriterOptions options;
	options.limits = fuzzLimits();
	options.compressionLevel = 1;
	auto writer = ImageWriter::create(*first.header,
					  [&](std::span<const uint8_t> b) -> Status {
						  again.insert(again.end(), b.begin(), b.end());
						  return {};
					  },
					  options);
	if (!writer)
		codecBug(("writer refuses an accepted header: " + writer.error().message()).c_str());
	for (const repair::ConnectionSnapshot &s : first.snapshots) {
		Status added = writer->add(s);
		if (!added)
			codecBug(("writer refuses an accepted record: " + added.error().message()).c_str());
	}
	if (!writer->finish())
		codecBug("writer cannot finish");
	auto second = decodeInChunks(again, 0);
	if (!second)
		codecBug(("reader refuses the writer's image: " + second.error().message()).c_str());
	if (!(*second->header == *first.header) || second->snapshots.size() != first.snapshots.size())
		codecBug("header or record count changed in a re-encode");
	for (size_t i = 0; i < first.snapshots.size(); i++)
		if (!same(first.snapshots[i], second->snapshots[i]))
			codecBug("a record changed in a re-encode");
	return {};
}

} // namespace ferry::transport::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)ferry::transport::fuzz::decodeFuzzInput(data, size);
	return 0;
}
