#include "base64.h"

#include <array>

namespace ferry {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr uint8_t kInvalid = 0xff;

constexpr std::array<uint8_t, 256> makeDecodeTable()
{
	std::array<uint8_t, 256> table{};
	for (auto &entry : table)
		entry = kInvalid;
	for (uint8_t i = 0; i < 64; i++)
		table[static_cast<uint8_t>(kAlphabet[i])] = i;
	return table;
}
constexpr std::array<uint8_t, 256> kDecode = makeDecodeTable();

Error badInput(std::string what, size_t offset)
{
	return makeError("invalid base64: " + std::move(what), EINVAL).at("offset", std::to_string(offset));
}

} // namespace

std::string base64Encode(std::span<const uint8_t> bytes)
{
	std::string out;
	out.reserve((bytes.size() + 2) / 3 * 4);
	size_t i = 0;
	for (; i + 3 <= bytes.size(); i += 3) {
		uint32_t v = uint32_t{bytes[i]} << 16 | uint32_t{bytes[i + 1]} << 8 | bytes[i + 2];
		out.push_back(kAlphabet[v >> 18]);
		out.push_back(kAlphabet[(v >> 12) & 63]);
		out.push_back(kAlphabet[(v >> 6) & 63]);
		out.push_back(kAlphabet[v & 63]);
	}
	size_t rest = bytes.size() - i;
	if (rest == 1) {
		uint32_t v = uint32_t{bytes[i]} << 16;
		out.push_back(kAlphabet[v >> 18]);
		out.push_back(kAlphabet[(v >> 12) & 63]);
		out.append("==");
	} else if (rest == 2) {
		uint32_t v = uint32_t{bytes[i]} << 16 | uint32_t{bytes[i + 1]} << 8;
		out.push_back(kAlphabet[v >> 18]);
		out.push_back(kAlphabet[(v >> 12) & 63]);
		out.push_back(kAlphabet[(v >> 6) & 63]);
		out.push_back('=');
	}
	return out;
}

std::string base64Encode(std::string_view bytes)
{
	return base64Encode(std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size()));
}

Result<std::string> base64Decode(std::string_view text)
{
	if (text.size() % 4 != 0)
		return badInput("length " + std::to_string(text.size()) + " is not a multiple of 4", text.size());
	size_t padding = 0;
	if (!text.empty() && text.back() == '=')
		padding = text[text.size() - 2] == '=' ? 2 : 1;

	std::string out;
	out.reserve(text.size() / 4 * 3);
	for (size_t i = 0; i < text.size(); i += 4) {
		bool last = i + 4 == text.size();
		// Padding may only end the text; inside the last quantum it may
		// cover the last one or two characters, nothing else.
		size_t data = last ? 4 - padding : 4;
		uint32_t v = 0;
		for (size_t j = 0; j < 4; j++) {
			char c = text[i + j];
			if (j >= data) {
				v <<= 6;
				continue;
			}
			uint8_t d = kDecode[static_cast<uint8_t>(c)];
			if (d == kInvalid)
				return badInput(c == '=' ? "padding before the end" : "character outside the alphabet", i + j);
			v = v << 6 | d;
		}
		out.push_back(static_cast<char>(v >> 16));
		if (data > 2)
			out.push_back(static_cast<char>((v >> 8) & 0xff));
		if (data > 3)
			out.push_back(static_cast<char>(v & 0xff));
		// The bits the padding leaves unused must be zero: otherwise two
		// texts would decode to the same blob.
		if ((data == 2 && (v & 0xffff) != 0) || (data == 3 && (v & 0xff) != 0))
			return badInput("non-zero bits under the padding", i + data - 1);
	}
	return out;
}

} // namespace ferry
