// Replays the fuzz corpus in the normal build, so that every input that
// once crashed the decoder stays a regression test, and checks the seed
// files' verdicts: valid-* must decode, invalid-* must be rejected.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "image_reader_fuzz.h"

namespace fs = std::filesystem;

TEST_CASE("every corpus input decodes or is rejected without a crash, as its name says")
{
	fs::path dir = FERRY_CORPUS_DIR;
	REQUIRE(fs::is_directory(dir));
	size_t valid = 0, invalid = 0, other = 0;
	for (const fs::directory_entry &entry : fs::directory_iterator(dir)) {
		if (!entry.is_regular_file())
			continue;
		std::string name = entry.path().filename().string();
		std::ifstream in(entry.path(), std::ios::binary);
		std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
		INFO(name);
		ferry::Status verdict = ferry::transport::fuzz::decodeFuzzInput(data.data(), data.size());
		if (name.rfind("valid-", 0) == 0) {
			CHECK_MESSAGE(verdict.ok(), (verdict.ok() ? "" : verdict.error().message()));
			valid++;
		} else if (name.rfind("invalid-", 0) == 0) {
			CHECK_FALSE(verdict.ok());
			invalid++;
		} else {
			other++; // found by the fuzzer; it only has to not crash
		}
	}
	MESSAGE(valid << " valid, " << invalid << " invalid, " << other << " other inputs");
	CHECK(valid >= 10);
	CHECK(invalid >= 10);
}
