#include <doctest/doctest.h>

#include <string>

#include "image_samples.h"
#include "transport/image_writer.h"

using namespace ferry;
using namespace ferry::transport;

namespace {

Status discard(std::span<const uint8_t>)
{
	return {};
}

bool contains(const std::string &text, const std::string &part)
{
	return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("writer refuses a snapshot that breaks the format's rules, naming the flow")
{
	auto writer = ImageWriter::create(samples::header(), discard);
	REQUIRE(writer.ok());
	repair::ConnectionSnapshot s = samples::established4(1, 1, 1);
	s.flow.remote.family = AF_INET6; // an IPv6 peer on an IPv4 socket
	Status added = writer->add(s);
	REQUIRE_FALSE(added.ok());
	INFO(added.error().message());
	CHECK(contains(added.error().what, "remote.family"));
	CHECK(contains(added.error().context, "field=remote.family record=0 flow=198.51.100.1:8080->[c633:6402::]:40001 "
					      "phase=image-write"));
	// A failed writer stays failed, so a half-written image cannot be finished.
	CHECK_FALSE(writer->add(samples::established4(0, 0, 0)).ok());
	CHECK_FALSE(writer->finish().ok());
}

TEST_CASE("writer enforces the limits a reader will apply")
{
	WriterOptions options;
	options.limits.maxQueueBytes = 1000;
	options.limits.maxRecords = 2;
	auto writer = ImageWriter::create(samples::header(), discard, options);
	REQUIRE(writer.ok());
	Status big = writer->add(samples::established4(1001, 0, 0));
	REQUIRE_FALSE(big.ok());
	CHECK(contains(big.error().what, "queues.receive"));
	CHECK(contains(big.error().what, "1001 bytes, above the limit of 1000"));

	auto counted = ImageWriter::create(samples::header(), discard, options);
	REQUIRE(counted.ok());
	REQUIRE(counted->add(samples::established4(1, 0, 0)).ok());
	REQUIRE(counted->add(samples::established4(1, 0, 0)).ok());
	Status third = counted->add(samples::established4(1, 0, 0));
	REQUIRE_FALSE(third.ok());
	CHECK(contains(third.error().what, "2 records, the limit"));
}

TEST_CASE("writer rejects a bad header and a bad compression level")
{
	ImageHeader h = samples::header();
	h.kernelFeatures["has space"] = true;
	auto bad = ImageWriter::create(h, discard);
	REQUIRE_FALSE(bad.ok());
	CHECK(contains(bad.error().what, "kernelFeatures.has space"));

	h = samples::header();
	h.producer.clear();
	CHECK_FALSE(ImageWriter::create(h, discard).ok());

	WriterOptions options;
	options.compressionLevel = 22; // needs a 128 MiB window
	auto ultra = ImageWriter::create(samples::header(), discard, options);
	REQUIRE_FALSE(ultra.ok());
	CHECK(contains(ultra.error().what, "compression level 22"));
}

TEST_CASE("a sink failure stops the writer and is returned as is")
{
	int calls = 0;
	auto writer = ImageWriter::create(samples::header(), [&](std::span<const uint8_t>) -> Status {
		if (++calls > 1)
			return makeError("upload broke", EPIPE);
		return {};
	});
	REQUIRE(writer.ok());
	Status added = writer->add(samples::established4(10, 10, 10));
	REQUIRE_FALSE(added.ok());
	CHECK(added.error().code == EPIPE);
	CHECK(added.error().what == "upload broke");
	CHECK(contains(added.error().context, "phase=image-write"));
}

TEST_CASE("with flushEachRecord, each record reaches the sink when add() returns")
{
	std::vector<uint8_t> sent;
	auto writer = ImageWriter::create(samples::header(), [&](std::span<const uint8_t> b) -> Status {
		sent.insert(sent.end(), b.begin(), b.end());
		return {};
	});
	REQUIRE(writer.ok());
	std::vector<repair::ConnectionSnapshot> seen;
	auto reader = ImageReader::create([&](uint64_t, repair::ConnectionSnapshot &&s) -> Status {
		seen.push_back(std::move(s));
		return {};
	});
	REQUIRE(reader.ok());
	size_t fed = 0;
	for (size_t i = 0; i < 3; i++) {
		REQUIRE(writer->add(samples::established4(1000 * i, 7, 0, static_cast<uint32_t>(i))).ok());
		REQUIRE(reader->feed(std::span<const uint8_t>(sent).subspan(fed)).ok());
		fed = sent.size();
		// The destination has the record before the source writes the next.
		CHECK(seen.size() == i + 1);
	}
	REQUIRE(writer->finish().ok());
	REQUIRE(reader->feed(std::span<const uint8_t>(sent).subspan(fed)).ok());
	auto summary = reader->finish();
	REQUIRE(summary.ok());
	CHECK(summary->records == 3);
	CHECK(summary->compressedBytes == sent.size());
}
