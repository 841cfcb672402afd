// base64 (agent/base/base64.h). Lives here until tests/unit/base lists it.
#include <doctest/doctest.h>

#include <cerrno>
#include <string>

#include "base/base64.h"

using namespace ferry;

TEST_CASE("the RFC 4648 test vectors encode and decode")
{
	const std::pair<const char *, const char *> vectors[] = {
		{"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
		{"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
	};
	for (const auto &vector : vectors) {
		// No structured binding: clang 14 cannot capture one in CAPTURE's lambda.
		const char *plain = vector.first;
		const char *encoded = vector.second;
		CAPTURE(plain);
		CHECK(base64Encode(std::string_view(plain)) == encoded);
		auto decoded = base64Decode(encoded);
		REQUIRE(decoded.ok());
		CHECK(*decoded == plain);
	}
}

TEST_CASE("every byte value and every length round-trips")
{
	std::string all;
	for (int i = 0; i < 256; i++)
		all.push_back(static_cast<char>(i));
	for (size_t length = 0; length <= all.size(); length++) {
		std::string blob = all.substr(all.size() - length);
		auto decoded = base64Decode(base64Encode(blob));
		REQUIRE(decoded.ok());
		CHECK(*decoded == blob);
	}
	CHECK(base64Encode(std::string_view("\xfb\xff", 2)) == "+/8=");
}

TEST_CASE("bad input is refused with the offset of the problem")
{
	struct Bad {
		const char *text;
		const char *problem;
	};
	const Bad bad[] = {
		{"Zg=", "multiple of 4"},        // truncated
		{"Zm9v Yg==", "multiple of 4"},   // whitespace changes the length
		{"Zm9 Yg==", "alphabet"},         // whitespace inside
		{"Zm9vYg\n=", "alphabet"},
		{"Zm-v", "alphabet"},             // base64url is another alphabet
		{"Zm_v", "alphabet"},
		{"====", "padding"},
		{"Z===", "padding"},
		{"Zg==Zg==", "padding"},          // padding in the middle
		{"Zh==", "non-zero bits"},        // 'h' leaves bits under the padding
		{"Zm9=", "non-zero bits"},
		{"Zm8\xc3", "alphabet"},
	};
	for (const Bad &b : bad) {
		CAPTURE(b.text);
		auto decoded = base64Decode(b.text);
		REQUIRE_FALSE(decoded.ok());
		CHECK(decoded.error().code == EINVAL);
		CHECK(decoded.error().what.find(b.problem) != std::string::npos);
		CHECK(decoded.error().context.find("offset=") == 0);
	}
	auto decoded = base64Decode("Zm9v!mFy");
	REQUIRE_FALSE(decoded.ok());
	CHECK(decoded.error().context == "offset=4");
}
