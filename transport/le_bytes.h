// Little-endian integers in the image framing (internal to transport/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ferry::transport::le {

template<typename T>
void append(std::string &out, T value)
{
	for (size_t i = 0; i < sizeof(T); i++)
		out.push_back(static_cast<char>(static_cast<uint8_t>(value >> (8 * i))));
}

template<typename T>
T load(const uint8_t *p)
{
	T value = 0;
	for (size_t i = 0; i < sizeof(T); i++)
		value |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
	return value;
}

} // namespace ferry::transport::le
