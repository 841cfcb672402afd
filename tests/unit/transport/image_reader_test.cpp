// The reader: round trips through the writer, incremental feeding, and
// every class of malformed input, each error checked for what and where.
#include <doctest/doctest.h>

#include <malloc.h>
#include <zstd.h>

#include <cstring>
#include <random>
#include <string>

#include "image_samples.h"
#include "snapshot_compare.h"
#include "transport/crc32c.h"
#include "transport/image_manifest.h"
#include "transport/image_reader.h"

using namespace ferry;
using namespace ferry::transport;
using repair::ConnectionSnapshot;

namespace {

bool contains(const std::string &text, const std::string &part)
{
	return text.find(part) != std::string::npos;
}

std::span<const uint8_t> span(const std::vector<uint8_t> &v)
{
	return {v.data(), v.size()};
}

std::vector<uint8_t> validImage(const std::vector<ConnectionSnapshot> &snapshots = samples::variety())
{
	auto image = samples::encode(samples::header(), snapshots);
	REQUIRE(image.ok());
	return *image;
}

// Decodes and expects a failure; returns it for the caller to inspect.
Error rejected(std::span<const uint8_t> image, ImageLimits limits = {}, size_t chunk = SIZE_MAX)
{
	auto decoded = samples::decode(image, chunk, limits);
	REQUIRE_FALSE(decoded.ok());
	Error e = decoded.error();
	MESSAGE(e.message());
	CHECK(contains(e.context, "phase=image-decode"));
	return e;
}

Error rejectedLogical(const std::string &logical, ImageLimits limits = {})
{
	return rejected(span(samples::compress(logical)), limits);
}

void replace(std::string &text, const std::string &from, const std::string &to)
{
	size_t at = text.find(from);
	REQUIRE_MESSAGE(at != std::string::npos, "'" << from << "' not in " << text);
	text.replace(at, from.size(), to);
}

// A valid stream of one record whose manifest has `from` replaced by `to`.
std::string withManifestEdit(const std::string &from, const std::string &to)
{
	ConnectionSnapshot s = samples::established4(0, 0, 0);
	std::string manifest = samples::manifestJson(s);
	replace(manifest, from, to);
	samples::LogicalImage image;
	image.header(samples::headerJson());
	image.record(samples::manifestJson(s), "");
	image.record(manifest, "");
	image.trailer();
	return image.bytes();
}

} // namespace

TEST_CASE("round trip keeps every field of every kind of snapshot")
{
	std::vector<ConnectionSnapshot> in = samples::variety();
	auto decoded = samples::decode(span(validImage(in)));
	REQUIRE(decoded.ok());
	REQUIRE(decoded->snapshots.size() == in.size());
	for (size_t i = 0; i < in.size(); i++)
		samples::checkSame(decoded->snapshots[i], in[i]);
	REQUIRE(decoded->header.has_value());
	CHECK(*decoded->header == samples::header());
	CHECK(decoded->summary.records == in.size());
	uint64_t queued = 0;
	for (const ConnectionSnapshot &s : in)
		queued += s.queuedBytes();
	CHECK(decoded->summary.queueBytes == queued);
}

TEST_CASE("an image without records round-trips")
{
	auto decoded = samples::decode(span(validImage({})));
	REQUIRE(decoded.ok());
	CHECK(decoded->snapshots.empty());
	CHECK(decoded->summary.records == 0);
}

TEST_CASE("feeding one byte at a time or in random chunks gives the same snapshots")
{
	std::vector<ConnectionSnapshot> in = samples::variety();
	std::vector<uint8_t> image = validImage(in);
	SUBCASE("1-byte chunks")
	{
		auto decoded = samples::decode(span(image), 1);
		REQUIRE(decoded.ok());
		REQUIRE(decoded->snapshots.size() == in.size());
		for (size_t i = 0; i < in.size(); i++)
			samples::checkSame(decoded->snapshots[i], in[i]);
	}
	SUBCASE("random chunks")
	{
		for (uint32_t seed = 1; seed <= 20; seed++) {
			auto decoded = samples::decode(span(image), 0, {}, seed);
			REQUIRE(decoded.ok());
			REQUIRE(decoded->snapshots.size() == in.size());
			samples::checkSame(decoded->snapshots.back(), in.back());
		}
	}
}

TEST_CASE("16 MiB queues in each direction round-trip, in chunks and without flushing")
{
	std::vector<ConnectionSnapshot> in = {samples::established4(16 << 20, 9 << 20, 7 << 20, 5),
					      samples::established4(3, 0, 1 << 20, 6)};
	WriterOptions options;
	options.flushEachRecord = false;
	options.compressionLevel = 1;
	auto image = samples::encode(samples::header(), in, options);
	REQUIRE(image.ok());
	auto decoded = samples::decode(span(*image), 0);
	REQUIRE(decoded.ok());
	REQUIRE(decoded->snapshots.size() == 2);
	samples::checkSame(decoded->snapshots[0], in[0]);
	samples::checkSame(decoded->snapshots[1], in[1]);
	CHECK(decoded->summary.queueBytes == (32u << 20) + 3 + (1u << 20));
}

TEST_CASE("a record's announced queue size is not allocated before its bytes arrive")
{
	// A manifest that announces 200 MiB (within the limits) followed by no
	// data: the reader's heap must not grow by anything like that.
	ConnectionSnapshot s = samples::established4(0, 0, 0);
	std::string manifest = samples::manifestJson(s);
	replace(manifest, "\"receive\":0", "\"receive\":209715200");
	samples::LogicalImage image;
	image.header(samples::headerJson());
	image.record(manifest, "", 209715200);
	std::string prefix = image.bytes().substr(0, image.bytes().size() - 4); // up to the queue bytes
	std::vector<uint8_t> compressed = samples::compress(prefix, 1, false);

	auto reader = ImageReader::create([](uint64_t, ConnectionSnapshot &&) -> Status { return {}; });
	REQUIRE(reader.ok());
	size_t before = mallinfo2().uordblks;
	Status fed = reader->feed(span(compressed));
	INFO((fed.ok() ? std::string() : fed.error().message()));
	REQUIRE(fed.ok());
	size_t after = mallinfo2().uordblks;
	CHECK(after < before + (4u << 20));
	auto finished = reader->finish();
	REQUIRE_FALSE(finished.ok());
	CHECK(contains(finished.error().what, "image truncated: the input ended inside the queue bytes of record 0"));
}

TEST_CASE("a failing record handler stops decoding and its error names the record")
{
	std::vector<uint8_t> image = validImage();
	auto reader = ImageReader::create([](uint64_t index, ConnectionSnapshot &&) -> Status {
		if (index == 2)
			return makeError("restore failed", EADDRINUSE);
		return {};
	});
	REQUIRE(reader.ok());
	Status fed = reader->feed(span(image));
	REQUIRE_FALSE(fed.ok());
	CHECK(fed.error().code == EADDRINUSE);
	CHECK(contains(fed.error().context, "record=2"));
	CHECK(contains(fed.error().context, "flow=[::ffff:198.51.100.1]:80->[::ffff:203.0.113.9]:1"));
	// The error sticks.
	CHECK(reader->feed(span(image)).error().code == EADDRINUSE);
	CHECK_FALSE(reader->finish().ok());
}

TEST_CASE("a header handler sees the header before any record and can refuse it")
{
	int records = 0;
	auto reader = ImageReader::create(
		[&](uint64_t, ConnectionSnapshot &&) -> Status {
			records++;
			return {};
		},
		{},
		[](const ImageHeader &h) -> Status {
			if (!h.kernelFeatures.at("halfClosedRepair"))
				return makeError("destination needs halfClosedRepair");
			return {};
		});
	REQUIRE(reader.ok());
	Status fed = reader->feed(span(validImage()));
	REQUIRE_FALSE(fed.ok());
	CHECK(fed.error().what == "destination needs halfClosedRepair");
	CHECK(records == 0);
}

// --- malformed input, one class per case ---

TEST_CASE("truncated anywhere: every prefix of an image is rejected")
{
	std::vector<uint8_t> image = validImage({samples::established4(10, 20, 30), samples::variety()[3]});
	for (size_t cut = 0; cut < image.size(); cut++) {
		auto decoded = samples::decode(span(image).first(cut));
		REQUIRE_MESSAGE(!decoded.ok(), "prefix of " << cut << " bytes accepted");
		CHECK(contains(decoded.error().what, cut < 4 ? "truncated" : ""));
	}
	Error e = rejected(span(image).first(image.size() - 1));
	CHECK(contains(e.what, "image truncated"));
}

TEST_CASE("truncated stream inside a closed zstd frame names the record")
{
	samples::LogicalImage image;
	image.header(samples::headerJson());
	image.record(samples::manifestJson(samples::established4(0, 0, 0)), "");
	image.record(samples::manifestFor("abc"), "abc");
	std::string logical = image.bytes().substr(0, image.bytes().size() - 5); // mid-queue of record 1
	Error e = rejectedLogical(logical);
	CHECK(contains(e.what, "image truncated: the zstd frame ended inside the queue bytes of record 1"));
	CHECK(contains(e.context, "record=1"));
	CHECK(contains(e.context, "offset=" + std::to_string(logical.size())));

	samples::LogicalImage noTrailer;
	noTrailer.header(samples::headerJson());
	noTrailer.record(samples::manifestJson(samples::established4(0, 0, 0)), "");
	Error missing = rejectedLogical(noTrailer.bytes());
	CHECK(contains(missing.what, "after record 0, before the next record or the trailer"));
}

TEST_CASE("corruption anywhere in the compressed bytes is rejected or changes nothing")
{
	// A few bits do not affect the content (the window size's mantissa in
	// the frame header, padding in entropy tables); a flip there may decode
	// to the same snapshots. Any flip that changes the content must be
	// rejected. (Measured: 14 of 3135 flips are such no-ops.)
	std::vector<ConnectionSnapshot> in = {samples::established4(40, 30, 20), samples::variety()[1]};
	std::vector<uint8_t> image = validImage(in);
	size_t harmless = 0;
	for (size_t i = 0; i < image.size(); i++) {
		for (uint8_t bit : {0x01, 0x10, 0x80}) {
			std::vector<uint8_t> bad = image;
			bad[i] ^= bit;
			auto decoded = samples::decode(span(bad));
			if (!decoded.ok())
				continue;
			INFO("flip of bit " << int(bit) << " at byte " << i << " accepted");
			REQUIRE(decoded->snapshots.size() == in.size());
			for (size_t k = 0; k < in.size(); k++)
				samples::checkSame(decoded->snapshots[k], in[k]);
			harmless++;
		}
	}
	MESSAGE(harmless << " of " << 3 * image.size() << " bit flips decoded to the same image");
	CHECK(harmless * 100 < 3 * image.size()); // under 1% of flips
}

TEST_CASE("input that is not zstd, or not an image, is named as such")
{
	std::vector<uint8_t> text = {'G', 'E', 'T', ' ', '/'};
	Error e = rejected(span(text));
	CHECK(contains(e.what, "not an image: the input does not start with a zstd frame"));
	CHECK(contains(e.context, "offset=0"));

	std::string logical = "NOTFERRY" + std::string(100, '\0');
	Error magic = rejectedLogical(logical);
	CHECK(contains(magic.what, "bad magic"));
	CHECK(contains(magic.context, "offset=0"));
}

TEST_CASE("wrong format version and unknown flags are refused")
{
	samples::LogicalImage v2;
	v2.header(samples::headerJson(), 2);
	v2.trailer();
	Error e = rejectedLogical(v2.bytes());
	CHECK(contains(e.what, "unsupported image format version 2; this reader supports version 1"));
	CHECK(contains(e.context, "offset=8"));

	samples::LogicalImage flags;
	flags.header(samples::headerJson(), 1, 4);
	flags.trailer();
	Error f = rejectedLogical(flags.bytes());
	CHECK(contains(f.what, "header flags 4"));
	CHECK(contains(f.context, "offset=10"));
}

TEST_CASE("header: checksum, size limit and strict JSON")
{
	samples::LogicalImage image;
	image.header(samples::headerJson());
	image.trailer();
	std::string corrupt = image.bytes();
	corrupt[20] ^= 0x20; // inside the JSON
	Error crc = rejectedLogical(corrupt);
	CHECK(contains(crc.what, "header checksum mismatch"));

	ImageLimits small;
	small.maxHeaderBytes = 16;
	Error big = rejectedLogical(image.bytes(), small);
	CHECK(contains(big.what, "header JSON length"));
	CHECK(contains(big.what, "above the limit of 16"));
	CHECK(contains(big.context, "offset=12"));

	auto headerWith = [](const std::string &json) {
		samples::LogicalImage i;
		i.header(json);
		i.trailer();
		return rejectedLogical(i.bytes());
	};
	Error unknown = headerWith(R"({"producer":"x","kernelFeatures":{},"extra":1})");
	CHECK(contains(unknown.what, "header field 'extra' is not part of format version 1"));
	CHECK(contains(unknown.context, "field=extra"));
	Error notBool = headerWith(R"({"producer":"x","kernelFeatures":{"tcpRepairWindow":1}})");
	CHECK(contains(notBool.what, "'kernelFeatures.tcpRepairWindow' is not a boolean"));
	Error dup = headerWith(R"({"producer":"x","kernelFeatures":{"a":true,"a":false}})");
	CHECK(contains(dup.what, "'kernelFeatures.a' appears twice"));
	Error missing = headerWith(R"({"kernelFeatures":{}})");
	CHECK(contains(missing.what, "'producer' is missing"));
	Error json = headerWith(R"({"producer":"x",)");
	CHECK(contains(json.what, "header JSON is not valid JSON"));
	CHECK(contains(json.context, "jsonOffset="));
	Error deep = headerWith(std::string(3000, '[') + std::string(3000, ']'));
	CHECK(contains(deep.what, "is not a JSON object"));
}

TEST_CASE("unknown frame tag and trailing data are refused")
{
	samples::LogicalImage image;
	image.header(samples::headerJson());
	size_t at = image.record(samples::manifestJson(samples::established4(0, 0, 0)), "");
	image.trailer();
	std::string bad = image.bytes();
	bad[at + 3] = 'X';
	Error tag = rejectedLogical(bad);
	CHECK(contains(tag.what, "unknown frame tag 'RCRX' after the header"));
	CHECK(contains(tag.context, "offset=" + std::to_string(at)));

	std::string trailing = image.bytes() + "more";
	Error data = rejectedLogical(trailing);
	CHECK(contains(data.what, "trailing data: 4 more decompressed bytes after the trailer"));
	CHECK(contains(data.context, "offset=" + std::to_string(image.bytes().size())));

	std::vector<uint8_t> garbage = validImage();
	size_t end = garbage.size();
	garbage.push_back(0);
	Error g = rejected(span(garbage));
	CHECK(contains(g.what, "trailing garbage: 1 bytes after the end of the zstd frame"));
	CHECK(contains(g.context, "compressedOffset=" + std::to_string(end)));

	// A second zstd frame (concatenated images) is garbage too.
	std::vector<uint8_t> twice = validImage();
	std::vector<uint8_t> copy = twice;
	twice.insert(twice.end(), copy.begin(), copy.end());
	CHECK(contains(rejected(span(twice)).what, "trailing garbage"));
}

TEST_CASE("record framing: lengths over the limits are refused before allocation")
{
	std::string manifest = samples::manifestJson(samples::established4(0, 0, 0));
	ImageLimits limits;
	limits.maxManifestBytes = 100;
	samples::LogicalImage image;
	image.header(samples::headerJson());
	size_t at = image.record(manifest, "");
	image.trailer();
	Error m = rejectedLogical(image.bytes(), limits);
	CHECK(contains(m.what, "manifest length " + std::to_string(manifest.size()) + " is 0 or above the limit of 100"));
	CHECK(contains(m.context, "record=0"));
	CHECK(contains(m.context, "offset=" + std::to_string(at + 4)));

	samples::LogicalImage huge;
	huge.header(samples::headerJson());
	huge.record(manifest, "", UINT64_MAX);
	Error q = rejectedLogical(huge.bytes());
	CHECK(contains(q.what, "record queue length 18446744073709551615 is above the limit"));

	ImageLimits tight;
	tight.maxImageBytes = 300;
	Error total = rejectedLogical(image.bytes(), tight);
	CHECK(contains(total.what, "above its limit of 300 bytes"));

	ImageLimits one;
	one.maxRecords = 1;
	std::vector<uint8_t> three = validImage({samples::established4(0, 0, 0), samples::established4(0, 0, 0)});
	Error records = rejected(span(three), one);
	CHECK(contains(records.what, "more than 1 records"));

	ImageLimits queue;
	queue.maxQueueBytes = 10;
	Error perQueue = rejected(span(validImage({samples::established4(11, 0, 0)})), queue);
	CHECK(contains(perQueue.what, "'queues.receive' is 11 bytes, above the limit of 10"));
	CHECK(contains(perQueue.context, "field=queues.receive record=0 offset="));
}

TEST_CASE("record checksums: manifest and queue bytes, with the record named")
{
	samples::LogicalImage image;
	image.header(samples::headerJson());
	image.record(samples::manifestJson(samples::established4(0, 0, 0)), "");
	size_t at = image.record(samples::manifestFor("queue bytes"), "queue bytes");
	image.trailer();

	std::string manifest = image.bytes();
	manifest[at + 20] ^= 1;
	Error m = rejectedLogical(manifest);
	CHECK(contains(m.what, "record manifest checksum mismatch"));
	CHECK(contains(m.context, "record=1"));

	std::string queue = image.bytes();
	size_t queueAt = image.bytes().find("queue bytes");
	queue[queueAt + 3] ^= 1;
	Error q = rejectedLogical(queue);
	CHECK(contains(q.what, "record queue bytes checksum mismatch"));
	CHECK(contains(q.context, "record=1"));
	CHECK(contains(q.context, "offset=" + std::to_string(queueAt + 11)));
}

TEST_CASE("manifest queue lengths must agree with the record's bytes")
{
	ConnectionSnapshot s = samples::established4(0, 0, 0);
	std::string manifest = samples::manifestJson(s);
	replace(manifest, "\"receive\":0", "\"receive\":3");
	samples::LogicalImage image;
	image.header(samples::headerJson());
	image.record(manifest, "abcd");
	image.trailer();
	Error e = rejectedLogical(image.bytes());
	CHECK(contains(e.what, "manifest queue lengths (receive 3 + sendUnacked 0 + sendUnsent 0) disagree with the "
			       "record's queue length 4"));
	CHECK(contains(e.context, "field=queues"));
	CHECK(contains(e.context, "record=0"));
}

TEST_CASE("manifest fields are typed strictly; errors name the field and record")
{
	struct Case {
		const char *from, *to, *what, *field;
	};
	const Case cases[] = {
		{"\"keepIdle\":7201", "\"keepIdle\":\"7201\"", "'options.keepIdle' is not a signed 32-bit integer",
		 "options.keepIdle"},
		{"\"sendSeq\":4294967279", "\"sendSeq\":-1", "'sendSeq' is not an unsigned 32-bit integer", "sendSeq"},
		{"\"timestamp\":2309737967", "\"timestamp\":1.5", "'timestamp' is not an unsigned 32-bit integer",
		 "timestamp"},
		{"\"receiveSeq\":123456790", "\"receiveSeq\":4294967296", "'receiveSeq' is not an unsigned 32-bit integer",
		 "receiveSeq"},
		{"\"state\":\"ESTABLISHED\"", "\"state\":\"SYN_WHATEVER\"", "'state' is 'SYN_WHATEVER', not a TCP state name",
		 "state"},
		{"\"family\":\"inet\",\"state\"", "\"family\":\"unix\",\"state\"", "'family' is 'unix'", "family"},
		{"\"port\":8080", "\"port\":65536", "'local.port' is 65536, above its maximum 65535", "local.port"},
		{"\"address\":\"198.51.100.1\"", "\"address\":\"198.51.100.256\"", "'local.address' is not an IPv4 address",
		 "local.address"},
		{"\"family\":\"inet\",\"address\":\"198.51.100.2\"", "\"family\":\"inet6\",\"address\":\"2001:db8::2\"",
		 "'remote.family' is inet6 on an inet socket", "remote.family"},
		{"\"noDelay\":true", "\"noDelay\":1", "'options.noDelay' is not a boolean", "options.noDelay"},
		{"\"noDelay\":true,", "", "'options.noDelay' is missing", "options.noDelay"},
		{"\"cork\":true", "\"cork\":true,\"cork\":true", "'options.cork' appears twice", "options.cork"},
		{"\"socketError\":0", "\"socketError\":0,\"fastOpen\":true", "'fastOpen' is not part of format version 1",
		 "fastOpen"},
		{"\"socketError\":0", "\"socketError\":-4", "'socketError' is -4, not an errno value", "socketError"},
		{"\"sendWindowScale\":7", "\"sendWindowScale\":15", "'negotiated.sendWindowScale' is 15, above its maximum 14",
		 "negotiated.sendWindowScale"},
		{"\"congestion\":\"cubic\"", "\"congestion\":\"cu bic\"", "'options.congestion' is not a congestion control name",
		 "options.congestion"},
		{"\"congestion\":\"cubic\"", "\"congestion\":7", "'options.congestion' is not a string", "options.congestion"},
	};
	for (const Case &c : cases) {
		INFO(c.to);
		Error e = rejectedLogical(withManifestEdit(c.from, c.to));
		CHECK(contains(e.what, std::string("manifest field ") + c.what));
		CHECK(contains(e.context, std::string("field=") + c.field));
		CHECK(contains(e.context, "record=1"));
	}
	// Replace a whole object member by a value of the wrong shape.
	auto withMember = [](const std::string &name, const std::string &value) {
		std::string m = samples::manifestJson(samples::established4(0, 0, 0));
		size_t at = m.find("\"" + name + "\":{");
		REQUIRE(at != std::string::npos);
		size_t end = m.find('}', at);
		m.replace(at, end + 1 - at, "\"" + name + "\":" + value);
		samples::LogicalImage image;
		image.header(samples::headerJson());
		image.record(m, "");
		image.trailer();
		return rejectedLogical(image.bytes());
	};
	CHECK(contains(withMember("window", "[1]").what, "'window' is not a JSON object"));
	CHECK(contains(withMember("queues", "null").what, "'queues' is not a JSON object"));
	CHECK(contains(withMember("local", "\"198.51.100.1:80\"").what, "'local' is not a JSON object"));
	Error json = rejectedLogical(withManifestEdit("{", "{{"));
	CHECK(contains(json.what, "manifest JSON is not valid JSON"));
	CHECK(contains(json.context, "jsonOffset=1"));
	Error utf8 = rejectedLogical(withManifestEdit("\"cubic\"", "\"cu\xff\xfe\""));
	CHECK(contains(utf8.what, "'options.congestion' is not a congestion control name"));
	Error name = rejectedLogical(withManifestEdit("\"cork\"", "\"c\xc3\xb6rk\""));
	CHECK(contains(name.what, "is not part of format version 1"));
}

TEST_CASE("manifest members are matched by name in any order; a NUL byte is refused")
{
	// The decoder looks members up in the writer's order first (one
	// comparison each); another order must decode to the same snapshot.
	repair::ConnectionSnapshot original = samples::established4(0, 0, 0);
	std::string m = samples::manifestJson(original);
	const std::string first = "\"family\":\"inet\",";
	REQUIRE(m.rfind("{" + first, 0) == 0);
	std::string moved = "{" + m.substr(1 + first.size(), m.size() - 2 - first.size()) + ",\"family\":\"inet\"}";
	// And inside "options": its first member goes last.
	size_t options = moved.find("\"options\":{");
	REQUIRE(options != std::string::npos);
	size_t open = options + std::string("\"options\":{").size();
	size_t comma = moved.find(',', open);
	size_t close = moved.find('}', open);
	std::string member = moved.substr(open, comma - open);
	moved = moved.substr(0, open) + moved.substr(comma + 1, close - comma - 1) + "," + member + moved.substr(close);
	REQUIRE(moved != m);
	QueueLengths queues;
	auto decoded = decodeManifest(moved, ImageLimits{}, queues);
	REQUIRE(decoded.ok());
	samples::checkSame(*decoded, original);

	// Missing and unknown members are found in any order as well.
	std::string missing = moved;
	missing.erase(missing.find(",\"family\":\"inet\""), first.size());
	auto refused = decodeManifest(missing, ImageLimits{}, queues);
	REQUIRE(!refused.ok());
	CHECK(contains(refused.error().what, "'family' is missing"));

	// Parsed in place, a NUL would end the text early and hide what
	// follows it: refused instead.
	std::string nul = m + std::string(1, '\0') + "{\"trailing\":1}";
	auto withNul = decodeManifest(nul, ImageLimits{}, queues);
	REQUIRE(!withNul.ok());
	CHECK(contains(withNul.error().what, "NUL"));
	std::string inside = m;
	inside.insert(inside.find("cubic"), 1, '\0');
	CHECK(!decodeManifest(inside, ImageLimits{}, queues).ok());
}

TEST_CASE("manifest consistency: listeners have no peer or queues, connections have a peer")
{
	ConnectionSnapshot listener = samples::variety()[3];
	std::string manifest = samples::manifestJson(listener);
	samples::LogicalImage withQueue;
	withQueue.header(samples::headerJson());
	std::string m = manifest;
	replace(m, "\"sendUnsent\":0", "\"sendUnsent\":2");
	withQueue.record(m, "xx");
	withQueue.trailer();
	Error q = rejectedLogical(withQueue.bytes());
	CHECK(contains(q.what, "'queues' are not empty on a LISTEN socket"));

	ConnectionSnapshot established = samples::established4(0, 0, 0);
	std::string noPeer = samples::manifestJson(established);
	size_t at = noPeer.find("\"remote\":");
	size_t end = noPeer.find('}', at);
	noPeer.replace(at, end + 1 - at, "\"remote\":null");
	samples::LogicalImage image;
	image.header(samples::headerJson());
	image.record(noPeer, "");
	image.trailer();
	Error p = rejectedLogical(image.bytes());
	CHECK(contains(p.what, "'remote' is null on a ESTABLISHED socket"));
	CHECK(contains(p.context, "field=remote"));
}

TEST_CASE("trailer: counts, offset, digest and its own checksum are checked")
{
	samples::LogicalImage base;
	base.header(samples::headerJson());
	base.record(samples::manifestFor("12345"), "12345");
	std::string prefix = base.bytes();
	uint64_t records = base.records(), queued = base.queueBytes(), offset = prefix.size();
	uint32_t digest = base.digest();

	auto withTrailer = [&](uint64_t r, uint64_t q, uint64_t o, uint32_t d) {
		samples::LogicalImage image = base;
		image.trailer(r, q, o, d);
		return rejectedLogical(image.bytes());
	};
	Error r = withTrailer(records + 1, queued, offset, digest);
	CHECK(contains(r.what, "trailer counts 2 records, the stream holds 1"));
	CHECK(contains(r.context, "field=trailer.records offset=" + std::to_string(offset + 4)));
	Error q = withTrailer(records, queued - 1, offset, digest);
	CHECK(contains(q.what, "trailer counts 4 queue bytes, the stream holds 5"));
	Error o = withTrailer(records, queued, offset - 1, digest);
	CHECK(contains(o.what, "trailer says it starts at offset"));
	Error d = withTrailer(records, queued, offset, digest ^ 1);
	CHECK(contains(d.what, "stream digest mismatch"));
	CHECK(contains(d.context, "field=trailer.digest"));

	samples::LogicalImage good = base;
	size_t at = good.trailer();
	std::string corrupt = good.bytes();
	corrupt[at + 5] ^= 1;
	Error c = rejectedLogical(corrupt);
	CHECK(contains(c.what, "trailer checksum mismatch"));
	CHECK(contains(c.context, "offset=" + std::to_string(at + 32)));
}

TEST_CASE("a digest mismatch is found even when every record checksum is intact")
{
	// Swap two whole records: each passes its own checks, only the
	// whole-stream digest can tell.
	samples::LogicalImage a;
	a.header(samples::headerJson());
	size_t first = a.record(samples::manifestFor("one"), "one");
	size_t second = a.record(samples::manifestJson(samples::established4(0, 0, 0, 2)), "");
	a.trailer();
	std::string s = a.bytes();
	size_t trailerAt = s.size() - kTrailerSize;
	std::string swapped = s.substr(0, first) + s.substr(second, trailerAt - second) + s.substr(first, second - first) +
			      s.substr(trailerAt);
	Error e = rejectedLogical(swapped);
	CHECK(contains(e.what, "stream digest mismatch"));
}

TEST_CASE("a zstd frame asking for a window above 8 MiB is refused")
{
	std::vector<uint8_t> image = validImage();
	std::string logical = samples::decompress(span(image));
	REQUIRE(!logical.empty());
	CHECK(samples::decode(span(samples::compress(logical, 1, true, 23))).ok());
	std::vector<uint8_t> big = samples::compress(logical, 1, true, 24);
	REQUIRE(!big.empty());
	Error e = rejected(span(big));
	CHECK(contains(e.what, "corrupt compressed stream: zstd: Frame requires too much memory"));
}

TEST_CASE("feed after finish is an error")
{
	std::vector<uint8_t> image = validImage({});
	auto reader = ImageReader::create([](uint64_t, ConnectionSnapshot &&) -> Status { return {}; });
	REQUIRE(reader.ok());
	REQUIRE(reader->feed(span(image)).ok());
	REQUIRE(reader->finish().ok());
	CHECK_FALSE(reader->feed(span(image)).ok());
}
