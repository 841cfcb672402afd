// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of the
// image stream's header, records and trailer, and its whole-stream digest.
//
// Why CRC32C and not a new dependency: it needs no package beyond what
// ferry already installs, x86-64 computes it in hardware (SSE4.2 crc32
// instruction, selected at run time), and every language a second decoder
// might be written in has it (Go hash/crc32 Castagnoli table, Python
// crc32c, Rust crc32c). The image only needs protection against accidental
// corruption; TLS protects the connection against tampering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ferry::transport {

// Extends a running CRC32C with more bytes. Start with crc = 0; the
// pre- and post-inversion is done inside, so that
// crc32c(crc32c(0, a), b) == crc32c(0, a || b).
uint32_t crc32c(uint32_t crc, const void *data, size_t size);

inline uint32_t crc32c(uint32_t crc, std::span<const uint8_t> bytes)
{
	return crc32c(crc, bytes.data(), bytes.size());
}

// The portable table implementation, exposed so that tests can check that
// it and the hardware path agree.
uint32_t crc32cPortable(uint32_t crc, const void *data, size_t size);

} // namespace ferry::transport
