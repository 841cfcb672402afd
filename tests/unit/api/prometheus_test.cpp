#include <doctest/doctest.h>

#include "api/prometheus.h"
#include "prometheus_text.h"

using namespace ferry;

TEST_CASE("metrics render as valid Prometheus text with every series")
{
	migration::MetricsSnapshot m;
	m.migrationsByOutcome = {{"committed", 7}};
	m.connectionsMoved = 700;
	m.bytesMoved = 123456789012;
	m.blackoutBucketsMs = {1, 2.5, 5, 10, 100};
	m.blackoutBucketCounts = {1, 3, 6, 7, 7};
	m.blackoutCount = 7;
	m.blackoutSumMs = 21.5;
	m.activeMigrations = 2;
	std::string text = api::renderPrometheus(m);
	auto parsed = test::parsePrometheus(text);
	REQUIRE_MESSAGE(parsed.error.empty(), (parsed.error + "\n" + text));
	CHECK(parsed.types.at("ferry_migrations_total") == "counter");
	CHECK(parsed.types.at("ferry_blackout_seconds") == "histogram");
	CHECK(parsed.types.at("ferry_active_migrations") == "gauge");
	CHECK(parsed.value("ferry_migrations_total", {{"outcome", "committed"}}) == 7);
	// Always present, so that rate() never sees the series appear.
	CHECK(parsed.value("ferry_migrations_total", {{"outcome", "aborted"}}) == 0);
	CHECK(parsed.value("ferry_connections_moved_total") == 700);
	CHECK(parsed.value("ferry_bytes_moved_total") == 123456789012.0);
	CHECK(parsed.value("ferry_blackout_seconds_bucket", {{"le", "0.0025"}}) == 3);
	CHECK(parsed.value("ferry_blackout_seconds_bucket", {{"le", "+Inf"}}) == 7);
	CHECK(parsed.value("ferry_blackout_seconds_sum") == doctest::Approx(0.0215));
	CHECK(parsed.value("ferry_blackout_seconds_count") == 7);
	CHECK(parsed.value("ferry_active_migrations") == 2);
}

TEST_CASE("an empty snapshot and odd outcome names still parse")
{
	migration::MetricsSnapshot m;
	m.migrationsByOutcome = {{"we\"ird\\name\n", 1}};
	auto parsed = test::parsePrometheus(api::renderPrometheus(m));
	REQUIRE_MESSAGE(parsed.error.empty(), parsed.error);
	CHECK(parsed.value("ferry_blackout_seconds_count") == 0);
	CHECK(parsed.value("ferry_migrations_total", {{"outcome", "we\\\"ird\\\\name\\n"}}) == 1);
}

TEST_CASE("the checker itself refuses broken text")
{
	CHECK_FALSE(test::parsePrometheus("x 1\n").error.empty());                        // no TYPE
	CHECK_FALSE(test::parsePrometheus("# TYPE x gauge\nx one\n").error.empty());      // not a number
	CHECK_FALSE(test::parsePrometheus("# TYPE x gauge\nx 1").error.empty());          // no final newline
	CHECK_FALSE(test::parsePrometheus("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
					  "h_sum 1\nh_count 1\n")
			    .error.empty()); // not cumulative
}
