#include "image_round_trip.h"

#include <stdexcept>

#include "transport/image_reader.h"
#include "transport/image_writer.h"

namespace ferry::test {

// Encodes into memory and decodes it again in small chunks, the way a
// destination decodes an upload, so that round-trip tests restore exactly
// what a destination would.
std::vector<repair::ConnectionSnapshot> throughImage(const std::vector<repair::ConnectionSnapshot> &snapshots)
{
	using namespace ferry::transport;
	auto fail = [](const char *step, const Error &e) {
		throw std::runtime_error(std::string("image round trip: ") + step + ": " + e.message());
	};

	std::vector<uint8_t> image;
	ImageHeader header;
	header.producer = "ferry test";
	Result<ImageWriter> writer = ImageWriter::create(header, [&](std::span<const uint8_t> bytes) -> Status {
		image.insert(image.end(), bytes.begin(), bytes.end());
		return {};
	});
	if (!writer)
		fail("create writer", writer.error());
	for (const repair::ConnectionSnapshot &s : snapshots) {
		Status added = writer->add(s);
		if (!added)
			fail("encode", added.error());
	}
	Result<ImageSummary> written = writer->finish();
	if (!written)
		fail("finish writer", written.error());

	std::vector<repair::ConnectionSnapshot> decoded;
	Result<ImageReader> reader = ImageReader::create([&](uint64_t, repair::ConnectionSnapshot &&s) -> Status {
		decoded.push_back(std::move(s));
		return {};
	});
	if (!reader)
		fail("create reader", reader.error());
	constexpr size_t kChunk = 16 * 1024;
	for (size_t pos = 0; pos < image.size(); pos += kChunk) {
		std::span<const uint8_t> chunk(image.data() + pos, std::min(kChunk, image.size() - pos));
		Status fed = reader->feed(chunk);
		if (!fed)
			fail("decode", fed.error());
	}
	Result<ImageSummary> read = reader->finish();
	if (!read)
		fail("finish reader", read.error());
	if (decoded.size() != snapshots.size())
		throw std::runtime_error("image round trip: wrote " + std::to_string(snapshots.size()) +
					 " snapshots, read " + std::to_string(decoded.size()));
	return decoded;
}

} // namespace ferry::test
