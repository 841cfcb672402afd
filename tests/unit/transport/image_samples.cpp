#include "image_samples.h"

#include <arpa/inet.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "transport/crc32c.h"
#include "transport/image_manifest.h"

namespace ferry::transport::samples {

namespace {

using repair::ConnectionSnapshot;
using repair::TcpState;

Endpoint endpoint(int family, const char *address, uint16_t port, uint32_t scopeId = 0)
{
	Endpoint e;
	e.family = family;
	::inet_pton(family, address, e.address.data());
	e.port = port;
	e.scopeId = scopeId;
	return e;
}

template<typename T>
void appendLe(std::string &out, T value)
{
	for (size_t i = 0; i < sizeof(T); i++)
		out.push_back(static_cast<char>(static_cast<uint8_t>(value >> (8 * i))));
}

} // namespace

std::vector<uint8_t> bytes(size_t size, uint32_t seed)
{
	std::mt19937 rng(seed);
	std::vector<uint8_t> out(size);
	for (uint8_t &b : out)
		b = static_cast<uint8_t>(rng());
	return out;
}

ConnectionSnapshot established4(size_t receive, size_t unacked, size_t unsent, uint32_t seed)
{
	ConnectionSnapshot s;
	s.family = AF_INET;
	s.flow.local = endpoint(AF_INET, "198.51.100.1", 8080);
	s.flow.remote = endpoint(AF_INET, "198.51.100.2", 40000 + static_cast<uint16_t>(seed % 1000));
	s.state = TcpState::Established;
	s.bound = true;
	s.backlog = 0;
	s.sendSeq = 0xfffffff0u - seed; // near the wrap, the largest values a u32 takes
	s.receiveSeq = 123456789u + seed;
	s.receiveQueue = bytes(receive, seed * 3 + 1);
	s.sendUnacked = bytes(unacked, seed * 3 + 2);
	s.sendUnsent = bytes(unsent, seed * 3 + 3);
	s.negotiated = {1460, true, 7, 9, true, true};
	s.timestamp = 0x89abcdefu;
	s.window = repair::RepairWindow{0x11111111u, 65535u * 128, 65535u * 512, 42000, 0xfeedbeefu};
	s.socketError = 0;
	repair::UserOptions &o = s.options;
	o.noDelay = true;
	o.cork = true;
	o.keepAlive = true;
	o.keepIdle = 7201;
	o.keepInterval = 75;
	o.keepCount = 9;
	o.userTimeout = 30000;
	o.congestion = "cubic";
	o.userMss = 1400;
	o.notSentLowat = 16384;
	o.windowClamp = 1 << 20;
	o.linger2 = -1; // TCP_LINGER2 takes -1 (orphans go straight to CLOSE)
	o.lingerOn = true;
	o.lingerSeconds = 5;
	o.sendBuffer = 425984;
	o.receiveBuffer = 131072;
	o.sendBufferLocked = true;
	o.receiveBufferLocked = true;
	o.mark = 0xdeadbeefu;
	o.priority = 6;
	o.tos = 0xb8;
	o.oobInline = true;
	o.v6Only = false;
	o.reuseAddress = true;
	o.reusePort = true;
	return s;
}

std::vector<ConnectionSnapshot> variety()
{
	std::vector<ConnectionSnapshot> out;
	out.push_back(established4(100, 200, 300, 1));

	ConnectionSnapshot v6 = established4(17, 0, 5, 2);
	v6.family = AF_INET6;
	v6.flow.local = endpoint(AF_INET6, "2001:db8::1", 443, 7);
	v6.flow.remote = endpoint(AF_INET6, "2001:db8:ffff::2", 65535, 7);
	v6.options.v6Only = true;
	v6.options.tos = 0x28; // IPV6_TCLASS
	v6.options.congestion = "reno";
	out.push_back(v6);

	ConnectionSnapshot mapped = established4(0, 0, 0, 3);
	mapped.family = AF_INET6;
	mapped.flow.local = endpoint(AF_INET6, "::ffff:198.51.100.1", 80);
	mapped.flow.remote = endpoint(AF_INET6, "::ffff:203.0.113.9", 1);
	out.push_back(mapped);

	ConnectionSnapshot listener;
	listener.family = AF_INET6;
	listener.flow.local = endpoint(AF_INET6, "::", 8443);
	listener.state = TcpState::Listen;
	listener.bound = true;
	listener.backlog = 4096;
	listener.options.reuseAddress = true;
	listener.options.congestion = "cubic";
	out.push_back(listener);

	ConnectionSnapshot boundOnly;
	boundOnly.family = AF_INET;
	boundOnly.flow.local = endpoint(AF_INET, "203.0.113.5", 5000);
	boundOnly.state = TcpState::Close;
	boundOnly.bound = true;
	out.push_back(boundOnly);

	uint32_t seed = 10;
	for (TcpState state : {TcpState::FinWait1, TcpState::FinWait2, TcpState::CloseWait, TcpState::LastAck,
			       TcpState::Closing}) {
		ConnectionSnapshot s = established4(seed, seed % 3 ? 0 : 64, 0, seed);
		s.state = state;
		s.window.reset(); // also cover a kernel without TCP_REPAIR_WINDOW
		out.push_back(s);
		seed++;
	}

	ConnectionSnapshot reset = established4(4096, 0, 0, 20);
	reset.state = TcpState::Close;
	reset.socketError = ECONNRESET;
	out.push_back(reset);

	ConnectionSnapshot plain; // every field at its default, empty strings
	plain.family = AF_INET;
	plain.flow.local = endpoint(AF_INET, "198.51.100.1", 1);
	plain.flow.remote = endpoint(AF_INET, "198.51.100.2", 2);
	plain.state = TcpState::Established;
	out.push_back(plain);
	return out;
}

ImageHeader header()
{
	ImageHeader h;
	h.producer = "ferry 0.1.0 (test)";
	h.kernelFeatures = {{"tcpRepairWindow", true}, {"tcpTimestamp", true}, {"halfClosedRepair", false}};
	return h;
}

Result<std::vector<uint8_t>> encode(const ImageHeader &h, const std::vector<ConnectionSnapshot> &snapshots,
				    WriterOptions options)
{
	std::vector<uint8_t> image;
	FERRY_TRY_ASSIGN(ImageWriter writer, ImageWriter::create(
							     h,
							     [&](std::span<const uint8_t> chunk) -> Status {
								     image.insert(image.end(), chunk.begin(), chunk.end());
								     return {};
							     },
							     options));
	for (const ConnectionSnapshot &s : snapshots)
		FERRY_TRY(writer.add(s));
	FERRY_TRY(writer.finish());
	return image;
}

Result<Decoded> decode(std::span<const uint8_t> image, size_t chunkSize, ImageLimits limits, uint32_t seed)
{
	Decoded decoded;
	FERRY_TRY_ASSIGN(ImageReader reader, ImageReader::create(
						     [&](uint64_t index, ConnectionSnapshot &&s) -> Status {
							     if (index != decoded.snapshots.size())
								     return makeError("record index out of order");
							     decoded.snapshots.push_back(std::move(s));
							     return {};
						     },
						     limits));
	std::mt19937 rng(seed);
	size_t pos = 0;
	while (pos < image.size()) {
		size_t n = chunkSize != 0 ? chunkSize : 1 + rng() % 4096;
		n = std::min(n, image.size() - pos);
		FERRY_TRY(reader.feed(image.subspan(pos, n)));
		pos += n;
	}
	FERRY_TRY_ASSIGN(decoded.summary, reader.finish());
	decoded.header = reader.header();
	return decoded;
}

std::vector<uint8_t> compress(std::string_view logical, int level, bool endFrame, int windowLog)
{
	std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx *)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
	ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
	if (windowLog != 0)
		ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, windowLog);
	std::vector<uint8_t> out(ZSTD_compressBound(logical.size()) + 64);
	ZSTD_outBuffer o{out.data(), out.size(), 0};
	ZSTD_inBuffer in{logical.data(), logical.size(), 0};
	// Continue, then flush or end: the frame does not record the content
	// size, as with ImageWriter.
	size_t rc = ZSTD_compressStream2(cctx.get(), &o, &in, ZSTD_e_continue);
	ZSTD_inBuffer none{nullptr, 0, 0};
	if (!ZSTD_isError(rc))
		rc = ZSTD_compressStream2(cctx.get(), &o, &none, endFrame ? ZSTD_e_end : ZSTD_e_flush);
	out.resize(ZSTD_isError(rc) || rc != 0 ? 0 : o.pos);
	return out;
}

std::string decompress(std::span<const uint8_t> image)
{
	std::string out;
	std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx *)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
	ZSTD_inBuffer in{image.data(), image.size(), 0};
	std::vector<char> buffer(ZSTD_DStreamOutSize());
	while (in.pos < in.size) {
		ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
		size_t rc = ZSTD_decompressStream(dctx.get(), &o, &in);
		if (ZSTD_isError(rc))
			return {};
		out.append(buffer.data(), o.pos);
	}
	return out;
}

size_t LogicalImage::header(std::string_view json, uint16_t version, uint16_t flags)
{
	size_t start = bytes_.size();
	std::string h(kImageMagic, sizeof(kImageMagic));
	appendLe<uint16_t>(h, version);
	appendLe<uint16_t>(h, flags);
	appendLe<uint32_t>(h, static_cast<uint32_t>(json.size()));
	h += json;
	appendLe<uint32_t>(h, crc32c(0, h.data(), h.size()));
	bytes_ += h;
	return start;
}

size_t LogicalImage::record(std::string_view manifest, std::string_view queueBytes,
			    std::optional<uint64_t> declaredQueueLength)
{
	size_t start = bytes_.size();
	std::string r(kRecordTag, sizeof(kRecordTag));
	appendLe<uint32_t>(r, static_cast<uint32_t>(manifest.size()));
	appendLe<uint64_t>(r, declaredQueueLength.value_or(queueBytes.size()));
	r += manifest;
	appendLe<uint32_t>(r, crc32c(0, r.data(), r.size()));
	r += queueBytes;
	appendLe<uint32_t>(r, crc32c(0, queueBytes.data(), queueBytes.size()));
	bytes_ += r;
	records_++;
	queueBytes_ += queueBytes.size();
	return start;
}

uint32_t LogicalImage::digest() const
{
	return crc32c(0, bytes_.data(), bytes_.size());
}

size_t LogicalImage::trailer()
{
	return trailer(records_, queueBytes_, bytes_.size(), digest());
}

size_t LogicalImage::trailer(uint64_t records, uint64_t queueBytes, uint64_t offset, uint32_t digest)
{
	size_t start = bytes_.size();
	std::string t(kTrailerTag, sizeof(kTrailerTag));
	appendLe<uint64_t>(t, records);
	appendLe<uint64_t>(t, queueBytes);
	appendLe<uint64_t>(t, offset);
	appendLe<uint32_t>(t, digest);
	appendLe<uint32_t>(t, crc32c(0, t.data(), t.size()));
	bytes_ += t;
	return start;
}

std::string headerJson()
{
	return *encodeHeaderJson(header(), ImageLimits{});
}

std::string manifestJson(const ConnectionSnapshot &snapshot)
{
	return *encodeManifest(snapshot, ImageLimits{});
}

std::string manifestFor(std::string_view receiveQueue)
{
	return manifestJson(established4(receiveQueue.size(), 0, 0));
}

} // namespace ferry::transport::samples
