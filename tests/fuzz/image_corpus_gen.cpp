// Writes the seed corpus for image_reader_fuzz into a directory:
//   valid-*    images the reader must accept;
//   invalid-*  one malformed-input class each, which it must reject.
// Each file starts with the fuzz target's mode byte (0: compressed image,
// 1: decompressed stream). The replay test checks both verdicts.
//
//   image_corpus_gen tests/fuzz/corpus/image_reader
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "image_samples.h"

using namespace ferry::transport;
using ferry::repair::ConnectionSnapshot;

namespace {

bool write(const std::string &dir, const std::string &name, uint8_t mode, const void *data, size_t size)
{
	std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
	out.put(static_cast<char>(mode));
	out.write(static_cast<const char *>(data), static_cast<std::streamsize>(size));
	return static_cast<bool>(out);
}

bool writeCompressed(const std::string &dir, const std::string &name, const std::vector<uint8_t> &image)
{
	return write(dir, name, 0, image.data(), image.size());
}

bool writeLogical(const std::string &dir, const std::string &name, const std::string &logical)
{
	return write(dir, name, 1, logical.data(), logical.size());
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 2) {
		std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	std::string dir = argv[1];
	bool ok = true;

	// Valid images, small enough for libFuzzer's default input size.
	std::vector<ConnectionSnapshot> variety = samples::variety();
	for (ConnectionSnapshot &s : variety) {
		s.receiveQueue.resize(std::min<size_t>(s.receiveQueue.size(), 8));
		s.sendUnacked.resize(std::min<size_t>(s.sendUnacked.size(), 8));
		s.sendUnsent.resize(std::min<size_t>(s.sendUnsent.size(), 8));
	}
	struct Named {
		const char *name;
		std::vector<ConnectionSnapshot> snapshots;
	};
	const Named images[] = {
		{"variety", variety},
		{"empty", {}},
		{"one-established", {samples::established4(5, 3, 2)}},
		{"listener", {variety[3]}},
		{"ipv6", {variety[1]}},
		{"reset", {variety[10]}},
	};
	for (const Named &n : images) {
		auto image = samples::encode(samples::header(), n.snapshots);
		if (!image) {
			std::fprintf(stderr, "encode %s: %s\n", n.name, image.error().message().c_str());
			return 1;
		}
		ok &= writeCompressed(dir, std::string("valid-") + n.name + ".zst", *image);
		ok &= writeLogical(dir, std::string("valid-") + n.name + ".raw", samples::decompress(*image));
	}

	// Malformed inputs, one class each.
	std::string manifest = samples::manifestJson(samples::established4(0, 0, 0));
	auto oneRecord = [&](const std::string &m, const std::string &queues) {
		samples::LogicalImage image;
		image.header(samples::headerJson());
		image.record(m, queues);
		image.trailer();
		return image.bytes();
	};
	auto edited = [&](const std::string &from, const std::string &to) {
		std::string m = manifest;
		m.replace(m.find(from), from.size(), to);
		return oneRecord(m, "");
	};
	std::string good = oneRecord(manifest, "abc");

	std::string badMagic = good;
	badMagic[0] = 'X';
	ok &= writeLogical(dir, "invalid-bad-magic.raw", badMagic);

	samples::LogicalImage v2;
	v2.header(samples::headerJson(), 2);
	v2.trailer();
	ok &= writeLogical(dir, "invalid-version-2.raw", v2.bytes());

	ok &= writeLogical(dir, "invalid-truncated.raw", good.substr(0, good.size() - 10));
	std::vector<uint8_t> compressed = samples::compress(good);
	compressed.resize(compressed.size() - 3);
	ok &= writeCompressed(dir, "invalid-truncated.zst", compressed);
	std::vector<uint8_t> garbage = samples::compress(good);
	garbage.push_back(0x28);
	ok &= writeCompressed(dir, "invalid-trailing-garbage.zst", garbage);
	ok &= writeLogical(dir, "invalid-trailing-data.raw", good + "x");
	ok &= writeCompressed(dir, "invalid-not-zstd.zst", std::vector<uint8_t>{'F', 'E', 'R', 'R', 'Y', 'I', 'M', 'G'});

	std::string badCrc = good;
	badCrc[good.find("ESTABLISHED")] = 'e';
	ok &= writeLogical(dir, "invalid-manifest-crc.raw", badCrc);
	std::string badQueueCrc = good;
	badQueueCrc[good.rfind("abc")] = 'A';
	ok &= writeLogical(dir, "invalid-queue-crc.raw", badQueueCrc);

	ok &= writeLogical(dir, "invalid-unknown-field.raw", edited("\"socketError\":0", "\"socketError\":0,\"x\":1"));
	ok &= writeLogical(dir, "invalid-wrong-type.raw", edited("\"keepIdle\":7201", "\"keepIdle\":\"7201\""));
	ok &= writeLogical(dir, "invalid-unknown-state.raw", edited("ESTABLISHED", "ESTABLISHING"));
	ok &= writeLogical(dir, "invalid-queue-lengths.raw", edited("\"receive\":0", "\"receive\":1"));

	samples::LogicalImage oversized;
	oversized.header(samples::headerJson());
	oversized.record(manifest, "", uint64_t(1) << 40);
	ok &= writeLogical(dir, "invalid-oversized-queue.raw", oversized.bytes());

	samples::LogicalImage counts;
	counts.header(samples::headerJson());
	counts.record(manifest, "");
	counts.trailer(2, 0, counts.bytes().size(), counts.digest());
	ok &= writeLogical(dir, "invalid-trailer-count.raw", counts.bytes());

	samples::LogicalImage digest;
	digest.header(samples::headerJson());
	digest.record(manifest, "");
	digest.trailer(1, 0, digest.bytes().size(), digest.digest() ^ 0x10);
	ok &= writeLogical(dir, "invalid-digest.raw", digest.bytes());

	if (!ok) {
		std::fprintf(stderr, "cannot write the corpus into %s\n", dir.c_str());
		return 1;
	}
	return 0;
}
